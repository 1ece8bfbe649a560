//! The journal: a SQLite database in the profile (`journal.sqlite`, WAL).
//!
//! It holds everything the pilot knows: flights and where each one is, every effect it had on
//! the machine (an intent before, done after, and what undoes it), the timeline shown in the
//! flight log, the message center, observed events, what streaming recordings keep, and the
//! outbox of status reports.
//!
//! This file opens it and reads it, with the small writes of the CLI and sync; `schema` has
//! the version and migrations, `writes` the engine's writes, `recording` the recorders and
//! recorded events, `prune` what is deleted once older than the retention. SQL lives in these files only.
//!
//! Each write is one transaction and one [`Faults`] point. The schema is versioned
//! (`PRAGMA user_version`, see [`JOURNAL_VERSION`]) and upgraded in place by [`MIGRATIONS`];
//! a database of another application (`PRAGMA application_id`) is refused, never touched.

mod memory;
mod private;
pub mod prune;
mod recording;
mod schema;
mod writes;

use private::warn_if_loose;
pub use private::{create_private_dir, looseness};
pub use prune::{Pruned, Retention};
pub use recording::{topic_counts, Harvest, NewRecorder, RecordedEvent, RecorderRow};
use schema::upgrade;
pub use schema::{APPLICATION_ID, JOURNAL_VERSION, MIGRATIONS};
use writes::{add_line, add_timeline};
pub use writes::{Also, Line, NewFlight, NewPrompt};

use crate::effect::Effect;
use crate::{Error, Faults};
use rusqlite::{params, Connection, OptionalExtension, Params};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use testpilot_flight::Timestamp;

/// Effect phases, in order. An effect is undone when its flight ends if it reached `intent`.
pub mod phase {
    pub const INTENT: &str = "intent";
    pub const DONE: &str = "done";
    pub const FAILED: &str = "failed";
    pub const UNDOING: &str = "undoing";
    pub const UNDONE: &str = "undone";
}

/// Prompt states in the message center. `pending` and `later` are shown by `testpilot later`.
pub mod prompt_state {
    pub const PENDING: &str = "pending";
    pub const LATER: &str = "later";
    pub const OK: &str = "ok";
    pub const NO: &str = "no";
    pub const EXPIRED: &str = "expired";
    pub const WITHDRAWN: &str = "withdrawn";
}

