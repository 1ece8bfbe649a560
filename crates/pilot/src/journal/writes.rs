//! The engine's writes: one transaction and one fault point each, with the timeline line and
//! report each settles, and the helpers that write inside a transaction.

use super::{exec, Journal, PromptRow};
use crate::effect::Effect;
use crate::Error;
use rusqlite::{params, Connection};
use serde_json::{json, Value};
use testpilot_flight::report::{Report, Status};
use testpilot_flight::Timestamp;

/// A timeline line, written in the same transaction as the change it tells of.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub kind: &'static str,
    pub what: String,
    pub detail: Option<Value>,
}

impl Line {
    pub fn new(kind: &'static str, what: impl Into<String>) -> Line {
        Line {
            kind,
            what: what.into(),
            detail: None,
        }
    }

    pub fn with(mut self, detail: Value) -> Line {
        self.detail = Some(detail);
        self
    }
}

/// What a step's write settles besides the step itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Also<'a> {
    Nothing,
    /// The effect happened.
    Done(i64),
    /// The effect did not happen (a request that failed, a package the host refused).
    Failed(i64),
    /// A request that may or may not have left when the pilot stopped: taken as sent.
    SentUnknown(i64),
    /// The flight's status line changes.
    StatusLine(&'a str),
}

/// A flight set up from the index: started, or not eligible or sampled.
#[derive(Debug, Clone, PartialEq)]
pub struct NewFlight<'a> {
    pub name: &'a str,
    pub version: u64,
    /// The spec as the index gave it.
    pub spec: &'a str,
    pub arm: Option<&'a str>,
    pub status: Status,
    pub started: Option<Timestamp>,
}

/// A prompt for the message center.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPrompt {
    pub kind: &'static str,
    pub title: String,
    pub text: String,
    pub url: Option<String>,
    /// The step waits for the person's answer.
    pub wait: bool,
    pub expires: Option<Timestamp>,
}

/// The engine's writes: one transaction and one fault point each.
impl Journal {
    /// A prompt nobody answered in time.
    pub fn expire_prompt(&mut self, p: &PromptRow, now: Timestamp) -> Result<(), Error> {
        let line = Line::new(
            "prompt",
            format!("prompt {} \"{}\" expired unanswered", p.id, p.title),
        );
        self.write("expire prompt", |tx| {
            exec(tx, "UPDATE prompts SET state = 'expired', answered_at = ?2 WHERE id = ?1 AND state IN ('pending', 'later')", params![p.id, now.0])?;
            add_line(tx, &p.flight, now, &line)
        })
    }

    /// A relayed wish of the person has been carried out.
    pub fn finish_request(&mut self, id: i64, now: Timestamp) -> Result<(), Error> {
        self.write("request done", |tx| {
            exec(
                tx,
                "UPDATE requests SET done_at = ?2 WHERE id = ?1",
                params![id, now.0],
            )?;
            Ok(())
        })
    }

    /// The person left every flight, now and to come.
    pub fn opt_out_all(&mut self, now: Timestamp, line: &Line) -> Result<(), Error> {
        self.write("optout all", |tx| {
            exec(
                tx,
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('optout_all', ?1)",
                [now.0.to_string()],
            )?;
            add_line(tx, "", now, line)
        })
    }

    /// A flight from the index, with its first timeline line and report.
    pub fn enroll(
        &mut self,
        f: &NewFlight,
        now: Timestamp,
        line: &Line,
        report: &Report,
    ) -> Result<(), Error> {
        self.write("enroll", |tx| {
            exec(tx,
                "INSERT INTO flights (studyname, version, spec, arm, status, step, started_at, cleaned_up) VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, 0)
                 ON CONFLICT(studyname) DO UPDATE SET version = excluded.version, spec = excluded.spec, arm = excluded.arm, status = excluded.status, step = 0, started_at = excluded.started_at",
                params![f.name, f.version as i64, f.spec, f.arm, f.status.as_str(), f.started.map(|t| t.0)],
            )?;
            add_line(tx, f.name, now, line)?;
            queue_report(tx, report, now)
        })
    }

    /// A flight moves on to top-level step `step`.
    pub fn reach_step(&mut self, flight: &str, step: u64, report: &Report) -> Result<(), Error> {
        self.write("step", |tx| {
            exec(
                tx,
                "UPDATE flights SET step = ?2 WHERE studyname = ?1",
                params![flight, step as i64],
            )?;
            queue_report(tx, report, report.at)
        })
    }

