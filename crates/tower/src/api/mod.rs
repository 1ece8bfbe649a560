//! The HTTP API (docs/api.md). [`app`] builds the router from an [`AppState`], so tests and
//! the dashboard call it without a socket.
//!
//! Invariants:
//! - Client endpoints (`/control/index.json`, `POST /api/v1/reports`) need no token; every
//!   other `/api/v1` endpoint needs a bearer token whose role may do the action.
//! - Bad input is answered 4xx with `{"error": "...", "problems": [{"path", "message"}]}`;
//!   internal errors are logged and answered 500 without details.
//! - The index handler never touches the database.

use crate::client_addr::TrustedProxies;
use crate::error::Error;
use crate::index::{etag_matches, IndexCache, IndexTiming};
use crate::ingest::{Ingest, IngestConfig};
use crate::ingest_events::EventIngest;
use crate::keys::{KeyRing, KeyStatus};
use crate::lifecycle::{permit, Action, Actor, Role};
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use crate::store::{
    AuditEntry, DailyPoint, Engine, ErrorReport, FlightDetail, FlightSummary, Ingested, Outcome,
    Pending, Progress, ProgressRow, Revision, Store, TokenInfo,
};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{
    ConnectInfo, DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State,
};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Deref;
use std::sync::Arc;
use testpilot_flight::index::{key_id, public_key_to_base64};
use testpilot_flight::report::ReportBatch;
use testpilot_flight::{Clock, Diagnostics};
use utoipa::OpenApi;

/// Limits on the open client endpoints that write.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClientLimits {
    /// Largest request body, in bytes (reports and flights alike).
    pub max_body_bytes: usize,
    /// Most reports in one batch.
    pub max_reports: usize,
    /// Report requests per second per client address; 0 turns the limit off.
    pub rate_per_sec: f64,
    /// Requests a client address may send at once before the rate applies.
    pub burst: f64,
    /// The most events one client may store on one flight.
    pub max_events_per_client: u64,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            max_body_bytes: 1 << 20,
            max_reports: 1000,
            rate_per_sec: 20.0,
            burst: 60.0,
            max_events_per_client: crate::ingest_events::MAX_EVENTS_PER_CLIENT,
        }
    }
}

/// How the API behaves.
#[derive(Debug, Clone, Default)]
pub struct ApiConfig {
    /// Lifts the rule that a revision's author may not approve it. For one person running a
    /// tower locally; said in `/healthz`, in every self-approval's answer and audit entry.
    pub single_user: bool,
    pub limits: ClientLimits,
    pub index: IndexTiming,
    /// Reverse proxies whose `X-Forwarded-For` / `Forwarded` name the client for rate limits
    /// (`--trusted-proxy`); none by default, so the socket peer is the client.
    pub trusted_proxies: TrustedProxies,
    /// Push streams (`GET /control/stream`): how many, and the heartbeat.
    pub push: PushLimits,
    /// Simulations of a revision under review: the populations offered and the bounds.
    pub simulate: crate::simulate::SimConfig,
}

/// Everything a request handler needs.
pub struct Shared {
    pub store: Store,
    pub index: IndexCache,
    pub ingest: Ingest,
    /// The event writers (`POST /api/v1/events`).
    pub events: EventIngest,
    pub clock: Arc<dyn Clock>,
    pub metrics: Metrics,
    pub limiter: RateLimiter,
    /// The same limit for event requests, counted apart from reports.
    pub event_limiter: RateLimiter,
    /// The open push streams (`GET /control/stream`).
    pub push: Arc<Push>,
    /// The simulations running now (`crate::simulate`).
    pub simulations: crate::simulate::Slots,
    pub config: ApiConfig,
}

