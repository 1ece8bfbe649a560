//! Reports from pilots, and the progress computed from them.
//!
//! `reports` keeps every report once (`(client, seq)` is its key, so a resend is a no-op);
//! `client_state` keeps each client's latest report per flight (highest `seq`), which is
//! what "how many clients are at which status / step / arm" counts; it and the progress
//! rollups move in the same transaction (`store/progress.rs`), which also reads progress.

use super::{parse_json, rfc3339, Engine, Store};
use crate::error::Result;
use serde::Serialize;
use serde_json::Value;
use sqlx::{Any, Row, Transaction};
use std::collections::{BTreeMap, HashSet};
use testpilot_flight::report::{Report, ReportBatch};
use testpilot_flight::Timestamp;

const DAY_MS: i64 = 86_400_000;
/// Rows per multi-row INSERT statement (11 parameters each) on PostgreSQL, and for the
/// small `client_state` upserts. Kept modest: SQLite binds `$n` parameters in time that
/// grows with the square of their number.
const CHUNK: usize = 64;

/// What happened to one batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Ingested {
    /// Reports stored now.
    pub accepted: u64,
    /// Reports already stored before (a resend): not stored twice.
    pub duplicates: u64,
}

/// Progress of one flight.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub studyname: String,
    /// Distinct clients that reported on the flight.
    pub clients: u64,
    /// Reports received on the flight (every status change).
    pub reports: u64,
    /// Status → clients whose latest report has that status.
    pub by_status: BTreeMap<String, u64>,
    /// Step → clients whose latest report is at that step (JSON object keys are strings).
    #[schema(value_type = BTreeMap<String, u64>)]
    pub by_step: BTreeMap<u64, u64>,
    /// Arm → clients whose latest report is in that arm (clients without an arm are not here).
    pub by_arm: BTreeMap<String, u64>,
    /// Version → clients whose latest report is on that version.
    #[schema(value_type = BTreeMap<String, u64>)]
    pub by_version: BTreeMap<u64, u64>,
    /// Clients by version, arm, status and step together, for any other cut.
    pub breakdown: Vec<ProgressRow>,
    /// Reports per day (UTC, by the report's `at`), oldest first.
    pub daily: Vec<DailyPoint>,
}

/// Clients at one (version, arm, status, step).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ProgressRow {
    pub version: u64,
    pub arm: Option<String>,
    pub status: String,
    pub step: u64,
    pub clients: u64,
}

/// One day of a flight's reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DailyPoint {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    pub reports: u64,
    /// Distinct clients that reported that day.
    pub clients: u64,
    /// Status → reports with that status that day.
    pub by_status: BTreeMap<String, u64>,
}

/// A report that carried a `detail` (typically why a flight failed), newest first.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ErrorReport {
    pub client: String,
    pub seq: u64,
    pub version: u64,
    pub arm: Option<String>,
    pub status: String,
    pub step: u64,
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// Whatever JSON the pilot sent.
    #[schema(value_type = Value)]
    pub detail: Value,
}

fn placeholders(rows: usize, cols: usize) -> String {
    let mut s = String::with_capacity(rows * cols * 5);
    for r in 0..rows {
        s.push_str(if r == 0 { "(" } else { ",(" });
        for c in 0..cols {
            if c > 0 {
                s.push(',');
            }
            s.push('$');
            s.push_str(&(r * cols + c + 1).to_string());
        }
        s.push(')');
    }
    s
}

fn day_of(at: Timestamp) -> i64 {
    at.0.div_euclid(DAY_MS)
}

/// The reports of a batch that are new to it: the first of each `seq` (a batch that
/// repeats a `seq` stores it once, as a resend would).
fn first_of_each_seq(batch: &ReportBatch) -> Vec<&Report> {
    let mut seen = std::collections::HashSet::with_capacity(batch.reports.len());
    batch
        .reports
        .iter()
        .filter(|r| seen.insert(r.seq))
        .collect()
}

