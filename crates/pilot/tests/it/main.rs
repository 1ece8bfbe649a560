//! Integration tests of the pilot: one binary (see STYLE.md).

mod actions;
mod agent;

mod badinput;
mod crash;
mod endings;
mod index_expiry;
mod journal_schema;

mod support;
mod sync_http;
mod undo_retry;
