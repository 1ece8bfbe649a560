//! The Test Pilot flight language: the spec model, validation, targeting, bucketing,
//! templates and time, plus the formats the tower and the pilot share (the signed index and
//! status reports).
//!
//! Pure by design: no I/O, no async, no clock reads. `now` is always a parameter.
//!
//! ```
//! use testpilot_flight::{Flight, Person, Timestamp, enrollment};
//! let flight = Flight::from_json(&serde_json::json!({
//!     "studyname": "hello", "author": "a@example.com", "description": "says hello",
//!     "randomDeploy": {"ge": 0, "lt": 0.5},
//!     "flightplan": [{"action": "log", "text": "hello {{os}}"}]
//! })).unwrap();
//! let e = enrollment::explain(&flight, &Person::new("p-1").with("os", "linux"), Timestamp(0));
//! assert_eq!(e.bucket.len(), 12);
//! ```

pub mod copilot;
pub mod diagnostic;
pub mod enrollment;
pub mod event;
pub mod expression;
pub mod index;
pub mod json;
mod memo;
pub mod person;
mod reader;
pub mod report;
pub mod sampling;
pub mod schema;
pub mod spec;
pub mod targeting;
pub mod template;
pub mod time;
mod validate;
pub mod version;

pub use diagnostic::{Diagnostic, Diagnostics, JsonPath};
pub use person::Person;
pub use spec::*;
pub use time::{parse_dateish, parse_duration, Clock, Dateish, DurationSpec, Timestamp};
pub use validate::validate;

/// Errors of this crate that are not author diagnostics.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(Diagnostics),
    #[error("{0}")]
    Json(String),
    #[error("the index is not signed, and only signed indexes are accepted (pass --insecure-unsigned for development)")]
    Unsigned,
    #[error("the index signature does not verify with the pinned public key")]
    BadSignature,
    #[error("the index was signed with key {found}, which is not pinned (pinned: {expected})")]
    KeyMismatch { expected: String, found: String },
    #[error("the index serial {serial} is below the last accepted serial {last} (a rollback)")]
    RolledBack { serial: u64, last: u64 },
    #[error("the index expired at {expires_at}")]
    Expired { expires_at: Timestamp },
    #[error("bad public key: {0}")]
    BadKey(String),
}
