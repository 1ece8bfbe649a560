//! The tower's web dashboard (issue 5): see, review, approve, kill and end flights in a
//! browser. Server-rendered HTML (maud, which escapes every interpolated value), inline SVG
//! charts, one vendored stylesheet and one small polling script, all served from memory.
//!
//! Invariants:
//! - The dashboard acts only through [`crate::actions`] and reads through
//!   [`crate::store::Store`] — the same functions as the HTTP API, so the lifecycle rules
//!   (roles, two-person approval, states), the audit log, the metrics and the index refresh
//!   hold here exactly as there. It holds no state of its own.
//! - Sign-in keeps the API token in an `HttpOnly`, `SameSite=Strict` cookie scoped to `/ui`.
//!   Every state-changing request is a POST that must come from this origin
//!   (`Sec-Fetch-Site`/`Origin`) and carry a CSRF field derived from the token.
//! - User-supplied text is only ever interpolated through maud (escaped); nothing is
//!   `PreEscaped` except markup the dashboard itself builds. The Content-Security-Policy
//!   forbids inline scripts and styles, so even a missed escape could not run.
//! - Nothing is loaded from another origin.

mod charts;
mod exports;
#[cfg(any(test, feature = "testing"))]
pub mod fixtures;
mod pages;
mod readable;
mod results;
mod review;
mod sentences;
mod snapshots;

use crate::actions;
use crate::api::AppState;
use crate::error::Error;
use crate::lifecycle::{permit, role_may, Action, Actor, FlightState, RevisionState};
use crate::store::FlightDetail;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::Markup;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use testpilot_flight::Flight;

/// The cookie that holds the signed-in token.
const COOKIE: &str = "tp_dashboard";
/// How long a flight's progress aggregates may be reused at most, in ms of the tower's clock.
pub const SNAPSHOT_MAX_AGE_MS: i64 = snapshots::MAX_AGE_MS;
/// How often live pages poll for a fresh fragment, in ms.
pub const POLL_MS: u64 = 2000;

/// The dashboard's routes, to merge into [`crate::api::app`].
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(index))
        .route("/ui/live", get(index_live))
        .route("/ui/signin", get(signin_page).post(signin))
        .route("/ui/signout", post(signout))
        .route("/ui/review", get(review_queue))
        .route("/ui/push", get(push_page).post(push))
        .route("/ui/assets/{file}", get(asset))
        .route("/ui/flights/{name}", get(flight_page))
        .route("/ui/flights/{name}/live", get(flight_live))
        .route("/ui/flights/{name}/events.csv", get(exports::csv))
        .route("/ui/flights/{name}/events.jsonl", get(exports::jsonl))
        .route("/ui/flights/{name}/review", get(review::review_page))
        .route("/ui/flights/{name}/simulate", post(review::simulate))
        .route("/ui/flights/{name}/submit", post(submit))
        .route("/ui/flights/{name}/approve", post(approve))
        .route("/ui/flights/{name}/sendback", post(send_back))
        .route("/ui/flights/{name}/kill", get(kill_page).post(kill))
        .route("/ui/flights/{name}/end", get(end_page).post(end))
}

// ---------------------------------------------------------------- responses

/// Security headers for every dashboard page: no inline script or style, no framing, no
/// caching of pages that show a signed-in person's view.
fn secure(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

fn html(status: StatusCode, m: Markup) -> Response {
    let mut res = (status, m.into_string()).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure(res)
}

fn see_other(to: &str) -> Response {
    secure(Redirect::to(to).into_response())
}

/// An error shown as a page: what went wrong and where to go from here.
#[derive(Debug)]
pub struct PageError {
    status: StatusCode,
    message: String,
    back: Option<String>,
}

impl PageError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        PageError {
            status,
            message: message.into(),
            back: None,
        }
    }
    fn back(mut self, to: impl Into<String>) -> Self {
        self.back = Some(to.into());
        self
    }
}

impl From<Error> for PageError {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Config(_) => StatusCode::BAD_REQUEST,
            Error::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            other => {
                tracing::error!(error = %other, "dashboard: internal error");
                return PageError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error; the tower's log says more",
                );
            }
        };
        PageError::new(status, e.to_string())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        html(
            self.status,
            pages::error_page(self.status, &self.message, self.back.as_deref()),
        )
    }
}

type PageResult = Result<Response, PageError>;

// ---------------------------------------------------------------- sign-in and CSRF

/// A signed-in person: the holder of the token in the dashboard cookie.
#[derive(Debug, Clone)]
pub struct Session {
    pub actor: Actor,
    /// The CSRF field every form of this session carries.
    pub csrf: String,
    /// Approving one's own revision is allowed (single-user mode).
    pub single_user: bool,
}