/// The router's state. Cheap to clone.
#[derive(Clone)]
pub struct AppState(pub Arc<Shared>);

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// Opens the tower over a migrated store: the signing key (created on the first start
    /// of a database), the index in memory, and the report writers (so call this inside a
    /// tokio runtime).
    pub async fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        config: ApiConfig,
    ) -> crate::Result<AppState> {
        AppState::with_keys(store, clock, config, KeyRing::default()).await
    }

    /// [`AppState::new`] for a tower given signing keys kept outside the database
    /// (`--signing-key-file`; `docs/keys.md`).
    pub async fn with_keys(
        store: Store,
        clock: Arc<dyn Clock>,
        config: ApiConfig,
        ring: KeyRing,
    ) -> crate::Result<AppState> {
        let now = clock.now();
        store
            .init_signing_key(&ring, crate::auth::random_bytes()?, now)
            .await?;
        let index = IndexCache::load(&store, ring, config.index, now).await?;
        let writers = match store.engine() {
            Engine::Sqlite => 1,
            Engine::Postgres => 4,
        };
        let ingest = Ingest::start(
            store.clone(),
            clock.clone(),
            IngestConfig {
                writers,
                max_group: 20_000,
            },
        );
        let events = EventIngest::start(
            store.clone(),
            clock.clone(),
            writers,
            20_000,
            config.limits.max_events_per_client,
        );
        Ok(AppState(Arc::new(Shared {
            store,
            index,
            ingest,
            events,
            clock,
            metrics: Metrics::default(),
            limiter: RateLimiter::new(config.limits.rate_per_sec, config.limits.burst),
            event_limiter: RateLimiter::new(config.limits.rate_per_sec, config.limits.burst),
            push: Push::new(config.push),
            simulations: crate::simulate::Slots::new(config.simulate.limits.concurrent),
            config,
        })))
    }

    /// The public key pilots pin (the one that signs the index): standard base64 of its 32
    /// bytes.
    pub fn public_key(&self) -> String {
        public_key_to_base64(&self.index.public_key())
    }

    /// Rebuilds the in-memory index from the store (after a change).
    pub async fn refresh_index(&self) -> crate::Result<()> {
        self.index
            .refresh(&self.store, self.clock.now())
            .await
            .map(|_| ())
    }
}

/// The tower's HTTP API.
pub fn app(state: AppState) -> Router {
    let limits = state.config.limits;
    Router::new()
        .route(
            "/api/v1/reports",
            post(post_reports).layer(DefaultBodyLimit::max(limits.max_body_bytes)),
        )
        .route(
            "/api/v1/events",
            post(events::post_events).layer(DefaultBodyLimit::max(
                limits.max_body_bytes.min(events::MAX_EVENT_BODY),
            )),
        )
        .route("/api/v1/flights", post(push_flight).get(list_flights))
        .route("/api/v1/flights/{studyname}", get(get_flight))
        .route("/api/v1/flights/{studyname}/diff", get(flight_diff))
        .route("/api/v1/flights/{studyname}/progress", get(flight_progress))
        .route("/api/v1/flights/{studyname}/errors", get(flight_errors))
        .route(
            "/api/v1/flights/{studyname}/results",
            get(events::flight_results),
        )
        .route(
            "/api/v1/flights/{studyname}/events.csv",
            get(events::export_csv),
        )
        .route(
            "/api/v1/flights/{studyname}/events.jsonl",
            get(events::export_jsonl),
        )
        .route(
            "/api/v1/flights/{studyname}/simulate",
            post(simulate::simulate_flight),
        )
        .route("/api/v1/flights/{studyname}/review", post(review_flight))
        .route("/api/v1/flights/{studyname}/approve", post(approve_flight))
        .route(
            "/api/v1/flights/{studyname}/send-back",
            post(send_back_flight),
        )
        .route("/api/v1/flights/{studyname}/kill", post(kill_flight))
        .route("/api/v1/flights/{studyname}/end", post(end_flight))
        .route("/api/v1/audit", get(audit_log))
        .route("/api/v1/tokens", post(create_token).get(list_tokens))
        .route("/api/v1/keys", get(list_keys))
        .route("/api/v1/keys/rotate", post(rotate_key))
        .route("/api/v1/keys/rotate/complete", post(complete_rotation))
        .route("/api/openapi.json", get(openapi))
        .route("/control/stream", get(push::stream))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .merge(crate::dashboard::routes())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn(log_requests))
        // The index is the hot path (every pilot, every poll): outside the request log.
        .route("/control/index.json", get(get_index))
        .with_state(state)
}

