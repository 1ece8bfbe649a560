//! Reports from pilots, and the progress computed from them.
//!
//! `reports` keeps every report once (`(client, seq)` is its key, so a resend is a no-op);
//! `client_state` keeps each client's latest report per flight (highest `seq`), which is
//! what "how many clients are at which status / step / arm" counts; it and the progress
//! rollups move in the same transaction (`store/progress.rs`), which also reads progress.

use super::events::Col;
use super::progress::move_progress;
use super::writer::{run_now, Conflict, Insert, Lite, Sqlx, Statements};
use super::{parse_json, rfc3339, Store};
use crate::error::Result;
use futures_util::future::BoxFuture;
use serde::Serialize;
use serde_json::Value;
use sqlx::Row;
use std::collections::{BTreeMap, HashSet};
use testpilot_flight::report::{Report, ReportBatch};
use testpilot_flight::Timestamp;

const DAY_MS: i64 = 86_400_000;
/// Most reports in one INSERT statement (a group holds up to the writer's `max_group`).
const MAX_ROWS: usize = 20_000;
/// About the most text one INSERT statement's parameter carries (a report's `detail` may be
/// up to the request body limit).
const MAX_CHUNK_BYTES: usize = 16 << 20;

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

fn day_of(at: Timestamp) -> i64 {
    at.0.div_euclid(DAY_MS)
}

/// Stores a group of batches in the transaction `tx` (see [`Store::insert_reports`]).
async fn store_group<W: Statements>(
    tx: &mut W,
    batches: &[&ReportBatch],
    now: Timestamp,
) -> Result<Vec<Ingested>> {
    // The first of each (client, seq) in the whole group (batches in the order they came);
    // later ones are duplicates. Sorted by (client, seq): two writers storing the same
    // reports on PostgreSQL then lock rows in one order and wait for each other instead of
    // deadlocking.
    let mut first: BTreeMap<(&str, u64), (usize, &Report)> = BTreeMap::new();
    for (i, b) in batches.iter().enumerate() {
        for r in &b.reports {
            first.entry((b.client.as_str(), r.seq)).or_insert((i, r));
        }
    }
    let stored = insert_rows(tx, &first, now).await?;
    let mut out: Vec<Ingested> = batches
        .iter()
        .map(|b| Ingested {
            accepted: 0,
            duplicates: b.reports.len() as u64,
        })
        .collect();
    // Each client's latest newly stored report per flight (only it can move the client's
    // state), sorted, for the same reason; and every report stored now, for the per-day
    // rollups.
    let mut latest: BTreeMap<(&str, &str), &Report> = BTreeMap::new();
    let mut stored_now: Vec<(&str, &Report)> = Vec::with_capacity(stored.len());
    for (&(client, seq), &(i, r)) in &first {
        if !stored.contains(&(client, seq)) {
            continue;
        }
        out[i].accepted += 1;
        out[i].duplicates -= 1;
        stored_now.push((client, r));
        let e = latest.entry((r.flight.as_str(), client)).or_insert(r);
        if r.seq > e.seq {
            *e = r;
        }
    }
    let latest: Vec<_> = latest.into_iter().collect();
    move_progress(tx, &latest, &stored_now).await?;
    Ok(out)
}