impl Session {
    pub fn may(&self, action: Action) -> bool {
        role_may(self.actor.role, action)
    }
}

/// The CSRF value for a token: a hash of it, so that it needs no server state and a page
/// from another origin cannot know it.
fn csrf_for(token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"testpilot-dashboard-csrf\0");
    h.update(token.as_bytes());
    hex::encode(&h.finalize()[..16])
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
        .filter(|v| token_shaped(v))
}

/// Tokens are `tp_` and hex; anything else is refused before it reaches a header or the
/// database.
fn token_shaped(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 200
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Where to send someone who is not signed in: the sign-in page, back here afterwards.
pub struct SignInFirst(String);

impl IntoResponse for SignInFirst {
    fn into_response(self) -> Response {
        let next: String = form_urlencode(&self.0);
        see_other(&format!("/ui/signin?next={next}"))
    }
}

fn form_urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)])
        .map(|x| x.trim_start_matches('=').to_string())
        .unwrap_or_default()
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Session, Response> {
        let here = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/ui/".into());
        let Some(token) = cookie_token(&parts.headers) else {
            return Err(SignInFirst(here).into_response());
        };
        match s.store.actor_for_token(&token).await {
            Ok(Some(actor)) => Ok(Session {
                actor,
                csrf: csrf_for(&token),
                single_user: s.config.single_user,
            }),
            Ok(None) => Err(SignInFirst(here).into_response()),
            Err(e) => Err(PageError::from(e).into_response()),
        }
    }
}

/// Refuses a state-changing request that a page of another origin could have sent.
fn same_origin(headers: &HeaderMap) -> Result<(), PageError> {
    let refuse = || {
        PageError::new(
            StatusCode::FORBIDDEN,
            "this form was not sent from the dashboard's own pages; reload the page and try again",
        )
    };
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return if site == "same-origin" {
            Ok(())
        } else {
            Err(refuse())
        };
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    match (host, origin) {
        (Some(host), Some(origin)) => {
            let o = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .unwrap_or("");
            if o == host {
                Ok(())
            } else {
                Err(refuse())
            }
        }
        _ => Err(refuse()),
    }
}

/// A form's fields.
type Form = BTreeMap<String, String>;

fn parse_form(body: &[u8]) -> Result<Form, PageError> {
    serde_urlencoded::from_bytes(body).map_err(|e| {
        PageError::new(
            StatusCode::BAD_REQUEST,
            format!("the form is not valid: {e}"),
        )
    })
}

/// A POST from a signed-in session: same origin, the right CSRF field, and the form.
fn checked_form(session: &Session, headers: &HeaderMap, body: &[u8]) -> Result<Form, PageError> {
    same_origin(headers)?;
    let form = parse_form(body)?;
    if form.get("csrf").map(String::as_str) != Some(session.csrf.as_str()) {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            "this form is out of date (its CSRF field does not match your session); reload the page and try again",
        ));
    }
    Ok(form)
}

/// Refuses (403) a session whose role may not do `action`; checked before the form is read.
fn require(session: &Session, action: Action, back: &str) -> Result<(), PageError> {
    permit(&session.actor, action).map_err(|r| PageError::from(Error::from(r)).back(back))
}

/// A safe place to go after signing in: a dashboard path of visible ASCII (it goes into a
/// `Location` header, where CR/LF or other bytes would break the answer), never another site.
fn safe_next(next: Option<&String>) -> String {
    match next {
        Some(n)
            if n.starts_with("/ui/")
                && !n.contains('\\')
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n.clone()
        }
        _ => "/ui/".into(),
    }
}

async fn signin_page(Query(q): Query<Form>) -> Response {
    html(
        StatusCode::OK,
        pages::signin(&safe_next(q.get("next")), None),
    )
}

async fn signin(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> PageResult {
    same_origin(&headers)?;
    let form = parse_form(&body)?;
    let next = safe_next(form.get("next"));
    let token = form.get("token").map(|t| t.trim()).unwrap_or("");
    let actor = if token_shaped(token) {
        s.store.actor_for_token(token).await?
    } else {
        None
    };
    if actor.is_none() {
        return Ok(html(
            StatusCode::UNAUTHORIZED,
            pages::signin(
                &next,
                Some("This token is not known to this tower. Make one with `testpilot tower token create --role ROLE`."),
            ),
        ));
    }
    let mut res = see_other(&next);
    let cookie = format!("{COOKIE}={token}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=43200");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(res)
}

async fn signout(headers: HeaderMap) -> PageResult {
    same_origin(&headers)?;
    let mut res = see_other("/ui/signin");
    res.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("tp_dashboard=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    Ok(res)
}

// ---------------------------------------------------------------- assets

const STYLE_CSS: &str = include_str!("assets/style.css");
const LIVE_JS: &str = include_str!("assets/live.js");

async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "style.css" => (STYLE_CSS, "text/css; charset=utf-8"),
        "live.js" => (LIVE_JS, "text/javascript; charset=utf-8"),
        _ => {
            return PageError::new(StatusCode::NOT_FOUND, "no such asset").into_response();
        }
    };
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    secure(res)
}

