//! The Test Pilot control tower (docs/api.md): flights' lifecycle with approval, the signed
//! index that pilots read, reports and progress — on SQLite (the default) or PostgreSQL.
//!
//! - [`store`]: the persistence API (flights, revisions, audit, tokens, reports, progress).
//! - [`lifecycle`]: the pure rules: roles, states, transitions and the two-person rule.
//! - [`actions`]: push, review, approve, send back, kill and end, as one service that the
//!   API, the dashboard and [`local`] call.
//! - [`index`]: building, signing and serving the index from memory.
//! - [`ingest`]: durable, batched report writing (group commit); [`ingest_events`] the same
//!   for recorded events and their rollups.
//! - [`results`]: a flight's results per arm and topic, from the rollups.
//! - [`simulate`]: the fleet simulation of a revision under review (the review page and
//!   the API call it), with the populations a tower offers.
//! - [`api`]: the HTTP API; [`app`] builds the router without a socket.
//! - [`server`]: starting a tower: config, background tasks, graceful shutdown.
//! - [`connections`]: accepting HTTP connections with time and count limits.
//! - [`local`]: what `testpilot up` needs: example flights, a local token.
//! - [`keys`]: where the signing keys' secrets are, and the two-person key rotation.
//! - [`private`]: the data directory `0700` and its files `0600`.
//! - `testing` (the `testing` feature, for tests and benchmarks only): private databases.

pub mod actions;
pub mod api;
pub mod auth;
pub mod client_addr;
pub mod clock;
pub mod connections;
pub mod dashboard;
pub mod diff;
pub mod error;
pub mod export;
pub mod index;
pub mod ingest;
pub mod ingest_events;
pub mod keys;
pub mod lifecycle;
pub mod local;
pub mod metrics;
pub mod openapi;
pub mod private;
pub mod ratelimit;
pub mod results;
pub mod server;
pub mod simulate;
pub mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use api::{app, AppState};
pub use clock::{ManualClock, SystemClock};
pub use error::{Error, Result};
pub use lifecycle::{Actor, FlightState, Role};
pub use server::{start, ClientLimits, RunningTower, TowerConfig};
pub use store::Store;
