//! The signing keys' rows (`signing_keys`): which key is current, which successor is
//! announced, and where each secret is. The rules (roles, two people) are in
//! [`crate::keys`]; this module applies a rotation with compare-and-set updates in one
//! transaction with its audit entry and the serial bump.

use super::Store;
use crate::error::{Error, Result};
use crate::keys::{info, KeyRing, KeyStatus};
use crate::lifecycle::Actor;
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde_json::json;
use sqlx::{Any, AnyConnection, Row, Transaction};
use testpilot_flight::index::{key_id, parse_public_key, public_key_to_base64};
use testpilot_flight::Timestamp;

/// A key as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredKey {
    pub public: VerifyingKey,
    /// The seed, when the database holds it.
    pub secret: Option<SigningKey>,
    pub proposed_by: Option<String>,
}

impl StoredKey {
    pub fn key_id(&self) -> String {
        key_id(&self.public)
    }
}

/// The current key and the announced successor.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyState {
    pub current: StoredKey,
    pub next: Option<StoredKey>,
}

impl KeyState {
    fn status(&self) -> KeyStatus {
        let show = |k: &StoredKey| info(&k.public, k.secret.is_some(), k.proposed_by.clone());
        KeyStatus {
            current: show(&self.current),
            next: self.next.as_ref().map(show),
            serial: None,
            warning: None,
        }
    }
}