// ---------------------------------------------------------------- the flights list

/// The list's filters: `state` and a search `q` over name, description and author.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct ListQuery {
    pub state: Option<String>,
    pub q: Option<String>,
}

impl ListQuery {
    fn from_form(f: &Form) -> ListQuery {
        ListQuery {
            state: f.get("state").filter(|s| !s.is_empty()).cloned(),
            q: f.get("q").filter(|s| !s.trim().is_empty()).cloned(),
        }
    }
}

async fn list_data(s: &AppState, q: &ListQuery) -> Result<pages::ListData, PageError> {
    let state = match q.state.as_deref() {
        None => None,
        Some(x) => Some(FlightState::parse(x).ok_or_else(|| {
            PageError::new(
                StatusCode::BAD_REQUEST,
                format!("`{x}` is not a flight state; use draft, review, live, killed or ended"),
            )
            .back("/ui/")
        })?),
    };
    let all = s.store.list_flights().await?;
    let glances = s.store.glances().await?;
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    for f in &all {
        *counts.entry(f.state.as_str()).or_default() += 1;
    }
    let needle = q.q.as_deref().map(str::to_lowercase);
    let total = all.len();
    let rows = all
        .into_iter()
        .filter(|f| state.is_none_or(|st| f.state == st))
        .filter(|f| {
            needle.as_deref().is_none_or(|n| {
                f.studyname.to_lowercase().contains(n)
                    || f.description.to_lowercase().contains(n)
                    || f.author.to_lowercase().contains(n)
            })
        })
        .map(|f| {
            let g = glances.get(&f.studyname).cloned().unwrap_or_default();
            pages::ListRow {
                by_status: g.by_status,
                live_since: g.live_since,
                summary: f,
            }
        })
        .collect();
    Ok(pages::ListData {
        rows,
        total,
        counts: counts
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        query: q.clone(),
        now: s.clock.now(),
    })
}

async fn index(State(s): State<AppState>, session: Session, Query(f): Query<Form>) -> PageResult {
    let q = ListQuery::from_form(&f);
    let data = list_data(&s, &q).await?;
    Ok(html(StatusCode::OK, pages::index(&session, &data)))
}

async fn index_live(
    State(s): State<AppState>,
    _session: Session,
    Query(f): Query<Form>,
) -> PageResult {
    let q = ListQuery::from_form(&f);
    let data = list_data(&s, &q).await?;
    Ok(html(StatusCode::OK, pages::index_table(&data)))
}

async fn review_queue(State(s): State<AppState>, session: Session) -> PageResult {
    let all = s.store.list_flights().await?;
    let waiting: Vec<_> = all
        .into_iter()
        .filter(|f| {
            f.state == FlightState::Review
                || f.pending
                    .as_ref()
                    .is_some_and(|p| p.state == RevisionState::Review)
        })
        .collect();
    Ok(html(
        StatusCode::OK,
        pages::review_queue(&session, &waiting),
    ))
}

// ---------------------------------------------------------------- one flight

async fn detail(s: &AppState, name: &str) -> Result<FlightDetail, PageError> {
    s.store.flight(name).await?.ok_or_else(|| {
        PageError::new(
            StatusCode::NOT_FOUND,
            format!("there is no flight named `{name}`"),
        )
        .back("/ui/")
    })
}

/// A flight and its progress, read concurrently (the progress aggregates dominate a big
/// flight's page, and SQLite serves them on separate read connections).
async fn flight_and_progress(
    s: &AppState,
    name: &str,
) -> Result<(FlightDetail, pages::ProgressData), PageError> {
    let (d, snap) = tokio::try_join!(detail(s, name), async {
        Ok::<_, PageError>(snapshots::progress(s, name).await?)
    })?;
    // The plan whose steps label the funnel: the live revision's, else the newest.
    let shown = d.summary.live_version.unwrap_or(d.summary.latest_version);
    let spec = d
        .revisions
        .iter()
        .find(|r| r.version == shown)
        .and_then(|r| Flight::from_json(&r.spec).ok());
    let p = pages::ProgressData {
        progress: snap.progress.clone(),
        enrolments: snap.enrolments.clone(),
        errors: snap.errors.clone(),
        flight: spec,
    };
    Ok((d, p))
}

