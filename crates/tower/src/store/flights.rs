//! Flights, their revisions and the audit log.

use super::{parse_json, rfc3339, Engine, Store, NOTIFY_CHANNEL};
use crate::diff::{diff, Change};
use crate::error::{Error, Result};
use crate::lifecycle::{decide, permit, two_person, Action, Actor, FlightState, RevisionState};
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::{Any, Row, Transaction};
use testpilot_flight::{Flight, Timestamp};

mod read;

/// One flight as listed: where it is, what is pending, who wrote it, its arms and how many
/// clients have reported on it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FlightSummary {
    pub studyname: String,
    pub state: FlightState,
    /// The newest revision's number.
    pub latest_version: u64,
    /// The revision the index serves (for live and killed flights; kept after `end`).
    pub live_version: Option<u64>,
    /// A newer revision than the live one that is still a draft or under review.
    pub pending: Option<Pending>,
    /// The `author` field of the newest revision's spec.
    pub author: String,
    pub description: String,
    /// Who pushed the newest revision (a token's name).
    pub pushed_by: String,
    /// Arm names of the newest revision, in order.
    pub arms: Vec<String>,
    /// Distinct clients that have reported on the flight.
    pub clients: u64,
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

/// A revision waiting to go live.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Pending {
    pub version: u64,
    pub state: RevisionState,
}

/// One immutable revision of a flight.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Revision {
    pub version: u64,
    pub state: RevisionState,
    /// Who pushed it (a token's name).
    pub created_by: String,
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// The flight spec, with `version` set to this revision's number.
    #[schema(value_type = Object)]
    pub spec: Value,
    /// The copilot document `spec` was expanded from, as it was pushed (docs/copilot.md);
    /// absent for a revision pushed as a flight.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub copilot: Option<Value>,
}

/// One line of the audit log: who did what, when, and what changed.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// A token's name, or `cli` for commands run on the tower's machine.
    pub actor: String,
    /// `push`, `review`, `approve`, `kill`, `end`, `token.create`, `key.create`,
    /// `key.rotate`, `key.complete`.
    pub action: String,
    pub studyname: Option<String>,
    pub version: Option<u64>,
    /// What changed: for a push the diff against the previous revision; for approve, kill
    /// and end the new index serial; a `reason` when one was given.
    #[schema(value_type = Object)]
    pub detail: Value,
}

/// One flight with every revision (oldest first) and its audit log (oldest first).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FlightDetail {
    #[serde(flatten)]
    pub summary: FlightSummary,
    pub revisions: Vec<Revision>,
    pub audit: Vec<AuditEntry>,
}

/// What a lifecycle action did.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub studyname: String,
    /// The revision acted on.
    pub version: u64,
    /// The flight's state afterwards.
    pub state: FlightState,
    /// The revision's state afterwards.
    pub revision_state: RevisionState,
    /// The new index serial, when the index changed.
    pub serial: Option<u64>,
    /// A push identical to the newest revision makes no new revision.
    pub unchanged: bool,
    /// For a push: what changed since the previous revision.
    pub changes: Vec<Change>,
    /// Something the caller should know (e.g. a self-approval allowed by single-user mode).
    pub warning: Option<String>,
}

struct FlightRow {
    state: FlightState,
    latest: u64,
    live: Option<u64>,
    latest_state: RevisionState,
    latest_spec: String,
    latest_copilot: Option<String>,
}

fn bad_state(s: &str) -> Error {
    Error::Internal(format!("unknown stored state `{s}`"))
}

fn without_version(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("version");
    }
    v
}

impl Store {
    async fn flight_row(
        tx: &mut Transaction<'static, Any>,
        name: &str,
    ) -> Result<Option<FlightRow>> {
        let row = sqlx::query(
            "SELECT f.state, f.latest_version, f.live_version, r.state, r.spec, r.copilot FROM flights f \
             JOIN revisions r ON r.studyname = f.studyname AND r.version = f.latest_version WHERE f.studyname = $1",
        )
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let state: String = row.try_get(0)?;
        let latest_state: String = row.try_get(3)?;
        Ok(Some(FlightRow {
            state: FlightState::parse(&state).ok_or_else(|| bad_state(&state))?,
            latest: row.try_get::<i64, _>(1)? as u64,
            live: row.try_get::<Option<i64>, _>(2)?.map(|v| v as u64),
            latest_state: RevisionState::parse(&latest_state)
                .ok_or_else(|| bad_state(&latest_state))?,
            latest_spec: row.try_get(4)?,
            latest_copilot: row.try_get(5)?,
        }))
    }

