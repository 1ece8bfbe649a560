//! A flight's events as files from the dashboard: `/ui/flights/{name}/events.csv` and
//! `events.jsonl`, for a signed-in session. The dashboard's token lives in a cookie scoped
//! to `/ui`, so a link to the API's `/api/v1/flights/{studyname}/events.csv` would carry no
//! token; these routes check the session's role as the API checks a token's, and stream
//! through [`crate::export::body`], the same function the API streams through.

use super::{require, secure, PageError, PageResult, Session};
use crate::api::AppState;
use crate::export::{self, Format};
use crate::lifecycle::Action;
use axum::extract::{Path, State};
use axum::http::header::{self, HeaderValue};
use axum::http::StatusCode;
use axum::response::IntoResponse;

async fn events(s: &AppState, session: &Session, name: &str, format: Format) -> PageResult {
    let back = format!("/ui/flights/{name}");
    require(session, Action::Read, &back)?;
    if s.store.flight_summary(name).await?.is_none() {
        return Err(PageError::new(
            StatusCode::NOT_FOUND,
            format!("there is no flight named `{name}`"),
        )
        .back("/ui/"));
    }
    let mut res = export::body(s.store.clone(), name.to_string(), format).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    // A studyname is lowercase letters, digits, `.`, `-` and `_`: always a valid header.
    let disposition = format!(
        "attachment; filename=\"{name}-events.{}\"",
        format.extension()
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(secure(res))
}

pub async fn csv(
    State(s): State<AppState>,
    session: Session,
    Path(name): Path<String>,
) -> PageResult {
    events(&s, &session, &name, Format::Csv).await
}

pub async fn jsonl(
    State(s): State<AppState>,
    session: Session,
    Path(name): Path<String>,
) -> PageResult {
    events(&s, &session, &name, Format::JsonLines).await
}
