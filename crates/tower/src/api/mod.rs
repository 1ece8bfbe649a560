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
            post(client::post_reports).layer(DefaultBodyLimit::max(limits.max_body_bytes)),
        )
        .route(
            "/api/v1/events",
            post(events::post_events).layer(DefaultBodyLimit::max(
                limits.max_body_bytes.min(events::MAX_EVENT_BODY),
            )),
        )
        .route(
            "/api/v1/flights",
            post(flights::push_flight).get(flights::list_flights),
        )
        .route("/api/v1/flights/{studyname}", get(flights::get_flight))
        .route(
            "/api/v1/flights/{studyname}/diff",
            get(flights::flight_diff),
        )
        .route(
            "/api/v1/flights/{studyname}/progress",
            get(flights::flight_progress),
        )
        .route(
            "/api/v1/flights/{studyname}/errors",
            get(flights::flight_errors),
        )
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
        .route(
            "/api/v1/flights/{studyname}/review",
            post(flights::review_flight),
        )
        .route(
            "/api/v1/flights/{studyname}/approve",
            post(flights::approve_flight),
        )
        .route(
            "/api/v1/flights/{studyname}/send-back",
            post(flights::send_back_flight),
        )
        .route(
            "/api/v1/flights/{studyname}/kill",
            post(flights::kill_flight),
        )
        .route("/api/v1/flights/{studyname}/end", post(flights::end_flight))
        .route("/api/v1/audit", get(flights::audit_log))
        .route(
            "/api/v1/tokens",
            post(admin::create_token).get(admin::list_tokens),
        )
        .route("/api/v1/keys", get(admin::list_keys))
        .route("/api/v1/keys/rotate", post(admin::rotate_key))
        .route(
            "/api/v1/keys/rotate/complete",
            post(admin::complete_rotation),
        )
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
        .route("/control/index.json", get(client::get_index))
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
mod admin;
mod simulate;
pub use admin::{CreatedToken, NewToken, RotateBody};
mod client;
use client::peer;
pub use client::{index_response, Served};
mod flights;
pub use flights::{ActionBody, SendBackBody};

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

fn no_flight(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("there is no flight named `{name}`"),
    )
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
    paths(client::get_index, push::stream, client::post_reports, events::post_events, flights::push_flight, flights::list_flights, flights::get_flight, flights::flight_diff, flights::flight_progress, flights::flight_errors,
          events::flight_results, events::export_csv, events::export_jsonl,
          simulate::simulate_flight, flights::review_flight, flights::approve_flight, flights::send_back_flight, flights::kill_flight, flights::end_flight, flights::audit_log, admin::create_token, admin::list_tokens, healthz, metrics,
          admin::list_keys, admin::rotate_key, admin::complete_rotation),
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
