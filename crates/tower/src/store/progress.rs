//! Progress rollups (migration 0006; docs/reports.md#progress): kept in the transaction that
//! stores reports, so that progress, the flight page and the flight list read a few hundred
//! rows however many reports and clients a flight has.
//!
//! - `progress_states`: clients per (flight, version, arm, status, step), by each client's
//!   latest report. Moved only when `client_state` moves: a client whose newest stored
//!   report gets a higher `seq` leaves its old row (−1) for its new one (+1); a resend or an
//!   older `seq` moves nothing.
//! - `progress_days`: reports per (flight, day, status), and those at step 0.
//! - `progress_day_clients`: how many clients reported on a flight on a day; which days a
//!   client was counted on is its window of days in `client_state` and, for days before
//!   it, rows of `progress_day_seen` (`store/seen.rs`).
//!
//! Concurrency (several writer tasks, several towers on one PostgreSQL database): every
//! statement takes its rows as one JSON text sorted by key, so writers lock rows in one
//! order; `client_state` rows are first locked (or created) in one upsert whose update never
//! applies (`WHERE 1 = 0`), and only then read, so the old state a client leaves is the one
//! no other writer can change before this transaction commits. Counts are added
//! (`n = n + excluded.n`), never overwritten.

use super::events::Col;
use super::reports::{DailyPoint, Progress, ProgressRow};
use super::seen::{Merged, Seen};
use super::writer::{Cells, Conflict, Insert, Statements};
use super::{Engine, Store};
use crate::error::{Error, Result};
use sqlx::Row;
use std::collections::{BTreeMap, BTreeSet};
use testpilot_flight::report::Report;
use testpilot_flight::Timestamp;

const DAY_MS: i64 = 86_400_000;

/// A client's place in `progress_states` (without the flight): version, arm (`None`: no
/// arm), status, step.
type State = (i64, Option<String>, String, i64);

/// `YYYY-MM-DD` of a day since the epoch.
fn label(day: i64) -> String {
    let t = Timestamp(day.saturating_mul(DAY_MS)).to_rfc3339();
    t.get(..10).unwrap_or(&t).to_string()
}

fn state_of(r: &Report) -> State {
    (
        r.version as i64,
        r.arm.clone(),
        r.status.as_str().to_string(),
        r.step as i64,
    )
}

/// Moves `client_state` to each client's newest report of this transaction and the
/// rollups with it. `latest` holds, sorted by (flight, client), each client's newest
/// newly stored report per flight; `stored` every report stored now, with its client.
pub(super) async fn move_progress<W: Statements>(
    tx: &mut W,
    latest: &[((&str, &str), &Report)],
    stored: &[(&str, &Report)],
) -> Result<()> {
    use Col::*;
    if stored.is_empty() {
        return Ok(());
    }
    let mut days: BTreeMap<(&str, &str), BTreeSet<i64>> = BTreeMap::new();
    for &(client, r) in stored {
        days.entry((r.flight.as_str(), client))
            .or_default()
            .insert(r.at.0.div_euclid(DAY_MS));
    }
    let moved = move_client_states(tx, latest, &days).await?;
    count_clients(tx, latest, &moved.seen).await?;
    add_days(tx, stored).await?;
    let rows: Vec<_> = moved
        .states
        .iter()
        .filter(|(_, n)| **n != 0)
        .map(|((f, (v, arm, status, step)), n)| {
            (
                f.as_str(),
                *v,
                arm.as_deref().unwrap_or(""),
                i64::from(arm.is_some()),
                status.as_str(),
                *step,
                *n,
            )
        })
        .collect();
    if !rows.is_empty() {
        const INSERT: Insert<'static> = Insert {
            into:
                "INSERT INTO progress_states (flight, version, arm, armed, status, step, clients)",
            cols: &[Text, Int, Text, Int, Text, Int, Int],
            conflict: Conflict::Update {
                key: "flight, version, arm, armed, status, step",
                set: "clients = progress_states.clients + excluded.clients",
            },
            returning: "",
        };
        tx.insert(INSERT, &rows).await?;
    }
    Ok(())
}

