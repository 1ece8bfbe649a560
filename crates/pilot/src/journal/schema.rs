//! The journal's schema: its version, its application id, and the migrations that build it
//! (frozen: the fixtures `tests/data/schema-v*.txt` hold each version as shipped).

use crate::Error;
use rusqlite::{Connection, Transaction, TransactionBehavior};
use std::path::Path;

/// The schema version this pilot writes. Older journals are upgraded on open; newer ones are
/// refused (they were written by a newer pilot).
pub const JOURNAL_VERSION: i64 = 5;

/// `PRAGMA application_id` of a Test Pilot journal ("TPJL").
pub const APPLICATION_ID: i64 = 0x5450_4a4c;

/// Migration `i` takes a journal from version `i` to `i + 1`. Never edit one that has shipped.
pub const MIGRATIONS: &[&str] = &[
    // 0 → 1: the first schema.
    r#"
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE flights (
        studyname TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        spec TEXT NOT NULL,
        arm TEXT,
        status TEXT NOT NULL,
        step INTEGER NOT NULL DEFAULT 0,
        status_line TEXT,
        started_at INTEGER,
        ended_at INTEGER,
        cleaned_up INTEGER NOT NULL DEFAULT 0,
        reason TEXT
    );
    CREATE TABLE nodes (
        flight TEXT NOT NULL,
        path TEXT NOT NULL,
        state TEXT NOT NULL,
        PRIMARY KEY (flight, path)
    );
    CREATE TABLE effects (
        id INTEGER PRIMARY KEY,
        flight TEXT NOT NULL,
        path TEXT NOT NULL,
        kind TEXT NOT NULL,
        phase TEXT NOT NULL,
        spec TEXT NOT NULL,
        summary TEXT NOT NULL,
        at INTEGER NOT NULL,
        done_at INTEGER,
        undone_at INTEGER
    );
    CREATE TABLE timeline (
        id INTEGER PRIMARY KEY,
        flight TEXT NOT NULL,
        at INTEGER NOT NULL,
        kind TEXT NOT NULL,
        what TEXT NOT NULL,
        detail TEXT
    );
    CREATE TABLE prompts (
        id INTEGER PRIMARY KEY,
        flight TEXT NOT NULL,
        path TEXT NOT NULL,
        type TEXT NOT NULL,
        title TEXT NOT NULL,
        text TEXT NOT NULL,
        url TEXT,
        wait INTEGER NOT NULL,
        state TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER,
        answered_at INTEGER
    );
    CREATE TABLE events (id INTEGER PRIMARY KEY, topic TEXT NOT NULL, subject TEXT, at INTEGER NOT NULL);
    CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY,
        flight TEXT NOT NULL,
        report TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        sent_at INTEGER
    );
    "#,
    // 1 → 2: wishes of the person relayed to a running agent (opt-out), and indexes for
    // profiles with many flights and events.
    r#"
    CREATE TABLE requests (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        flight TEXT,
        at INTEGER NOT NULL,
        done_at INTEGER
    );
    CREATE INDEX events_topic ON events (topic, id);
    CREATE INDEX effects_flight ON effects (flight, id);
    CREATE INDEX timeline_flight ON timeline (flight, id);
    CREATE INDEX prompts_flight ON prompts (flight, state);
    "#,
    // 2 → 3: an undo that fails on a host error is tried again with backoff; how often it
    // failed and when it is next tried are kept with the flight.
    r#"
    ALTER TABLE flights ADD COLUMN undo_tries INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE flights ADD COLUMN undo_retry_at INTEGER;
    "#,
    // 3 → 4: the public keys the index may be signed with (`docs/keys.md`): the key given on
    // the command line, then whatever key signed the last accepted index and the successor
    // it announced.
    r#"
    CREATE TABLE pinned_keys (
        position INTEGER PRIMARY KEY,
        public_key TEXT NOT NULL UNIQUE
    );
    "#,
    // 4 → 5: events may carry a number (`pilot observe --value`); a streaming `instrument`
    // keeps what it records per flight (`recordings`, whose `seq` is never reused: it is the
    // event's idempotency key at the tower) and its window, cursor and upload schedule
    // (`recorders`, one per step).
    r#"
    ALTER TABLE events ADD COLUMN value REAL;
    CREATE TABLE recorders (
        flight TEXT NOT NULL,
        path TEXT NOT NULL,
        version INTEGER NOT NULL,
        arm TEXT,
        watch TEXT NOT NULL,
        cursor INTEGER NOT NULL,
        starts_at INTEGER NOT NULL,
        ends_at INTEGER NOT NULL,
        every_ms INTEGER NOT NULL,
        next_upload_at INTEGER NOT NULL,
        tries INTEGER NOT NULL DEFAULT 0,
        recorded INTEGER NOT NULL DEFAULT 0,
        capped INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (flight, path)
    );
    CREATE TABLE recordings (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        flight TEXT NOT NULL,
        version INTEGER NOT NULL,
        arm TEXT,
        topic TEXT NOT NULL,
        subject TEXT,
        value REAL,
        at INTEGER NOT NULL
    );
    CREATE INDEX recordings_flight ON recordings (flight, seq);
    "#,
];

/// Brings the journal on `conn` from version `from` to [`JOURNAL_VERSION`].
pub(super) fn upgrade(conn: &mut Connection, path: &Path, from: i64) -> Result<(), Error> {
    for v in from..JOURNAL_VERSION {
        let tx = Transaction::new(conn, TransactionBehavior::Immediate)?;
        // Another process may have upgraded it meanwhile.
        let now: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if now > v {
            continue;
        }
        tx.execute_batch(MIGRATIONS[v as usize])
            .map_err(|e| Error::Journal {
                path: path.to_path_buf(),
                msg: format!("cannot upgrade it from version {v} to {}: {e}", v + 1),
            })?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        tx.pragma_update(None, "user_version", v + 1)?;
        tx.commit()?;
    }
    Ok(())
}
