//! The targeting pass: every client of the fleet through `enrollment::decide` for every
//! flight, on all cores. Persons are drawn on the fly from the seed (none is kept), so a
//! million clients need no more memory than a thousand. Counts are exact.

use crate::load::{Load, LoadModel};
use crate::population::Population;
use crate::rng::{Rng, Stream};
use crate::SimFlight;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use testpilot_flight::enrollment;
use testpilot_flight::Timestamp;

/// Clients are handed to threads in chunks this big.
const CHUNK: u64 = 4096;

/// What the targeting pass counted for one flight.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlightTally {
    pub eligible: u64,
    /// Eligible and inside `randomDeploy`.
    pub sampled: u64,
    /// Eligible, sampled, not killed, not past `endBy`.
    pub enrolled: u64,
    /// Enrolled per arm.
    pub arms: Vec<u64>,
    /// Enrolments per timeline bin (by the client's first poll; only clients whose first poll
    /// comes before the flight is killed or reaches `endBy`, who really start it).
    pub enrol_bins: Vec<u64>,
}

/// The whole fleet's counts.
#[derive(Debug, Clone)]
pub struct Tally {
    pub flights: Vec<FlightTally>,
    /// `pairs[i * n + j]` (i < j): people enrolled in both flights i and j.
    pub pairs: Vec<u64>,
    /// Clients enrolled in at least one flight, in order.
    pub enrolled_clients: Vec<u32>,
    pub load: Load,
}

impl Tally {
    fn new(flights: &[SimFlight], bins: usize, model: &LoadModel) -> Tally {
        Tally {
            flights: flights
                .iter()
                .map(|f| FlightTally {
                    arms: vec![0; f.flight.arms.len()],
                    enrol_bins: vec![0; bins],
                    ..FlightTally::default()
                })
                .collect(),
            pairs: vec![0; flights.len() * flights.len()],
            enrolled_clients: Vec::new(),
            load: Load::new(model),
        }
    }

    fn add(&mut self, o: &Tally) {
        for (a, b) in self.flights.iter_mut().zip(&o.flights) {
            a.eligible += b.eligible;
            a.sampled += b.sampled;
            a.enrolled += b.enrolled;
            a.arms.iter_mut().zip(&b.arms).for_each(|(x, y)| *x += y);
            a.enrol_bins
                .iter_mut()
                .zip(&b.enrol_bins)
                .for_each(|(x, y)| *x += y);
        }
        self.pairs
            .iter_mut()
            .zip(&o.pairs)
            .for_each(|(x, y)| *x += y);
        self.enrolled_clients.extend_from_slice(&o.enrolled_clients);
        self.load.add(&o.load);
    }
}

/// When client `client` first polls: `start` plus an exponential wait of mean `arrival_ms`.
pub fn arrival(seed: u64, client: u64, start: Timestamp, arrival_ms: f64) -> Timestamp {
    let mut r = Rng::new(seed, client, Stream::Arrival);
    Timestamp(start.0 + r.exp(arrival_ms) as i64)
}

/// The inputs of the pass.
pub struct Fleet<'a> {
    /// Set from another thread to stop the run early ([`crate::simulate`] then fails).
    pub cancel: Option<&'a std::sync::atomic::AtomicBool>,
    pub population: &'a Population,
    pub flights: &'a [SimFlight],
    pub clients: u64,
    pub seed: u64,
    pub start: Timestamp,
    pub end: Timestamp,
    pub bins: usize,
    pub load: &'a LoadModel,
    /// Flights killed during the run, and when (by flight index): a client whose first poll
    /// comes after a flight's kill never starts it, so it is not on the enrolment timeline.
    pub kills: &'a [(usize, Timestamp)],
}

impl Fleet<'_> {
    /// Whether the run was asked to stop.
    pub fn cancelled(&self) -> bool {
        self.cancel.is_some_and(|c| c.load(Ordering::Relaxed))
    }

    /// Whether flight `i` is killed or past its `endBy` at `at` (so a pilot first polling then
    /// does not start it), by the same rule as [`enrollment::decide`].
    fn stopped_by(&self, i: usize, at: Timestamp) -> bool {
        let expired = self.flights[i]
            .flight
            .end_by
            .as_ref()
            .is_some_and(|e| at >= e.at);
        expired || self.kills.iter().any(|&(k, t)| k == i && at >= t)
    }

    /// The timeline bin of a moment (`None` past the end).
    pub fn bin(&self, at: Timestamp) -> Option<usize> {
        bin_of(self.start, self.end, self.bins, at)
    }

    /// Runs every client through targeting on `threads` threads; `progress` gets the number
    /// of clients done so far.
    pub fn run(&self, threads: usize, progress: &(dyn Fn(u64) + Sync)) -> Tally {
        let next = AtomicU64::new(0);
        let done = AtomicU64::new(0);
        let total = Mutex::new(Tally::new(self.flights, self.bins, self.load));
        std::thread::scope(|s| {
            for _ in 0..threads.max(1) {
                s.spawn(|| {
                    let mut t = Tally::new(self.flights, self.bins, self.load);
                    loop {
                        let from = next.fetch_add(CHUNK, Ordering::Relaxed);
                        if from >= self.clients || self.cancelled() {
                            break;
                        }
                        let to = (from + CHUNK).min(self.clients);
                        for c in from..to {
                            self.client(c, &mut t);
                        }
                        progress(done.fetch_add(to - from, Ordering::Relaxed) + (to - from));
                    }
                    if let Ok(mut all) = total.lock() {
                        all.add(&t);
                    }
                });
            }
        });
        let mut t = total.into_inner().unwrap_or_else(|e| e.into_inner());
        t.enrolled_clients.sort_unstable();
        t
    }

    fn client(&self, c: u64, t: &mut Tally) {
        let person = self.population.person(self.seed, c);
        let at = arrival(
            self.seed,
            c,
            self.start,
            self.population.behaviour.arrival_ms,
        );
        let bin = self.bin(at);
        let n = self.flights.len();
        let mut mine: Vec<usize> = Vec::new();
        let mut quiet_reports = 0u32;
        for (i, f) in self.flights.iter().enumerate() {
            let d = enrollment::decide(&f.flight, &person, self.start);
            let ft = &mut t.flights[i];
            ft.eligible += d.eligible as u64;
            ft.sampled += (d.eligible && d.sampled) as u64;
            if d.enrolled {
                ft.enrolled += 1;
                if let Some(a) = d.arm {
                    ft.arms[a] += 1;
                }
                if let Some(b) = bin.filter(|_| !self.stopped_by(i, at)) {
                    ft.enrol_bins[b] += 1;
                }
                mine.push(i);
            } else if !d.killed && !d.expired {
                // The pilot reports "ineligible" or "unsampled" once.
                quiet_reports += 1;
            }
        }
        for (k, a) in mine.iter().enumerate() {
            for b in &mine[k + 1..] {
                t.pairs[a * n + b] += 1;
            }
        }
        if !mine.is_empty() {
            t.enrolled_clients.push(c as u32);
        }
        t.load.client(at, quiet_reports);
    }
}

/// The bin of `at` in `bins` equal parts of `[start, end)`.
pub fn bin_of(start: Timestamp, end: Timestamp, bins: usize, at: Timestamp) -> Option<usize> {
    if at < start || at >= end || end <= start {
        return None;
    }
    Some(((at.0 - start.0) as u128 * bins as u128 / (end.0 - start.0) as u128) as usize)
}
