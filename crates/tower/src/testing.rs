//! Helpers for tests (this crate's and the CLI's): a fresh, private database per test, so
//! tests running in parallel never see each other's rows.
//!
//! PostgreSQL tests use the server at `TESTPILOT_TEST_PG` (default
//! `postgres://postgres@127.0.0.1:5432/test`) and fail — not skip — when it is not there.

use crate::error::{Error, Result};
use crate::store::Engine;
use sqlx::Connection;
use std::path::PathBuf;

/// The PostgreSQL server tests use.
pub fn pg_base_url() -> String {
    std::env::var("TESTPILOT_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A database for one test: a SQLite file in a new temporary directory, or a new schema on
/// the test PostgreSQL server (reached through `search_path` in the URL).
#[derive(Debug)]
pub struct TestDb {
    pub url: String,
    pub engine: Engine,
    /// The SQLite file's directory.
    pub dir: Option<PathBuf>,
    schema: Option<String>,
}

fn random_hex() -> String {
    hex::encode(&crate::auth::random_bytes().unwrap_or([0; 32])[..6])
}

/// A new empty directory under the system's temporary directory.
pub fn temp_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", random_hex()));
    let _ = crate::private::create_dir(&dir);
    dir
}

impl TestDb {
    pub async fn new(engine: Engine) -> Result<TestDb> {
        match engine {
            Engine::Sqlite => {
                let dir = temp_dir("testpilot-tower-test");
                let url = format!("sqlite://{}", dir.join("tower.db").display());
                Ok(TestDb {
                    url,
                    engine,
                    dir: Some(dir),
                    schema: None,
                })
            }
            Engine::Postgres => {
                let base = pg_base_url();
                let schema = format!("t_{}", random_hex());
                let mut conn = sqlx::postgres::PgConnection::connect(&base).await.map_err(|e| {
                    Error::Config(format!(
                        "the PostgreSQL tests need a server at {base} (set TESTPILOT_TEST_PG to use another): {e}"
                    ))
                })?;
                sqlx::query(&format!("CREATE SCHEMA {schema}"))
                    .execute(&mut conn)
                    .await?;
                conn.close().await?;
                let sep = if base.contains('?') { '&' } else { '?' };
                let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
                Ok(TestDb {
                    url,
                    engine,
                    dir: None,
                    schema: Some(schema),
                })
            }
        }
    }

    /// Removes the database (the schema, or the directory).
    pub async fn cleanup(self) {
        if let Some(schema) = &self.schema {
            if let Ok(mut conn) = sqlx::postgres::PgConnection::connect(&pg_base_url()).await {
                let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                    .execute(&mut conn)
                    .await;
                let _ = conn.close().await;
            }
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