async fn log_requests(req: Request, next: Next) -> Response {
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let started = std::time::Instant::now();
    let res = next.run(req).await;
    let status = res.status().as_u16();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if status >= 500 {
        tracing::warn!(%method, path = uri.path(), status, ms, "request failed");
    } else {
        tracing::debug!(%method, path = uri.path(), status, ms, "request");
    }
    res
}

mod errors;
pub use errors::*;
mod events;
pub use events::{MAX_EVENTS, MAX_EVENT_BODY};
mod push;
pub use push::{Push, PushLimits};
mod simulate;

// ---------------------------------------------------------------- auth

/// The holder of the request's bearer token.
pub struct Caller(pub Actor);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Caller> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim);
        let refuse = |m: &str| {
            Metrics::inc(&state.metrics.auth_failures, 1);
            ApiError::new(StatusCode::UNAUTHORIZED, m)
        };
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Err(refuse(
                "this endpoint needs an API token: send `Authorization: Bearer <token>` (make one with `testpilot tower token create --role ROLE`)",
            ));
        };
        match state.store.actor_for_token(token).await? {
            Some(actor) => Ok(Caller(actor)),
            None => Err(refuse("this token is not known to this tower")),
        }
    }
}

/// The caller, if their role may do `action` (403 otherwise). Handlers call this before
/// they look at the body, so a caller without the role learns that first.
fn require(caller: &Caller, action: Action) -> ApiResult<&Actor> {
    let actor = &caller.0;
    permit(actor, action).map_err(|r| ApiError::from(Error::from(r)))?;
    Ok(actor)
}

// ---------------------------------------------------------------- client endpoints

fn index_headers(h: &mut HeaderMap, doc: &crate::index::IndexDoc) {
    h.insert(header::ETAG, doc.etag_header.clone());
    h.insert(header::CACHE_CONTROL, doc.cache_control.clone());
}

/// The signed index.
#[utoipa::path(get, path = "/control/index.json", tag = "client",
    params(("If-None-Match" = Option<String>, Header, description = "An ETag from an earlier answer")),
    responses(
        (status = 200, description = "The signed envelope `{payload, signature, keyId}`; `ETag` and `Cache-Control` set"),
        (status = 304, description = "Unchanged since the ETag given in `If-None-Match`"),
    ))]
async fn get_index(State(s): State<AppState>, req: Request) -> Response {
    index_response(&s, req.headers())
}

/// The index answer: 304 when `If-None-Match` matches, else the signed envelope. Reads
/// only memory.
pub fn index_response(s: &AppState, headers: &HeaderMap) -> Response {
    let doc = s.index.current();
    if let Some(inm) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        if etag_matches(inm, &doc.etag) {
            Metrics::inc(&s.metrics.index_not_modified, 1);
            let mut res = StatusCode::NOT_MODIFIED.into_response();
            index_headers(res.headers_mut(), &doc);
            return res;
        }
    }
    Metrics::inc(&s.metrics.index_full, 1);
    let mut res = doc.body.clone().into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    index_headers(res.headers_mut(), &doc);
    res
}

/// The service a tower serves: `GET /control/index.json` answered straight from memory,
/// ahead of routing (it is most of the traffic), and everything else by [`app`]'s router.
#[derive(Clone)]
pub struct Served {
    state: AppState,
    router: Router,
}

impl Served {
    pub fn new(state: AppState) -> Served {
        Served {
            router: app(state.clone()),
            state,
        }
    }
}

impl Served {
    /// The answer from memory, when `req` asks for the index.
    pub fn from_memory<B>(&self, req: &axum::http::Request<B>) -> Option<Response> {
        (req.method() == axum::http::Method::GET && req.uri().path() == "/control/index.json")
            .then(|| index_response(&self.state, req.headers()))
    }

    /// Any other request, through the router.
    pub fn route(&self, req: Request) -> <Router as tower_service::Service<Request>>::Future {
        tower_service::Service::call(&mut self.router.clone(), req)
    }
}

