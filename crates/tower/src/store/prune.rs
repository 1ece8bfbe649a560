//! Pruning raw rows older than the retention (`tower serve --retention`, docs/api.md
//! "Retention"), so a tower's database stays bounded over years.
//!
//! What goes: raw `reports` whose day is older than the retention, the rows of
//! `progress_day_seen` (which clients reported on a day before their window of days, in
//! `store/seen.rs`) for those days, and raw `events` whose `at` is. What stays: `client_state` (each client's latest report per flight, what progress
//! counts), the progress rollups that do not grow per client (`progress_states`,
//! `progress_days`, `progress_day_clients`: progress keeps its whole daily series), the event
//! rollups (`event_days`, `event_clients`, `event_arms`: all that results read), flights, revisions, the audit log, tokens and keys — none of which grows per
//! request. The tower keeps no other per-request state (no idempotency keys apart from the raw
//! rows' `(client, seq)`; rate limits live in memory).
//!
//! Deletes go flight by flight along the indexes `reports_by_flight_day` and
//! `events_by_flight`, [`BATCH`] rows per statement (one transaction each), so ingest keeps
//! its turn at the writer between them. Same SQL on SQLite and PostgreSQL. SQLite reuses the
//! freed pages for new rows, so the file stops growing; on PostgreSQL a plain `VACUUM` of a
//! table that lost rows does the same (autovacuum may be off), and so does one of each table
//! ingest updates in place ([`UPDATED_IN_PLACE`]), whose old row versions would otherwise pile
//! up, when the server's autovacuum is off.

use super::{Engine, Store};
use crate::error::Result;
use sqlx::Row;
use std::time::Duration;
use testpilot_flight::Timestamp;

/// Rows deleted per statement (one transaction).
pub const BATCH: i64 = 10_000;
const DAY_MS: i64 = 86_400_000;

/// The default retention of raw reports and events: 400 days, a year and a month.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(400 * 86_400);

/// The tables ingest updates in place (each report batch or event batch rewrites a row of
/// them): on PostgreSQL every update leaves the old row version behind until a `VACUUM`, so
/// without autovacuum they would grow with every request though their rows do not. Vacuumed
/// at each prune when the server's autovacuum is off (when it is on, it does this itself).
const UPDATED_IN_PLACE: [&str; 7] = [
    "client_state",
    "progress_states",
    "progress_days",
    "progress_day_clients",
    "event_days",
    "event_clients",
    "event_arms",
];

/// What one prune removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TowerPruned {
    pub reports: u64,
    pub events: u64,
}

/// The distinct flights of `table`, by a loose scan of its `(flight, ...)` index: one lookup
/// per flight, not a scan of every row.
fn flights_of(table: &str) -> String {
    format!(
        "WITH RECURSIVE f(name) AS (SELECT MIN(flight) FROM {table} \
         UNION ALL SELECT (SELECT MIN(flight) FROM {table} WHERE flight > f.name) FROM f WHERE f.name IS NOT NULL) \
         SELECT name FROM f WHERE name IS NOT NULL"
    )
}

impl Store {
    /// Deletes raw reports and events older than `keep` before `now`, cut at a UTC day
    /// boundary (a day is kept whole or goes whole).
    pub async fn prune(&self, now: Timestamp, keep: Duration) -> Result<TowerPruned> {
        let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
        let day = now.0.saturating_sub(keep_ms).div_euclid(DAY_MS);
        let seen = self.prune_table(
            "progress_day_seen",
            "DELETE FROM progress_day_seen WHERE (flight, day, client) IN \
             (SELECT flight, day, client FROM progress_day_seen WHERE flight = $1 AND day < $2 LIMIT $3)",
            day,
        )
        .await?;
        let pruned = TowerPruned {
            reports: self
                .prune_table(
                    "reports",
                    "DELETE FROM reports WHERE (client, seq) IN \
                     (SELECT client, seq FROM reports WHERE flight = $1 AND day < $2 LIMIT $3)",
                    day,
                )
                .await?,
            events: self
                .prune_table(
                    "events",
                    "DELETE FROM events WHERE (client, seq) IN \
                     (SELECT client, seq FROM events WHERE flight = $1 AND at < $2 LIMIT $3)",
                    day.saturating_mul(DAY_MS),
                )
                .await?,
        };
        if self.engine == Engine::Postgres {
            for (table, n) in [
                ("progress_day_seen", seen),
                ("reports", pruned.reports),
                ("events", pruned.events),
            ] {
                if n > 0 {
                    self.vacuum(table).await;
                }
            }
            if !self.autovacuum_on().await {
                for table in UPDATED_IN_PLACE {
                    self.vacuum(table).await;
                }
            }
        }
        Ok(pruned)
    }

    /// Whether the PostgreSQL server runs autovacuum (if it cannot be told, as if not).
    async fn autovacuum_on(&self) -> bool {
        sqlx::query("SELECT current_setting('autovacuum') = 'on'")
            .fetch_one(&self.read)
            .await
            .and_then(|r| r.try_get::<bool, _>(0))
            .unwrap_or(false)
    }

    /// PostgreSQL reuses the space of deleted or updated rows only once the table is
    /// vacuumed, and a server may run without autovacuum: a plain `VACUUM` (no lock that stops
    /// reads or writes). A failure (not the table's owner) is logged; the rows are gone all
    /// the same.
    async fn vacuum(&self, table: &str) {
        if let Err(e) = sqlx::raw_sql(&format!("VACUUM (ANALYZE) {table}"))
            .execute(&self.write)
            .await
        {
            tracing::warn!(error = %e, "cannot VACUUM {table} after pruning it; its free space waits for autovacuum");
        }
    }

    /// Runs `delete` (`$1` a flight, `$2` the cutoff, `$3` the batch) for every flight of
    /// `table` until it deletes less than a batch.
    async fn prune_table(&self, table: &str, delete: &str, cutoff: i64) -> Result<u64> {
        let flights: Vec<String> = sqlx::query(&flights_of(table))
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<std::result::Result<_, _>>()?;
        let mut total = 0;
        for flight in flights {
            loop {
                let turn = self.write_turn().await?;
                let n = sqlx::query(delete)
                    .bind(&flight)
                    .bind(cutoff)
                    .bind(BATCH)
                    .execute(&self.write)
                    .await?
                    .rows_affected();
                drop(turn);
                total += n;
                if n < BATCH as u64 {
                    break;
                }
                // Ingest waiting for the writer goes first.
                tokio::task::yield_now().await;
            }
        }
        Ok(total)
    }
}
