//! Storage: one SQL schema on SQLite (the default, a file) or PostgreSQL (several tower
//! processes on one database). Everything goes through [`Store`], whose methods are the
//! tower's persistence API — the HTTP handlers and the dashboard call the same ones.
//!
//! Invariants:
//! - Every change happens in one transaction: a revision, its flight row, the audit entry and
//!   (when the index changes) the serial bump commit together or not at all.
//! - Revisions are never updated except for their `state`; their spec is immutable.
//! - `index_state.serial` only grows, and grows in the transaction of every change to what
//!   the index holds; on PostgreSQL that transaction also sends `NOTIFY testpilot_index`.
//! - Rules about who may do what and which transitions exist live in [`crate::lifecycle`];
//!   this module applies them against the stored state with compare-and-set updates, so two
//!   towers racing on one database cannot both win.
//!
//! SQL is written once for both engines (`$n` placeholders, `ON CONFLICT`, `RETURNING`,
//! BIGINT milliseconds, JSON as TEXT) and run through sqlx's `Any` driver.

mod checkpointer;
mod events;
mod flights;
mod keys;
mod progress;
mod prune;
mod reports;
mod seen;
mod sqlite_writer;
mod syncer;
mod tokens;
mod writer;

pub use events::{
    day_label, ArmRollup, EventWindow, ExportCursor, Rollups, StoredEvent, NO_ARM_COLUMN,
};
pub use flights::{AuditEntry, FlightDetail, FlightSummary, Outcome, Pending, Revision};
pub use keys::{KeyState, StoredKey};
pub use prune::{TowerPruned, BATCH as PRUNE_BATCH, DEFAULT_RETENTION};
pub use reports::{DailyPoint, ErrorReport, Ingested, Progress, ProgressRow};
pub use tokens::TokenInfo;

use crate::error::{Error, Result};
use serde_json::Value;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::AnyPool;
use sqlx::Row;
use std::borrow::Cow;
use testpilot_flight::Timestamp;

/// The PostgreSQL channel on which a tower announces that the index changed.
pub const NOTIFY_CHANNEL: &str = "testpilot_index";

/// Which database engine a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    /// The engine a database URL names: `sqlite://PATH` or `postgres://...`.
    pub fn of_url(url: &str) -> Result<Engine> {
        if url.starts_with("sqlite:") {
            Ok(Engine::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Engine::Postgres)
        } else {
            Err(Error::Config(format!(
                "`{url}` is not a database URL this tower knows: use sqlite://PATH or postgres://USER@HOST:PORT/DB"
            )))
        }
    }
}

/// The tower's storage. Cheap to clone (it holds connection pools).
#[derive(Clone, Debug)]
pub struct Store {
    /// For reads. On SQLite a separate pool, so that readers never wait for the writer.
    read: AnyPool,
    /// For writes. On SQLite a single connection: SQLite has one writer at a time, and
    /// queueing in the pool is kinder than `SQLITE_BUSY`.
    write: AnyPool,
    engine: Engine,
    url: String,
    /// On SQLite (a file), the report writer's own connection and the turn every write of
    /// this tower takes (`store/writer.rs`).
    sqlite_writer: Option<sqlite_writer::SqliteWriter>,
}

/// The index as stored: what a signed index is built from.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexState {
    pub serial: u64,
    /// When the index's content last changed.
    pub changed_at: Timestamp,
    /// Every live and killed flight (killed ones with `kill: true`), by studyname.
    pub flights: Vec<Value>,
    /// The key that signs it and the successor it announces.
    pub keys: KeyState,
}

fn migrator(engine: Engine) -> Migrator {
    let files: &[(i64, &'static str, &'static str)] = match engine {
        Engine::Sqlite => &[
            (
                1,
                "tower",
                include_str!("../../migrations/sqlite/0001_tower.sql"),
            ),
            (
                2,
                "signing keys",
                include_str!("../../migrations/sqlite/0002_signing_keys.sql"),
            ),
            (
                3,
                "copilot source",
                include_str!("../../migrations/sqlite/0003_copilot_source.sql"),
            ),
            (
                4,
                "events",
                include_str!("../../migrations/sqlite/0004_events.sql"),
            ),
            (
                5,
                "event client cap",
                include_str!("../../migrations/sqlite/0005_event_client_cap.sql"),
            ),
            (
                6,
                "progress rollups",
                include_str!("../../migrations/sqlite/0006_progress_rollups.sql"),
            ),
            (
                7,
                "key-only tables",
                include_str!("../../migrations/sqlite/0007_key_only_tables.sql"),
            ),
            (
                8,
                "days in client state",
                include_str!("../../migrations/sqlite/0008_days_in_client_state.sql"),
            ),
        ],
        Engine::Postgres => &[
            (
                1,
                "tower",
                include_str!("../../migrations/postgres/0001_tower.sql"),
            ),
            (
                2,
                "signing keys",
                include_str!("../../migrations/postgres/0002_signing_keys.sql"),
            ),
            (
                3,
                "copilot source",
                include_str!("../../migrations/postgres/0003_copilot_source.sql"),
            ),
            (
                4,
                "events",
                include_str!("../../migrations/postgres/0004_events.sql"),
            ),
            (
                5,
                "event client cap",
                include_str!("../../migrations/postgres/0005_event_client_cap.sql"),
            ),
            (
                6,
                "progress rollups",
                include_str!("../../migrations/postgres/0006_progress_rollups.sql"),
            ),
            (
                7,
                "key-only tables",
                include_str!("../../migrations/postgres/0007_key_only_tables.sql"),
            ),
            (
                8,
                "days in client state",
                include_str!("../../migrations/postgres/0008_days_in_client_state.sql"),
            ),
        ],
    };
    let migrations: Vec<Migration> = files
        .iter()
        .map(|(v, d, sql)| {
            Migration::new(
                *v,
                Cow::Borrowed(d),
                MigrationType::Simple,
                Cow::Borrowed(sql),
                false,
            )
        })
        .collect();
    // `Migrator`'s fields are how sqlx's own `migrate!` builds one; we build it without the
    // macro (and its compile time), embedding the files with `include_str!`.
    Migrator {
        migrations: Cow::Owned(migrations),
        ignore_missing: false,
        locking: true,
        no_tx: false,
    }
}