impl tower_service::Service<Request> for Served {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = futures_util::future::Either<
        std::future::Ready<Result<Response, std::convert::Infallible>>,
        <Router as tower_service::Service<Request>>::Future,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        match self.from_memory(&req) {
            Some(res) => futures_util::future::Either::Left(std::future::ready(Ok(res))),
            None => futures_util::future::Either::Right(self.route(req)),
        }
    }
}

/// The client address a request is rate-limited by: the socket peer (unspecified when served
/// without a socket), or, from a trusted proxy, the client it forwarded for (`client_addr`).
fn peer(s: &AppState, req: &Request) -> IpAddr {
    let socket = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    s.config.trusted_proxies.client(socket, req.headers())
}

/// Status reports from a pilot. Idempotent on `(client, seq)`; answered only once durable.
/// Only reports on flights that were ever live on this tower are taken, and only reports
/// stored now (not resends) move progress.
#[utoipa::path(post, path = "/api/v1/reports", tag = "client",
    request_body(content = Object, content_type = "application/json", description = "`{\"client\": \"<uuid>\", \"reports\": [{\"seq\", \"flight\", \"version\", \"arm\", \"status\", \"step\", \"at\", \"detail\"}]}`"),
    responses(
        (status = 200, description = "Stored (durably)", body = Ingested),
        (status = 400, description = "Not JSON", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "The body is not declared `Content-Type: application/json`", body = ErrorBody),
        (status = 422, description = "Not a valid batch, or a batch with reports on flights that were never live on this tower (`reports[i].flight` names each); every problem with its path. Nothing of the batch is stored: a batch is taken whole or not at all", body = ErrorBody),
        (status = 429, description = "Too many requests from this address; see Retry-After", body = ErrorBody),
    ))]
async fn post_reports(State(s): State<AppState>, req: Request) -> ApiResult<Json<Ingested>> {
    let ip = peer(&s, &req);
    if let Err(retry) = s.limiter.check(ip, s.clock.now()) {
        Metrics::inc(&s.metrics.rate_limited, 1);
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many report requests from {ip}; retry in {retry} s"),
        );
        e.retry_after = Some(retry);
        return Err(e);
    }
    let limits = s.config.limits;
    let headers = req.headers().clone();
    let rejected = || Metrics::inc(&s.metrics.report_batches_rejected, 1);
    let v = json_body(
        &headers,
        Bytes::from_request(req, &s).await,
        limits.max_body_bytes,
    )
    .inspect_err(|_| rejected())?;
    let batch = ReportBatch::from_json(&v, limits.max_reports).map_err(|d| {
        rejected();
        ApiError::invalid(
            format!("the report batch is not valid ({} problems)", d.len()),
            &d,
        )
    })?;
    let n = batch.reports.len() as u64;
    let r = s
        .ingest
        .submit(batch, s.index.current().serial)
        .await
        .inspect_err(|e| {
            if matches!(e, Error::Invalid { .. }) {
                rejected();
            }
        })?;
    Metrics::inc(&s.metrics.report_batches, 1);
    Metrics::inc(&s.metrics.reports_accepted, r.accepted);
    Metrics::inc(&s.metrics.reports_duplicate, n - r.accepted);
    Ok(Json(r))
}

// ---------------------------------------------------------------- management

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
async fn push_flight(
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
async fn list_flights(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<FlightSummary>>> {
    require(&caller, Action::Read)?;
    Ok(Json(s.store.list_flights().await?))
}

fn no_flight(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("there is no flight named `{name}`"),
    )
}

/// One flight with its revisions and audit log.
#[utoipa::path(get, path = "/api/v1/flights/{studyname}", tag = "flights", security(("token" = [])),
    params(("studyname" = String, Path)),
    responses((status = 200, body = FlightDetail), (status = 404, body = ErrorBody)))]
async fn get_flight(
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
struct DiffQuery {
    /// The older revision (default: the one before `to`).
    from: Option<u64>,
    /// The newer revision (default: the newest).
    to: Option<u64>,
}

/// What changed between two revisions.
#[utoipa::path(get, path = "/api/v1/flights/{studyname}/diff", tag = "flights", security(("token" = [])),
    params(("studyname" = String, Path), DiffQuery),
    responses((status = 200, description = "`{studyname, from, to, changes: [{path, op, from, to}]}`"), (status = 404, body = ErrorBody)))]
