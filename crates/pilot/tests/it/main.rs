//! Integration tests of the pilot: one binary (see STYLE.md).

mod actions;
mod agent;

mod badinput;
mod copilot;
mod crash;
mod embed;
mod endings;
#[path = "../fixture/embed_index.rs"]
mod fixture;
mod host_records;
mod index_expiry;
mod journal_schema;
mod keys;
mod net_limits;
mod openfeature;
mod prune;
mod recording;
mod reuse;

mod support;
mod sync_http;
mod undo_retry;
