//! Reading flights: the list with each flight's summary, one flight with its revisions and
//! audit log, the tower's audit log, and the dashboard's reads over every flight.

use super::{bad_state, AuditEntry, FlightDetail, FlightSummary, Pending, Revision};
use crate::error::Result;
use crate::lifecycle::{FlightState, RevisionState};
use crate::store::{parse_json, Store};
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::Row;
use testpilot_flight::Timestamp;

impl Store {
    /// Every flight, by studyname, with its state, versions, author, arms and client count.
    pub async fn list_flights(&self) -> Result<Vec<FlightSummary>> {
        let rows = sqlx::query(&format!("{SUMMARY_SQL} ORDER BY f.studyname"))
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(summary).collect()
    }

    /// One flight as listed, or `None`.
    pub async fn flight_summary(&self, name: &str) -> Result<Option<FlightSummary>> {
        let row = sqlx::query(&format!("{SUMMARY_SQL} WHERE f.studyname = $1"))
            .bind(name)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(summary).transpose()
    }

    /// One flight with all its revisions and its audit log, or `None`.
    pub async fn flight(&self, name: &str) -> Result<Option<FlightDetail>> {
        let Some(summary) = self.flight_summary(name).await? else {
            return Ok(None);
        };
        let revisions = self.revisions(name).await?;
        let audit = self.audit(Some(name), 10_000).await?;
        Ok(Some(FlightDetail {
            summary,
            revisions,
            audit,
        }))
    }

    /// Every revision of a flight, oldest first.
    pub async fn revisions(&self, name: &str) -> Result<Vec<Revision>> {
        let rows = sqlx::query(
            "SELECT version, state, created_by, created_at, spec, copilot FROM revisions WHERE studyname = $1 ORDER BY version",
        )
        .bind(name)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                let state: String = r.try_get(1)?;
                Ok(Revision {
                    version: r.try_get::<i64, _>(0)? as u64,
                    state: RevisionState::parse(&state).ok_or_else(|| bad_state(&state))?,
                    created_by: r.try_get(2)?,
                    created_at: Timestamp(r.try_get(3)?),
                    spec: parse_json(&r.try_get::<String, _>(4)?)?,
                    copilot: match r.try_get::<Option<String>, _>(5)? {
                        Some(text) => Some(parse_json(&text)?),
                        None => None,
                    },
                })
            })
            .collect()
    }

    /// The audit log, oldest first: of one flight, or (with `None`) of the whole tower,
    /// the last `limit` entries.
    pub async fn audit(&self, name: Option<&str>, limit: u32) -> Result<Vec<AuditEntry>> {
        let sql = match name {
            Some(_) => "SELECT id, at, actor, action, studyname, version, detail FROM audit WHERE studyname = $1 ORDER BY id DESC LIMIT $2",
            None => "SELECT id, at, actor, action, studyname, version, detail FROM audit ORDER BY id DESC LIMIT $1",
        };
        let q = sqlx::query(sql);
        let q = match name {
            Some(n) => q.bind(n).bind(i64::from(limit)),
            None => q.bind(i64::from(limit)),
        };
        let rows = q.fetch_all(&self.read).await?;
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.try_get(0)?,
                    at: Timestamp(r.try_get(1)?),
                    actor: r.try_get(2)?,
                    action: r.try_get(3)?,
                    studyname: r.try_get(4)?,
                    version: r.try_get::<Option<i64>, _>(5)?.map(|v| v as u64),
                    detail: parse_json(&r.try_get::<String, _>(6)?)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        out.reverse();
        Ok(out)
    }

    /// Every revision that was ever live (live, or retired by a newer one; a killed or
    /// ended flight keeps its live revision): flight, version and spec. Reports are taken
    /// only for these.
    pub async fn ever_live_revisions(&self) -> Result<Vec<(String, u64, Value)>> {
        let rows = sqlx::query(
            "SELECT r.studyname, r.version, r.spec FROM revisions r \
             WHERE r.state IN ('live', 'retired') ORDER BY r.studyname, r.version",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    r.try_get::<i64, _>(1)? as u64,
                    parse_json(&r.try_get::<String, _>(2)?)?,
                ))
            })
            .collect()
    }
}

