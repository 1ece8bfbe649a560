//! Recorded events (docs/api.md#events) and their rollups.
//!
//! `events` keeps every event once (`(client, seq)` is its key). In the transaction that
//! stores them, only the events stored now (never a resend, even one repeated within a batch
//! or a group) are counted into three rollups: `event_days` (flight, version, arm, topic,
//! day), `event_clients` (flight, arm, topic, client: each client's count) and `event_arms`
//! (flight, arm, topic: events, clients with an event, and the sum of squares of the
//! per-client counts). Results read only the rollups.
//!
//! Each statement takes its rows as one JSON text unpacked inside the database
//! (`json_each` on SQLite, `json_array_elements` on PostgreSQL): one bound parameter
//! however many rows, and rows sorted by key so that concurrent writers on PostgreSQL lock
//! them in one order and cannot deadlock.

use super::{Engine, Ingested, Store};
use crate::error::{Error, Result};
use serde_json::Value;
use sqlx::{Any, Row, Transaction};
use std::collections::{BTreeMap, HashMap, HashSet};
use testpilot_flight::event::{Event, EventBatch};
use testpilot_flight::Timestamp;

const DAY_MS: i64 = 86_400_000;

/// The arm column's value for an event without an arm (a flight without arms).
pub const NO_ARM_COLUMN: &str = "";

/// How long after a flight stopped being live its events are still taken, and whether it is live.
#[derive(Debug, Clone, PartialEq)]
pub struct EventWindow {
    /// `live` or the final state (`killed`, `ended`).
    pub live: bool,
    /// When it was first killed or ended (from the audit log), if it was.
    pub stopped_at: Option<Timestamp>,
    /// The spec of every revision that was ever live (live or retired), oldest first: what
    /// pilots may still be running and streaming from.
    pub specs: Vec<Value>,
}

/// One arm's numbers for one topic, as the rollups keep them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArmRollup {
    pub events: u64,
    pub clients_with_event: u64,
    /// The sum over clients of the square of each client's count (saturating at
    /// `i64::MAX`, the largest the database keeps).
    pub sum_sq: u64,
}

/// `n` as a bound value: at most `i64::MAX`.
fn bind_u64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// What a client going from `before` to `now` events adds to the sum of squares, without
/// overflow (`now² − before²` in 128 bits, saturating at `u64::MAX`).
fn sq_delta(before: u64, now: u64) -> u64 {
    let d = u128::from(now)
        .pow(2)
        .saturating_sub(u128::from(before).pow(2));
    u64::try_from(d).unwrap_or(u64::MAX)
}

/// Everything results are computed from, read in one snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rollups {
    /// (arm, topic) → numbers. Arm `""` is a flight without arms.
    pub arms: BTreeMap<(String, String), ArmRollup>,
    /// (topic, day since the epoch, arm) → events, over every version.
    pub days: BTreeMap<(String, i64, String), u64>,
    /// Arm → clients enrolled in it (by each client's latest report).
    pub enrolled: BTreeMap<String, u64>,
}

/// One stored event as the export writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub client: String,
    pub seq: u64,
    pub version: u64,
    pub arm: Option<String>,
    pub topic: String,
    pub subject: Option<String>,
    pub value: Option<f64>,
    pub at: Timestamp,
    pub received: Timestamp,
}

/// Where the export's next page starts: after this (at, client, seq).
pub type ExportCursor = (i64, String, i64);

/// A column of rows sent as JSON: its SQL type on PostgreSQL.
#[derive(Clone, Copy)]
pub(super) enum Col {
    Text,
    Int,
    Float,
}

