//! Results of a flight's recordings per arm and topic (`docs/api.md#results`).

mod model;

pub use model::*;

use crate::error::Result;
use crate::store::Store;

/// The results of the flight `studyname`, computed from the rollups kept at ingest (never
/// from raw events); `None` when there is no such flight. The API's
/// `GET /api/v1/flights/{studyname}/results` and the dashboard both call this.
pub async fn results(store: &Store, studyname: &str) -> Result<Option<Results>> {
    let _ = (store, studyname);
    Err(crate::Error::Internal(
        "results are not computed yet on this build".into(),
    ))
}