#[derive(Debug, Default, Deserialize)]
struct DiffQuery {
    from: Option<String>,
    to: Option<String>,
}

fn version_param(v: Option<&str>, what: &str, name: &str) -> Result<Option<u64>, PageError> {
    match v.filter(|x| !x.is_empty()) {
        None => Ok(None),
        Some(x) => x.parse().map(Some).map_err(|_| {
            PageError::new(
                StatusCode::BAD_REQUEST,
                format!("`{what}` must be a revision number, not `{x}`"),
            )
            .back(format!("/ui/flights/{name}"))
        }),
    }
}

async fn flight_page(
    State(s): State<AppState>,
    session: Session,
    Path(name): Path<String>,
    Query(q): Query<DiffQuery>,
) -> PageResult {
    let (d, p) = flight_and_progress(&s, &name).await?;
    let newest = d.summary.latest_version;
    let to = version_param(q.to.as_deref(), "to", &name)?.unwrap_or(newest);
    let from = version_param(q.from.as_deref(), "from", &name)?.unwrap_or(to.saturating_sub(1));
    let known = |v: u64| v == 0 || d.revisions.iter().any(|r| r.version == v);
    if !known(from) || !known(to) || to == 0 {
        return Err(PageError::new(
            StatusCode::NOT_FOUND,
            format!(
                "`{name}` has no revision {}",
                if known(to) && to != 0 { from } else { to }
            ),
        )
        .back(format!("/ui/flights/{name}")));
    }
    let results = results_for(&s, &name).await;
    Ok(html(
        StatusCode::OK,
        pages::flight(
            &session,
            &d,
            &p,
            results.as_ref(),
            (from, to),
            s.clock.now(),
        ),
    ))
}

/// The results the flight page shows (`docs/api.md#results`), computed from the rollups by
/// [`crate::results::results`], as the API answers them; `None` (no results section) when
/// they cannot be computed, which the tower's log says. Results a test set with
/// `fixtures::show_results` take their place.
async fn results_for(s: &AppState, name: &str) -> Option<crate::results::Results> {
    #[cfg(any(test, feature = "testing"))]
    if let Some(r) = fixtures::shown_results(name) {
        return Some(r);
    }
    match crate::results::results(&s.store, name).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, flight = name, "dashboard: results failed");
            None
        }
    }
}

async fn flight_live(
    State(s): State<AppState>,
    _session: Session,
    Path(name): Path<String>,
) -> PageResult {
    let started = std::time::Instant::now();
    let (d, p) = flight_and_progress(&s, &name).await?;
    let mut res = html(StatusCode::OK, pages::progress(&d, &p));
    // A page that is slow to build is polled less often: 20 times its build time, at least
    // every POLL_MS and at most every 30 s.
    let every = (started.elapsed().as_millis() as u64 * 20).clamp(POLL_MS, 30_000);
    res.headers_mut()
        .insert("x-poll-ms", HeaderValue::from(every));
    Ok(res)
}

async fn push_page(session: Session) -> PageResult {
    require(&session, Action::Push, "/ui/")?;
    Ok(html(StatusCode::OK, pages::push(&session, "", None)))
}

async fn push(
    State(s): State<AppState>,
    session: Session,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    require(&session, Action::Push, "/ui/")?;
    let form = checked_form(&session, &headers, &body)?;
    let text = form.get("spec").cloned().unwrap_or_default();
    let problems: Vec<(String, String)> = match testpilot_flight::json::from_str(&text) {
        Err(e) => vec![(
            "$".into(),
            format!(
                "not valid JSON: line {}, column {}: {e}",
                e.line(),
                e.column()
            ),
        )],
        // A flight or a copilot document, as on the API.
        Ok(v) => match actions::push_document(&s, &session.actor, &v).await {
            Err(crate::error::Error::Invalid { problems, .. }) => problems
                .iter()
                .map(|x| (x.path.to_string(), x.message.clone()))
                .collect(),
            Err(e) => return Err(e.into()),
            Ok(out) => return Ok(see_other(&format!("/ui/flights/{}", out.studyname))),
        },
    };
    Ok(html(
        StatusCode::UNPROCESSABLE_ENTITY,
        pages::push(&session, &text, Some(&problems)),
    ))
}

fn version_field(form: &Form, name: &str) -> Result<Option<u64>, PageError> {
    version_param(form.get("version").map(String::as_str), "version", name)
}

