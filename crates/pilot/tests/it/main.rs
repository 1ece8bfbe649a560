//! Integration tests of the pilot: one binary (see STYLE.md).

mod actions;
mod agent;

mod badinput;
mod copilot;
mod crash;
mod endings;
mod host_records;
mod index_expiry;
mod journal_schema;
mod keys;
mod net_limits;
mod prune;
mod recording;

mod support;
mod sync_http;
mod undo_retry;