const SUMMARY_SQL: &str = "SELECT f.studyname, f.state, f.latest_version, f.live_version, f.created_at, f.updated_at, \
     r.state, r.created_by, r.spec, (SELECT CAST(COALESCE(SUM(c.clients), 0) AS BIGINT) FROM progress_states c WHERE c.flight = f.studyname) \
     FROM flights f JOIN revisions r ON r.studyname = f.studyname AND r.version = f.latest_version";

fn summary(r: &AnyRow) -> Result<FlightSummary> {
    let state: String = r.try_get(1)?;
    let state = FlightState::parse(&state).ok_or_else(|| bad_state(&state))?;
    let latest = r.try_get::<i64, _>(2)? as u64;
    let live = r.try_get::<Option<i64>, _>(3)?.map(|v| v as u64);
    let rev_state: String = r.try_get(6)?;
    let rev_state = RevisionState::parse(&rev_state).ok_or_else(|| bad_state(&rev_state))?;
    let spec = parse_json(&r.try_get::<String, _>(8)?)?;
    let text = |k: &str| {
        spec.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let arms = spec
        .get("arms")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.get("name").and_then(Value::as_str).map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let pending = (live.is_some_and(|l| l != latest)
        && matches!(rev_state, RevisionState::Draft | RevisionState::Review))
    .then_some(Pending {
        version: latest,
        state: rev_state,
    });
    Ok(FlightSummary {
        studyname: r.try_get(0)?,
        state,
        latest_version: latest,
        live_version: live,
        pending,
        author: text("author"),
        description: text("description"),
        pushed_by: r.try_get(7)?,
        arms,
        clients: r.try_get::<i64, _>(9)? as u64,
        created_at: Timestamp(r.try_get(4)?),
        updated_at: Timestamp(r.try_get(5)?),
    })
}

/// What the dashboard's list shows of one flight beyond its [`FlightSummary`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Glance {
    /// Status → clients whose latest report has that status.
    pub by_status: std::collections::BTreeMap<String, u64>,
    /// When the live revision was approved.
    pub live_since: Option<Timestamp>,
}

// Reads over every flight in one query each (for the dashboard).
impl Store {
    /// Per flight: clients by status and when its live revision went live. Two grouped
    /// queries for all flights, so that a list of hundreds of flights stays one round trip.
    pub async fn glances(&self) -> Result<std::collections::BTreeMap<String, Glance>> {
        let mut out: std::collections::BTreeMap<String, Glance> = Default::default();
        let rows = sqlx::query(
            "SELECT flight, status, CAST(SUM(clients) AS BIGINT) FROM progress_states \
             GROUP BY flight, status HAVING SUM(clients) > 0",
        )
        .fetch_all(&self.read)
        .await?;
        for r in rows {
            let g = out.entry(r.try_get(0)?).or_default();
            g.by_status
                .insert(r.try_get(1)?, r.try_get::<i64, _>(2)? as u64);
        }
        let rows = sqlx::query(
            "SELECT a.studyname, MAX(a.at) FROM audit a JOIN flights f \
             ON f.studyname = a.studyname AND a.version = f.live_version \
             WHERE a.action = 'approve' GROUP BY a.studyname",
        )
        .fetch_all(&self.read)
        .await?;
        for r in rows {
            let g = out.entry(r.try_get(0)?).or_default();
            g.live_since = r.try_get::<Option<i64>, _>(1)?.map(Timestamp);
        }
        Ok(out)
    }

    /// Enrolments per day (`YYYY-MM-DD`, UTC): reports that started a flight on a client
    /// (status `running` at step 0), oldest first. Read from the `progress_days` rollup
    /// (see `store/progress.rs`).
    pub async fn enrolments_per_day(&self, name: &str) -> Result<Vec<(String, u64)>> {
        let rows = sqlx::query(
            "SELECT day, starts FROM progress_days WHERE flight = $1 AND status = 'running' AND starts > 0 \
             ORDER BY day",
        )
        .bind(name)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                let label = Timestamp(r.try_get::<i64, _>(0)? * 86_400_000).to_rfc3339();
                Ok((
                    label.get(..10).unwrap_or(&label).to_string(),
                    r.try_get::<i64, _>(1)? as u64,
                ))
            })
            .collect()
    }
}