impl Store {
    /// Stores several batches in one transaction (group commit) and returns, per batch, how
    /// many reports were new. When this returns `Ok`, every report is durable.
    ///
    /// Only reports stored now move progress: a resent `(client, seq)` — in an earlier
    /// request, an earlier batch of this group, or earlier in the same batch — is counted as
    /// a duplicate and changes nothing, whatever it says.
    pub async fn insert_reports(
        &self,
        batches: &[&ReportBatch],
        now: Timestamp,
    ) -> Result<Vec<Ingested>> {
        let mut tx = self.write.begin().await?;
        let mut out = vec![Ingested::default(); batches.len()];
        // Each client's latest newly stored report per flight (only it can move the client's
        // state), sorted, so that concurrent writers on PostgreSQL lock rows in one order
        // and cannot deadlock; and every report stored now, for the per-day rollups.
        let mut latest: BTreeMap<(&str, &str), &Report> = BTreeMap::new();
        let mut stored_now: Vec<(&str, &Report)> = Vec::new();
        // Reports are inserted in (client, seq) order, batches of one client in the order
        // they came: two writers storing the same reports on PostgreSQL then wait for each
        // other instead of deadlocking.
        let mut order: Vec<usize> = (0..batches.len()).collect();
        order.sort_by_key(|&i| batches[i].client.as_str());
        for i in order {
            let batch = batches[i];
            let mut fresh = first_of_each_seq(batch);
            fresh.sort_by_key(|r| r.seq);
            let stored = match self.engine {
                Engine::Sqlite => Self::insert_sqlite(&mut tx, &batch.client, &fresh, now).await?,
                Engine::Postgres => {
                    Self::insert_values(&mut tx, &batch.client, &fresh, now).await?
                }
            };
            let accepted = stored.len() as u64;
            out[i] = Ingested {
                accepted,
                duplicates: batch.reports.len() as u64 - accepted,
            };
            for r in fresh.into_iter().filter(|r| stored.contains(&r.seq)) {
                stored_now.push((batch.client.as_str(), r));
                let e = latest
                    .entry((r.flight.as_str(), batch.client.as_str()))
                    .or_insert(r);
                if r.seq > e.seq {
                    *e = r;
                }
            }
        }
        let latest: Vec<_> = latest.into_iter().collect();
        self.move_progress(&mut tx, &latest, &stored_now).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// SQLite: the reports as one JSON text, unpacked by `json_each` inside SQLite — one
    /// bound parameter instead of eleven per report, several times faster. Returns the
    /// `seq`s stored now (not those already there).
    async fn insert_sqlite(
        tx: &mut Transaction<'static, Any>,
        client: &str,
        reports: &[&Report],
        now: Timestamp,
    ) -> Result<HashSet<u64>> {
        // Tuples serialize as JSON arrays: `[client, seq, flight, ...]`.
        let rows: Vec<_> = reports
            .iter()
            .map(|r| {
                (
                    client,
                    r.seq as i64,
                    &r.flight,
                    r.version as i64,
                    r.arm.as_deref(),
                    r.status.as_str(),
                    r.step as i64,
                    r.at.0,
                    day_of(r.at),
                    r.detail.as_ref().map(Value::to_string),
                    now.0,
                )
            })
            .collect();
        let rows = serde_json::to_string(&rows)
            .map_err(|e| crate::Error::Internal(format!("encoding reports: {e}")))?;
        let stored = sqlx::query(
            "INSERT INTO reports (client, seq, flight, version, arm, status, step, at, day, detail, received_at) \
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, \
             value ->> 7, value ->> 8, value ->> 9, value ->> 10 FROM json_each($1) WHERE true \
             ON CONFLICT (client, seq) DO NOTHING RETURNING seq",
        )
        .bind(rows)
        .fetch_all(&mut **tx)
        .await?;
        stored
            .iter()
            .map(|r| Ok(r.try_get::<i64, _>(0)? as u64))
            .collect()
    }

    /// PostgreSQL: multi-row `INSERT ... VALUES`. Returns the `seq`s stored now.
    async fn insert_values(
        tx: &mut Transaction<'static, Any>,
        client: &str,
        reports: &[&Report],
        now: Timestamp,
    ) -> Result<HashSet<u64>> {
        let mut stored = HashSet::with_capacity(reports.len());
        for chunk in reports.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO reports (client, seq, flight, version, arm, status, step, at, day, detail, received_at) VALUES {} \
                 ON CONFLICT (client, seq) DO NOTHING RETURNING seq",
                placeholders(chunk.len(), 11)
            );
            let mut q = sqlx::query(&sql).persistent(chunk.len() == CHUNK);
            for r in chunk {
                q = q
                    .bind(client)
                    .bind(r.seq as i64)
                    .bind(&r.flight)
                    .bind(r.version as i64)
                    .bind(r.arm.as_deref())
                    .bind(r.status.as_str())
                    .bind(r.step as i64)
                    .bind(r.at.0)
                    .bind(day_of(r.at))
                    .bind(r.detail.as_ref().map(Value::to_string))
                    .bind(now.0);
            }
            for r in q.fetch_all(&mut **tx).await? {
                stored.insert(r.try_get::<i64, _>(0)? as u64);
            }
        }
        Ok(stored)
    }

    /// Reports stored in all, over every flight (for metrics and tests).
    pub async fn report_count(&self) -> Result<u64> {
        let n: i64 = sqlx::query("SELECT COUNT(*) FROM reports")
            .fetch_one(&self.read)
            .await?
            .try_get(0)?;
        Ok(n as u64)
    }

    /// Whether the report `(client, seq)` is stored.
    pub async fn has_report(&self, client: &str, seq: u64) -> Result<bool> {
        let row = sqlx::query("SELECT 1 FROM reports WHERE client = $1 AND seq = $2")
            .bind(client)
            .bind(seq as i64)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.is_some())
    }

    /// The newest `limit` reports on a flight that carried a `detail`.
    pub async fn recent_errors(&self, name: &str, limit: u32) -> Result<Vec<ErrorReport>> {
        let rows = sqlx::query(
            "SELECT client, seq, version, arm, status, step, at, detail FROM reports \
             WHERE flight = $1 AND detail IS NOT NULL ORDER BY at DESC, client, seq LIMIT $2",
        )
        .bind(name)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ErrorReport {
                    client: r.try_get(0)?,
                    seq: r.try_get::<i64, _>(1)? as u64,
                    version: r.try_get::<i64, _>(2)? as u64,
                    arm: r.try_get(3)?,
                    status: r.try_get(4)?,
                    step: r.try_get::<i64, _>(5)? as u64,
                    at: Timestamp(r.try_get(6)?),
                    detail: parse_json(&r.try_get::<String, _>(7)?)?,
                })
            })
            .collect()
    }
}
