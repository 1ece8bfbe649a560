//! `POST /api/v1/flights/{studyname}/simulate` (docs/api.md#simulate): the fleet simulation
//! of the revision under review, through [`crate::simulate::simulate`], the function the
//! review page calls too. Any token may ask, as anyone signed in may open the review page.

use super::*;
use crate::simulate::{SimRequest, Simulation};

/// Simulates the revision under review with the real targeting (and, for `runs`, the real
/// pilot engine) over a population the tower offers, beside the flights live now: reach
/// per arm with the agreement tests, overlaps, the load on the tower, enrolment and
/// completion over time. Read-only; one simulation at a time per tower.
#[utoipa::path(post, path = "/api/v1/flights/{studyname}/simulate", tag = "flights", security(("token" = [])),
    params(("studyname" = String, Path)),
    request_body(content = Option<SimRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "The simulator's report (`testpilot simulate --json`); its first flight is the revision under review", body = Simulation),
        (status = 404, description = "No such flight", body = ErrorBody),
        (status = 409, description = "No revision of the flight is under review, or `version` is not the one", body = ErrorBody),
        (status = 422, description = "A parameter out of bounds or unknown (`population`, `clients`, `days`, `seed`, `runs`, `version`), or more clients × flights than the tower simulates; every problem with its field", body = ErrorBody),
        (status = 503, description = "Busy: another simulation is running (or this one took too long); see Retry-After", body = ErrorBody),
    ))]
pub(super) async fn simulate_flight(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Simulation>> {
    require(&caller, Action::Read)?;
    let v = optional_json_body(&headers, body, s.config.limits.max_body_bytes)?;
    let req = SimRequest::from_json(v.as_ref(), &s.config.simulate).map_err(|d| {
        ApiError::invalid(
            format!(
                "the simulation's parameters are not valid ({} problems)",
                d.len()
            ),
            &d,
        )
    })?;
    Ok(Json(crate::simulate::simulate(&s, &name, &req).await?))
}