    /// The state of a plan entry (`state`, the engine's JSON), with what else it settles.
    #[allow(clippy::too_many_arguments)]
    pub fn save_node(
        &mut self,
        what: &str,
        flight: &str,
        path: &str,
        state: &str,
        also: Also,
        line: Option<&Line>,
        now: Timestamp,
    ) -> Result<(), Error> {
        self.write(what, |tx| {
            put_node(tx, flight, path, state)?;
            match also {
                Also::Nothing => {}
                Also::Done(id) => {
                    exec(tx, "UPDATE effects SET phase = 'done', done_at = ?2 WHERE id = ?1 AND phase = 'intent'", params![id, now.0])?;
                }
                Also::Failed(id) => {
                    exec(tx, "UPDATE effects SET phase = 'failed', done_at = ?2 WHERE id = ?1 AND phase = 'intent'", params![id, now.0])?;
                }
                Also::SentUnknown(id) => {
                    exec(tx, "UPDATE effects SET phase = 'done', done_at = ?2, summary = summary || ' (outcome unknown: the pilot stopped)' WHERE id = ?1", params![id, now.0])?;
                }
                Also::StatusLine(text) => {
                    exec(tx,
                        "UPDATE flights SET status_line = ?2 WHERE studyname = ?1",
                        params![flight, text],
                    )?;
                }
            }
            match line {
                Some(l) => add_line(tx, flight, now, l),
                None => Ok(()),
            }
        })
    }

    /// An effect's intent, before it happens, and the step pointing at it (`node` makes the
    /// step's state from the new effect's id). Returns the effect's id.
    #[allow(clippy::too_many_arguments)]
    pub fn intent(
        &mut self,
        flight: &str,
        path: &str,
        effect: &Effect,
        summary: &str,
        now: Timestamp,
        node: impl FnOnce(i64) -> String,
        line: Option<&Line>,
    ) -> Result<i64, Error> {
        let spec = effect.spec().to_string();
        self.write("intent", |tx| {
            exec(tx,
                "INSERT INTO effects (flight, path, kind, phase, spec, summary, at) VALUES (?1, ?2, ?3, 'intent', ?4, ?5, ?6)",
                params![flight, path, effect.kind(), spec, summary, now.0],
            )?;
            let id = tx.last_insert_rowid();
            put_node(tx, flight, path, &node(id))?;
            if let Some(l) = line {
                add_line(tx, flight, now, l)?;
            }
            Ok(id)
        })
    }

    /// An effect done on its own, outside a step's resolution (a recording that starts).
    pub fn effect_done(&mut self, id: i64, now: Timestamp) -> Result<(), Error> {
        self.write("record done", |tx| {
            exec(tx, "UPDATE effects SET phase = 'done', done_at = ?2 WHERE id = ?1 AND phase = 'intent'", params![id, now.0])?;
            Ok(())
        })
    }

    /// Puts a prompt in the message center, with the step's state (`node` makes it from the
    /// prompt's id). Returns the prompt's id.
    pub fn add_prompt(
        &mut self,
        flight: &str,
        path: &str,
        p: &NewPrompt,
        now: Timestamp,
        node: impl FnOnce(i64) -> String,
    ) -> Result<i64, Error> {
        self.write("prompt", |tx| {
            exec(tx,
                "INSERT INTO prompts (flight, path, type, title, text, url, wait, state, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?9)",
                params![flight, path, p.kind, p.title, p.text, p.url, p.wait as i64, now.0, p.expires.map(|e| e.0)],
            )?;
            let id = tx.last_insert_rowid();
            put_node(tx, flight, path, &node(id))?;
            let mut line = Line::new(
                "prompt",
                format!("prompt {id} ({}) \"{}\" put in the message center", p.kind, p.title),
            );
            if let Some(u) = &p.url {
                line = line.with(json!({"url": u}));
            }
            add_line(tx, flight, now, &line)?;
            Ok(id)
        })
    }

    /// Ends a running flight: final status, pending prompts withdrawn, report queued.
    pub fn end_flight(&mut self, name: &str, why: &str, report: &Report) -> Result<(), Error> {
        let now = report.at;
        let status = report.status;
        self.write("end flight", |tx| {
            exec(tx,
                "UPDATE flights SET status = ?2, ended_at = ?3, reason = ?4, step = ?5 WHERE studyname = ?1",
                params![name, status.as_str(), now.0, why, report.step as i64],
            )?;
            let withdrawn = exec(tx, "UPDATE prompts SET state = 'withdrawn', answered_at = ?2 WHERE flight = ?1 AND state IN ('pending', 'later')", params![name, now.0])?;
            add_line(tx, name, now, &Line::new("end", format!("ended {status}: {why}")))?;
            if withdrawn > 0 {
                let what = format!("withdrew {withdrawn} pending prompt(s) from the message center");
                add_line(tx, name, now, &Line::new("undo", what))?;
            }
            queue_report(tx, report, now)
        })
    }

