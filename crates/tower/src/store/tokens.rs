//! API tokens, stored as SHA-256 hashes (tokens are 256-bit random, so a plain hash is
//! enough: there is nothing to brute-force).

use super::{rfc3339, Store};
use crate::error::{Error, Result};
use crate::lifecycle::{Actor, Role};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::Row;
use testpilot_flight::Timestamp;

/// A token as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    pub id: i64,
    /// The holder's identity: two tokens with one name are one person.
    pub name: String,
    pub role: Role,
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// The stored form of a token.
pub fn token_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.trim().as_bytes()))
}

impl Store {
    /// Stores a new token with `secret` (made by [`crate::auth::new_secret`]); `name`
    /// defaults to `<role>-<6 hex digits>`. `by` is who asked, for the audit log.
    pub async fn create_token(
        &self,
        role: Role,
        name: Option<&str>,
        secret: &str,
        by: &str,
        now: Timestamp,
    ) -> Result<TokenInfo> {
        let hash = token_hash(secret);
        let name = match name.map(str::trim) {
            Some("") => return Err(Error::Config("a token's name cannot be empty".into())),
            Some(n) => n.to_string(),
            None => format!("{role}-{}", &hash[..6]),
        };
        let _turn = self.write_turn().await?;
        let mut tx = self.write.begin().await?;
        let id: i64 = sqlx::query("INSERT INTO tokens (name, role, hash, created_at) VALUES ($1, $2, $3, $4) RETURNING id")
            .bind(&name)
            .bind(role.as_str())
            .bind(&hash)
            .bind(now.0)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        sqlx::query("INSERT INTO audit (at, actor, action, studyname, version, detail) VALUES ($1, $2, 'token.create', NULL, NULL, $3)")
            .bind(now.0)
            .bind(by)
            .bind(json!({"id": id, "name": name, "role": role}).to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(TokenInfo {
            id,
            name,
            role,
            created_at: now,
        })
    }

    /// Who holds `secret`, if it is a token of this tower.
    pub async fn actor_for_token(&self, secret: &str) -> Result<Option<Actor>> {
        let row = sqlx::query("SELECT name, role FROM tokens WHERE hash = $1")
            .bind(token_hash(secret))
            .fetch_optional(&self.read)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let role: String = row.try_get(1)?;
        let role = Role::parse(&role)
            .ok_or_else(|| Error::Internal(format!("unknown stored role `{role}`")))?;
        Ok(Some(Actor::new(row.try_get::<String, _>(0)?, role)))
    }

    /// Every token, oldest first.
    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>> {
        let rows = sqlx::query("SELECT id, name, role, created_at FROM tokens ORDER BY id")
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                let role: String = r.try_get(2)?;
                Ok(TokenInfo {
                    id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    role: Role::parse(&role)
                        .ok_or_else(|| Error::Internal(format!("unknown stored role `{role}`")))?,
                    created_at: Timestamp(r.try_get(3)?),
                })
            })
            .collect()
    }
}