/// What moving `client_state` did.
struct Moved {
    /// (flight, state) → change in clients, for `progress_states`.
    states: BTreeMap<(String, State), i64>,
    /// For each entry of `latest`, in order: what its reports' days did to the client's
    /// window of days ([`super::seen`]).
    seen: Vec<Merged>,
}

/// Moves each client in `latest` whose report is newer than its stored state, and the
/// window of days of each client that reported (`days`: the days of its reports stored now,
/// by flight and client).
async fn move_client_states<W: Statements>(
    tx: &mut W,
    latest: &[((&str, &str), &Report)],
    days: &BTreeMap<(&str, &str), BTreeSet<i64>>,
) -> Result<Moved> {
    use Col::*;
    const COLS: &[Col] = &[Text, Text, Int, Int, Text, Text, Int, Int, Int, Int];
    const INTO: &str = "INSERT INTO client_state \
                        (flight, client, seq, version, arm, status, step, at, seen_day, seen_days)";
    let mut fresh = Vec::with_capacity(latest.len());
    for (key, _) in latest {
        fresh.push(Seen::default().merge(days_of(days, *key)?));
    }
    let rows: Vec<_> = latest
        .iter()
        .zip(&fresh)
        .map(|(&((flight, client), r), m)| {
            (
                flight,
                client,
                r.seq as i64,
                r.version as i64,
                r.arm.as_deref(),
                r.status.as_str(),
                r.step as i64,
                r.at.0,
                m.seen.day,
                m.seen.days_column(),
            )
        })
        .collect();
    // New clients are inserted; existing ones are locked, not changed, not returned.
    let create = Insert {
        into: INTO,
        cols: COLS,
        conflict: Conflict::Skip {
            key: "flight, client",
            lock: Some("seq = client_state.seq"),
        },
        returning: "RETURNING flight, client",
    };
    let created = tx.insert_new(create, &rows, &[0, 1]).await?;
    let mut moved = Moved {
        states: BTreeMap::new(),
        seen: fresh,
    };
    let mut existing = Vec::new();
    for (i, ((flight, _), r)) in latest.iter().enumerate() {
        if created[i] {
            *moved
                .states
                .entry((flight.to_string(), state_of(r)))
                .or_default() += 1;
        } else {
            existing.push(i);
        }
    }
    if existing.is_empty() {
        return Ok(moved);
    }
    let keys: Vec<(&str, &str)> = existing.iter().map(|&i| latest[i].0).collect();
    let old = tx
        .by_keys(
            "c.flight, c.client, c.seq, c.version, c.arm, c.status, c.step, c.at, \
             c.seen_day, c.seen_days",
            "client_state c",
            ["c.flight", "c.client"],
            &keys,
        )
        .await?;
    let mut old_of: BTreeMap<(String, String), (i64, State, i64, Seen)> = BTreeMap::new();
    for r in &old {
        old_of.insert(
            (r.text(0)?, r.text(1)?),
            (
                r.int(2)?,
                (r.int(3)?, r.opt_text(4)?, r.text(5)?, r.int(6)?),
                r.int(7)?,
                Seen::from_columns(r.int(8)?, r.int(9)?),
            ),
        );
    }
    // The rows are locked (PostgreSQL) or the writer holds the database (SQLite), so each
    // is written whole from what was read: the newer state, or the stored one kept.
    let mut writes = Vec::new();
    for i in existing {
        let ((flight, client), r) = latest[i];
        let Some((seq, state, at, seen)) = old_of.get(&(flight.to_string(), client.to_string()))
        else {
            return Err(Error::Internal(format!(
                "the progress of client {client} on `{flight}` was neither created nor found"
            )));
        };
        let merged = seen.merge(days_of(days, (flight, client))?);
        let newer = r.seq as i64 > *seq;
        if newer {
            *moved
                .states
                .entry((flight.to_string(), state.clone()))
                .or_default() -= 1;
            *moved
                .states
                .entry((flight.to_string(), state_of(r)))
                .or_default() += 1;
        }
        if newer || merged.seen != *seen {
            let (version, arm, status, step) = state;
            let (seq, version, arm, status, step, at) = if newer {
                let r = &rows[i];
                (r.2, r.3, r.4, r.5, r.6, r.7)
            } else {
                (*seq, *version, arm.as_deref(), status.as_str(), *step, *at)
            };
            let (day, days) = (merged.seen.day, merged.seen.days_column());
            writes.push((
                flight, client, seq, version, arm, status, step, at, day, days,
            ));
        }
        moved.seen[i] = merged;
    }
    if !writes.is_empty() {
        let update = Insert {
            into: INTO,
            cols: COLS,
            conflict: Conflict::Update {
                key: "flight, client",
                set: "seq = excluded.seq, version = excluded.version, arm = excluded.arm, \
                      status = excluded.status, step = excluded.step, at = excluded.at, \
                      seen_day = excluded.seen_day, seen_days = excluded.seen_days",
            },
            returning: "",
        };
        tx.insert(update, &writes).await?;
    }
    Ok(moved)
}

