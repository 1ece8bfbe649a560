//! Managing flights (docs/api.md): push, read (revisions, diff, progress, errors, the audit
//! log) and the lifecycle actions (review, approve, send back, kill, end), each behind the
//! caller's role.

use super::*;

/// Creates a flight or a new draft revision of it. The tower assigns `version`.
#[utoipa::path(post, path = "/api/v1/flights", tag = "flights", security(("token" = [])),
    request_body(content = Object, description = "A flight spec (docs/flight-spec.md) or a copilot document (docs/copilot.md)", content_type = "application/json"),
    responses(
        (status = 201, description = "A new revision", body = Outcome),
        (status = 200, description = "Identical to the newest revision: nothing changed", body = Outcome),
        (status = 403, description = "The token's role may not push", body = ErrorBody),
        (status = 409, description = "The flight is killed or ended", body = ErrorBody),
        (status = 415, description = "The body is not declared `Content-Type: application/json`", body = ErrorBody),
        (status = 422, description = "Not a valid flight or copilot document; every problem with its path", body = ErrorBody),
    ))]
pub(super) async fn push_flight(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Outcome>)> {
    let actor = require(&caller, Action::Push)?;
    let v = json_body(&headers, body, s.config.limits.max_body_bytes)?;
    let out = crate::actions::push_document(&s, actor, &v).await?;
    let status = if out.unchanged {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(out)))
}

/// Every flight.
#[utoipa::path(get, path = "/api/v1/flights", tag = "flights", security(("token" = [])),
    responses((status = 200, body = [FlightSummary])))]
pub(super) async fn list_flights(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<FlightSummary>>> {
    require(&caller, Action::Read)?;
    Ok(Json(s.store.list_flights().await?))
}

/// One flight with its revisions and audit log.
#[utoipa::path(get, path = "/api/v1/flights/{studyname}", tag = "flights", security(("token" = [])),
    params(("studyname" = String, Path)),
    responses((status = 200, body = FlightDetail), (status = 404, body = ErrorBody)))]
pub(super) async fn get_flight(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<FlightDetail>> {
    require(&caller, Action::Read)?;
    s.store
        .flight(&name)
        .await?
        .map(Json)
        .ok_or_else(|| no_flight(&name))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct DiffQuery {
    /// The older revision (default: the one before `to`).
    from: Option<u64>,
    /// The newer revision (default: the newest).
    to: Option<u64>,
}

/// What changed between two revisions.
#[utoipa::path(get, path = "/api/v1/flights/{studyname}/diff", tag = "flights", security(("token" = [])),
    params(("studyname" = String, Path), DiffQuery),
    responses((status = 200, description = "`{studyname, from, to, changes: [{path, op, from, to}]}`"), (status = 404, body = ErrorBody)))]
pub(super) async fn flight_diff(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<DiffQuery>,
) -> ApiResult<Json<Value>> {
    require(&caller, Action::Read)?;
    let revisions = s.store.revisions(&name).await?;
    let Some(newest) = revisions.last() else {
        return Err(no_flight(&name));
    };
    let to = q.to.unwrap_or(newest.version);
    let from = q.from.unwrap_or(to.saturating_sub(1));
    let find = |v: u64| revisions.iter().find(|r| r.version == v);
    let Some(b) = find(to) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("`{name}` has no revision {to}"),
        ));
    };
    let empty = json!({});
    let a = match find(from) {
        Some(r) => &r.spec,
        None if from == 0 => &empty,
        None => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("`{name}` has no revision {from}"),
            ))
        }
    };
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("version");
        }
        v
    };
    let changes = crate::diff::diff(&strip(a), &strip(&b.spec));
    Ok(Json(
        json!({"studyname": name, "from": from, "to": to, "changes": changes}),
    ))
}

/// Progress of a flight: clients by status, step, arm and version, and a daily series.
#[utoipa::path(get, path = "/api/v1/flights/{studyname}/progress", tag = "flights", security(("token" = [])),
    params(("studyname" = String, Path)),
    responses((status = 200, body = Progress), (status = 404, body = ErrorBody)))]
pub(super) async fn flight_progress(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Progress>> {
    require(&caller, Action::Read)?;
    if s.store.flight_summary(&name).await?.is_none() {
        return Err(no_flight(&name));
    }
    Ok(Json(s.store.progress(&name).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct LimitQuery {
    /// At most this many entries (default 100, at most 10000).
    limit: Option<u32>,
}

/// The newest reports on a flight that carried a `detail` (why it failed, ...).
#[utoipa::path(get, path = "/api/v1/flights/{studyname}/errors", tag = "flights", security(("token" = [])),
    params(("studyname" = String, Path), LimitQuery),
    responses((status = 200, body = [ErrorReport]), (status = 404, body = ErrorBody)))]
pub(super) async fn flight_errors(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<LimitQuery>,
) -> ApiResult<Json<Vec<ErrorReport>>> {
    require(&caller, Action::Read)?;
    if s.store.flight_summary(&name).await?.is_none() {
        return Err(no_flight(&name));
    }
    Ok(Json(
        s.store
            .recent_errors(&name, q.limit.unwrap_or(100).min(10_000))
            .await?,
    ))
}

/// The audit log of the whole tower, oldest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "flights", security(("token" = [])),
    params(LimitQuery), responses((status = 200, body = [AuditEntry])))]
