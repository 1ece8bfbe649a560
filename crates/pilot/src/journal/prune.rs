//! Pruning: what the journal no longer needs, so a profile stays bounded over years of use
//! (docs/cli.md, `testpilot pilot run --retention`). The agent prunes at start and then every
//! hour of the pilot's clock.
//!
//! What goes, once older than the retention:
//! - reports the tower accepted (sent outbox rows);
//! - observed events (the host's stream), and beyond the newest [`Retention::max_events`]
//!   whatever their age — but never an event a step may still read: an unresolved step of a
//!   running flight (`observe`, `instrument`) reads the events of its topics after its mark,
//!   a recorder those of its watched topics after its cursor, so these are kept (per topic,
//!   so one long wait does not keep the whole stream);
//! - the history (timeline, effects, prompts, step states) of flights that ended and were
//!   cleaned up: the `flights` row stays as a tombstone, so the flight never runs again and
//!   the flight log still lists it, with one `pruned` line that sums up how it ended;
//! - the pilot's own log lines, and carried-out requests.
//!
//! The newest row of each table whose ids are not `AUTOINCREMENT` is always kept, so SQLite
//! never hands out an id again (an outbox `seq` is a report's idempotency key at the tower;
//! step marks compare event ids). Ages are cut at a day boundary and the event count gets 10%
//! slack, so deletes come in day-sized lumps, not a few rows every hour. Each delete is one
//! write of at most [`BATCH`] rows; afterwards, when a quarter of the file is free pages, it is
//! rewritten (`VACUUM`) and the WAL truncated, so the file shrinks.

use super::{exec, one, Journal};
use crate::Error;
use rusqlite::params;
use std::time::Duration;
use testpilot_flight::Timestamp;

/// Rows deleted per write (one transaction each).
pub const BATCH: i64 = 10_000;
/// How often the agent prunes, on the pilot's clock.
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Flights whose history one prune removes (the rest wait for the next one).
const FLIGHTS_PER_PRUNE: i64 = 100;
const DAY_MS: i64 = 86_400_000;
/// The `kind` of the line that sums up a pruned flight; kept forever with the tombstone.
pub const PRUNED_KIND: &str = "pruned";

/// How much history the journal keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// What is older than this (and no longer needed) is deleted.
    pub keep: Duration,
    /// At most this many observed events are kept, whatever their age (plus 10% slack).
    pub max_events: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            keep: Duration::from_secs(90 * 86_400),
            max_events: 100_000,
        }
    }
}

/// What one prune removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    pub reports: u64,
    pub events: u64,
    /// Flights whose history was removed (their tombstones stay).
    pub flights: Vec<String>,
    /// Timeline lines, effects, prompts and step states of those flights.
    pub flight_rows: u64,
    /// The pilot's own log lines and carried-out requests.
    pub pilot_rows: u64,
    /// The file was rewritten to give free pages back.
    pub vacuumed: bool,
    /// The database's size after pruning, in bytes.
    pub bytes: u64,
}

impl Pruned {
    pub fn anything(&self) -> bool {
        self.reports + self.events + self.flight_rows + self.pilot_rows > 0
    }

    /// The line the pilot's log gets.
    pub fn summary(&self, r: &Retention) -> String {
        let days = r.keep.as_secs() / 86_400;
        let mut parts = Vec::new();
        if self.events > 0 {
            parts.push(format!("{} observed event(s)", self.events));
        }
        if self.reports > 0 {
            parts.push(format!("{} sent report(s)", self.reports));
        }
        if !self.flights.is_empty() {
            parts.push(format!(
                "the history of {} ended flight(s) ({})",
                self.flights.len(),
                self.flights.join(", ")
            ));
        }
        if self.pilot_rows > 0 {
            parts.push(format!(
                "{} pilot log line(s) and request(s)",
                self.pilot_rows
            ));
        }
        format!(
            "pruned {} (kept: {days} days, at most {} events, and whatever running flights need); the journal is {} KiB{}",
            parts.join(", "),
            r.max_events,
            self.bytes / 1024,
            if self.vacuumed { " after compacting" } else { "" }
        )
    }
}