/// The days of a client's reports stored now, which every client in `latest` has.
fn days_of<'d, 'a>(
    days: &'d BTreeMap<(&'a str, &'a str), BTreeSet<i64>>,
    key: (&'a str, &'a str),
) -> Result<&'d BTreeSet<i64>> {
    days.get(&key).ok_or_else(|| {
        Error::Internal(format!(
            "client {} has a newest report on `{}` but no report stored",
            key.1, key.0
        ))
    })
}

/// Counts each client once on each day it reported on for the first time, into
/// `progress_day_clients`: the days its window says are new, and the days before its
/// window whose row in `progress_day_seen` is new; days that left a window become rows
/// there ([`super::seen`]).
async fn count_clients<W: Statements>(
    tx: &mut W,
    latest: &[((&str, &str), &Report)],
    seen: &[Merged],
) -> Result<()> {
    use Col::*;
    let mut clients: BTreeMap<(&str, i64), i64> = BTreeMap::new();
    // (flight, day, client) → counted if the row is new.
    let mut rows: BTreeMap<(&str, i64, &str), bool> = BTreeMap::new();
    for (&((flight, client), _), m) in latest.iter().zip(seen) {
        for &d in &m.new {
            *clients.entry((flight, d)).or_default() += 1;
        }
        for &d in &m.look_up {
            rows.insert((flight, d, client), true);
        }
        for &d in &m.spill {
            rows.insert((flight, d, client), false);
        }
    }
    if !rows.is_empty() {
        let keys: Vec<_> = rows.keys().copied().collect();
        const SEEN: Insert<'static> = Insert {
            into: "INSERT INTO progress_day_seen (flight, day, client)",
            cols: &[Text, Int, Text],
            conflict: Conflict::Skip {
                key: "flight, day, client",
                lock: None,
            },
            returning: "RETURNING flight, day, client",
        };
        let new = tx.insert_new(SEEN, &keys, &[0, 1, 2]).await?;
        for ((&(flight, day, _), &counts), new) in rows.iter().zip(new) {
            if counts && new {
                *clients.entry((flight, day)).or_default() += 1;
            }
        }
    }
    if !clients.is_empty() {
        let rows: Vec<_> = clients.iter().map(|(&(f, d), &n)| (f, d, n)).collect();
        const CLIENTS: Insert<'static> = Insert {
            into: "INSERT INTO progress_day_clients (flight, day, clients)",
            cols: &[Text, Int, Int],
            conflict: Conflict::Update {
                key: "flight, day",
                set: "clients = progress_day_clients.clients + excluded.clients",
            },
            returning: "",
        };
        tx.insert(CLIENTS, &rows).await?;
    }
    Ok(())
}

