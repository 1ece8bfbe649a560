//! Errors of the API: the one JSON shape every 4xx has (`{"error", "problems"}`), the layer
//! that reshapes what axum answers itself, and reading a request's body (size, content
//! type, JSON) into that shape.

use super::*;

/// One problem with a request: where and what.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A JSON path into the body (`flightplan[3].url`), or `$` for the whole of it.
    pub path: String,
    pub message: String,
}

/// The body of every 4xx answer.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: String,
    pub problems: Vec<Problem>,
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
    pub(super) retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ErrorBody {
                error: error.into(),
                problems: Vec::new(),
            },
            retry_after: None,
        }
    }

    pub(super) fn invalid(error: impl Into<String>, diags: &Diagnostics) -> Self {
        let mut e = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, error);
        e.body.problems = diags
            .iter()
            .map(|d| Problem {
                path: d.path.to_string(),
                message: d.message.clone(),
            })
            .collect();
        e
    }

    pub(super) fn at(
        status: StatusCode,
        error: impl Into<String>,
        path: &str,
        message: impl Into<String>,
    ) -> Self {
        let mut e = ApiError::new(status, error);
        e.body.problems.push(Problem {
            path: path.into(),
            message: message.into(),
        });
        e
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid { message, problems } => ApiError::invalid(message, &problems),
            Error::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, m),
            Error::Conflict(m) => ApiError::new(StatusCode::CONFLICT, m),
            Error::Forbidden(m) => ApiError::new(StatusCode::FORBIDDEN, m),
            Error::Unauthorized(m) => ApiError::new(StatusCode::UNAUTHORIZED, m),
            Error::Config(m) => ApiError::new(StatusCode::BAD_REQUEST, m),
            Error::Busy(m) => {
                let mut e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, m);
                e.retry_after = Some(5);
                e
            }
            other => {
                tracing::error!(error = %other, "internal error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error; the tower's log says more",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (self.status, Json(self.body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(s) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        res
    }
}

pub(super) type ApiResult<T> = Result<T, ApiError>;

/// Puts every 4xx of the API in the error shape, whoever made it: axum answers a query
/// string that does not parse, a path that is not UTF-8 and a method a route does not take
/// in plain text or with no body. The dashboard (`/ui`) keeps its own HTML pages.
pub(super) async fn json_errors(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path();
    let dashboard = path == "/ui" || path.starts_with("/ui/");
    let res = next.run(req).await;
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if dashboard || !status.is_client_error() || is_json {
        return res;
    }
    let (parts, body) = res.into_parts();
    // axum's rejections are short texts; anything longer is not one of them.
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let mut e = if status == StatusCode::METHOD_NOT_ALLOWED {
        let allow = parts
            .headers
            .get(header::ALLOW)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        ApiError::new(
            status,
            format!("this endpoint does not answer {method}; it answers {allow}"),
        )
    } else if let Some(why) = text.strip_prefix("Failed to deserialize query string: ") {
        ApiError::at(status, "the query string is not valid", "query", why)
    } else if let Some(why) = text.strip_prefix("Invalid URL: ") {
        ApiError::at(status, "the URL's path is not valid", "path", why)
    } else if text.is_empty() {
        ApiError::new(status, status.canonical_reason().unwrap_or("refused"))
    } else {
        ApiError::new(status, text)
    };
    e.retry_after = parts
        .headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let mut res = e.into_response();
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        res.headers_mut().insert(header::ALLOW, allow.clone());
    }
    res
}

pub(super) async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such endpoint; GET /api/openapi.json lists them",
    )
}

/// The body's bytes, or 413 / 400 saying why not.
pub(super) fn body_bytes(body: Result<Bytes, BytesRejection>, limit: usize) -> ApiResult<Bytes> {
    body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than this tower accepts ({limit} bytes)"),
            )
        } else if let Some(t) = cause::<crate::connections::BodyTimeout>(&r) {
            ApiError::new(StatusCode::REQUEST_TIMEOUT, t.to_string())
        } else {
            ApiError::new(r.status(), r.body_text())
        }
    })
}

/// The first error of type `T` in `e`'s chain of sources.
pub(super) fn cause<'e, T: std::error::Error + 'static>(
    e: &'e (dyn std::error::Error + 'static),
) -> Option<&'e T> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        next = e.source();
    }
    None
}

pub(super) fn parse_body(bytes: &[u8]) -> ApiResult<Value> {
    testpilot_flight::json::from_slice(bytes).map_err(|e| {
        ApiError::at(
            StatusCode::BAD_REQUEST,
            "the body is not valid JSON",
            "$",
            format!("line {}, column {}: {e}", e.line(), e.column()),
        )
    })
}

/// Refuses (415) a body not declared as JSON. Browsers send `text/plain` and form bodies
/// from any web page without asking first (no CORS preflight), so a page a tower's user
/// visits could otherwise post reports or flights to a tower that browser can reach.
pub(crate) fn require_json(headers: &HeaderMap) -> ApiResult<()> {
    let given = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("(not text)"));
    let essence = given.and_then(|v| v.split(';').next()).map(str::trim);
    if essence.is_some_and(|e| e.eq_ignore_ascii_case("application/json")) {
        return Ok(());
    }
    let said = match given {
        None => "the request has no Content-Type".to_string(),
        Some(v) => format!(
            "the request says `Content-Type: {}`",
            v.chars().take(100).collect::<String>()
        ),
    };
    Err(ApiError::at(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "this endpoint takes a JSON body: send it with `Content-Type: application/json`",
        "$",
        said,
    ))
}

/// A required JSON body: declared as JSON, within the size limit, and parsed.
pub(super) fn json_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> ApiResult<Value> {
    require_json(headers)?;
    parse_body(&body_bytes(body, limit)?)
}

/// An optional JSON body: `None` when empty; otherwise as [`json_body`].
pub(super) fn optional_json_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> ApiResult<Option<Value>> {
    let bytes = body_bytes(body, limit)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    require_json(headers)?;
    parse_body(&bytes).map(Some)
}

/// A JSON value as the typed body `T`, or 422 saying what was expected.
pub(super) fn typed_body<T: DeserializeOwned>(v: Value, expected: &str) -> ApiResult<T> {
    serde_json::from_value(v).map_err(|e| {
        ApiError::at(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the body is not valid",
            "$",
            format!("{e}; expected {expected}"),
        )
    })
}
