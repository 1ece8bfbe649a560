//! The journal's part for streaming `instrument` steps: one recorder per step (its window, its
//! cursor in the host's event stream, its upload schedule) and the events it recorded, waiting
//! to be sent to the tower. Every write is one transaction and one fault point, like the rest
//! of the journal.
//!
//! A recorded event's `seq` (the `recordings` row, `AUTOINCREMENT`) is never reused, even after
//! the row is deleted: it is the event's idempotency key at the tower (`docs/api.md`, Events).

use super::{add_line, exec, one, Journal, Line};
use crate::Error;
use rusqlite::{params, OptionalExtension};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use testpilot_flight::Timestamp;

/// How many events of the host's stream one harvest looks at (a bounded transaction).
const HARVEST_CHUNK: i64 = 10_000;

/// A recorder to open when a streaming `instrument` step starts.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRecorder<'a> {
    pub flight: &'a str,
    pub path: &'a str,
    pub version: u64,
    pub arm: Option<&'a str>,
    pub watch: &'a [String],
    /// Events up to this id were observed before the step started.
    pub mark: i64,
    /// The step's journaled start and the end of its window (`starts_at + for`).
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    /// `uploadEvery`, in ms (also the grace after the window for the final upload).
    pub every_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RecorderRow {
    pub flight: String,
    pub path: String,
    pub version: u64,
    pub arm: Option<String>,
    pub watch: Vec<String>,
    /// Events of the host's stream up to this id have been looked at.
    pub cursor: i64,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub every_ms: i64,
    /// When the recorded events are next sent (the window's end is always such a moment).
    pub next_upload_at: Timestamp,
    /// Uploads that failed in a row (network, 5xx, 408, 429).
    pub tries: u32,
    /// Events this step recorded so far (sent or not).
    pub recorded: u64,
    /// The flight reached the cap: later events are not recorded.
    pub capped: bool,
}

/// An event recorded for a flight, not yet accepted by the tower.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    pub seq: i64,
    pub flight: String,
    pub version: u64,
    pub arm: Option<String>,
    pub topic: String,
    pub subject: Option<String>,
    pub value: Option<f64>,
    pub at: Timestamp,
}

impl RecordedEvent {
    /// The event as `POST /api/v1/events` carries it.
    pub fn to_json(&self) -> Value {
        json!({
            "seq": self.seq, "flight": self.flight, "version": self.version, "arm": self.arm,
            "topic": self.topic, "subject": self.subject, "value": self.value,
            "at": self.at.to_rfc3339(),
        })
    }
}

/// What one harvest did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Harvest {
    /// Events of the host's stream looked at.
    pub looked_at: i64,
    /// Events recorded.
    pub recorded: usize,
}

const RECORDER_COLS: &str = "flight, path, version, arm, watch, cursor, starts_at, ends_at, every_ms, next_upload_at, tries, recorded, capped";

fn recorder_from_row(r: &rusqlite::Row) -> rusqlite::Result<RecorderRow> {
    let watch: String = r.get(4)?;
    Ok(RecorderRow {
        flight: r.get(0)?,
        path: r.get(1)?,
        version: r.get::<_, i64>(2)? as u64,
        arm: r.get(3)?,
        watch: serde_json::from_str(&watch).unwrap_or_default(),
        cursor: r.get(5)?,
        starts_at: Timestamp(r.get(6)?),
        ends_at: Timestamp(r.get(7)?),
        every_ms: r.get(8)?,
        next_upload_at: Timestamp(r.get(9)?),
        tries: r.get::<_, i64>(10)?.clamp(0, u32::MAX as i64) as u32,
        recorded: r.get::<_, i64>(11)?.max(0) as u64,
        capped: r.get::<_, i64>(12)? != 0,
    })
}

