//! The days a client reported on a flight, which `progress_day_clients` counts once a client
//! a day (docs/reports.md#progress), kept in the client's own `client_state` row
//! (migration 8): `seen_day`, the newest such day, and `seen_days`, a window of 64 days
//! ending with it (bit `i`: the client reported on day `seen_day - i`).
//!
//! A pilot reports on the days it runs, newest last, so nearly every report's day is in its
//! client's window, and the row `client_state` moves in any case says whether the client
//! was counted that day. Before, every report batch also inserted a row keyed by (flight,
//! day, client): a second random place in the database a batch (BENCHMARKS.md, report
//! ingest). Now that second place is reached only when a day leaves a window or a report is
//! older than one: a client that reports every day for months writes one row a day from
//! its 65th day on, at its first batch of the day, and none in its first 64 days. Days before
//! the window go to `progress_day_seen`, as rows (flight, day, client):
//!
//! - a day that leaves the window when a newer day moves it (a *spill*), already counted,
//!   becomes a row, so that it is not counted again;
//! - a report for a day before the window (a pilot that was offline for months) is a *look
//!   up*: its row is inserted, and the client counted on that day if the row is new.
//!
//! So a client was counted on day `d` exactly when `d` is in its window and its bit is set,
//! or `d` is before its window and `progress_day_seen` has the row. (Rows for days still in
//! the window may exist too — migration 8 leaves the rows it makes windows from — and agree
//! with the bits.) An empty window (`seen_days` 0) means the client reported on no day, in
//! the window or before it: every client that reported has its newest day's bit set.
//!
//! A report dated far ahead (the tower takes any `at` in range) moves its client's window
//! there: counts stay exact, but until real time catches up each of that client's batches
//! is a look up again, as every batch was before.

use std::collections::BTreeSet;

/// Days a window holds: the newest and the 63 before it.
pub(super) const WINDOW: i64 = 64;

/// A client's window of days on one flight: `seen_day` and `seen_days` of `client_state`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Seen {
    /// The newest day (since the epoch, UTC) the client reported on.
    pub day: i64,
    /// Bit `i`: the client reported on day `day - i`. Stored as the same 64 bits in a
    /// signed column.
    pub days: u64,
}

/// What reports on some days do to a client's [`Seen`].
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Merged {
    /// The window after them.
    pub seen: Seen,
    /// Days the client is counted on for the first time.
    pub new: Vec<i64>,
    /// Days before the old window: the client is counted on each whose row in
    /// `progress_day_seen` is new.
    pub look_up: Vec<i64>,
    /// Days, already counted, that left the window: rows of `progress_day_seen` from now on.
    pub spill: Vec<i64>,
}

impl Seen {
    /// The window as stored: `seen_day`, and `seen_days` as a signed 64-bit integer.
    pub fn from_columns(day: i64, days: i64) -> Seen {
        Seen {
            day,
            days: days as u64,
        }
    }

    /// `seen_days` as the signed integer it is stored as.
    pub fn days_column(&self) -> i64 {
        self.days as i64
    }

    /// The first day of the window; `None` for an empty one.
    fn start(&self) -> Option<i64> {
        (self.days != 0).then(|| self.day.saturating_sub(WINDOW - 1))
    }

    /// The days whose bit is set.
    fn days(&self) -> impl Iterator<Item = i64> + '_ {
        (0..WINDOW)
            .filter(|i| self.days >> i & 1 == 1)
            .map(|i| self.day - i)
    }

    /// The window after reports on `days` (not empty), and what they count.
    pub fn merge(self, days: &BTreeSet<i64>) -> Merged {
        let start = self.start();
        let mut all: BTreeSet<i64> = self.days().collect();
        let mut m = Merged::default();
        for &d in days {
            if start.is_some_and(|s| d < s) {
                m.look_up.push(d);
            } else if all.insert(d) {
                m.new.push(d);
            }
        }
        // `all` is empty only if this window was and `days` too.
        let Some(&top) = all.last() else {
            m.seen = self;
            return m;
        };
        let mut bits = 0u64;
        for d in all {
            let i = top - d;
            if i < WINDOW {
                bits |= 1 << i;
            } else {
                m.spill.push(d);
            }
        }
        m.seen = Seen {
            day: top,
            days: bits,
        };
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: the same days every run.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
        }
    }

    /// Against a model (every day ever reported on, and the table's rows): each day is
    /// counted exactly once however days arrive — in order, backwards, far apart, in
    /// batches wider than the window — and the window with the table always holds every day
    /// counted and no other.
    #[test]
    fn every_day_is_counted_once_in_any_order() {
        for seed in 1..=300u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let span = [3, 40, 64, 65, 130, 400][(seed % 6) as usize];
            let base = 20_000 + rng.below(100) as i64;
            let mut seen = Seen::default();
            let mut rows: BTreeSet<i64> = BTreeSet::new();
            let mut truth: BTreeSet<i64> = BTreeSet::new();
            for _ in 0..40 {
                let days: BTreeSet<i64> = (0..1 + rng.below(5))
                    .map(|_| base + rng.below(span) as i64)
                    .collect();
                let m = seen.merge(&days);
                let mut counted: Vec<i64> = m.new.clone();
                for &d in &m.look_up {
                    if rows.insert(d) {
                        counted.push(d);
                    }
                }
                for &d in &m.spill {
                    rows.insert(d);
                }
                counted.sort_unstable();
                let fresh: Vec<i64> = days.difference(&truth).copied().collect();
                assert_eq!(counted, fresh, "seed {seed}: days counted for {days:?}");
                truth.extend(&days);
                seen = m.seen;
                let held: BTreeSet<i64> = seen.days().chain(rows.iter().copied()).collect();
                assert_eq!(held, truth, "seed {seed}: days held");
                assert_eq!(seen.day, *truth.last().unwrap(), "seed {seed}");
                let round = Seen::from_columns(seen.day, seen.days_column());
                assert_eq!(round, seen, "seed {seed}: through the columns");
            }
        }
    }

    #[test]
    fn the_window_moves_with_the_newest_day() {
        let m = Seen::default().merge(&BTreeSet::from([100, 101]));
        assert_eq!(
            m.seen,
            Seen {
                day: 101,
                days: 0b11
            }
        );
        assert_eq!(m.new, [100, 101]);
        // 63 days later day 100 is the window's last; a day later it spills.
        let m = m.seen.merge(&BTreeSet::from([163]));
        assert!(m.spill.is_empty());
        let m = m.seen.merge(&BTreeSet::from([164]));
        assert_eq!(m.spill, [100]);
        assert_eq!(m.seen.days, 1 | 1 << 1 | 1 << 63);
        // A day before the window is looked up, not counted here.
        let m = m.seen.merge(&BTreeSet::from([100, 101]));
        assert_eq!((m.new.len(), m.look_up.as_slice()), (0, &[100][..]));
    }
}