/// Creates or migrates the database at `url` up to migration `version` only, so that a test
/// can store rows as an older tower did and then see a newer migration take them over.
#[cfg(feature = "testing")]
pub async fn migrate_to(url: &str, version: i64) -> Result<()> {
    sqlx::any::install_default_drivers();
    let engine = Engine::of_url(url)?;
    let full = match engine {
        Engine::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
        _ => url.to_string(),
    };
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(&full)
        .await?;
    let mut m = migrator(engine);
    m.migrations.to_mut().retain(|x| x.version <= version);
    m.run(&pool).await?;
    close_pool(&pool).await;
    Ok(())
}

/// Every connection to SQLite. WAL: readers do not block the writer. synchronous=FULL: a
/// commit is on disk when it returns, which is what "2xx only once durable" needs.
const SQLITE_PRAGMAS: [&str; 4] = [
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = FULL",
    "PRAGMA busy_timeout = 10000",
    "PRAGMA foreign_keys = ON",
];

/// The writers' connections, besides [`SQLITE_PRAGMAS`]. Their statements may insert many
/// rows (sqlx's writer: a whole group of events) inside a transaction, so SQLite keeps a
/// statement journal for each; in memory it is not a temporary file made and deleted per
/// statement (its size is bounded by the group's, itself bounded in bytes). Migrations,
/// whose sorts may be as large as the database, run before on another connection. The page
/// cache is 8 MiB, more than the 2 MiB default so that report keys, which land all over
/// their indexes, are often found in it, but not much more: SQLite walks its cache's hash
/// table at the end of every transaction, and with 64 MiB that walk was a fifth of the
/// report writer's commit.
///
/// Their commits checkpoint the log only past [`checkpointer::RESTART`] pages (a thread of
/// its own does it in between: `store/checkpointer.rs`), and the `-wal` file is cut back to
/// 64 MiB when it restarts.
const SQLITE_WRITER_PRAGMAS: [&str; 4] = [
    "PRAGMA temp_store = MEMORY",
    "PRAGMA cache_size = -8192",
    checkpointer::RESTART,
    "PRAGMA journal_size_limit = 67108864",
];

/// Whether a `sqlite:` URL names its file plainly: no options but the mode `rw`/`rwc`, so
/// that a connection opened on the file alone is to the same database as sqlx's.
fn plain_file(url: &str) -> bool {
    url.split_once('?').is_none_or(|(_, options)| {
        options
            .split('&')
            .all(|o| o.is_empty() || o == "mode=rwc" || o == "mode=rw")
    })
}

/// The SQLite pool: `writer` for the one connection that writes.
async fn sqlite_pool(url: &str, max: u32, writer: bool) -> Result<AnyPool> {
    Ok(AnyPoolOptions::new()
        .max_connections(max)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                let extra: &[&str] = if writer { &SQLITE_WRITER_PRAGMAS } else { &[] };
                for pragma in SQLITE_PRAGMAS.iter().chain(extra) {
                    sqlx::query(pragma).execute(&mut *conn).await?;
                }
                Ok(())
            })
        })
        .connect(url)
        .await?)
}

/// How long [`close_pool`] waits for a connection handed back while the pool closed.
const CLOSE_STRAGGLER: std::time::Duration = std::time::Duration::from_secs(5);