/// `topic ×n, ...` for a flight-log line.
pub fn topic_counts<'a>(topics: impl Iterator<Item = &'a str>) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for t in topics {
        *counts.entry(t).or_default() += 1;
    }
    counts
        .iter()
        .map(|(t, n)| format!("{t} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Journal {
    /// Opens a step's recorder and marks its effect (`effect`, journaled as an intent) done,
    /// in one write. Opening it again (after a crash) changes nothing.
    pub fn open_recorder(
        &mut self,
        effect: i64,
        r: &NewRecorder,
        now: Timestamp,
        line: &Line,
    ) -> Result<(), Error> {
        let watch = serde_json::to_string(r.watch).unwrap_or_else(|_| "[]".into());
        let first_upload = (r.starts_at.0.saturating_add(r.every_ms)).min(r.ends_at.0);
        self.write("open recorder", |tx| {
            exec(tx,
                "INSERT OR IGNORE INTO recorders (flight, path, version, arm, watch, cursor, starts_at, ends_at, every_ms, next_upload_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![r.flight, r.path, r.version as i64, r.arm, watch, r.mark, r.starts_at.0, r.ends_at.0, r.every_ms, first_upload],
            )?;
            exec(tx, "UPDATE effects SET phase = 'done', done_at = ?2 WHERE id = ?1 AND phase = 'intent'", params![effect, now.0])?;
            add_line(tx, r.flight, now, line)
        })
    }

    /// Every open recorder, by flight and step.
    pub fn recorders(&self) -> Result<Vec<RecorderRow>, Error> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {RECORDER_COLS} FROM recorders ORDER BY flight, path"
        ))?;
        let rows = st
            .query_map([], recorder_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn recorder(&self, flight: &str, path: &str) -> Result<Option<RecorderRow>, Error> {
        let sql = format!("SELECT {RECORDER_COLS} FROM recorders WHERE flight = ?1 AND path = ?2");
        Ok(one(&self.conn, &sql, params![flight, path], recorder_from_row).optional()?)
    }

    /// Copies the events of the host's stream after the recorder's cursor (at most
    /// [`HARVEST_CHUNK`] of them) that it watches and that happened inside its window into
    /// the flight's recordings, as long as the flight has recorded fewer than `cap` events;
    /// the first event over the cap leaves one line in the flight log. One write, with a line
    /// listing what was recorded; nothing is written when there is nothing new.
    pub fn harvest(&mut self, r: &RecorderRow, cap: u64, now: Timestamp) -> Result<Harvest, Error> {
        let last: i64 = one(
            &self.conn,
            "SELECT coalesce(max(id), 0) FROM events",
            [],
            |x| x.get(0),
        )?;
        if last <= r.cursor {
            return Ok(Harvest::default());
        }
        let upto = last.min(r.cursor.saturating_add(HARVEST_CHUNK));
        let (flight, path) = (r.flight.as_str(), r.path.as_str());
        self.write("record events", |tx| {
            // Read again inside the transaction: another write may have moved it.
            let (cursor, capped): (i64, bool) = one(tx,
                "SELECT cursor, capped FROM recorders WHERE flight = ?1 AND path = ?2",
                params![flight, path],
                |x| Ok((x.get(0)?, x.get::<_, i64>(1)? != 0)),
            )?;
            let mut total: i64 = one(tx,
                "SELECT coalesce(sum(recorded), 0) FROM recorders WHERE flight = ?1",
                [flight],
                |x| x.get(0),
            )?;
            let mut st = tx.prepare_cached(
                "SELECT topic, subject, value, at FROM events WHERE id > ?1 AND id <= ?2 AND at >= ?3 AND at < ?4 ORDER BY id",
            )?;
            let events = st
                .query_map(params![cursor, upto, r.starts_at.0, r.ends_at.0], |x| {
                    Ok((
                        x.get::<_, String>(0)?,
                        x.get::<_, Option<String>>(1)?,
                        x.get::<_, Option<f64>>(2)?,
                        x.get::<_, i64>(3)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut kept = Vec::new();
            let mut over = false;
            for (topic, subject, value, at) in events {
                if !r.watch.contains(&topic) {
                    continue;
                }
                if capped || total >= cap as i64 {
                    over = true;
                    break;
                }
                exec(tx,
                    "INSERT INTO recordings (flight, version, arm, topic, subject, value, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![flight, r.version as i64, r.arm, topic, subject, value, at],
                )?;
                total += 1;
                let seq = tx.last_insert_rowid();
                kept.push(json!({"seq": seq, "topic": topic, "subject": subject, "value": value, "at": Timestamp(at).to_rfc3339()}));
            }
            exec(tx,
                "UPDATE recorders SET cursor = ?3, recorded = recorded + ?4, capped = capped OR ?5 WHERE flight = ?1 AND path = ?2",
                params![flight, path, upto.max(cursor), kept.len() as i64, over],
            )?;
            if !kept.is_empty() {
                let topics = topic_counts(kept.iter().filter_map(|e| e["topic"].as_str()));
                let line = Line::new("record", format!("step {path}: recorded {} event(s): {topics}", kept.len()))
                    .with(json!({"events": kept}));
                add_line(tx, flight, now, &line)?;
            }
            if over && !capped {
                let line = Line::new("record", format!("step {path}: the flight recorded its limit of {cap} events; later events are not recorded"));
                add_line(tx, flight, now, &line)?;
            }
            Ok(Harvest {
                looked_at: upto - cursor,
                recorded: kept.len(),
            })
        })
    }

    /// The flight's recorded events not yet accepted by the tower, oldest first.
    pub fn recorded(&self, flight: &str, limit: usize) -> Result<Vec<RecordedEvent>, Error> {
        let mut st = self.conn.prepare_cached(
            "SELECT seq, flight, version, arm, topic, subject, value, at FROM recordings WHERE flight = ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = st
            .query_map(params![flight, limit as i64], |r| {
                Ok(RecordedEvent {
                    seq: r.get(0)?,
                    flight: r.get(1)?,
                    version: r.get::<_, i64>(2)? as u64,
                    arm: r.get(3)?,
                    topic: r.get(4)?,
                    subject: r.get(5)?,
                    value: r.get(6)?,
                    at: Timestamp(r.get(7)?),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// How many of the flight's recorded events wait to be sent.
    pub fn recorded_count(&self, flight: &str) -> Result<i64, Error> {
        Ok(one(
            &self.conn,
            "SELECT count(*) FROM recordings WHERE flight = ?1",
            [flight],
            |r| r.get(0),
        )?)
    }

    /// A batch of recorded events (`first..=last` of the flight) leaves the journal: the tower
    /// accepted it, or refused it for good (`line` says which). The recorder's next upload is
    /// at `next` and its failures are forgotten.
    pub fn events_settled(
        &mut self,
        r: &RecorderRow,
        (first, last): (i64, i64),
        next: Timestamp,
        now: Timestamp,
        line: &Line,
    ) -> Result<(), Error> {
        self.write("events settled", |tx| {
            exec(tx,
                "DELETE FROM recordings WHERE flight = ?1 AND seq >= ?2 AND seq <= ?3",
                params![r.flight, first, last],
            )?;
            exec(tx,
                "UPDATE recorders SET tries = 0, next_upload_at = ?3 WHERE flight = ?1 AND path = ?2",
                params![r.flight, r.path, next.0],
            )?;
            add_line(tx, &r.flight, now, line)
        })
    }

    /// When the recorder next sends (`tries`: failures in a row), with a line for the log.
    pub fn schedule_upload(
        &mut self,
        r: &RecorderRow,
        tries: u32,
        next: Timestamp,
        now: Timestamp,
        line: Option<&Line>,
    ) -> Result<(), Error> {
        self.write("schedule upload", |tx| {
            exec(tx,
                "UPDATE recorders SET tries = ?3, next_upload_at = ?4 WHERE flight = ?1 AND path = ?2",
                params![r.flight, r.path, tries as i64, next.0],
            )?;
            match line {
                Some(l) => add_line(tx, &r.flight, now, l),
                None => Ok(()),
            }
        })
    }

    /// Deletes everything the flight recorded and its recorders (the undo of a recording).
    /// Returns how many recorded events were still unsent.
    pub fn delete_recordings(&mut self, flight: &str) -> Result<usize, Error> {
        self.write("delete recordings", |tx| {
            let n = exec(tx, "DELETE FROM recordings WHERE flight = ?1", [flight])?;
            exec(tx, "DELETE FROM recorders WHERE flight = ?1", [flight])?;
            Ok(n)
        })
    }
}
