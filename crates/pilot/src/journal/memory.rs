//! Connections for in-memory journals (`Journal::in_memory`), which a simulator opens by the
//! thousand, one per virtual client. Running the migrations and parsing every statement again
//! for each cost more than the client's own writes, so:
//!
//! - the schema is built once per thread, in a template that each new connection copies
//!   (SQLite's backup API);
//! - the connection of a dropped in-memory journal is emptied (every table, and the
//!   `AUTOINCREMENT` counters, so ids start again at 1) and serves the next one, with its
//!   prepared statements.
//!
//! Either way a new journal is empty, at [`JOURNAL_VERSION`](super::JOURNAL_VERSION), and
//! indistinguishable from one whose migrations just ran.

use super::{exec, upgrade, STATEMENT_CACHE};
use crate::Error;
use rusqlite::backup::Backup;
use rusqlite::Connection;
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The path an in-memory journal reports.
pub(super) const PATH: &str = ":memory:";

/// Emptied connections kept per thread.
const SPARES: usize = 4;

thread_local! {
    /// An in-memory journal at the current version, with the names of its tables.
    static TEMPLATE: RefCell<Option<(Connection, Vec<String>)>> = const { RefCell::new(None) };
    static SPARE: RefCell<Vec<Connection>> = const { RefCell::new(Vec::new()) };
}

fn bad(e: rusqlite::Error) -> Error {
    Error::Journal {
        path: PathBuf::from(PATH),
        msg: e.to_string(),
    }
}

/// A connection holding an empty journal at the current version.
pub(super) fn connection() -> Result<Connection, Error> {
    if let Some(c) = SPARE.with(|s| s.borrow_mut().pop()) {
        return Ok(c);
    }
    let mut conn = Connection::open_in_memory().map_err(bad)?;
    TEMPLATE.with(|t| -> Result<(), Error> {
        let mut t = t.borrow_mut();
        if t.is_none() {
            *t = Some(template()?);
        }
        let (template, _) = t.as_ref().expect("made above");
        Backup::new(template, &mut conn)
            .and_then(|b| b.run_to_completion(1024, Duration::ZERO, None))
            .map_err(bad)
    })?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

fn template() -> Result<(Connection, Vec<String>), Error> {
    let mut conn = Connection::open_in_memory().map_err(bad)?;
    upgrade(&mut conn, Path::new(PATH), 0)?;
    let mut st = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .map_err(bad)?;
    let tables = st
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<String>>>())
        .map_err(bad)?;
    drop(st);
    Ok((conn, tables))
}

/// Takes back the connection of a dropped in-memory journal: emptied, it serves the next
/// one; if emptying fails, or enough are kept, it is closed.
pub(super) fn give_back(conn: Connection) {
    if SPARE.with(|s| s.borrow().len()) >= SPARES || empty(&conn).is_err() {
        return;
    }
    SPARE.with(|s| s.borrow_mut().push(conn));
}

/// Deletes every row of every table (`sqlite_sequence` too), in one transaction.
fn empty(conn: &Connection) -> rusqlite::Result<()> {
    let tables = TEMPLATE.with(|t| t.borrow().as_ref().map(|(_, names)| names.clone()));
    let Some(tables) = tables else {
        return Err(rusqlite::Error::InvalidQuery);
    };
    let tx = conn.unchecked_transaction()?;
    for t in &tables {
        exec(&tx, &format!("DELETE FROM \"{t}\""), [])?;
    }
    tx.commit()
}
