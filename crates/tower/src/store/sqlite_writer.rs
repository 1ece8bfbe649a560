//! The SQLite report writer: a rusqlite connection of its own, on which a whole group's
//! transaction runs at once on a blocking thread (`store/writer.rs` says why), with a
//! thread that checkpoints its log (`store/checkpointer.rs`) and one that makes its commits
//! durable before they are answered (`store/syncer.rs`).
//!
//! SQLite has one writer at a time. The tower's other writes (flights, keys, tokens, events,
//! pruning) stay on sqlx's writer connection; they and the report writer take turns through
//! this writer's lock ([`super::Store::write_turn`]), so neither ever finds the database
//! locked by the other, and a transaction that reads before it writes can never be refused
//! because the other committed in between (`SQLITE_BUSY_SNAPSHOT`).

use super::checkpointer::Checkpointer;
use super::syncer::{Synced, Syncer};
use crate::error::{Error, Result};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::{oneshot, Mutex, OwnedMutexGuard};

/// The writer's connection (`None` once the store is closed), which is also the turn every
/// writer of this tower takes, and its two threads.
#[derive(Debug, Clone)]
pub(super) struct SqliteWriter {
    conn: Arc<Mutex<Option<rusqlite::Connection>>>,
    checkpointer: Arc<Checkpointer>,
    syncer: Arc<Syncer>,
}

/// A writer's turn: while it is held, no other write of this tower runs on the database.
/// When it ends, the checkpointer hears that the log may have grown.
pub(super) struct Turn {
    _guard: OwnedMutexGuard<Option<rusqlite::Connection>>,
    checkpointer: Arc<Checkpointer>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.checkpointer.poke();
    }
}

/// Opens a connection of the tower's own to the database file at `path` (already created
/// and migrated), with `pragmas`.
pub(super) fn open(path: &Path, pragmas: &[&str]) -> Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let failed = |e: rusqlite::Error, what: &str| {
        Error::Internal(format!("opening {} ({what}): {e}", path.display()))
    };
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| failed(e, "the database"))?;
    for p in pragmas {
        // `PRAGMA journal_mode` answers with a row; the others with none.
        let answer = conn
            .query_row(p, [], |r| r.get::<_, rusqlite::types::Value>(0))
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(failed(e, p)),
            })?;
        if p.contains("journal_mode") {
            let mode = match answer {
                Some(rusqlite::types::Value::Text(m)) => m,
                other => format!("{other:?}"),
            };
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(Error::Internal(format!(
                    "{} is in journal mode `{mode}`, not WAL: the tower needs WAL (is the file on a filesystem without shared memory, or read-only?)",
                    path.display()
                )));
            }
        }
    }
    Ok(conn)
}

impl SqliteWriter {
    /// Opens the writer's connection and starts its threads, on the database file at `path`
    /// (already created and migrated); `pragmas` are those of every tower connection.
    pub(super) fn open(path: &Path, pragmas: &[&str]) -> Result<SqliteWriter> {
        let conn = open(path, pragmas)?;
        // Commits are made durable by the syncer, before they are answered.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.set_prepared_statement_cache_capacity(32);
        // A read makes sure the `-wal` file exists (it lives as long as a connection is
        // open) before the syncer opens it; SQLite names it after the database file as it
        // resolved it (through symbolic links), which is the name to use.
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))?;
        let resolved = conn.path().map(Path::new).ok_or_else(|| {
            Error::Internal(format!("SQLite has no file name for {}", path.display()))
        })?;
        let syncer = Syncer::start(resolved).map_err(|e| {
            Error::Internal(format!(
                "opening the log of {} to sync it: {e}",
                resolved.display()
            ))
        })?;
        Ok(SqliteWriter {
            checkpointer: Arc::new(Checkpointer::start(resolved, pragmas)?),
            conn: Arc::new(Mutex::new(Some(conn))),
            syncer: Arc::new(syncer),
        })
    }

    /// Waits for this tower's turn to write.
    /// Refused once a sync of the log has failed: what any writer adds to the log after
    /// that could be lost with the pages the disk dropped (`store/syncer.rs`).
    pub(super) async fn turn(&self) -> Result<Turn> {
        let guard = self.conn.clone().lock_owned().await;
        if let Some(e) = self.syncer.failed() {
            return Err(Error::Internal(e));
        }
        Ok(Turn {
            _guard: guard,
            checkpointer: self.checkpointer.clone(),
        })
    }

    /// Closes the connection (after the write in progress, if any), once every commit made
    /// on it is answered.
    pub(super) async fn close(&self) {
        self.conn.lock().await.take();
        let (checkpointer, syncer) = (self.checkpointer.clone(), self.syncer.clone());
        let _ = tokio::task::spawn_blocking(move || {
            syncer.stop();
            checkpointer.stop();
        })
        .await;
    }

    /// Runs `work` in one `BEGIN IMMEDIATE` transaction and commits it if it returns `Ok`;
    /// otherwise (or should it panic) nothing of it is stored. `then` gets the outcome once
    /// the commit is durable (on the syncer's thread), or the error.
    ///
    /// Blocks (on the other writers' turn and on SQLite): it must run on a thread of its own
    /// or a blocking one, not an async one. The turn is free again as soon as the commit is
    /// made, so the next group runs while this one syncs.
    pub(super) fn transaction_blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>,
        then: impl FnOnce(Result<T>) + Send + 'static,
    ) {
        let mut turn = self.conn.blocking_lock();
        let committed = match turn.as_mut() {
            None => Err(Error::Internal("the database is closed".into())),
            // After a failed sync the disk may have dropped pages nobody can name: nothing
            // more is written (`store/syncer.rs`).
            Some(_) if self.syncer.failed().is_some() => {
                Err(Error::Internal(self.syncer.failed().unwrap_or_default()))
            }
            Some(conn) => commit(conn, work),
        };
        match committed {
            // Handed to the syncer while the turn is held, so a close that follows (it
            // takes the turn first) finds it there and answers it before stopping.
            Ok(out) => self.syncer.after_commit(Box::new(move |synced: Synced| {
                then(synced.map(|()| out).map_err(Error::Internal))
            })),
            Err(e) => then(Err(e)),
        }
        self.checkpointer.poke();
        drop(turn);
    }

    /// [`SqliteWriter::transaction_blocking`] from async code: returns once durable.
    pub(super) async fn transaction<T: Send + 'static>(
        &self,
        work: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (done, answer) = oneshot::channel();
        let writer = self.clone();
        tokio::task::spawn_blocking(move || {
            writer.transaction_blocking(work, move |r| {
                let _ = done.send(r);
            })
        })
        .await
        .map_err(|e| Error::Internal(format!("the SQLite writer stopped: {e}")))?;
        answer
            .await
            .map_err(|_| Error::Internal("the SQLite writer stopped before it answered".into()))?
    }
}

fn commit<T>(
    conn: &mut rusqlite::Connection,
    work: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>,
) -> Result<T> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let out = work(&tx)?;
    tx.commit()?;
    Ok(out)
}