impl Journal {
    /// Prunes what is older than `r` at `now` (see the module's doc). Writes nothing when
    /// there is nothing to prune; otherwise ends with a `prune` line in the pilot's log.
    pub fn prune(&mut self, now: Timestamp, r: &Retention) -> Result<Pruned, Error> {
        let keep_ms = i64::try_from(r.keep.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now.0.saturating_sub(keep_ms).div_euclid(DAY_MS) * DAY_MS;
        let mut out = Pruned {
            reports: self.prune_batches(
                "prune outbox",
                ("outbox", "seq"),
                "sent_at IS NOT NULL AND sent_at < ?1",
                cutoff,
            )?,
            events: self.prune_events(cutoff, r.max_events)?,
            ..Pruned::default()
        };
        self.prune_flights(cutoff, &mut out)?;
        out.pilot_rows += self.prune_batches(
            "prune pilot log",
            ("timeline", "id"),
            "flight = '' AND at < ?1",
            cutoff,
        )?;
        out.pilot_rows += self.prune_batches(
            "prune requests",
            ("requests", "id"),
            "done_at IS NOT NULL AND done_at < ?1",
            cutoff,
        )?;
        if !out.anything() {
            out.bytes = self.size()?;
            return Ok(out);
        }
        out.vacuumed = self.compact()?;
        out.bytes = self.size()?;
        self.note("", now, "prune", &out.summary(r), None)?;
        Ok(out)
    }

    /// Deletes the rows of `table` that match `cond` (`?1` is the cutoff), [`BATCH`] per
    /// write, keeping the newest `key`; a write only when a read found something to delete.
    fn prune_batches(
        &mut self,
        what: &str,
        (table, key): (&str, &str),
        cond: &str,
        cutoff: i64,
    ) -> Result<u64, Error> {
        let select = format!(
            "SELECT {key} FROM {table} WHERE {cond} AND {key} < (SELECT max({key}) FROM {table}) ORDER BY {key} LIMIT ?2"
        );
        let probe = format!("SELECT count(*) FROM ({select})");
        let delete = format!("DELETE FROM {table} WHERE {key} IN ({select})");
        let mut total = 0;
        loop {
            let n: i64 = one(&self.conn, &probe, params![cutoff, 1], |x| x.get(0))?;
            if n == 0 {
                return Ok(total);
            }
            let deleted = self.write(what, |tx| exec(tx, &delete, params![cutoff, BATCH]))?;
            total += deleted as u64;
            if (deleted as i64) < BATCH {
                return Ok(total);
            }
        }
    }

    /// What steps may still read: `(topic, id)` pairs, each keeping the events of that topic
    /// after that id; and an id after which every event is kept (the newest event, and the
    /// mark of a live step whose flight watches a topic made from a template).
    ///
    /// A running flight's unresolved steps count from their earliest mark, for every topic
    /// its spec names (`topic` of `observe`, `watch` of `instrument`): more than it needs,
    /// never less. A recorder reads its watched topics after its cursor.
    fn event_protections(&self) -> Result<(Vec<(String, i64)>, i64), Error> {
        let mut st = self.conn.prepare_cached(
            "WITH live AS (
               SELECT n.flight AS flight, min(json_extract(n.state, '$.mark')) AS mark
               FROM nodes n JOIN flights f ON f.studyname = n.flight
               WHERE f.ended_at IS NULL AND json_extract(n.state, '$.res') IS NULL
                 AND json_extract(n.state, '$.mark') IS NOT NULL
               GROUP BY n.flight),
             topics AS (
               SELECT l.mark AS mark, j.value AS topic FROM live l JOIN flights f ON f.studyname = l.flight,
                 json_tree(CASE WHEN json_valid(f.spec) THEN f.spec ELSE '{\"topic\": \"{{unreadable spec}}\"}' END) j
               WHERE j.type = 'text' AND (j.key = 'topic' OR j.path LIKE '%.watch')
               UNION ALL
               SELECT r.cursor, w.value FROM recorders r LEFT JOIN flights f ON f.studyname = r.flight,
                 json_each(CASE WHEN json_valid(r.watch) THEN r.watch ELSE '[\"{{unreadable}}\"]' END) w
               WHERE f.studyname IS NULL OR f.cleaned_up = 0)
             SELECT topic, min(mark) FROM topics GROUP BY topic",
        )?;
        let pairs = st
            .query_map([], |x| Ok((x.get::<_, String>(0)?, x.get::<_, i64>(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut all: i64 = one(
            &self.conn,
            "SELECT coalesce(max(id), 0) - 1 FROM events",
            [],
            |x| x.get(0),
        )?;
        let mut topics = Vec::new();
        for (topic, mark) in pairs {
            if topic.contains("{{") {
                all = all.min(mark);
            } else {
                topics.push((topic, mark));
            }
        }
        Ok((topics, all))
    }

    /// Observed events older than `cutoff`, or beyond the newest `max_events` (with 10%
    /// slack), that no step may still read.
    fn prune_events(&mut self, cutoff: i64, max_events: u64) -> Result<u64, Error> {
        let (topics, all) = self.event_protections()?;
        let protect = serde_json::to_string(&topics).unwrap_or_else(|_| "[]".into());
        let max = i64::try_from(max_events).unwrap_or(i64::MAX);
        let count: i64 = one(&self.conn, "SELECT count(*) FROM events", [], |x| x.get(0))?;
        // Past the count cap: every event older than the newest `max`.
        let edge: i64 = if count > max.saturating_add(max / 10) {
            one(
                &self.conn,
                "SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?1",
                [max],
                |x| x.get(0),
            )?
        } else {
            0
        };
        let select = "SELECT id FROM events WHERE id <= ?1 AND (at < ?2 OR id <= ?3) \
             AND NOT EXISTS (SELECT 1 FROM json_each(?4) p WHERE json_extract(p.value, '$[0]') = events.topic \
               AND events.id > json_extract(p.value, '$[1]')) \
             ORDER BY id LIMIT ?5";
        let probe = format!("SELECT count(*) FROM ({select})");
        let delete = format!("DELETE FROM events WHERE id IN ({select})");
        let mut total = 0u64;
        loop {
            let n: i64 = one(
                &self.conn,
                &probe,
                params![all, cutoff, edge, protect, 1],
                |x| x.get(0),
            )?;
            if n == 0 {
                return Ok(total);
            }
            let deleted = self.write("prune events", |tx| {
                exec(tx, &delete, params![all, cutoff, edge, protect, BATCH])
            })?;
            total += deleted as u64;
            if (deleted as i64) < BATCH {
                return Ok(total);
            }
        }
    }

    /// The history of flights that ended and were cleaned up before `cutoff`, one write per
    /// flight: its rows go, one line sums it up.
    fn prune_flights(&mut self, cutoff: i64, out: &mut Pruned) -> Result<(), Error> {
        let names: Vec<(String, String, i64, Option<String>)> = {
            let mut st = self.conn.prepare_cached(
                "SELECT studyname, status, ended_at, reason FROM flights f WHERE cleaned_up = 1 AND ended_at < ?1 \
                 AND (EXISTS (SELECT 1 FROM timeline t WHERE t.flight = f.studyname AND t.kind <> 'pruned') \
                   OR EXISTS (SELECT 1 FROM effects e WHERE e.flight = f.studyname) \
                   OR EXISTS (SELECT 1 FROM prompts p WHERE p.flight = f.studyname) \
                   OR EXISTS (SELECT 1 FROM nodes n WHERE n.flight = f.studyname)) \
                 ORDER BY ended_at LIMIT ?2",
            )?;
            let rows = st
                .query_map(params![cutoff, FLIGHTS_PER_PRUNE], |x| {
                    Ok((x.get(0)?, x.get(1)?, x.get(2)?, x.get(3)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows
        };
        for (name, status, ended, reason) in names {
            let n = self.write("prune flight", |tx| {
                let mut n = 0;
                // The newest id of each table stays, so no id is ever handed out again.
                n += exec(tx, "DELETE FROM timeline WHERE flight = ?1 AND kind <> 'pruned' AND id < (SELECT max(id) FROM timeline)", [&name])?;
                n += exec(tx, "DELETE FROM effects WHERE flight = ?1 AND id < (SELECT max(id) FROM effects)", [&name])?;
                n += exec(tx, "DELETE FROM prompts WHERE flight = ?1 AND id < (SELECT max(id) FROM prompts)", [&name])?;
                n += exec(tx, "DELETE FROM nodes WHERE flight = ?1", [&name])?;
                let what = format!(
                    "ended {status} on {}{}; its history ({n} rows) was pruned after the retention",
                    Timestamp(ended).to_rfc3339().get(..10).unwrap_or("?"),
                    reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default(),
                );
                super::add_timeline(tx, &name, Timestamp(ended), PRUNED_KIND, &what, None)?;
                Ok(n as u64)
            })?;
            out.flight_rows += n;
            out.flights.push(name);
        }
        Ok(())
    }

    /// Rewrites the file when a quarter or more of it is free pages (and at least 256 of
    /// them), then truncates the WAL. Returns whether it did. A busy database (another
    /// process reading) is left for the next prune.
    fn compact(&mut self) -> Result<bool, Error> {
        let free: i64 = one(&self.conn, "PRAGMA freelist_count", [], |x| x.get(0))?;
        let pages: i64 = one(&self.conn, "PRAGMA page_count", [], |x| x.get(0))?;
        if free < 256 || free * 4 < pages {
            return Ok(false);
        }
        self.faults.point("vacuum")?;
        if let Err(e) = self.conn.execute_batch("VACUUM") {
            tracing::warn!("could not compact the journal (tried again later): {e}");
            return Ok(false);
        }
        if !self.in_memory {
            // A reader elsewhere may hold the WAL; the next checkpoint gets it.
            let _ = self
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        }
        Ok(true)
    }

    /// The database's size in bytes (its pages; the WAL is checkpointed into it).
    pub fn size(&self) -> Result<u64, Error> {
        let pages: i64 = one(&self.conn, "PRAGMA page_count", [], |x| x.get(0))?;
        let size: i64 = one(&self.conn, "PRAGMA page_size", [], |x| x.get(0))?;
        Ok((pages.max(0) as u64) * (size.max(0) as u64))
    }
}

/// The agent's scheduled prune: errors that leave the journal as it was are logged and the
/// agent goes on; a damaged journal or an injected crash stops it.
pub fn on_schedule(journal: &mut Journal, now: Timestamp, r: &Retention) -> Result<(), Error> {
    match journal.prune(now, r) {
        Ok(p) if p.anything() => {
            tracing::info!("{}", p.summary(r));
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(e) if e.is_fatal() => Err(e),
        Err(e) => {
            tracing::warn!("pruning the journal failed (tried again in an hour): {e}");
            Ok(())
        }
    }
}