    pub(super) async fn audit_in(
        tx: &mut Transaction<'static, Any>,
        now: Timestamp,
        actor: &str,
        action: &str,
        name: Option<&str>,
        version: Option<u64>,
        detail: &Value,
    ) -> Result<()> {
        sqlx::query("INSERT INTO audit (at, actor, action, studyname, version, detail) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(now.0)
            .bind(actor)
            .bind(action)
            .bind(name)
            .bind(version.map(|v| v as i64))
            .bind(detail.to_string())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Bumps the index serial (and on PostgreSQL queues a NOTIFY sent at commit).
    pub(super) async fn bump_serial(
        &self,
        tx: &mut Transaction<'static, Any>,
        now: Timestamp,
    ) -> Result<u64> {
        let serial: i64 = sqlx::query(
            "UPDATE index_state SET serial = serial + 1, \
             changed_at = CASE WHEN changed_at > $1 THEN changed_at ELSE $1 END WHERE id = 1 RETURNING serial",
        )
        .bind(now.0)
        .fetch_one(&mut **tx)
        .await?
        .try_get(0)?;
        if self.engine == Engine::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(NOTIFY_CHANNEL)
                .bind(serial.to_string())
                .execute(&mut **tx)
                .await?;
        }
        Ok(serial as u64)
    }

    /// Stores `flight` as a new draft revision (creating the flight on its first push). The
    /// tower assigns `version`; a push identical to the newest revision changes nothing and
    /// says `unchanged`. Refused for killed and ended flights. A draft or review revision that
    /// a push replaces becomes `superseded`.
    pub async fn push(&self, actor: &Actor, flight: &Flight, now: Timestamp) -> Result<Outcome> {
        self.push_revision(actor, flight, None, now).await
    }

    /// [`Store::push`], keeping beside the flight the copilot document it was expanded from
    /// (`None` for a flight pushed as one). A push is unchanged only when both are the same.
    pub async fn push_revision(
        &self,
        actor: &Actor,
        flight: &Flight,
        copilot: Option<&Value>,
        now: Timestamp,
    ) -> Result<Outcome> {
        permit(actor, Action::Push)?;
        let name = flight.studyname.as_str();
        let body = without_version(flight.to_json());
        let _turn = self.write_turn().await?;
        let mut tx = self.write.begin().await?;
        let current = Self::flight_row(&mut tx, name).await?;
        let (version, state, changes, previous) = match &current {
            None => {
                let inserted = sqlx::query(
                    "INSERT INTO flights (studyname, state, latest_version, live_version, created_at, updated_at) \
                     VALUES ($1, 'draft', 1, NULL, $2, $2) ON CONFLICT (studyname) DO NOTHING",
                )
                .bind(name)
                .bind(now.0)
                .execute(&mut *tx)
                .await?;
                if inserted.rows_affected() != 1 {
                    return Err(Error::Conflict(
                        "the flight was created concurrently; push again".into(),
                    ));
                }
                (1, FlightState::Draft, Vec::new(), None)
            }
            Some(cur) => {
                let state = decide(actor, Action::Push, cur.state, cur.latest_state)?;
                let old = without_version(parse_json(&cur.latest_spec)?);
                let old_copilot = match &cur.latest_copilot {
                    Some(text) => Some(parse_json(text)?),
                    None => None,
                };
                if old == body && old_copilot.as_ref() == copilot {
                    return Ok(Outcome {
                        studyname: name.into(),
                        version: cur.latest,
                        state: cur.state,
                        revision_state: cur.latest_state,
                        serial: None,
                        unchanged: true,
                        changes: Vec::new(),
                        warning: None,
                    });
                }
                let version = cur.latest + 1;
                let moved = sqlx::query(
                    "UPDATE flights SET latest_version = $1, state = $2, updated_at = $3 \
                     WHERE studyname = $4 AND latest_version = $5",
                )
                .bind(version as i64)
                .bind(state.as_str())
                .bind(now.0)
                .bind(name)
                .bind(cur.latest as i64)
                .execute(&mut *tx)
                .await?;
                if moved.rows_affected() != 1 {
                    return Err(Error::Conflict(
                        "the flight changed concurrently; push again".into(),
                    ));
                }
                if matches!(
                    cur.latest_state,
                    RevisionState::Draft | RevisionState::Review
                ) {
                    sqlx::query("UPDATE revisions SET state = 'superseded' WHERE studyname = $1 AND version = $2")
                        .bind(name)
                        .bind(cur.latest as i64)
                        .execute(&mut *tx)
                        .await?;
                }
                (version, state, diff(&old, &body), Some(cur.latest))
            }
        };
        let mut spec = body;
        if let Some(o) = spec.as_object_mut() {
            o.insert("version".into(), json!(version));
        }
        sqlx::query(
            "INSERT INTO revisions (studyname, version, spec, state, created_by, created_at, copilot) VALUES ($1, $2, $3, 'draft', $4, $5, $6)",
        )
        .bind(name)
        .bind(version as i64)
        .bind(spec.to_string())
        .bind(&actor.name)
        .bind(now.0)
        .bind(copilot.map(Value::to_string))
        .execute(&mut *tx)
        .await?;
        let mut detail = match previous {
            None => json!({"created": true}),
            Some(p) => json!({"previous": p, "changes": changes}),
        };
        if copilot.is_some() {
            detail["copilot"] = json!(true);
        }
        Self::audit_in(
            &mut tx,
            now,
            &actor.name,
            "push",
            Some(name),
            Some(version),
            &detail,
        )
        .await?;
        tx.commit().await?;
        tracing::info!(actor = %actor.name, flight = name, version, "pushed a revision");
        Ok(Outcome {
            studyname: name.into(),
            version,
            state,
            revision_state: RevisionState::Draft,
            serial: None,
            unchanged: false,
            changes,
            warning: None,
        })
    }

    fn check_version(cur: &FlightRow, version: Option<u64>) -> Result<()> {
        match version {
            Some(v) if v != cur.latest => Err(Error::Conflict(format!(
                "revision {v} is not the newest revision (that is {}); act on the newest one",
                cur.latest
            ))),
            _ => Ok(()),
        }
    }

    async fn load(&self, tx: &mut Transaction<'static, Any>, name: &str) -> Result<FlightRow> {
        Self::flight_row(tx, name)
            .await?
            .ok_or_else(|| Error::NotFound(format!("there is no flight named `{name}`")))
    }

    /// Sends the newest revision (a draft) for review. `version`, when given, must be the
    /// newest revision's, so that one reviews what one has seen.
    pub async fn review(
        &self,
        actor: &Actor,
        name: &str,
        version: Option<u64>,
        now: Timestamp,
    ) -> Result<Outcome> {
        let _turn = self.write_turn().await?;
        let mut tx = self.write.begin().await?;
        let cur = self.load(&mut tx, name).await?;
        Self::check_version(&cur, version)?;
        let state = decide(actor, Action::Review, cur.state, cur.latest_state)?;
        self.set_revision(
            &mut tx,
            name,
            cur.latest,
            RevisionState::Draft,
            RevisionState::Review,
        )
        .await?;
        self.set_flight(&mut tx, name, &cur, state, cur.live, now)
            .await?;
        Self::audit_in(
            &mut tx,
            now,
            &actor.name,
            "review",
            Some(name),
            Some(cur.latest),
            &json!({}),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(actor = %actor.name, flight = name, version = cur.latest, "sent for review");
        Ok(self.outcome(name, cur.latest, state, RevisionState::Review, None, None))
    }

    /// Approves the revision under review, which goes live (the previously live revision
    /// retires) and into the index. The approver must not have pushed any revision since the
    /// flight was last live ([`two_person`]) unless `single_user` is set, in which case the
    /// audit log and the answer say so.
    pub async fn approve(
        &self,
        actor: &Actor,
        name: &str,
        version: Option<u64>,
        single_user: bool,
        now: Timestamp,
    ) -> Result<Outcome> {
        let _turn = self.write_turn().await?;
        let mut tx = self.write.begin().await?;
        let cur = self.load(&mut tx, name).await?;
        Self::check_version(&cur, version)?;
        let state = decide(actor, Action::Approve, cur.state, cur.latest_state)?;
        let pushed = sqlx::query("SELECT version, created_by FROM revisions WHERE studyname = $1")
            .bind(name)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| Ok((r.try_get::<i64, _>(0)? as u64, r.try_get::<String, _>(1)?)))
            .collect::<Result<Vec<_>>>()?;
        let own = two_person(
            &actor.name,
            pushed.iter().map(|(v, by)| (*v, by.as_str())),
            cur.live,
            single_user,
        )?;
        if let Some(live) = cur.live {
            self.set_revision(
                &mut tx,
                name,
                live,
                RevisionState::Live,
                RevisionState::Retired,
            )
            .await?;
        }
        self.set_revision(
            &mut tx,
            name,
            cur.latest,
            RevisionState::Review,
            RevisionState::Live,
        )
        .await?;
        self.set_flight(&mut tx, name, &cur, state, Some(cur.latest), now)
            .await?;
        let serial = self.bump_serial(&mut tx, now).await?;
        let warning = own.then(|| {
            "single-user mode: this revision was approved by its own author, without a second person".to_string()
        });
        let detail = match &warning {
            Some(w) => json!({"serial": serial, "selfApproved": true, "note": w}),
            None => json!({"serial": serial}),
        };
        Self::audit_in(
            &mut tx,
            now,
            &actor.name,
            "approve",
            Some(name),
            Some(cur.latest),
            &detail,
        )
        .await?;
        tx.commit().await?;
        tracing::info!(actor = %actor.name, flight = name, version = cur.latest, serial, "approved; live");
        Ok(self.outcome(
            name,
            cur.latest,
            state,
            RevisionState::Live,
            Some(serial),
            warning,
        ))
    }

    /// Kills a live flight: it stays in the index with `kill: true`, so that every pilot
    /// running it ends it and undoes its effects. A pending revision is superseded.
    pub async fn kill(
        &self,
        actor: &Actor,
        name: &str,
        reason: Option<&str>,
        now: Timestamp,
    ) -> Result<Outcome> {
        let _turn = self.write_turn().await?;
        let mut tx = self.write.begin().await?;
        let cur = self.load(&mut tx, name).await?;
        let state = decide(actor, Action::Kill, cur.state, cur.latest_state)?;
        self.set_flight(&mut tx, name, &cur, state, cur.live, now)
            .await?;
        // A killed flight is final: a pending draft or review revision will never go live.
        sqlx::query(
            "UPDATE revisions SET state = 'superseded' WHERE studyname = $1 AND state IN ('draft', 'review')",
        )
        .bind(name)
        .execute(&mut *tx)
        .await?;
        let serial = self.bump_serial(&mut tx, now).await?;
        let version = cur.live.unwrap_or(cur.latest);
        Self::audit_in(
            &mut tx,
            now,
            &actor.name,
            "kill",
            Some(name),
            Some(version),
            &json!({"serial": serial, "reason": reason}),
        )
        .await?;
        tx.commit().await?;
        tracing::warn!(actor = %actor.name, flight = name, version, serial, "killed");
        Ok(self.outcome(
            name,
            version,
            state,
            RevisionState::Live,
            Some(serial),
            None,
        ))
    }

    /// Ends a flight in any state but `ended`: it leaves the index (pilots running it end it
    /// as `withdrawn`), and a pending draft or review revision is superseded.
    pub async fn end(
        &self,
        actor: &Actor,
        name: &str,
        reason: Option<&str>,
        now: Timestamp,
    ) -> Result<Outcome> {
        let _turn = self.write_turn().await?;
        let mut tx = self.write.begin().await?;
        let cur = self.load(&mut tx, name).await?;
        let state = decide(actor, Action::End, cur.state, cur.latest_state)?;
        self.set_flight(&mut tx, name, &cur, state, cur.live, now)
            .await?;
        sqlx::query("UPDATE revisions SET state = 'superseded' WHERE studyname = $1 AND state IN ('draft', 'review')")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let serial = if cur.state.in_index() {
            Some(self.bump_serial(&mut tx, now).await?)
        } else {
            None
        };
        let version = cur.live.unwrap_or(cur.latest);
        Self::audit_in(
            &mut tx,
            now,
            &actor.name,
            "end",
            Some(name),
            Some(version),
            &json!({"serial": serial, "reason": reason}),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(actor = %actor.name, flight = name, version, "ended");
        let rev_state = if cur.live.is_some() {
            RevisionState::Live
        } else {
            RevisionState::Superseded
        };
        Ok(self.outcome(name, version, state, rev_state, serial, None))
    }

    fn outcome(
        &self,
        name: &str,
        version: u64,
        state: FlightState,
        revision_state: RevisionState,
        serial: Option<u64>,
        warning: Option<String>,
    ) -> Outcome {
        Outcome {
            studyname: name.into(),
            version,
            state,
            revision_state,
            serial,
            unchanged: false,
            changes: Vec::new(),
            warning,
        }
    }

    async fn set_revision(
        &self,
        tx: &mut Transaction<'static, Any>,
        name: &str,
        version: u64,
        from: RevisionState,
        to: RevisionState,
    ) -> Result<()> {
        let done = sqlx::query(
            "UPDATE revisions SET state = $1 WHERE studyname = $2 AND version = $3 AND state = $4",
        )
        .bind(to.as_str())
        .bind(name)
        .bind(version as i64)
        .bind(from.as_str())
        .execute(&mut **tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(Error::Conflict(
                "the flight changed concurrently; look at it again and retry".into(),
            ));
        }
        Ok(())
    }

    /// Compare-and-set on the flight row: fails if another writer moved it since we read it.
    async fn set_flight(
        &self,
        tx: &mut Transaction<'static, Any>,
        name: &str,
        cur: &FlightRow,
        state: FlightState,
        live: Option<u64>,
        now: Timestamp,
    ) -> Result<()> {
        let done = sqlx::query(
            "UPDATE flights SET state = $1, live_version = $2, updated_at = $3 \
             WHERE studyname = $4 AND state = $5 AND latest_version = $6",
        )
        .bind(state.as_str())
        .bind(live.map(|v| v as i64))
        .bind(now.0)
        .bind(name)
        .bind(cur.state.as_str())
        .bind(cur.latest as i64)
        .execute(&mut **tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(Error::Conflict(
                "the flight changed concurrently; look at it again and retry".into(),
            ));
        }
        Ok(())
    }

    /// Records an action that is not about one flight (e.g. a token created).
    pub async fn record(
        &self,
        actor: &str,
        action: &str,
        detail: &Value,
        now: Timestamp,
    ) -> Result<()> {
        let _turn = self.write_turn().await?;
        let mut tx = self.write.begin().await?;
        Self::audit_in(&mut tx, now, actor, action, None, None, detail).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sends the revision under review back to its author as a draft, with a comment kept in
    /// the audit log (`sendback`). The live revision, if any, keeps running.
    pub async fn send_back(
        &self,
        actor: &Actor,
        name: &str,
        version: Option<u64>,
        comment: &str,
        now: Timestamp,
    ) -> Result<Outcome> {
        let _turn = self.write_turn().await?;
        let mut tx = self.write.begin().await?;
        let cur = self.load(&mut tx, name).await?;
        Self::check_version(&cur, version)?;
        let state = decide(actor, Action::SendBack, cur.state, cur.latest_state)?;
        self.set_revision(
            &mut tx,
            name,
            cur.latest,
            RevisionState::Review,
            RevisionState::Draft,
        )
        .await?;
        self.set_flight(&mut tx, name, &cur, state, cur.live, now)
            .await?;
        Self::audit_in(
            &mut tx,
            now,
            &actor.name,
            "sendback",
            Some(name),
            Some(cur.latest),
            &json!({"comment": comment}),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(actor = %actor.name, flight = name, version = cur.latest, "sent back to draft");
        Ok(self.outcome(name, cur.latest, state, RevisionState::Draft, None, None))
    }
}