#[derive(Debug, Clone, PartialEq)]
pub struct FlightRow {
    pub studyname: String,
    pub version: u64,
    /// The spec as stored (the JSON text the index gave): parsed only by whoever needs it
    /// ([`FlightRow::spec_json`]), not on every read of the flights.
    pub spec: String,
    pub arm: Option<String>,
    pub status: String,
    pub step: u64,
    pub status_line: Option<String>,
    pub started_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    pub cleaned_up: bool,
    pub reason: Option<String>,
    /// How many times undoing the ended flight failed on a host error (0: never).
    pub undo_tries: u32,
    /// When the failed undo is tried again.
    pub undo_retry_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EffectRow {
    pub id: i64,
    pub flight: String,
    pub path: String,
    /// The stored kind, `effect.kind()`.
    pub kind: String,
    pub phase: String,
    pub effect: Effect,
    pub summary: String,
    pub at: Timestamp,
    pub done_at: Option<Timestamp>,
    pub undone_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TimelineRow {
    pub id: i64,
    pub flight: String,
    pub at: Timestamp,
    pub kind: String,
    pub what: String,
    pub detail: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PromptRow {
    pub id: i64,
    pub flight: String,
    pub path: String,
    pub kind: String,
    pub title: String,
    pub text: String,
    pub url: Option<String>,
    pub wait: bool,
    pub state: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub answered_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub id: i64,
    pub topic: String,
    pub subject: Option<String>,
    /// A finite number the event carries (`pilot observe --value`).
    pub value: Option<f64>,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RequestRow {
    pub id: i64,
    pub kind: String,
    pub flight: Option<String>,
    pub at: Timestamp,
}

/// An open journal. Writes go through [`Journal::write`], one transaction and one fault point
/// each.
pub struct Journal {
    conn: Connection,
    path: PathBuf,
    faults: Faults,
    /// Made by [`Journal::in_memory`]: its emptied connection serves the next one.
    in_memory: bool,
}

impl Drop for Journal {
    fn drop(&mut self) {
        if self.in_memory {
            if let Ok(empty) = Connection::open_in_memory() {
                memory::give_back(std::mem::replace(&mut self.conn, empty));
            }
        }
    }
}

const FLIGHT_COLS: &str = "studyname, version, spec, arm, status, step, status_line, started_at, ended_at, cleaned_up, reason, undo_tries, undo_retry_at";
const EFFECT_COLS: &str = "id, flight, path, kind, phase, spec, summary, at, done_at, undone_at";
const PROMPT_COLS: &str =
    "id, flight, path, type, title, text, url, wait, state, created_at, expires_at, answered_at";

fn json_col(text: String) -> Value {
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

impl FlightRow {
    /// The stored spec as JSON (a text that is not JSON comes back as a JSON string, which
    /// no flight validates).
    pub fn spec_json(&self) -> Value {
        json_col(self.spec.clone())
    }
}

fn ts(v: Option<i64>) -> Option<Timestamp> {
    v.map(Timestamp)
}

/// How many prepared statements a journal keeps: more than the distinct statements it runs
/// (about 70), so none is ever parsed twice on one connection.
const STATEMENT_CACHE: usize = 128;

/// Runs a statement from the connection's cache (parsed once per connection).
fn exec(c: &Connection, sql: &str, p: impl Params) -> rusqlite::Result<usize> {
    c.prepare_cached(sql)?.execute(p)
}

/// Reads one row with a statement from the connection's cache.
fn one<T>(
    c: &Connection,
    sql: &str,
    p: impl Params,
    f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    c.prepare_cached(sql)?.query_row(p, f)
}

/// A transaction of [`Journal::write`]: `BEGIN IMMEDIATE` and `COMMIT` from the cache of
/// prepared statements like every other statement (rusqlite's `Transaction` parses both
/// again for each write); rolled back unless committed, as rusqlite's is.
struct Tx<'a>(&'a Connection);

impl<'a> Tx<'a> {
    fn begin(c: &'a Connection) -> rusqlite::Result<Tx<'a>> {
        exec(c, "BEGIN IMMEDIATE", [])?;
        Ok(Tx(c))
    }

    fn commit(self) -> rusqlite::Result<()> {
        exec(self.0, "COMMIT", [])?;
        // Committed: nothing left to roll back.
        std::mem::forget(self);
        Ok(())
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if !self.0.is_autocommit() {
            let _ = exec(self.0, "ROLLBACK", []);
        }
    }
}

impl Journal {
    /// The journal's file in a profile.
    pub fn path_in(profile: &Path) -> PathBuf {
        profile.join("journal.sqlite")
    }

    /// Opens (creating or upgrading) the journal of `profile`. The profile folder is made
    /// `0700` and the journal `0600` (and so its -wal and -shm, which SQLite makes with the
    /// journal's mode); existing ones that are looser are named in a warning.
    pub fn open(profile: &Path, faults: Faults) -> Result<Journal, Error> {
        create_private_dir(profile)?;
        let path = Journal::path_in(profile);
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        match o.open(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => warn_if_loose(&path),
            Err(e) => return Err(Error::io("cannot create the journal", &path)(e)),
        }
        Journal::open_file(&path, faults)
    }

    /// Opens the journal at `path`, refusing what is not a Test Pilot journal.
    pub fn open_file(path: &Path, faults: Faults) -> Result<Journal, Error> {
        let bad = |msg: String| Error::Journal {
            path: path.to_path_buf(),
            msg,
        };
        let conn = Connection::open(path).map_err(|e| bad(format!("cannot open it: {e}")))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(|e| bad(e.to_string()))?;
        // Reading the header is the first thing that fails on a file that is not SQLite.
        let app_id: i64 = conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(|e| {
                bad(format!(
                    "it is not a Test Pilot journal ({e}); move it away to start afresh"
                ))
            })?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| bad(e.to_string()))?;
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(|e| {
                bad(format!(
                    "it is not a Test Pilot journal ({e}); move it away to start afresh"
                ))
            })?;
        if app_id != APPLICATION_ID && !(app_id == 0 && tables == 0) {
            return Err(bad(format!(
                "it is a SQLite database of another application (application_id {app_id:#x}, {tables} tables), not a Test Pilot journal; it was left untouched"
            )));
        }
        if version > JOURNAL_VERSION {
            return Err(bad(format!(
                "it was written by a newer pilot (journal version {version}; this pilot knows up to {JOURNAL_VERSION}); it was left untouched"
            )));
        }
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| bad(e.to_string()))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|e| bad(e.to_string()))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let mut j = Journal {
            conn,
            path: path.to_path_buf(),
            faults,
            in_memory: false,
        };
        j.upgrade(version)?;
        Ok(j)
    }

    /// A journal that lives in memory only, for simulations and tests that need no durability.
    ///
    /// A simulator opens one per virtual client, so it is cheap: a copy of a template built
    /// once per thread, or the emptied connection of a dropped one (`memory`).
    pub fn in_memory(faults: Faults) -> Result<Journal, Error> {
        let conn = memory::connection()?;
        Ok(Journal {
            conn,
            path: PathBuf::from(memory::PATH),
            faults,
            in_memory: true,
        })
    }

    fn upgrade(&mut self, from: i64) -> Result<(), Error> {
        upgrade(&mut self.conn, &self.path, from)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// One write: a fault point, then `f` in an immediate transaction. Private: every write
    /// is one of the typed methods below, so SQL lives in this file only.
    fn write<T>(
        &mut self,
        what: &str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, Error> {
        self.faults.point(what)?;
        let tx = Tx::begin(&self.conn)?;
        let out = f(tx.0)?;
        tx.commit()?;
        Ok(out)
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    // ---- pinned keys ----

    /// The public keys (standard base64) an index may be signed with, in pinning order.
    /// Empty until the pilot first pins a key.
    pub fn pinned_keys(&self) -> Result<Vec<String>, Error> {
        let mut st = self
            .conn
            .prepare_cached("SELECT public_key FROM pinned_keys ORDER BY position")?;
        let keys = st
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(keys)
    }

    /// Replaces the pinned keys, in one transaction with the notes that say why. `given` is
    /// the key as given on the command line, kept to tell a changed command line from an
    /// unchanged one. `reset_floor` forgets the last accepted serial (and its ETag), so the
    /// next index signed by a pinned key is accepted whatever its serial: the way back from
    /// a forged index with a huge serial.
    pub fn replace_pinned_keys(
        &mut self,
        keys: &[String],
        given: Option<&str>,
        reset_floor: bool,
        at: Timestamp,
        notes: &[String],
    ) -> Result<(), Error> {
        self.write("pinned keys", |tx| {
            exec(tx, "DELETE FROM pinned_keys", [])?;
            for (i, k) in keys.iter().enumerate() {
                exec(tx,
                    "INSERT OR IGNORE INTO pinned_keys (position, public_key) VALUES (?1, ?2)",
                    params![i as i64, k],
                )?;
            }
            if let Some(g) = given {
                exec(tx, "INSERT INTO meta (key, value) VALUES ('pinned_by_flag', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value", [g])?;
            }
            if reset_floor {
                exec(tx,
                    "DELETE FROM meta WHERE key IN ('last_serial', 'index_etag')",
                    [],
                )?;
            }
            for n in notes {
                add_timeline(tx, "", at, "keys", n, None)?;
            }
            Ok(())
        })
    }

    // ---- meta ----

    pub fn meta(&self, key: &str) -> Result<Option<String>, Error> {
        Ok(one(
            &self.conn,
            "SELECT value FROM meta WHERE key = ?1",
            [key],
            |r| r.get(0),
        )
        .optional()?)
    }

    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<(), Error> {
        self.write("meta", |tx| {
            exec(tx, "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value", params![key, value])
        })?;
        Ok(())
    }

    /// A value kept for the profile's lifetime, made once (the client id, the personid).
    pub fn meta_or_init(
        &mut self,
        key: &str,
        make: impl FnOnce() -> String,
    ) -> Result<String, Error> {
        if let Some(v) = self.meta(key)? {
            return Ok(v);
        }
        let v = make();
        self.write("meta", |tx| {
            exec(
                tx,
                "INSERT OR IGNORE INTO meta (key, value) VALUES (?1, ?2)",
                params![key, v],
            )
        })?;
        Ok(self.meta(key)?.unwrap_or(v))
    }

    // ---- flights ----

    fn flight_from_row(r: &rusqlite::Row) -> rusqlite::Result<FlightRow> {
        Ok(FlightRow {
            studyname: r.get(0)?,
            version: r.get::<_, i64>(1)? as u64,
            spec: r.get(2)?,
            arm: r.get(3)?,
            status: r.get(4)?,
            step: r.get::<_, i64>(5)? as u64,
            status_line: r.get(6)?,
            started_at: ts(r.get(7)?),
            ended_at: ts(r.get(8)?),
            cleaned_up: r.get::<_, i64>(9)? != 0,
            reason: r.get(10)?,
            undo_tries: r.get::<_, i64>(11)?.clamp(0, u32::MAX as i64) as u32,
            undo_retry_at: ts(r.get(12)?),
        })
    }

    pub fn flights(&self) -> Result<Vec<FlightRow>, Error> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {FLIGHT_COLS} FROM flights ORDER BY studyname"
        ))?;
        let rows = st
            .query_map([], Journal::flight_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn flight(&self, name: &str) -> Result<Option<FlightRow>, Error> {
        let sql = format!("SELECT {FLIGHT_COLS} FROM flights WHERE studyname = ?1");
        Ok(one(&self.conn, &sql, [name], Journal::flight_from_row).optional()?)
    }

    // ---- nodes ----

    pub fn nodes(&self, flight: &str) -> Result<Vec<(String, Value)>, Error> {
        let mut st = self
            .conn
            .prepare_cached("SELECT path, state FROM nodes WHERE flight = ?1")?;
        let rows = st
            .query_map([flight], |r| {
                Ok((r.get::<_, String>(0)?, json_col(r.get(1)?)))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The state of every plan entry of a flight as stored (the engine's JSON text), for a
    /// reader that parses it into its own type rather than a generic JSON value.
    pub fn node_texts(&self, flight: &str) -> Result<Vec<(String, String)>, Error> {
        let mut st = self
            .conn
            .prepare_cached("SELECT path, state FROM nodes WHERE flight = ?1")?;
        let rows = st
            .query_map([flight], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    // ---- effects ----

    fn effect_from_row(r: &rusqlite::Row) -> rusqlite::Result<EffectRow> {
        let id: i64 = r.get(0)?;
        let kind: String = r.get(3)?;
        // A journal written by this pilot always reads back; anything else is damage, and the
        // pilot stops with what and where rather than undo the wrong thing.
        let effect = Effect::from_stored(&kind, json_col(r.get(5)?)).map_err(|msg| {
            rusqlite::Error::FromSqlConversionFailure(
                5,
                rusqlite::types::Type::Text,
                format!("effects row {id}: {msg}").into(),
            )
        })?;
        Ok(EffectRow {
            id,
            flight: r.get(1)?,
            path: r.get(2)?,
            kind,
            phase: r.get(4)?,
            effect,
            summary: r.get(6)?,
            at: Timestamp(r.get(7)?),
            done_at: ts(r.get(8)?),
            undone_at: ts(r.get(9)?),
        })
    }

    pub fn effects(&self, flight: &str) -> Result<Vec<EffectRow>, Error> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {EFFECT_COLS} FROM effects WHERE flight = ?1 ORDER BY id"
        ))?;
        let rows = st
            .query_map([flight], Journal::effect_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn effect(&self, id: i64) -> Result<Option<EffectRow>, Error> {
        let sql = format!("SELECT {EFFECT_COLS} FROM effects WHERE id = ?1");
        Ok(one(&self.conn, &sql, [id], Journal::effect_from_row).optional()?)
    }

    /// The next effect, by any flight, on the same feature or add-on as `e` that is still in
    /// effect (the one whose "before" is `e`'s change).
    pub fn successor(&self, e: &EffectRow) -> Result<Option<EffectRow>, Error> {
        let kinds = match &e.effect {
            Effect::Feature { .. } => "('feature')",
            Effect::AddonInstall { .. } | Effect::AddonUninstall { .. } => {
                "('addon-install', 'addon-uninstall')"
            }
            _ => return Ok(None),
        };
        let Some(id) = e.effect.target() else {
            return Ok(None);
        };
        let sql = format!(
            "SELECT {EFFECT_COLS} FROM effects WHERE id > ?1 AND kind IN {kinds} AND json_extract(spec, '$.id') = ?2
             AND phase IN ('intent', 'done', 'undoing') ORDER BY id LIMIT 1"
        );
        Ok(one(
            &self.conn,
            &sql,
            params![e.id, id],
            Journal::effect_from_row,
        )
        .optional()?)
    }

    // ---- timeline ----

    pub fn timeline(&self, flight: &str) -> Result<Vec<TimelineRow>, Error> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, flight, at, kind, what, detail FROM timeline WHERE flight = ?1 ORDER BY id",
        )?;
        let rows = st
            .query_map([flight], |r| {
                Ok(TimelineRow {
                    id: r.get(0)?,
                    flight: r.get(1)?,
                    at: Timestamp(r.get(2)?),
                    kind: r.get(3)?,
                    what: r.get(4)?,
                    detail: r.get::<_, Option<String>>(5)?.map(json_col),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Adds a line to a flight's timeline (`flight` empty: the pilot's own log).
    pub fn note(
        &mut self,
        flight: &str,
        at: Timestamp,
        kind: &str,
        what: &str,
        detail: Option<&Value>,
    ) -> Result<(), Error> {
        self.write("timeline", |tx| {
            add_timeline(tx, flight, at, kind, what, detail)
        })?;
        Ok(())
    }

    // ---- prompts ----

    fn prompt_from_row(r: &rusqlite::Row) -> rusqlite::Result<PromptRow> {
        Ok(PromptRow {
            id: r.get(0)?,
            flight: r.get(1)?,
            path: r.get(2)?,
            kind: r.get(3)?,
            title: r.get(4)?,
            text: r.get(5)?,
            url: r.get(6)?,
            wait: r.get::<_, i64>(7)? != 0,
            state: r.get(8)?,
            created_at: Timestamp(r.get(9)?),
            expires_at: ts(r.get(10)?),
            answered_at: ts(r.get(11)?),
        })
    }

    pub fn prompt(&self, id: i64) -> Result<Option<PromptRow>, Error> {
        let sql = format!("SELECT {PROMPT_COLS} FROM prompts WHERE id = ?1");
        Ok(one(&self.conn, &sql, [id], Journal::prompt_from_row).optional()?)
    }

    /// Prompts waiting for the person (`pending` or put off `later`), oldest first.
    pub fn open_prompts(&self) -> Result<Vec<PromptRow>, Error> {
        let sql = format!(
            "SELECT {PROMPT_COLS} FROM prompts WHERE state IN ('pending', 'later') ORDER BY id"
        );
        let mut st = self.conn.prepare_cached(&sql)?;
        let rows = st
            .query_map([], Journal::prompt_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn prompts_of(&self, flight: &str) -> Result<Vec<PromptRow>, Error> {
        let sql = format!("SELECT {PROMPT_COLS} FROM prompts WHERE flight = ?1 ORDER BY id");
        let mut st = self.conn.prepare_cached(&sql)?;
        let rows = st
            .query_map([flight], Journal::prompt_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The person's answer to a prompt: `ok`, `no` or `later`. Only open prompts take one.
    pub fn answer_prompt(
        &mut self,
        id: i64,
        answer: &str,
        at: Timestamp,
    ) -> Result<PromptRow, Error> {
        let p = self.prompt(id)?.ok_or_else(|| {
            Error::Usage(format!(
                "there is no prompt {id}; `testpilot later --profile PROFILE list` shows the pending ones"
            ))
        })?;
        if p.state != prompt_state::PENDING && p.state != prompt_state::LATER {
            return Err(Error::Usage(format!(
                "prompt {id} is no longer pending (it is {})",
                p.state
            )));
        }
        let flight = p.flight.clone();
        self.write("answer prompt", |tx| {
            exec(tx,
                "UPDATE prompts SET state = ?2, answered_at = ?3 WHERE id = ?1 AND state IN ('pending', 'later')",
                params![id, answer, at.0],
            )?;
            add_timeline(tx, &flight, at, "prompt", &format!("the person answered prompt {id} \"{}\": {answer}", p.title), None)
        })?;
        self.prompt(id)?
            .ok_or_else(|| Error::Usage(format!("prompt {id} vanished")))
    }

    // ---- events ----

    /// Records an observed event (`testpilot pilot observe`, or the application). The event
    /// must be one the tower's events endpoint takes (docs/api.md "Events"), or one bad event
    /// would have its whole batch refused: the topic of the event topic form, the subject at
    /// most 256 bytes without NUL, a `value` finite.
    pub fn record_event(
        &mut self,
        topic: &str,
        subject: Option<&str>,
        value: Option<f64>,
        at: Timestamp,
    ) -> Result<i64, Error> {
        use testpilot_flight::event::MAX_SUBJECT_BYTES;
        // Any topic an `observe` step may wait for is taken (those are templates, not held to
        // the event form); a recording only watches topics of the event form (validation), so
        // what streams to the tower is always one. Bounded and without NUL all the same.
        if topic.is_empty() || topic.len() > MAX_SUBJECT_BYTES || topic.contains('\0') {
            return Err(Error::Usage(format!(
                "{topic:?} is not an event topic: give 1 to {MAX_SUBJECT_BYTES} bytes, without NUL \
                 (a recording watches only lowercase letters, digits, `.`, `-` and `_`)"
            )));
        }
        if let Some(s) = subject {
            if s.len() > MAX_SUBJECT_BYTES {
                return Err(Error::Usage(format!(
                    "an event's subject is {} bytes, more than {MAX_SUBJECT_BYTES}: shorten it",
                    s.len()
                )));
            }
            if s.contains('\0') {
                return Err(Error::Usage(
                    "an event's subject must not contain a NUL character".into(),
                ));
            }
        }
        if let Some(v) = value.filter(|v| !v.is_finite()) {
            return Err(Error::Usage(format!(
                "an event's value must be a finite number, not {v}"
            )));
        }
        self.write("event", |tx| {
            exec(
                tx,
                "INSERT INTO events (topic, subject, value, at) VALUES (?1, ?2, ?3, ?4)",
                params![topic, subject, value, at.0],
            )?;
            Ok(tx.last_insert_rowid())
        })
    }

    pub fn last_event_id(&self) -> Result<i64, Error> {
        Ok(one(
            &self.conn,
            "SELECT coalesce(max(id), 0) FROM events",
            [],
            |r| r.get(0),
        )?)
    }

    pub fn events_after(&self, after: i64, topic: &str) -> Result<Vec<EventRow>, Error> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, topic, subject, value, at FROM events WHERE topic = ?2 AND id > ?1 ORDER BY id",
        )?;
        let rows = st
            .query_map(params![after, topic], |r| {
                Ok(EventRow {
                    id: r.get(0)?,
                    topic: r.get(1)?,
                    subject: r.get(2)?,
                    value: r.get(3)?,
                    at: Timestamp(r.get(4)?),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    // ---- outbox ----

    /// Reports not yet accepted by the tower, oldest first: `(seq, report JSON)`.
    pub fn outbox(&self, limit: usize) -> Result<Vec<(i64, Value)>, Error> {
        let mut st = self.conn.prepare_cached(
            "SELECT seq, report FROM outbox WHERE sent_at IS NULL ORDER BY seq LIMIT ?1",
        )?;
        let rows = st
            .query_map([limit as i64], |r| {
                Ok((r.get::<_, i64>(0)?, json_col(r.get(1)?)))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn outbox_pending(&self) -> Result<i64, Error> {
        Ok(one(
            &self.conn,
            "SELECT count(*) FROM outbox WHERE sent_at IS NULL",
            [],
            |r| r.get(0),
        )?)
    }

    pub fn mark_sent(&mut self, seqs: &[i64], at: Timestamp) -> Result<(), Error> {
        self.write("outbox sent", |tx| {
            for s in seqs {
                exec(
                    tx,
                    "UPDATE outbox SET sent_at = ?2 WHERE seq = ?1",
                    params![s, at.0],
                )?;
            }
            Ok(())
        })
    }

    // ---- requests ----

    pub fn add_request(
        &mut self,
        kind: &str,
        flight: Option<&str>,
        at: Timestamp,
    ) -> Result<i64, Error> {
        self.write("request", |tx| {
            exec(
                tx,
                "INSERT INTO requests (kind, flight, at) VALUES (?1, ?2, ?3)",
                params![kind, flight, at.0],
            )?;
            Ok(tx.last_insert_rowid())
        })
    }

    pub fn open_requests(&self) -> Result<Vec<RequestRow>, Error> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, kind, flight, at FROM requests WHERE done_at IS NULL ORDER BY id",
        )?;
        let rows = st
            .query_map([], |r| {
                Ok(RequestRow {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    flight: r.get(2)?,
                    at: Timestamp(r.get(3)?),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn request_done(&self, id: i64) -> Result<bool, Error> {
        let done: Option<i64> = one(
            &self.conn,
            "SELECT done_at FROM requests WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
        Ok(done.is_some())
    }
}
