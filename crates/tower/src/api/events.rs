//! The events endpoints (docs/api.md#events, #results, #export): pilots post recorded
//! events (no token); holders of any token read results and export the events.

use super::*;
use crate::export::{self, Format};
use crate::results::Results;
use testpilot_flight::event::EventBatch;

/// Most events in one batch.
pub const MAX_EVENTS: usize = 1000;
/// The largest event batch, in bytes (or `--max-body` if smaller).
pub const MAX_EVENT_BODY: usize = 1 << 20;

/// Recorded events from a pilot. Idempotent on `(client, seq)`; answered only once durable.
/// Events are taken only for flights that are live, or were killed or ended no longer ago
/// than their grace; a batch with any other is refused whole.
#[utoipa::path(post, path = "/api/v1/events", tag = "client",
    request_body(content = Object, content_type = "application/json", description = "`{\"client\": \"<uuid>\", \"events\": [{\"seq\", \"flight\", \"version\", \"arm\", \"topic\", \"subject\", \"value\", \"at\"}]}`"),
    responses(
        (status = 200, description = "Stored (durably), with the rollups they count in", body = Ingested),
        (status = 400, description = "Not JSON", body = ErrorBody),
        (status = 413, description = "Body too large (over 1 MiB)", body = ErrorBody),
        (status = 415, description = "The body is not declared `Content-Type: application/json`", body = ErrorBody),
        (status = 422, description = "Not a valid batch (over 1,000 events, a bad field), or a batch with events the tower does not take: on flights that take none (`events[i].flight`), on arms or topics not of the flight (`events[i].arm`, `events[i].topic`), dated more than a day ahead (`events[i].at`), or past the client's 100,000 events on a flight (`events[i]`); every problem with its path. Nothing of the batch is stored", body = ErrorBody),
        (status = 429, description = "Too many requests from this address; see Retry-After", body = ErrorBody),
    ))]
pub(super) async fn post_events(
    State(s): State<AppState>,
    req: Request,
) -> ApiResult<Json<Ingested>> {
    let ip = peer(&s, &req);
    if let Err(retry) = s.event_limiter.check(ip, s.clock.now()) {
        Metrics::inc(&s.metrics.rate_limited, 1);
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many event requests from {ip}; retry in {retry} s"),
        );
        e.retry_after = Some(retry);
        return Err(e);
    }
    let limit = s.config.limits.max_body_bytes.min(MAX_EVENT_BODY);
    let headers = req.headers().clone();
    let v = json_body(&headers, Bytes::from_request(req, &s).await, limit)?;
    let batch = EventBatch::from_json(&v, MAX_EVENTS).map_err(|d| {
        ApiError::invalid(
            format!("the event batch is not valid ({} problems)", d.len()),
            &d,
        )
    })?;
    Ok(Json(
        s.events.submit(batch, s.index.current().serial).await?,
    ))
}

/// Events per arm and topic with intervals and each arm's difference from the control
/// (the first arm), computed from the rollups kept at ingest.
#[utoipa::path(get, path = "/api/v1/flights/{studyname}/results", tag = "flights", security(("token" = [])),
    params(("studyname" = String, Path)),
    responses((status = 200, body = Results), (status = 404, body = ErrorBody)))]
pub(super) async fn flight_results(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Results>> {
    require(&caller, Action::Read)?;
    crate::results::results(&s.store, &name)
        .await?
        .map(Json)
        .ok_or_else(|| no_flight(&name))
}

async fn export(s: &AppState, caller: &Caller, name: &str, format: Format) -> ApiResult<Response> {
    require(caller, Action::Read)?;
    if s.store.flight_summary(name).await?.is_none() {
        return Err(no_flight(name));
    }
    let disposition = format!(
        "attachment; filename=\"{name}-events.{}\"",
        format.extension()
    );
    let mut res = export::body(s.store.clone(), name.to_string(), format).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    // A studyname is lowercase letters, digits, `.`, `-` and `_`: always a valid header.
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// Every stored event of the flight as CSV, oldest first, streamed. Texts a spreadsheet
/// would take for a formula are prefixed with `'`.
#[utoipa::path(get, path = "/api/v1/flights/{studyname}/events.csv", tag = "flights", security(("token" = [])),
    params(("studyname" = String, Path)),
    responses((status = 200, description = "`client,seq,version,arm,topic,subject,value,at,received`, one event a line", content_type = "text/csv"),
              (status = 404, body = ErrorBody)))]
pub(super) async fn export_csv(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    export(&s, &caller, &name, Format::Csv).await
}

/// Every stored event of the flight as JSON Lines, oldest first, streamed.
#[utoipa::path(get, path = "/api/v1/flights/{studyname}/events.jsonl", tag = "flights", security(("token" = [])),
    params(("studyname" = String, Path)),
    responses((status = 200, description = "One JSON object a line, with the CSV's keys", content_type = "application/x-ndjson"),
              (status = 404, body = ErrorBody)))]
pub(super) async fn export_jsonl(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    export(&s, &caller, &name, Format::JsonLines).await
}
