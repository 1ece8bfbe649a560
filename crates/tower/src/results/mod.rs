//! Results of a flight's recordings per arm and topic (`docs/api.md#results`).

mod model;

pub use model::*;