/// Counts the reports stored now into `progress_days`.
async fn add_days<W: Statements>(tx: &mut W, stored: &[(&str, &Report)]) -> Result<()> {
    use Col::*;
    let mut days: BTreeMap<(&str, i64, &str), (i64, i64)> = BTreeMap::new();
    for &(_, r) in stored {
        let day = r.at.0.div_euclid(DAY_MS);
        let d = days
            .entry((r.flight.as_str(), day, r.status.as_str()))
            .or_default();
        d.0 += 1;
        d.1 += i64::from(r.step == 0);
    }
    let rows: Vec<_> = days
        .iter()
        .map(|(&(f, d, s), &(n, starts))| (f, d, s, n, starts))
        .collect();
    const DAYS: Insert<'static> = Insert {
        into: "INSERT INTO progress_days (flight, day, status, reports, starts)",
        cols: &[Text, Int, Text, Int, Int],
        conflict: Conflict::Update {
            key: "flight, day, status",
            set: "reports = progress_days.reports + excluded.reports, \
                  starts = progress_days.starts + excluded.starts",
        },
        returning: "",
    };
    tx.insert(DAYS, &rows).await?;
    Ok(())
}

impl Store {
    /// Progress of a flight: clients by status, step, arm and version (by each client's
    /// latest report), the full breakdown, and a daily series of reports — from the
    /// rollups, read in one snapshot.
    pub async fn progress(&self, name: &str) -> Result<Progress> {
        let mut tx = self.read.begin().await?;
        if self.engine == Engine::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .execute(&mut *tx)
                .await?;
        }
        // Ordered as the engine orders a NULL arm (first on SQLite, last on PostgreSQL).
        let states = sqlx::query(
            "SELECT version, arm, armed, status, step, clients FROM progress_states \
             WHERE flight = $1 AND clients > 0 \
             ORDER BY version, CASE WHEN armed = 0 THEN NULL ELSE arm END, status, step",
        )
        .bind(name)
        .fetch_all(&mut *tx)
        .await?;
        let per_status = sqlx::query(
            "SELECT day, status, reports FROM progress_days WHERE flight = $1 ORDER BY day, status",
        )
        .bind(name)
        .fetch_all(&mut *tx)
        .await?;
        let per_day = sqlx::query(
            "SELECT day, clients FROM progress_day_clients WHERE flight = $1 ORDER BY day",
        )
        .bind(name)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut breakdown = Vec::with_capacity(states.len());
        for r in states {
            let armed = r.try_get::<i64, _>(2)? != 0;
            let arm: String = r.try_get(1)?;
            breakdown.push(ProgressRow {
                version: r.try_get::<i64, _>(0)? as u64,
                arm: armed.then_some(arm),
                status: r.try_get(3)?,
                step: r.try_get::<i64, _>(4)? as u64,
                clients: r.try_get::<i64, _>(5)? as u64,
            });
        }
        let mut daily = Vec::with_capacity(per_day.len());
        for r in per_day {
            daily.push((r.try_get(0)?, r.try_get::<i64, _>(1)? as u64));
        }
        let mut statuses = Vec::with_capacity(per_status.len());
        for r in per_status {
            statuses.push((r.try_get(0)?, r.try_get(1)?, r.try_get::<i64, _>(2)? as u64));
        }
        Ok(assemble(name, breakdown, daily, statuses))
    }
}

/// A [`Progress`] from its breakdown (ordered), the distinct clients per day and the
/// reports per day and status.
fn assemble(
    name: &str,
    breakdown: Vec<ProgressRow>,
    per_day: Vec<(i64, u64)>,
    per_status: Vec<(i64, String, u64)>,
) -> Progress {
    let mut p = Progress {
        studyname: name.to_string(),
        ..Progress::default()
    };
    for row in &breakdown {
        p.clients += row.clients;
        *p.by_status.entry(row.status.clone()).or_default() += row.clients;
        *p.by_step.entry(row.step).or_default() += row.clients;
        *p.by_version.entry(row.version).or_default() += row.clients;
        if let Some(arm) = &row.arm {
            *p.by_arm.entry(arm.clone()).or_default() += row.clients;
        }
    }
    p.breakdown = breakdown;
    let mut days: BTreeMap<i64, DailyPoint> = BTreeMap::new();
    for (day, clients) in per_day {
        days.insert(
            day,
            DailyPoint {
                day: label(day),
                reports: 0,
                clients,
                by_status: BTreeMap::new(),
            },
        );
    }
    for (day, status, n) in per_status {
        if let Some(d) = days.get_mut(&day) {
            d.reports += n;
            d.by_status.insert(status, n);
        }
        p.reports += n;
    }
    p.daily = days.into_values().collect();
    p
}

