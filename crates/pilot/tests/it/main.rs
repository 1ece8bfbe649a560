//! Integration tests of the pilot: one binary (see STYLE.md).

mod actions;
mod agent;

mod badinput;
mod crash;
mod endings;
mod journal_schema;
mod keys;

mod support;
mod sync_http;