/// The SELECT list that unpacks rows sent as one JSON array of arrays, and its FROM clause.
pub(super) fn unpack(engine: Engine, cols: &[Col]) -> String {
    let list: Vec<String> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| match (engine, c) {
            (Engine::Sqlite, _) => format!("value ->> {i}"),
            (Engine::Postgres, Col::Text) => format!("e ->> {i}"),
            (Engine::Postgres, Col::Int) => format!("(e ->> {i})::bigint"),
            (Engine::Postgres, Col::Float) => format!("(e ->> {i})::double precision"),
        })
        .collect();
    match engine {
        // `WHERE true`: SQLite's parser needs it before `ON CONFLICT` after a SELECT.
        Engine::Sqlite => format!("SELECT {} FROM json_each($1) WHERE true", list.join(", ")),
        Engine::Postgres => format!(
            "SELECT {} FROM json_array_elements($1::json) AS e",
            list.join(", ")
        ),
    }
}

pub(super) fn encode<T: serde::Serialize>(rows: &T) -> Result<String> {
    serde_json::to_string(rows).map_err(|e| Error::Internal(format!("encoding rows: {e}")))
}

fn day_of(at: Timestamp) -> i64 {
    at.0.div_euclid(DAY_MS)
}

/// `YYYY-MM-DD` of a day since the epoch.
pub fn day_label(day: i64) -> String {
    let t = Timestamp(day.saturating_mul(DAY_MS)).to_rfc3339();
    t.get(..10).unwrap_or(&t).to_string()
}

