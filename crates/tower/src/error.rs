//! The tower's one error type. Client-facing variants become 4xx answers with a JSON body
//! that says what to fix (see `api::ApiError`); the rest are logged and answered 500.

use testpilot_flight::Diagnostics;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flight or report batch failed validation; every problem with its path.
    #[error("{message}")]
    Invalid {
        message: String,
        problems: Diagnostics,
    },
    #[error("{0}")]
    NotFound(String),
    /// The action does not fit the flight's state (e.g. approving a flight not under review).
    #[error("{0}")]
    Conflict(String),
    /// The caller's token is valid but its role or identity may not do this.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Unauthorized(String),
    /// The tower is too busy to do it now (a simulation slot is taken, or it took too
    /// long): 503, try again.
    #[error("{0}")]
    Busy(String),
    #[error("bad configuration: {0}")]
    Config(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Something the tower itself got wrong (a stored row that does not parse, ...).
    #[error("internal: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