pub(super) async fn audit_log(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<LimitQuery>,
) -> ApiResult<Json<Vec<AuditEntry>>> {
    require(&caller, Action::Read)?;
    Ok(Json(
        s.store
            .audit(None, q.limit.unwrap_or(100).min(10_000))
            .await?,
    ))
}

/// The optional body of review, approve, kill and end.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    /// The revision meant; refused unless it is the newest (review, approve).
    pub version: Option<u64>,
    /// Why; kept in the audit log (kill, end).
    pub reason: Option<String>,
}

/// The body of send-back.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendBackBody {
    /// Why it goes back: what the author reads (required, at most 4000 characters). A
    /// missing one is refused with the path `comment`, like a blank one.
    #[serde(default)]
    #[schema(required = true)]
    pub comment: String,
    /// The revision meant; refused unless it is the one under review.
    pub version: Option<u64>,
}

const ACTION_BODY: &str = "{\"version\"?: n, \"reason\"?: \"...\"}";

/// Sends the newest revision (a draft) for review.
#[utoipa::path(post, path = "/api/v1/flights/{studyname}/review", tag = "flights", security(("token" = [])),
    params(("studyname" = String, Path)), request_body(content = Option<ActionBody>, content_type = "application/json"),
    responses((status = 200, body = Outcome), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn review_flight(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Outcome>> {
    let (actor, b) =
        action_request::<ActionBody>(&s, &caller, Action::Review, &headers, body, ACTION_BODY)?;
    Ok(Json(
        crate::actions::review(&s, actor, &name, b.version).await?,
    ))
}

/// Approves the revision under review: it goes live, into the index. Not by anyone who
/// pushed a revision of the flight since it was last live (names compare without case).
#[utoipa::path(post, path = "/api/v1/flights/{studyname}/approve", tag = "flights", security(("token" = [])),
    params(("studyname" = String, Path)), request_body(content = Option<ActionBody>, content_type = "application/json"),
    responses((status = 200, body = Outcome), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn approve_flight(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Outcome>> {
    let (actor, b) =
        action_request::<ActionBody>(&s, &caller, Action::Approve, &headers, body, ACTION_BODY)?;
    Ok(Json(
        crate::actions::approve(&s, actor, &name, b.version).await?,
    ))
}

/// Sends the revision under review back to its author as a draft, with a comment that the
/// audit log keeps (`sendback`). A live revision keeps running.
#[utoipa::path(post, path = "/api/v1/flights/{studyname}/send-back", tag = "flights", security(("token" = [])),
    params(("studyname" = String, Path)), request_body(content = SendBackBody, content_type = "application/json"),
    responses((status = 200, body = Outcome), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, description = "No comment, or not a valid body", body = ErrorBody)))]
pub(super) async fn send_back_flight(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Outcome>> {
    let (actor, b) = action_request::<SendBackBody>(
        &s,
        &caller,
        Action::SendBack,
        &headers,
        body,
        "{\"comment\": \"why\", \"version\"?: n}",
    )?;
    Ok(Json(
        crate::actions::send_back(&s, actor, &name, b.version, &b.comment).await?,
    ))
}

/// Kills a live flight: it stays in the index with `kill: true`.
#[utoipa::path(post, path = "/api/v1/flights/{studyname}/kill", tag = "flights", security(("token" = [])),
    params(("studyname" = String, Path)), request_body(content = Option<ActionBody>, content_type = "application/json"),
    responses((status = 200, body = Outcome), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn kill_flight(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Outcome>> {
    let (actor, b) =
        action_request::<ActionBody>(&s, &caller, Action::Kill, &headers, body, ACTION_BODY)?;
    Ok(Json(
        crate::actions::kill(&s, actor, &name, b.reason.as_deref()).await?,
    ))
}

/// Ends a flight: it leaves the index.
#[utoipa::path(post, path = "/api/v1/flights/{studyname}/end", tag = "flights", security(("token" = [])),
    params(("studyname" = String, Path)), request_body(content = Option<ActionBody>, content_type = "application/json"),
    responses((status = 200, body = Outcome), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn end_flight(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Outcome>> {
    let (actor, b) =
        action_request::<ActionBody>(&s, &caller, Action::End, &headers, body, ACTION_BODY)?;
    Ok(Json(
        crate::actions::end(&s, actor, &name, b.reason.as_deref()).await?,
    ))
}