fn seed_from_hex(text: &str) -> Result<SigningKey> {
    let bytes = hex::decode(text.trim())
        .map_err(|e| Error::Internal(format!("stored signing key: {e}")))?;
    let seed: [u8; 32] = bytes
        .try_into()
        .map_err(|_| Error::Internal("stored signing key is not 32 bytes".into()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Reads the current key and the successor.
pub(super) async fn load(conn: &mut AnyConnection) -> Result<KeyState> {
    let rows = sqlx::query(
        "SELECT public_key, secret, state, proposed_by FROM signing_keys \
         WHERE state IN ('current', 'next')",
    )
    .fetch_all(conn)
    .await?;
    let mut current = None;
    let mut next = None;
    for row in rows {
        let public = parse_public_key(&row.try_get::<String, _>(0)?)
            .map_err(|e| Error::Internal(format!("stored public key: {e}")))?;
        let secret = match row.try_get::<Option<String>, _>(1)? {
            Some(s) => Some(seed_from_hex(&s)?),
            None => None,
        };
        let key = StoredKey {
            public,
            secret,
            proposed_by: row.try_get(3)?,
        };
        match row.try_get::<String, _>(2)?.as_str() {
            "current" => current = Some(key),
            _ => next = Some(key),
        }
    }
    let current = current.ok_or_else(|| {
        Error::Internal(
            "the database has no current signing key (the tower sets one when it starts)".into(),
        )
    })?;
    Ok(KeyState { current, next })
}

impl Store {
    /// Makes sure the database names a current signing key, on the first start of a
    /// database: the version 1 seed if there is one (moved out of `tower_key`), else the
    /// first key of `ring` (kept outside the database), else `fresh_seed` (kept in it). Then
    /// checks that the current key's seed is somewhere this tower can read.
    pub async fn init_signing_key(
        &self,
        ring: &KeyRing,
        fresh_seed: [u8; 32],
        now: Timestamp,
    ) -> Result<KeyState> {
        let _turn = self.write_turn().await?;
        let mut tx = self.write.begin().await?;
        let has_current = sqlx::query("SELECT key_id FROM signing_keys WHERE state = 'current'")
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !has_current {
            let legacy: Option<String> = sqlx::query("SELECT secret FROM tower_key WHERE id = 1")
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get(0))
                .transpose()?;
            let (key, in_db, from) = match (legacy, ring.first()) {
                (Some(hexed), _) => (seed_from_hex(&hexed)?, true, "the version 1 database"),
                (None, Some(k)) => (k.clone(), false, "the key file"),
                (None, None) => (SigningKey::from_bytes(&fresh_seed), true, "made new"),
            };
            let public = key.verifying_key();
            let inserted = sqlx::query(
                "INSERT INTO signing_keys (key_id, public_key, secret, state, created_at, changed_at) \
                 VALUES ($1, $2, $3, 'current', $4, $4) ON CONFLICT DO NOTHING",
            )
            .bind(key_id(&public))
            .bind(public_key_to_base64(&public))
            .bind(in_db.then(|| hex::encode(key.to_bytes())))
            .bind(now.0)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 1 {
                Self::audit_in(
                    &mut tx,
                    now,
                    "tower",
                    "key.create",
                    None,
                    None,
                    &json!({"keyId": key_id(&public), "from": from,
                            "secret": if in_db { "database" } else { "outside" }}),
                )
                .await?;
            }
        }
        // The seed lives in `signing_keys` now; no second copy.
        sqlx::query("DELETE FROM tower_key")
            .execute(&mut *tx)
            .await?;
        let keys = load(&mut tx).await?;
        tx.commit().await?;
        if keys.current.secret.is_none() && ring.get(&keys.current.key_id()).is_none() {
            return Err(Error::Config(format!(
                "the current signing key {} is kept outside the database: give the file that holds it with --signing-key-file (or {}), or its seed in {}",
                keys.current.key_id(),
                crate::keys::KEY_FILE_ENV,
                crate::keys::KEY_ENV
            )));
        }
        Ok(keys)
    }

    /// The current key and the successor, as the API shows them.
    pub async fn key_status(&self) -> Result<KeyStatus> {
        let mut conn = self.read.acquire().await?;
        Ok(load(&mut conn).await?.status())
    }

    /// Announces `public` as the successor of the current key (its seed `secret` kept in
    /// the database when given), replacing a successor proposed earlier. Bumps the serial.
    pub async fn propose_key(
        &self,
        actor: &Actor,
        public: &VerifyingKey,
        secret: Option<&SigningKey>,
        now: Timestamp,
    ) -> Result<KeyStatus> {
        let id = key_id(public);
        let _turn = self.write_turn().await?;
        let mut tx = self.write.begin().await?;
        let before = load(&mut tx).await?;
        if before.current.public == *public {
            return Err(Error::Conflict(format!(
                "key {id} is already the current signing key"
            )));
        }
        let used: Option<String> = sqlx::query("SELECT state FROM signing_keys WHERE key_id = $1")
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get(0))
            .transpose()?;
        if used.as_deref() == Some("retired") {
            return Err(Error::Conflict(format!(
                "key {id} signed indexes before and was retired; a retired key never comes back: make a new one (`testpilot tower key generate`)"
            )));
        }
        sqlx::query("DELETE FROM signing_keys WHERE state = 'next'")
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO signing_keys (key_id, public_key, secret, state, created_at, proposed_by, changed_at) \
             VALUES ($1, $2, $3, 'next', $4, $5, $4)",
        )
        .bind(&id)
        .bind(public_key_to_base64(public))
        .bind(secret.map(|k| hex::encode(k.to_bytes())))
        .bind(now.0)
        .bind(&actor.name)
        .execute(&mut *tx)
        .await?;
        let serial = self.bump_serial(&mut tx, now).await?;
        let mut detail = json!({
            "keyId": id, "current": before.current.key_id(), "serial": serial,
            "secret": if secret.is_some() { "database" } else { "outside" },
        });
        if let Some(old) = &before.next {
            detail["replaces"] = json!(old.key_id());
        }
        Self::audit_in(&mut tx, now, &actor.name, "key.rotate", None, None, &detail).await?;
        let after = load(&mut tx).await?;
        tx.commit().await?;
        tracing::warn!(actor = %actor.name, next = %id, serial, "key rotation proposed");
        let mut out = after.status();
        out.serial = Some(serial);
        Ok(out)
    }

    /// Makes the successor `next_id` the signing key and retires the current one (erasing
    /// its seed). Refused when `next_id` is no longer the announced successor.
    pub async fn complete_rotation(
        &self,
        actor: &Actor,
        next_id: &str,
        note: Option<&str>,
        now: Timestamp,
    ) -> Result<KeyStatus> {
        let _turn = self.write_turn().await?;
        let mut tx: Transaction<'static, Any> = self.write.begin().await?;
        let before = load(&mut tx).await?;
        if before.next.as_ref().map(StoredKey::key_id).as_deref() != Some(next_id) {
            return Err(Error::Conflict(format!(
                "key {next_id} is no longer the proposed successor (another rotation was proposed or completed meanwhile); look again with `testpilot tower key status`"
            )));
        }
        sqlx::query(
            "UPDATE signing_keys SET state = 'retired', secret = NULL, completed_by = $1, changed_at = $2 \
             WHERE state = 'current'",
        )
        .bind(&actor.name)
        .bind(now.0)
        .execute(&mut *tx)
        .await?;
        let moved = sqlx::query(
            "UPDATE signing_keys SET state = 'current', completed_by = $1, changed_at = $2 \
             WHERE state = 'next' AND key_id = $3",
        )
        .bind(&actor.name)
        .bind(now.0)
        .bind(next_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if moved != 1 {
            return Err(Error::Conflict(format!(
                "key {next_id} is no longer the proposed successor"
            )));
        }
        let serial = self.bump_serial(&mut tx, now).await?;
        let mut detail = json!({
            "keyId": next_id, "retired": before.current.key_id(), "serial": serial,
            "proposedBy": before.next.as_ref().and_then(|k| k.proposed_by.clone()),
        });
        if let Some(n) = note {
            detail["selfApproved"] = json!(true);
            detail["note"] = json!(n);
        }
        Self::audit_in(
            &mut tx,
            now,
            &actor.name,
            "key.complete",
            None,
            None,
            &detail,
        )
        .await?;
        let after = load(&mut tx).await?;
        tx.commit().await?;
        tracing::warn!(actor = %actor.name, key = next_id, serial, "key rotation completed");
        let mut out = after.status();
        out.serial = Some(serial);
        Ok(out)
    }
}