async fn flight_diff(
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
async fn flight_progress(
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
struct LimitQuery {
    /// At most this many entries (default 100, at most 10000).
    limit: Option<u32>,
}

/// The newest reports on a flight that carried a `detail` (why it failed, ...).
#[utoipa::path(get, path = "/api/v1/flights/{studyname}/errors", tag = "flights", security(("token" = [])),
    params(("studyname" = String, Path), LimitQuery),
    responses((status = 200, body = [ErrorReport]), (status = 404, body = ErrorBody)))]
async fn flight_errors(
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
async fn audit_log(
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

/// The caller if their role may do `action`, then the optional body: in that order.
fn action_request<'c, T: DeserializeOwned + Default>(
    s: &AppState,
    caller: &'c Caller,
    action: Action,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    expected: &str,
) -> ApiResult<(&'c Actor, T)> {
    let actor = require(caller, action)?;
    let body = match optional_json_body(headers, body, s.config.limits.max_body_bytes)? {
        None => T::default(),
        Some(v) => typed_body(v, expected)?,
    };
    Ok((actor, body))
}

const ACTION_BODY: &str = "{\"version\"?: n, \"reason\"?: \"...\"}";

/// Sends the newest revision (a draft) for review.
#[utoipa::path(post, path = "/api/v1/flights/{studyname}/review", tag = "flights", security(("token" = [])),
    params(("studyname" = String, Path)), request_body(content = Option<ActionBody>, content_type = "application/json"),
    responses((status = 200, body = Outcome), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn review_flight(
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
async fn approve_flight(
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
async fn send_back_flight(
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
async fn kill_flight(
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
async fn end_flight(
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

/// The body of `POST /api/v1/tokens`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub role: Role,
    /// The holder's identity (default `<role>-<6 hex>`).
    pub name: Option<String>,
}

/// A token just made; `token` is shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    pub token: String,
    #[serde(flatten)]
    pub info: TokenInfo,
}

/// Makes an API token (admin only).
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", security(("token" = [])),
    request_body(content = NewToken, content_type = "application/json"),
    responses((status = 201, body = CreatedToken), (status = 403, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_token(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(
    StatusCode,
    [(header::HeaderName, HeaderValue); 1],
    Json<CreatedToken>,
)> {
    let actor = require(&caller, Action::ManageTokens)?;
    let v = json_body(&headers, body, s.config.limits.max_body_bytes)?;
    let req: NewToken = typed_body(
        v,
        "{\"role\": \"author\"|\"approver\"|\"admin\", \"name\"?: \"...\"}",
    )?;
    let token = crate::auth::new_secret()?;
    let info = s
        .store
        .create_token(
            req.role,
            req.name.as_deref(),
            &token,
            &actor.name,
            s.clock.now(),
        )
        .await?;
    // The answer carries a secret: no cache (browser, proxy) may keep it.
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(CreatedToken { token, info }),
    ))
}

/// Every token (never their secrets; admin only).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", security(("token" = [])),
    responses((status = 200, body = [TokenInfo]), (status = 403, body = ErrorBody)))]
async fn list_tokens(State(s): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<TokenInfo>>> {
    require(&caller, Action::ManageTokens)?;
    Ok(Json(s.store.list_tokens().await?))
}

// ---------------------------------------------------------------- signing keys

/// The signing key and, during a rotation, its announced successor (never their secrets).
#[utoipa::path(get, path = "/api/v1/keys", tag = "keys", security(("token" = [])),
    responses((status = 200, body = KeyStatus), (status = 401, body = ErrorBody)))]
async fn list_keys(State(s): State<AppState>, caller: Caller) -> ApiResult<Json<KeyStatus>> {
    require(&caller, Action::Read)?;
    Ok(Json(crate::keys::status(&s).await?))
}

/// What `POST /api/v1/keys/rotate` takes: the successor's public key when its seed is kept
/// outside the database; without it, the tower makes one and keeps it in the database.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    /// Standard base64 of the successor's 32-byte public key.
    #[serde(rename = "publicKey")]
    pub public_key: Option<String>,
}

/// Proposes a rotation of the signing key: the index announces the successor as `nextKey`
/// (and its serial grows). A different person completes it.
#[utoipa::path(post, path = "/api/v1/keys/rotate", tag = "keys", security(("token" = [])),
    request_body(content = Option<RotateBody>, content_type = "application/json"),
    responses((status = 200, body = KeyStatus), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn rotate_key(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<KeyStatus>> {
    let (actor, body) = action_request::<RotateBody>(
        &s,
        &caller,
        Action::RotateKey,
        &headers,
        body,
        "{\"publicKey\"?: \"<base64 of 32 bytes>\"}",
    )?;
    let successor = match &body.public_key {
        Some(k) => Some(testpilot_flight::index::parse_public_key(k).map_err(|e| {
            ApiError::at(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the body is not valid",
                "publicKey",
                e.to_string(),
            )
        })?),
        None => None,
    };
    Ok(Json(crate::keys::propose(&s, actor, successor).await?))
}

/// Completes the pending rotation: the tower signs with the successor from now on (and the
/// serial grows). Needs someone other than the person who proposed it.
#[utoipa::path(post, path = "/api/v1/keys/rotate/complete", tag = "keys", security(("token" = [])),
    responses((status = 200, body = KeyStatus), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn complete_rotation(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<KeyStatus>> {
    let actor = require(&caller, Action::RotateKey)?;
    Ok(Json(crate::keys::complete(&s, actor).await?))
}

// ---------------------------------------------------------------- operations

/// Liveness and what this tower is.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "`{ok, engine, singleUser, serial, keyId, publicKey}`"), (status = 503, description = "The database cannot be reached")))]
async fn healthz(State(s): State<AppState>) -> Response {
    let doc = s.index.current();
    let engine = match s.store.engine() {
        Engine::Sqlite => "sqlite",
        Engine::Postgres => "postgres",
    };
    let key = doc.signed_by;
    let body = |ok: bool| {
        Json(json!({
            "ok": ok, "engine": engine, "singleUser": s.config.single_user, "serial": doc.serial,
            "keyId": key_id(&key), "publicKey": public_key_to_base64(&key),
        }))
    };
    match s.store.index_serial().await {
        Ok(_) => body(true).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, body(false)).into_response()
        }
    }
}

/// Counters in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format")))]
async fn metrics(State(s): State<AppState>) -> Response {
    let doc = s.index.current();
    let mut res = s.metrics.render(doc.serial, doc.flights).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    res
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI description of this API.
#[derive(OpenApi)]
#[openapi(
    info(title = "Test Pilot control tower", description = "Flights' lifecycle and approval, the signed index, reports and progress, recorded events and their results."),
    paths(get_index, push::stream, post_reports, events::post_events, push_flight, list_flights, get_flight, flight_diff, flight_progress, flight_errors,
          events::flight_results, events::export_csv, events::export_jsonl,
          simulate::simulate_flight, review_flight, approve_flight, send_back_flight, kill_flight, end_flight, audit_log, create_token, list_tokens, healthz, metrics,
          list_keys, rotate_key, complete_rotation),
    components(schemas(ErrorBody, Problem, Outcome, FlightSummary, FlightDetail, Revision, AuditEntry, Pending, Progress,
                       ProgressRow, DailyPoint, ErrorReport, Ingested, TokenInfo, NewToken, CreatedToken, ActionBody, SendBackBody,
                       KeyStatus, crate::keys::KeyInfo, RotateBody,
                       crate::simulate::SimRequest, crate::simulate::Simulation,
                       crate::results::Results, crate::results::TopicResults, crate::results::ArmResults,
                       crate::results::Mean, crate::results::Share, crate::results::VsControl,
                       crate::results::Difference, crate::results::DayCount)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

async fn openapi() -> Json<&'static Value> {
    Json(crate::openapi::document())
}