/// The aggregations progress was computed with before the rollups, over `client_state`
/// and every report: what tests compare the rollups with, and benchmarks time as "before".
#[cfg(feature = "testing")]
impl Store {
    /// [`Store::progress`], aggregated over `client_state` and `reports`.
    pub async fn progress_by_aggregation(&self, name: &str) -> Result<Progress> {
        let rows = sqlx::query(
            "SELECT version, arm, status, step, COUNT(*) FROM client_state WHERE flight = $1 \
             GROUP BY version, arm, status, step ORDER BY version, arm, status, step",
        )
        .bind(name)
        .fetch_all(&self.read)
        .await?;
        let mut breakdown = Vec::with_capacity(rows.len());
        for r in rows {
            breakdown.push(ProgressRow {
                version: r.try_get::<i64, _>(0)? as u64,
                arm: r.try_get(1)?,
                status: r.try_get(2)?,
                step: r.try_get::<i64, _>(3)? as u64,
                clients: r.try_get::<i64, _>(4)? as u64,
            });
        }
        let mut statuses = Vec::new();
        for r in sqlx::query(
            "SELECT day, status, COUNT(*) FROM reports WHERE flight = $1 GROUP BY day, status ORDER BY day, status",
        )
        .bind(name)
        .fetch_all(&self.read)
        .await?
        {
            statuses.push((r.try_get(0)?, r.try_get(1)?, r.try_get::<i64, _>(2)? as u64));
        }
        let mut daily = Vec::new();
        for r in sqlx::query(
            "SELECT day, COUNT(DISTINCT client) FROM reports WHERE flight = $1 GROUP BY day ORDER BY day",
        )
        .bind(name)
        .fetch_all(&self.read)
        .await?
        {
            daily.push((r.try_get(0)?, r.try_get::<i64, _>(1)? as u64));
        }
        Ok(assemble(name, breakdown, daily, statuses))
    }

    /// [`Store::enrolments_per_day`], aggregated over `reports`.
    pub async fn enrolments_by_aggregation(&self, name: &str) -> Result<Vec<(String, u64)>> {
        let rows = sqlx::query(
            "SELECT day, COUNT(*) FROM reports WHERE flight = $1 AND status = 'running' AND step = 0 \
             GROUP BY day ORDER BY day",
        )
        .bind(name)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| Ok((label(r.try_get(0)?), r.try_get::<i64, _>(1)? as u64)))
            .collect()
    }

    /// Clients per flight and status over `client_state` (what the flight list and
    /// [`Store::glances`] show), and per flight and arm (`""`: none; what results count).
    pub async fn client_counts_by_aggregation(
        &self,
    ) -> Result<(
        BTreeMap<(String, String), u64>,
        BTreeMap<(String, String), u64>,
    )> {
        let mut by_status = BTreeMap::new();
        for r in
            sqlx::query("SELECT flight, status, COUNT(*) FROM client_state GROUP BY flight, status")
                .fetch_all(&self.read)
                .await?
        {
            by_status.insert(
                (r.try_get(0)?, r.try_get(1)?),
                r.try_get::<i64, _>(2)? as u64,
            );
        }
        let mut by_arm = BTreeMap::new();
        for r in sqlx::query(
            "SELECT flight, COALESCE(arm, ''), COUNT(*) FROM client_state GROUP BY flight, COALESCE(arm, '')",
        )
        .fetch_all(&self.read)
        .await?
        {
            by_arm.insert((r.try_get(0)?, r.try_get(1)?), r.try_get::<i64, _>(2)? as u64);
        }
        Ok((by_status, by_arm))
    }
}