async fn submit(
    State(s): State<AppState>,
    session: Session,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let back = format!("/ui/flights/{name}");
    require(&session, Action::Review, &back)?;
    let form = checked_form(&session, &headers, &body)?;
    let version = version_field(&form, &name)?;
    actions::review(&s, &session.actor, &name, version)
        .await
        .map_err(|e| PageError::from(e).back(&back))?;
    Ok(see_other(&back))
}

async fn approve(
    State(s): State<AppState>,
    session: Session,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let back = format!("/ui/flights/{name}");
    require(&session, Action::Approve, &back)?;
    let form = checked_form(&session, &headers, &body)?;
    let version = version_field(&form, &name)?;
    actions::approve(&s, &session.actor, &name, version)
        .await
        .map_err(|e| PageError::from(e).back(format!("{back}/review")))?;
    Ok(see_other(&back))
}

async fn send_back(
    State(s): State<AppState>,
    session: Session,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    let back = format!("/ui/flights/{name}");
    require(&session, Action::SendBack, &back)?;
    let form = checked_form(&session, &headers, &body)?;
    let version = version_field(&form, &name)?;
    let comment = form.get("comment").map(String::as_str).unwrap_or("");
    actions::send_back(&s, &session.actor, &name, version, comment)
        .await
        .map_err(|e| PageError::from(e).back(format!("{back}/review")))?;
    Ok(see_other(&back))
}

/// Kill or end: both ask for a confirmation that names the flight and the clients affected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Kill,
    End,
}

impl Ending {
    fn action(self) -> Action {
        match self {
            Ending::Kill => Action::Kill,
            Ending::End => Action::End,
        }
    }
    pub fn verb(self) -> &'static str {
        match self {
            Ending::Kill => "kill",
            Ending::End => "end",
        }
    }
}

/// The clients a kill or end affects: those enrolled (by their latest report), and how
/// many of them are running it now.
async fn affected(s: &AppState, name: &str) -> Result<pages::Affected, PageError> {
    let glances = s.store.glances().await?;
    let by_status = glances.get(name).map(|g| &g.by_status);
    let count = |keep: &dyn Fn(&str) -> bool| {
        by_status
            .map(|b| b.iter().filter(|(k, _)| keep(k)).map(|(_, v)| v).sum())
            .unwrap_or(0)
    };
    Ok(pages::Affected {
        enrolled: count(&|k| !charts::not_enrolled(k)),
        running: count(&|k| k == "running"),
    })
}

async fn confirm_page(s: &AppState, session: &Session, name: &str, how: Ending) -> PageResult {
    let back = format!("/ui/flights/{name}");
    require(session, how.action(), &back)?;
    let (d, affected) = tokio::try_join!(detail(s, name), affected(s, name))?;
    Ok(html(
        StatusCode::OK,
        pages::confirm(session, &d.summary, affected, how, None),
    ))
}

async fn kill_page(
    State(s): State<AppState>,
    session: Session,
    Path(name): Path<String>,
) -> PageResult {
    confirm_page(&s, &session, &name, Ending::Kill).await
}

async fn end_page(
    State(s): State<AppState>,
    session: Session,
    Path(name): Path<String>,
) -> PageResult {
    confirm_page(&s, &session, &name, Ending::End).await
}

async fn finish(
    s: &AppState,
    session: &Session,
    name: &str,
    headers: &HeaderMap,
    body: &[u8],
    how: Ending,
) -> PageResult {
    let back = format!("/ui/flights/{name}");
    require(session, how.action(), &back)?;
    let form = checked_form(session, headers, body)?;
    let d = detail(s, name).await?;
    if form.get("confirm").map(|c| c.trim()) != Some(name) {
        let affected = affected(s, name).await?;
        return Ok(html(
            StatusCode::UNPROCESSABLE_ENTITY,
            pages::confirm(
                session,
                &d.summary,
                affected,
                how,
                Some("type the flight's name exactly to confirm"),
            ),
        ));
    }
    let reason = form.get("reason").map(String::as_str);
    match how {
        Ending::Kill => actions::kill(s, &session.actor, name, reason).await,
        Ending::End => actions::end(s, &session.actor, name, reason).await,
    }
    .map_err(|e| PageError::from(e).back(&back))?;
    Ok(see_other(&back))
}

async fn kill(
    State(s): State<AppState>,
    session: Session,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    finish(&s, &session, &name, &headers, &body, Ending::Kill).await
}

async fn end(
    State(s): State<AppState>,
    session: Session,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> PageResult {
    finish(&s, &session, &name, &headers, &body, Ending::End).await
}
