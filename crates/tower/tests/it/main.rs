//! The tower's integration tests, one binary. Every API test runs against both SQLite and
//! PostgreSQL (`both!`), each on a fresh private database.

mod support;

mod actions;
mod connections;
mod copilot;
mod events;
mod events_refused;
mod hardening;
mod index;
mod keys;
mod lifecycle;
mod openapi;
mod prune;
mod push;
mod replicas;
mod reports;
mod rollups;
mod simulate;
mod sqlite_writer;
mod store_close;
