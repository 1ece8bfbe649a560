//! Results of a flight's recordings per arm and topic (`docs/api.md#results`): the shape
//! ([`model`]), the statistics from rollup numbers ([`compute`]), and [`results`], which
//! reads a flight's rollups and computes them.

pub mod compute;
mod model;

pub use model::*;

use crate::error::Result;
use crate::ingest_events::streamed_instruments;
use crate::store::Store;
use testpilot_flight::event::is_topic;
use testpilot_flight::Flight;

/// The results of the flight `studyname`, computed from the rollups kept at ingest (never
/// from raw events); `None` when there is no such flight. The API's
/// `GET /api/v1/flights/{studyname}/results` and the dashboard both call this.
///
/// Arms are in the order of the flight's newest live revision (its newest revision if it
/// was never live); topics are those its streamed recordings watch, then any other topic
/// that has events (at most [`compute::MAX_EXTRA`] more arms and topics than the flight's).
pub async fn results(store: &Store, studyname: &str) -> Result<Option<Results>> {
    let Some((latest, live)) = store.flight_versions(studyname).await? else {
        return Ok(None);
    };
    let spec = store
        .revision_spec(studyname, live.unwrap_or(latest))
        .await?;
    let flight = spec.as_ref().and_then(|s| Flight::from_json(s).ok());
    let mut arms: Vec<String> = Vec::new();
    let mut watched: Vec<String> = Vec::new();
    if let Some(f) = &flight {
        arms = f.arms.iter().map(|a| a.name.clone()).collect();
        for i in streamed_instruments(f) {
            for t in &i.watch {
                if is_topic(t) && !watched.contains(t) {
                    watched.push(t.clone());
                }
            }
        }
    }
    let rollups = store.rollups(studyname).await?;
    let name = studyname.to_string();
    // Pure but proportional to the rollups: off the async workers.
    tokio::task::spawn_blocking(move || compute::compute(&name, &arms, &watched, &rollups))
        .await
        .map(Some)
        .map_err(|e| crate::error::Error::Internal(format!("computing results: {e}")))
}
