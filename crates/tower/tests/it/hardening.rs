//! Regression tests for what an adversarial review of the HTTP surface found: numbers that
//! came back negative or wrapped, a sign-in redirect that broke on CR/LF, errors that were
//! not the API's JSON shape, a secret answered without `no-store`, and metrics that mixed
//! batches with reports.

use crate::both;
use crate::support::{flight, Tower, T0};
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use serde_json::{json, Value};
use testpilot_tower::store::Engine;

const C1: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

fn report(seq: Value, at: Value) -> Value {
    json!({"seq": seq, "flight": "hello", "version": 1, "status": "running", "step": 0, "at": at})
}

fn paths(r: &crate::support::Resp) -> Vec<String> {
    r.json["problems"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| p["path"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

// Issue 8, item 10: a `seq` of 2^63 or more was stored as a negative number, and an `at` of
// i64::MIN wrapped in the daily series. Both are refused, with their paths.
both!(report_numbers_out_of_range_are_refused_with_their_path);
async fn report_numbers_out_of_range_are_refused_with_their_path(engine: Engine) {
    let t = Tower::new(engine).await;
    t.make_live(flight("hello")).await;
    let r = t
        .call(
            Method::POST,
            "/api/v1/reports",
            None,
            Some(json!({"client": C1, "reports": [
                report(json!(1), json!(T0)),
                report(json!(1u64 << 63), json!(T0)),
                report(json!(3), json!(i64::MIN)),
                report(json!(4), json!("0000-01-01T00:00:00Z")),
            ]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.json);
    assert_eq!(
        paths(&r),
        ["reports[1].seq", "reports[2].at", "reports[3].at"],
        "{}",
        r.json
    );
    assert_eq!(t.state.store.report_count().await.unwrap(), 0);

    // The largest accepted values round-trip unchanged.
    let max = i64::MAX as u64;
    let r = t
        .call(
            Method::POST,
            "/api/v1/reports",
            None,
            Some(json!({"client": C1, "reports": [
                {"seq": max, "flight": "hello", "version": 1, "status": "failed", "step": 0,
                 "at": "9999-12-31T23:59:59.999Z", "detail": {"why": "late"}},
                report(json!(0), json!(0)),
            ]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert!(t.state.store.has_report(C1, max).await.unwrap());
    let errors = t.get("/api/v1/flights/hello/errors", &t.author).await;
    assert_eq!(errors.json[0]["seq"], json!(max), "{}", errors.json);
    let p = t.get("/api/v1/flights/hello/progress", &t.author).await;
    let days: Vec<&str> = p.json["daily"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["day"].as_str().unwrap())
        .collect();
    assert_eq!(days, ["1970-01-01", "9999-12-31"]);
    t.finish().await;
}

// Issue 8, item 10: `next` with CR/LF made the sign-in redirect fail with a 500. Only
// same-site dashboard paths are honoured; anything else goes to `/ui/`.
both!(signin_next_is_only_ever_a_dashboard_path);
async fn signin_next_is_only_ever_a_dashboard_path(engine: Engine) {
    let t = Tower::new(engine).await;
    let cases = [
        ("/ui/flights/hello", "/ui/flights/hello"),
        ("/ui/\r\nSet-Cookie: x=1", "/ui/"),
        ("/ui/\n", "/ui/"),
        ("/ui/caf\u{e9}", "/ui/"),
        ("//evil.example/ui/", "/ui/"),
        ("https://evil.example/ui/", "/ui/"),
        ("/ui/\\evil", "/ui/"),
        ("/api/v1/tokens", "/ui/"),
    ];
    for (next, to) in cases {
        let form =
            serde_urlencoded::to_string([("token", t.admin.as_str()), ("next", next)]).unwrap();
        let r = t
            .send(
                Request::post("/ui/signin")
                    .header("sec-fetch-site", "same-origin")
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Body::from(form))
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "next = {next:?}");
        assert_eq!(r.headers[header::LOCATION], to, "next = {next:?}");
        let q = serde_urlencoded::to_string([("next", next)]).unwrap();
        let page = t
            .call(Method::GET, &format!("/ui/signin?{q}"), None, None)
            .await;
        assert_eq!(page.status, StatusCode::OK, "next = {next:?}");
    }
    t.finish().await;
}

/// An answer in the API's error shape, with `status`.
fn assert_error_shape(r: &crate::support::Resp, status: StatusCode, what: &str) {
    assert_eq!(
        r.status,
        status,
        "{what}: {}",
        String::from_utf8_lossy(&r.bytes)
    );
    assert_eq!(
        r.headers[header::CONTENT_TYPE],
        "application/json",
        "{what}"
    );
    assert!(
        r.json["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: {}",
        r.json
    );
    assert!(r.json["problems"].is_array(), "{what}: {}", r.json);
}

// Issue 8, item 10: bad query strings, bad path bytes and 405 were answered in plain text
// or empty. Every 4xx of the API is `{"error", "problems": [{"path", "message"}]}`.
both!(every_api_error_has_the_json_shape);
async fn every_api_error_has_the_json_shape(engine: Engine) {
    let t = Tower::new(engine).await;
    t.make_live(flight("hello")).await;
    let bad_query = t.get("/api/v1/audit?limit=lots", &t.author).await;
    assert_error_shape(&bad_query, StatusCode::BAD_REQUEST, "a bad query value");
    assert_eq!(paths(&bad_query), ["query"]);
    assert!(
        bad_query.json["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("limit"),
        "{}",
        bad_query.json
    );
    let unknown = t.get("/api/v1/flights/hello/diff?form=1", &t.author).await;
    assert_error_shape(&unknown, StatusCode::BAD_REQUEST, "an unknown query field");
    let bad_bytes = t.get("/api/v1/flights/%FF%FE/progress", &t.author).await;
    assert_error_shape(
        &bad_bytes,
        StatusCode::BAD_REQUEST,
        "a path that is not UTF-8",
    );
    assert_eq!(paths(&bad_bytes), ["path"]);
    for (method, path) in [
        (Method::DELETE, "/api/v1/flights"),
        (Method::PUT, "/api/v1/tokens"),
        (Method::GET, "/api/v1/reports"),
        (Method::GET, "/api/v1/flights/hello/approve"),
    ] {
        let r = t.call(method.clone(), path, Some(&t.admin), None).await;
        assert_error_shape(&r, StatusCode::METHOD_NOT_ALLOWED, path);
        assert!(r.headers.contains_key(header::ALLOW), "{method} {path}");
        assert!(
            r.json["error"].as_str().unwrap().contains(method.as_str()),
            "{}",
            r.json
        );
    }
    let missing = t.get("/api/v2/nothing", &t.author).await;
    assert_error_shape(&missing, StatusCode::NOT_FOUND, "no such endpoint");
    // The dashboard keeps its own HTML error pages.
    let page = t.call(Method::DELETE, "/ui/", None, None).await;
    assert_ne!(
        page.headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()),
        Some(&b"application/json"[..])
    );
    t.finish().await;
}

// Issue 8, item 10: `POST /api/v1/tokens` answered a new secret without
// `Cache-Control: no-store`.
both!(a_new_token_is_never_cached);
async fn a_new_token_is_never_cached(engine: Engine) {
    let t = Tower::new(engine).await;
    let r = t
        .post(
            "/api/v1/tokens",
            &t.admin,
            json!({"role": "author", "name": "carol"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert!(r.json["token"].is_string());
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
    t.finish().await;
}

fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

// Issue 8, item 10: `testpilot_reports_total{result="rejected"}` counted batches while the
// other results counted reports. Reports and batches are now two metrics.
both!(metrics_count_reports_and_batches_apart);
async fn metrics_count_reports_and_batches_apart(engine: Engine) {
    let t = Tower::new(engine).await;
    t.make_live(flight("hello")).await;
    let good = json!({"client": C1, "reports": [
        report(json!(1), json!(T0)), report(json!(2), json!(T0)), report(json!(3), json!(T0)),
    ]});
    assert_eq!(
        t.call(Method::POST, "/api/v1/reports", None, Some(good.clone()))
            .await
            .status,
        StatusCode::OK
    );
    t.call(Method::POST, "/api/v1/reports", None, Some(good))
        .await;
    let bad = json!({"client": C1, "reports": [
        report(json!(-1), json!(T0)), report(json!(5), json!(T0)), report(json!(6), json!(T0)),
    ]});
    let r = t
        .call(Method::POST, "/api/v1/reports", None, Some(bad))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let m = t.call(Method::GET, "/metrics", None, None).await;
    let text = String::from_utf8(m.bytes).unwrap();
    for (name, want) in [
        ("testpilot_reports_total{result=\"accepted\"}", Some(3)),
        ("testpilot_reports_total{result=\"duplicate\"}", Some(3)),
        ("testpilot_reports_total{result=\"rejected\"}", None),
        ("testpilot_report_batches_total{result=\"stored\"}", Some(2)),
        (
            "testpilot_report_batches_total{result=\"rejected\"}",
            Some(1),
        ),
    ] {
        assert_eq!(metric(&text, name), want, "{name} in\n{text}");
    }
    t.finish().await;
}
