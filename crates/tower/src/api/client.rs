//! Client endpoints, open to every pilot without a token: the signed index (answered from
//! memory, and by [`Served`] ahead of routing) and status reports (docs/api.md).

use super::*;

pub(super) fn index_headers(h: &mut HeaderMap, doc: &crate::index::IndexDoc) {
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
pub(super) async fn get_index(State(s): State<AppState>, req: Request) -> Response {
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
pub(super) fn peer(s: &AppState, req: &Request) -> IpAddr {
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
        (status = 422, description = "Not a valid batch, or a batch with reports on flights, versions or arms that were never live on this tower (`reports[i].flight`, `.version`, `.arm` name each); every problem with its path. Nothing of the batch is stored: a batch is taken whole or not at all", body = ErrorBody),
        (status = 429, description = "Too many requests from this address; see Retry-After", body = ErrorBody),
    ))]
pub(super) async fn post_reports(
    State(s): State<AppState>,
    req: Request,
) -> ApiResult<Json<Ingested>> {
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