/// Closes `pool` and waits until none of its connections is open. sqlx's `Pool::close`
/// waits for the connections in use, but one being handed back as the pool closes can land
/// in the idle queue after the close emptied it (launchbadge/sqlx#3217), and stays open as
/// long as the pool; on SQLite it keeps its log open too. Closing again closes it. A
/// connection never handed back (a task holding it forever) is given up on after
/// [`CLOSE_STRAGGLER`], with a warning.
async fn close_pool(pool: &AnyPool) {
    pool.close().await;
    let deadline = tokio::time::Instant::now() + CLOSE_STRAGGLER;
    while pool.size() > 0 {
        if tokio::time::Instant::now() >= deadline
            || tokio::time::timeout_at(deadline, pool.close())
                .await
                .is_err()
        {
            tracing::warn!(
                open = pool.size(),
                "a database connection was still in use when the store closed"
            );
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

impl Store {
    /// Opens (creating a SQLite file if needed) and migrates the database at `url`.
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let engine = Engine::of_url(url)?;
        let (read, write, sqlite_writer) = match engine {
            Engine::Sqlite => {
                // The database file (and so its -wal and -shm) private from the start.
                if let Some(path) = crate::private::sqlite_path(url) {
                    crate::private::prepare_sqlite(path)?;
                }
                let full = if url.contains('?') {
                    url.to_string()
                } else {
                    format!("{url}?mode=rwc")
                };
                // Migrations on a connection of their own, before the writer's: theirs may
                // sort and index every stored row, which must be free to spill to disk
                // (the writer keeps its temporary data in memory).
                let migrate = sqlite_pool(&full, 1, false).await?;
                migrator(engine).run(&migrate).await?;
                close_pool(&migrate).await;
                let write = sqlite_pool(&full, 1, true).await?;
                let read = sqlite_pool(&full, 4, false).await?;
                let reports = match crate::private::sqlite_path(url) {
                    Some(path) if plain_file(url) => Some(sqlite_writer::SqliteWriter::open(
                        path,
                        &[&SQLITE_PRAGMAS[..], &SQLITE_WRITER_PRAGMAS[..]].concat(),
                    )?),
                    // An in-memory database is one connection's own, and URL options may
                    // make sqlx open another database than the file: everything on sqlx's.
                    _ => None,
                };
                (read, write, reports)
            }
            Engine::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(16)
                    .connect(url)
                    .await?;
                migrator(engine).run(&pool).await?;
                (pool.clone(), pool, None)
            }
        };
        Ok(Store {
            read,
            write,
            engine,
            url: url.to_string(),
            sqlite_writer,
        })
    }

    /// Waits for this tower's turn to write, on SQLite (on PostgreSQL writers need none):
    /// every write outside the report writer holds it from before its transaction begins
    /// until after it ends (`store/writer.rs`).
    async fn write_turn(&self) -> Result<Option<sqlite_writer::Turn>> {
        match &self.sqlite_writer {
            Some(w) => Ok(Some(w.turn().await?)),
            None => Ok(None),
        }
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The URL the store was opened with (for the PostgreSQL listener).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Closes the pools, waiting for connections in use: when it returns, no connection of
    /// this store is open.
    pub async fn close(&self) {
        if let Some(w) = &self.sqlite_writer {
            w.close().await;
        }
        close_pool(&self.write).await;
        close_pool(&self.read).await;
    }

    /// The index's serial and when its content last changed; cheap, for polling.
    pub async fn index_serial(&self) -> Result<(u64, Timestamp)> {
        let row = sqlx::query("SELECT serial, changed_at FROM index_state WHERE id = 1")
            .fetch_one(&self.read)
            .await?;
        Ok((row.try_get::<i64, _>(0)? as u64, Timestamp(row.try_get(1)?)))
    }

    /// What the index holds, read in one snapshot: the serial and every live and killed
    /// flight's live revision (killed ones with `kill: true`), ordered by studyname.
    pub async fn index_state(&self) -> Result<IndexState> {
        let mut tx = self.read.begin().await?;
        if self.engine == Engine::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .execute(&mut *tx)
                .await?;
        }
        let row = sqlx::query("SELECT serial, changed_at FROM index_state WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        let serial = row.try_get::<i64, _>(0)? as u64;
        let changed_at = Timestamp(row.try_get(1)?);
        let rows = sqlx::query(
            "SELECT f.state, r.spec FROM flights f \
             JOIN revisions r ON r.studyname = f.studyname AND r.version = f.live_version \
             WHERE f.state IN ('live', 'killed') ORDER BY f.studyname",
        )
        .fetch_all(&mut *tx)
        .await?;
        let keys = keys::load(&mut tx).await?;
        tx.commit().await?;
        let mut flights = Vec::with_capacity(rows.len());
        for row in rows {
            let state: String = row.try_get(0)?;
            let mut spec = parse_json(&row.try_get::<String, _>(1)?)?;
            if state == "killed" {
                if let Some(o) = spec.as_object_mut() {
                    o.insert("kill".into(), Value::Bool(true));
                }
            }
            flights.push(spec);
        }
        Ok(IndexState {
            serial,
            changed_at,
            flights,
            keys,
        })
    }
}

pub(crate) fn parse_json(text: &str) -> Result<Value> {
    serde_json::from_str(text)
        .map_err(|e| Error::Internal(format!("stored JSON does not parse: {e}")))
}

/// Serializes a [`Timestamp`] as RFC 3339, as every JSON answer of the tower does.
pub(crate) fn rfc3339<S: serde::Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339())
}