/// Inserts the reports, sent as one JSON text unpacked inside the database (one bound
/// parameter, not eleven a report); returns the `(client, seq)` of those stored now (not
/// those already there).
async fn insert_rows<'a, W: Statements>(
    tx: &mut W,
    reports: &BTreeMap<(&'a str, u64), (usize, &Report)>,
    now: Timestamp,
) -> Result<HashSet<(&'a str, u64)>> {
    use Col::*;
    const INSERT: Insert<'static> = Insert {
        into: "INSERT INTO reports (client, seq, flight, version, arm, status, step, at, day, detail, received_at)",
        cols: &[Text, Int, Text, Int, Text, Text, Int, Int, Int, Text, Int],
        conflict: Conflict::Skip {
            key: "client, seq",
            lock: None,
        },
        returning: "RETURNING client, seq",
    };
    let mut stored = HashSet::with_capacity(reports.len());
    // Written once, bound by reference.
    let details: Vec<Option<String>> = reports
        .values()
        .map(|(_, r)| r.detail.as_ref().map(Value::to_string))
        .collect();
    let rows: Vec<_> = reports
        .iter()
        .zip(&details)
        .map(|(((client, seq), (_, r)), detail)| {
            (
                *client,
                *seq as i64,
                r.flight.as_str(),
                r.version as i64,
                r.arm.as_deref(),
                r.status.as_str(),
                r.step as i64,
                r.at.0,
                day_of(r.at),
                detail.as_deref(),
                now.0,
            )
        })
        .collect();
    let mut rest = &rows[..];
    while !rest.is_empty() {
        // At most MAX_ROWS reports and about MAX_CHUNK_BYTES of text a statement: a group of
        // many batches with large `detail`s must not make one parameter that passes the
        // database's limit (and fail every batch of the group with it).
        let mut bytes = 0;
        let mut n = 0;
        while n < rest.len() && n < MAX_ROWS && (n == 0 || bytes < MAX_CHUNK_BYTES) {
            let r = &rest[n];
            bytes += 160 + r.0.len() + r.2.len() + r.9.as_ref().map_or(0, |d| 2 * d.len());
            n += 1;
        }
        let (chunk, more) = rest.split_at(n);
        rest = more;
        for (row, new) in chunk
            .iter()
            .zip(tx.insert_new(INSERT, chunk, &[0, 1]).await?)
        {
            if new {
                stored.insert((row.0, row.1 as u64));
            }
        }
    }
    Ok(stored)
}

impl Store {
    /// Stores several batches in one transaction (group commit) and returns, per batch, how
    /// many reports were new. When this returns `Ok`, every report is durable.
    ///
    /// Only reports stored now move progress: a resent `(client, seq)` — in an earlier
    /// request, an earlier batch of this group, or earlier in the same batch — is counted as
    /// a duplicate and changes nothing, whatever it says.
    ///
    /// The whole group goes in one statement per table, whatever the number of batches, and
    /// on SQLite the whole transaction runs at once on the writer's own connection
    /// (`store/writer.rs`): a statement, or a hop between threads, per request would make
    /// the writer's round trips, not the disk, the limit on many small batches (a pilot
    /// sends a few reports at a time).
    pub async fn insert_reports(
        &self,
        batches: &[&ReportBatch],
        now: Timestamp,
    ) -> Result<Vec<Ingested>> {
        match &self.sqlite_writer {
            Some(writer) => {
                let owned: Vec<ReportBatch> = batches.iter().map(|b| (*b).clone()).collect();
                writer
                    .transaction(move |tx| {
                        let batches: Vec<&ReportBatch> = owned.iter().collect();
                        run_now(store_group(&mut Lite(tx), &batches, now))
                    })
                    .await
            }
            None => {
                let mut tx = self.write.begin().await?;
                let mut statements = Sqlx(&mut tx, self.engine);
                // Boxed as `Send` here, where its lifetimes are known: the compiler cannot
                // prove a generic future `Send` for every lifetime (rust-lang/rust#110338).
                let group: BoxFuture<'_, Result<Vec<Ingested>>> =
                    Box::pin(store_group(&mut statements, batches, now));
                let out = group.await?;
                tx.commit().await?;
                Ok(out)
            }
        }
    }

    /// Whether reports are stored by a writer of their own that blocks
    /// ([`Store::insert_reports_blocking`]): on a SQLite file.
    pub fn has_blocking_report_writer(&self) -> bool {
        self.sqlite_writer.is_some()
    }

    /// [`Store::insert_reports`] on this thread, which must not be an async one (it waits for
    /// the other writers and for SQLite): `then` gets the outcome once every report is
    /// durable (`store/syncer.rs`), or the error, while this thread may already store the
    /// next group. Without such a writer ([`Store::has_blocking_report_writer`]), an error.
    pub fn insert_reports_blocking(
        &self,
        batches: &[&ReportBatch],
        now: Timestamp,
        then: impl FnOnce(Result<Vec<Ingested>>) + Send + 'static,
    ) {
        match &self.sqlite_writer {
            Some(writer) => writer
                .transaction_blocking(|tx| run_now(store_group(&mut Lite(tx), batches, now)), then),
            None => then(Err(crate::Error::Internal(
                "this database has no blocking report writer".into(),
            ))),
        }
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
            // Clients are stored in lower case (docs/reports.md).
            .bind(client.to_ascii_lowercase())
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