impl Store {
    /// Stores several batches in one transaction (group commit) with their rollups, and
    /// returns per batch how many events were new. When this returns `Ok`, every event and
    /// every count it made is durable.
    pub async fn insert_events(
        &self,
        batches: &[&EventBatch],
        now: Timestamp,
    ) -> Result<Vec<Ingested>> {
        // The first of each (client, seq) in the whole group; later ones are duplicates.
        let mut first: BTreeMap<(&str, u64), (usize, &Event)> = BTreeMap::new();
        for (i, b) in batches.iter().enumerate() {
            for e in &b.events {
                first.entry((b.client.as_str(), e.seq)).or_insert((i, e));
            }
        }
        let _turn = self.write_turn().await?;
        let mut tx = self.write.begin().await?;
        let stored = self.insert_raw(&mut tx, &first, now).await?;
        let mut out: Vec<Ingested> = batches
            .iter()
            .map(|b| Ingested {
                accepted: 0,
                duplicates: b.events.len() as u64,
            })
            .collect();
        let mut days: BTreeMap<(&str, u64, &str, &str, i64), u64> = BTreeMap::new();
        let mut per_client: BTreeMap<(&str, &str, &str, &str), u64> = BTreeMap::new();
        for ((client, seq), (i, e)) in &first {
            if !stored.contains(&(client.to_string(), *seq)) {
                continue;
            }
            out[*i].accepted += 1;
            out[*i].duplicates -= 1;
            let arm = e.arm.as_deref().unwrap_or(NO_ARM_COLUMN);
            *days
                .entry((&e.flight, e.version, arm, &e.topic, day_of(e.at)))
                .or_default() += 1;
            *per_client
                .entry((&e.flight, arm, &e.topic, client))
                .or_default() += 1;
        }
        if !days.is_empty() {
            self.add_rollups(&mut tx, &days, &per_client).await?;
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Inserts the events; returns the (client, seq) of those stored now.
    async fn insert_raw(
        &self,
        tx: &mut Transaction<'static, Any>,
        events: &BTreeMap<(&str, u64), (usize, &Event)>,
        now: Timestamp,
    ) -> Result<HashSet<(String, u64)>> {
        use Col::*;
        let sql = format!(
            "INSERT INTO events (client, seq, flight, version, arm, topic, subject, value, at, day, received_at) \
             {} ON CONFLICT (client, seq) DO NOTHING RETURNING client, seq",
            unpack(
                self.engine,
                &[Text, Int, Text, Int, Text, Text, Text, Float, Int, Int, Int]
            )
        );
        let mut stored = HashSet::with_capacity(events.len());
        let all: Vec<_> = events.iter().collect();
        for chunk in all.chunks(20_000) {
            let rows: Vec<_> = chunk
                .iter()
                .map(|((client, seq), (_, e))| {
                    (
                        client,
                        *seq as i64,
                        &e.flight,
                        e.version as i64,
                        e.arm.as_deref().unwrap_or(NO_ARM_COLUMN),
                        &e.topic,
                        e.subject.as_deref(),
                        e.value,
                        e.at.0,
                        day_of(e.at),
                        now.0,
                    )
                })
                .collect();
            for r in sqlx::query(&sql)
                .bind(encode(&rows)?)
                .fetch_all(&mut **tx)
                .await?
            {
                stored.insert((r.try_get(0)?, r.try_get::<i64, _>(1)? as u64));
            }
        }
        Ok(stored)
    }

    /// Adds newly stored events to the rollups.
    async fn add_rollups(
        &self,
        tx: &mut Transaction<'static, Any>,
        days: &BTreeMap<(&str, u64, &str, &str, i64), u64>,
        per_client: &BTreeMap<(&str, &str, &str, &str), u64>,
    ) -> Result<()> {
        use Col::*;
        let rows: Vec<_> = days
            .iter()
            .map(|((f, v, a, t, d), n)| (f, *v as i64, a, t, d, *n as i64))
            .collect();
        sqlx::query(&format!(
            "INSERT INTO event_days (flight, version, arm, topic, day, events) {} \
             ON CONFLICT (flight, version, arm, topic, day) DO UPDATE SET events = event_days.events + excluded.events",
            unpack(self.engine, &[Text, Int, Text, Text, Int, Int])
        ))
        .bind(encode(&rows)?)
        .execute(&mut **tx)
        .await?;

        // Each client's new count comes back; with what it added, that gives the old one.
        let rows: Vec<_> = per_client
            .iter()
            .map(|((f, a, t, c), k)| (f, a, t, c, *k as i64))
            .collect();
        let back = sqlx::query(&format!(
            "INSERT INTO event_clients (flight, arm, topic, client, n) {} \
             ON CONFLICT (flight, arm, topic, client) DO UPDATE SET n = event_clients.n + excluded.n \
             RETURNING flight, arm, topic, client, n",
            unpack(self.engine, &[Text, Text, Text, Text, Int])
        ))
        .bind(encode(&rows)?)
        .fetch_all(&mut **tx)
        .await?;
        type Owned = (String, String, String, String);
        let sent: HashMap<Owned, ((&str, &str, &str), u64)> = per_client
            .iter()
            .map(|((f, a, t, c), k)| {
                (
                    (f.to_string(), a.to_string(), t.to_string(), c.to_string()),
                    ((*f, *a, *t), *k),
                )
            })
            .collect();
        let mut arms: BTreeMap<(&str, &str, &str), ArmRollup> = BTreeMap::new();
        let mut seen = 0usize;
        for r in &back {
            let key = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
            let now_n = r.try_get::<i64, _>(4)? as u64;
            let Some(&((f, a, t), k)) = sent.get(&key) else {
                return Err(Error::Internal(
                    "a per-client count came back for a row not sent".into(),
                ));
            };
            seen += 1;
            let before = now_n.saturating_sub(k);
            let agg = arms.entry((f, a, t)).or_default();
            agg.events = agg.events.saturating_add(k);
            agg.clients_with_event += u64::from(before == 0);
            agg.sum_sq = agg.sum_sq.saturating_add(sq_delta(before, now_n));
        }
        if seen != per_client.len() {
            return Err(Error::Internal(format!(
                "{} per-client counts sent, {seen} came back",
                per_client.len()
            )));
        }
        let rows: Vec<_> = arms
            .iter()
            .map(|((f, a, t), x)| {
                (
                    f,
                    a,
                    t,
                    bind_u64(x.events),
                    bind_u64(x.clients_with_event),
                    bind_u64(x.sum_sq),
                )
            })
            .collect();
        sqlx::query(&format!(
            "INSERT INTO event_arms (flight, arm, topic, events, clients_with_event, sum_sq) {} \
             ON CONFLICT (flight, arm, topic) DO UPDATE SET events = event_arms.events + excluded.events, \
             clients_with_event = event_arms.clients_with_event + excluded.clients_with_event, \
             sum_sq = CASE WHEN event_arms.sum_sq > {max} - excluded.sum_sq THEN {max} \
             ELSE event_arms.sum_sq + excluded.sum_sq END",
            unpack(self.engine, &[Text, Text, Text, Int, Int, Int]),
            max = i64::MAX,
        ))
        .bind(encode(&rows)?)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Every flight that was ever live, with what decides whether it still takes events.
    pub async fn event_windows(&self) -> Result<HashMap<String, EventWindow>> {
        let rows = sqlx::query(
            "SELECT f.studyname, f.state, r.spec, \
             (SELECT MIN(a.at) FROM audit a WHERE a.studyname = f.studyname AND a.action IN ('kill', 'end')) \
             FROM flights f JOIN revisions r ON r.studyname = f.studyname AND r.state IN ('live', 'retired') \
             WHERE f.live_version IS NOT NULL ORDER BY f.studyname, r.version",
        )
        .fetch_all(&self.read)
        .await?;
        let mut out: HashMap<String, EventWindow> = HashMap::new();
        for r in &rows {
            let state: String = r.try_get(1)?;
            let spec = super::parse_json(&r.try_get::<String, _>(2)?)?;
            let w = out.entry(r.try_get(0)?).or_insert_with(|| EventWindow {
                live: state == "live",
                stopped_at: None,
                specs: Vec::new(),
            });
            w.stopped_at = r.try_get::<Option<i64>, _>(3)?.map(Timestamp);
            w.specs.push(spec);
        }
        Ok(out)
    }

    /// How many events `client` has stored per flight, for the flights named (from the
    /// per-client rollup, by the index `event_clients_by_client`).
    pub async fn client_event_counts(
        &self,
        client: &str,
        flights: &[&str],
    ) -> Result<HashMap<String, u64>> {
        let mut out = HashMap::new();
        for f in flights {
            let row = sqlx::query(
                "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM event_clients WHERE client = $1 AND flight = $2",
            )
            .bind(client)
            .bind(*f)
            .fetch_one(&self.read)
            .await?;
            out.insert(f.to_string(), row.try_get::<i64, _>(0)?.max(0) as u64);
        }
        Ok(out)
    }

    /// A flight's newest and live revision numbers, or `None` when there is no such flight
    /// (one row by key: results call this on every read).
    pub async fn flight_versions(&self, flight: &str) -> Result<Option<(u64, Option<u64>)>> {
        let row =
            sqlx::query("SELECT latest_version, live_version FROM flights WHERE studyname = $1")
                .bind(flight)
                .fetch_optional(&self.read)
                .await?;
        row.map(|r| {
            Ok((
                r.try_get::<i64, _>(0)? as u64,
                r.try_get::<Option<i64>, _>(1)?.map(|v| v as u64),
            ))
        })
        .transpose()
    }

    /// The spec of one revision, or `None`.
    pub async fn revision_spec(&self, flight: &str, version: u64) -> Result<Option<Value>> {
        let row = sqlx::query("SELECT spec FROM revisions WHERE studyname = $1 AND version = $2")
            .bind(flight)
            .bind(version as i64)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| super::parse_json(&r.try_get::<String, _>(0)?))
            .transpose()
    }

    /// The rollups of one flight, read in one snapshot.
    pub async fn rollups(&self, flight: &str) -> Result<Rollups> {
        let mut tx = self.read.begin().await?;
        if self.engine == Engine::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .execute(&mut *tx)
                .await?;
        }
        let mut out = Rollups::default();
        for r in sqlx::query(
            "SELECT arm, topic, events, clients_with_event, sum_sq FROM event_arms WHERE flight = $1",
        )
        .bind(flight)
        .fetch_all(&mut *tx)
        .await?
        {
            out.arms.insert(
                (r.try_get(0)?, r.try_get(1)?),
                ArmRollup {
                    events: r.try_get::<i64, _>(2)? as u64,
                    clients_with_event: r.try_get::<i64, _>(3)? as u64,
                    sum_sq: r.try_get::<i64, _>(4)? as u64,
                },
            );
        }
        for r in sqlx::query(
            "SELECT topic, day, arm, CAST(SUM(events) AS BIGINT) FROM event_days WHERE flight = $1 GROUP BY topic, day, arm",
        )
        .bind(flight)
        .fetch_all(&mut *tx)
        .await?
        {
            out.days.insert(
                (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?),
                r.try_get::<i64, _>(3)? as u64,
            );
        }
        for r in sqlx::query(
            "SELECT arm, CAST(SUM(clients) AS BIGINT) FROM progress_states WHERE flight = $1 \
             GROUP BY arm HAVING SUM(clients) > 0",
        )
        .bind(flight)
        .fetch_all(&mut *tx)
        .await?
        {
            out.enrolled
                .insert(r.try_get(0)?, r.try_get::<i64, _>(1)? as u64);
        }
        tx.commit().await?;
        Ok(out)
    }

    /// One page of a flight's events, oldest first, after `after` (keyset pagination on
    /// `(at, client, seq)`, which the index `events_by_flight` holds in that order).
    pub async fn events_page(
        &self,
        flight: &str,
        after: Option<&ExportCursor>,
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        let q = match after {
            None => sqlx::query(
                "SELECT client, seq, version, arm, topic, subject, value, at, received_at FROM events \
                 WHERE flight = $1 ORDER BY at, client, seq LIMIT $2",
            )
            .bind(flight)
            .bind(i64::from(limit)),
            Some((at, client, seq)) => sqlx::query(
                "SELECT client, seq, version, arm, topic, subject, value, at, received_at FROM events \
                 WHERE flight = $1 AND (at, client, seq) > ($2, $3, $4) ORDER BY at, client, seq LIMIT $5",
            )
            .bind(flight)
            .bind(*at)
            .bind(client.as_str())
            .bind(*seq)
            .bind(i64::from(limit)),
        };
        q.fetch_all(&self.read)
            .await?
            .iter()
            .map(|r| {
                let arm: String = r.try_get(3)?;
                Ok(StoredEvent {
                    client: r.try_get(0)?,
                    seq: r.try_get::<i64, _>(1)? as u64,
                    version: r.try_get::<i64, _>(2)? as u64,
                    arm: (arm != NO_ARM_COLUMN).then_some(arm),
                    topic: r.try_get(4)?,
                    subject: r.try_get(5)?,
                    value: r.try_get(6)?,
                    at: Timestamp(r.try_get(7)?),
                    received: Timestamp(r.try_get(8)?),
                })
            })
            .collect()
    }

    /// Events stored in all, or of one flight (for tests and benchmarks; scans).
    pub async fn event_count(&self, flight: Option<&str>) -> Result<u64> {
        let row = match flight {
            Some(f) => {
                sqlx::query("SELECT COUNT(*) FROM events WHERE flight = $1")
                    .bind(f)
                    .fetch_one(&self.read)
                    .await?
            }
            None => {
                sqlx::query("SELECT COUNT(*) FROM events")
                    .fetch_one(&self.read)
                    .await?
            }
        };
        Ok(row.try_get::<i64, _>(0)? as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_of_squares_saturate_instead_of_wrapping() {
        assert_eq!(sq_delta(2, 3), 5);
        assert_eq!(sq_delta(0, 1 << 32), u64::MAX, "2^64 does not fit");
        assert_eq!(sq_delta(u64::MAX - 1, u64::MAX), u64::MAX);
        assert_eq!(bind_u64(u64::MAX), i64::MAX);
        assert_eq!(bind_u64(7), 7);
    }
}