    /// An effect's undo begins.
    pub fn undoing(&mut self, id: i64) -> Result<(), Error> {
        self.write("undoing", |tx| {
            exec(
                tx,
                "UPDATE effects SET phase = 'undoing' WHERE id = ?1",
                [id],
            )?;
            Ok(())
        })
    }

    /// An effect is undone; with `successor`, a later effect on the same target takes over
    /// what was there before (its effect rewritten to say so).
    pub fn undone(
        &mut self,
        id: i64,
        successor: Option<(i64, &Effect)>,
        flight: &str,
        now: Timestamp,
        line: &Line,
    ) -> Result<(), Error> {
        let what = if successor.is_some() {
            "handover"
        } else {
            "undone"
        };
        self.write(what, |tx| {
            if let Some((next, effect)) = successor {
                exec(
                    tx,
                    "UPDATE effects SET spec = ?2 WHERE id = ?1",
                    params![next, effect.spec().to_string()],
                )?;
            }
            exec(
                tx,
                "UPDATE effects SET phase = 'undone', undone_at = ?2 WHERE id = ?1",
                params![id, now.0],
            )?;
            add_line(tx, flight, now, line)
        })
    }

    /// Deletes the events a recording kept (ids after `after`, up to time `until`).
    pub fn delete_recording(
        &mut self,
        watch: &[String],
        after: i64,
        until: i64,
    ) -> Result<(), Error> {
        self.write("delete recording", |tx| {
            for t in watch {
                exec(
                    tx,
                    "DELETE FROM events WHERE topic = ?1 AND id > ?2 AND at <= ?3",
                    params![t, after, until],
                )?;
            }
            Ok(())
        })
    }

    /// Everything the flight did is undone; `report` tells the tower when an undo that failed
    /// before has now succeeded.
    pub fn cleaned_up(
        &mut self,
        name: &str,
        now: Timestamp,
        report: Option<&Report>,
    ) -> Result<(), Error> {
        self.write("cleaned up", |tx| {
            exec(
                tx,
                "UPDATE flights SET cleaned_up = 1, undo_retry_at = NULL WHERE studyname = ?1",
                [name],
            )?;
            let line = Line::new("cleanup", "cleaned up: everything the flight did is undone");
            add_line(tx, name, now, &line)?;
            match report {
                Some(r) => queue_report(tx, r, now),
                None => Ok(()),
            }
        })
    }

    /// Undoing the ended flight failed on a host error: when to try again, what the log says,
    /// and (the first time) a report for the tower.
    pub fn undo_failed(
        &mut self,
        name: &str,
        tries: u32,
        retry_at: Timestamp,
        now: Timestamp,
        line: &Line,
        report: Option<&Report>,
    ) -> Result<(), Error> {
        self.write("undo failed", |tx| {
            exec(
                tx,
                "UPDATE flights SET undo_tries = ?2, undo_retry_at = ?3 WHERE studyname = ?1",
                params![name, tries as i64, retry_at.0],
            )?;
            add_line(tx, name, now, line)?;
            match report {
                Some(r) => queue_report(tx, r, now),
                None => Ok(()),
            }
        })
    }
}

fn put_node(tx: &Connection, flight: &str, path: &str, state: &str) -> rusqlite::Result<()> {
    exec(tx,
        "INSERT INTO nodes (flight, path, state) VALUES (?1, ?2, ?3) ON CONFLICT(flight, path) DO UPDATE SET state = excluded.state",
        params![flight, path, state],
    )?;
    Ok(())
}

/// Queues a status report in the outbox; its `seq` is the outbox row's, added when it is sent.
fn queue_report(tx: &Connection, report: &Report, now: Timestamp) -> rusqlite::Result<()> {
    let mut v = serde_json::to_value(report).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.remove("seq");
    }
    exec(
        tx,
        "INSERT INTO outbox (flight, report, created_at) VALUES (?1, ?2, ?3)",
        params![report.flight, v.to_string(), now.0],
    )?;
    Ok(())
}

pub(super) fn add_line(
    tx: &Connection,
    flight: &str,
    at: Timestamp,
    l: &Line,
) -> rusqlite::Result<()> {
    add_timeline(tx, flight, at, l.kind, &l.what, l.detail.as_ref())
}

/// Adds a timeline line inside a transaction.
pub(super) fn add_timeline(
    tx: &Connection,
    flight: &str,
    at: Timestamp,
    kind: &str,
    what: &str,
    detail: Option<&Value>,
) -> rusqlite::Result<()> {
    exec(
        tx,
        "INSERT INTO timeline (flight, at, kind, what, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![flight, at.0, kind, what, detail.map(|d| d.to_string())],
    )?;
    Ok(())
}
