//! Reports: idempotency, progress, malformed and oversize bodies, rate limiting.

use crate::both;
use crate::support::{flight, flight_with_arms, Tower, T0};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use serde_json::{json, Value};
use std::net::SocketAddr;
use testpilot_tower::api::ApiConfig;
use testpilot_tower::client_addr::{parse_network, TrustedProxies};
use testpilot_tower::store::Engine;
use testpilot_tower::ClientLimits;

const C1: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";
const C2: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
const C3: &str = "16fd2706-8baf-433b-82eb-8c7fada847da";
const DAY: i64 = 86_400_000;

fn report(seq: u64, flight: &str, arm: Option<&str>, status: &str, step: u64, at: i64) -> Value {
    json!({"seq": seq, "flight": flight, "version": 1, "arm": arm, "status": status, "step": step, "at": at})
}

async fn send(t: &Tower, body: Value) -> crate::support::Resp {
    t.call(Method::POST, "/api/v1/reports", None, Some(body))
        .await
}

both!(reports_are_idempotent_and_make_progress);
async fn reports_are_idempotent_and_make_progress(engine: Engine) {
    let t = Tower::new(engine).await;
    t.make_live(flight_with_arms("layout")).await;
    let c1 = json!({"client": C1, "reports": [
        report(1, "layout", Some("control"), "running", 0, T0),
        report(2, "layout", Some("control"), "running", 1, T0 + 1000),
        report(3, "layout", Some("control"), "completed", 2, T0 + DAY),
    ]});
    let r = send(&t, c1.clone()).await;
    assert_eq!(
        (r.status, r.json.clone()),
        (StatusCode::OK, json!({"accepted": 3, "duplicates": 0}))
    );
    let again = send(&t, c1).await;
    assert_eq!(
        again.json,
        json!({"accepted": 0, "duplicates": 3}),
        "a resend is stored once"
    );

    let mut failed = report(1, "layout", Some("treatment"), "failed", 1, T0 + DAY + 5);
    failed["detail"] = json!({"error": "ping failed: 503"});
    send(&t, json!({"client": C2, "reports": [report(0, "layout", Some("treatment"), "running", 0, T0), failed]})).await;
    // A late, older report does not move a client backwards.
    send(&t, json!({"client": C3, "reports": [report(5, "layout", Some("treatment"), "running", 1, T0)]})).await;
    send(&t, json!({"client": C3, "reports": [report(4, "layout", Some("treatment"), "running", 0, T0)]})).await;

    let p = t.get("/api/v1/flights/layout/progress", &t.author).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.json);
    let p = p.json;
    assert_eq!(p["clients"], 3);
    assert_eq!(p["reports"], 7);
    assert_eq!(
        p["byStatus"],
        json!({"completed": 1, "failed": 1, "running": 1})
    );
    assert_eq!(p["byStep"], json!({"1": 2, "2": 1}));
    assert_eq!(p["byArm"], json!({"control": 1, "treatment": 2}));
    assert_eq!(p["byVersion"], json!({"1": 3}));
    assert_eq!(
        p["daily"],
        json!([
            {"day": "2026-04-23", "reports": 5, "clients": 3, "byStatus": {"running": 5}},
            {"day": "2026-04-24", "reports": 2, "clients": 2, "byStatus": {"completed": 1, "failed": 1}},
        ])
    );
    let errors = t.get("/api/v1/flights/layout/errors", &t.author).await;
    assert_eq!(
        errors.json[0]["detail"],
        json!({"error": "ping failed: 503"})
    );
    assert_eq!(errors.json[0]["client"], C2);

    let list = t.get("/api/v1/flights", &t.author).await;
    assert_eq!(list.json[0]["clients"], 3);
    assert_eq!(list.json[0]["arms"], json!(["control", "treatment"]));
    t.finish().await;
}

both!(a_client_in_upper_case_is_the_same_client);
async fn a_client_in_upper_case_is_the_same_client(engine: Engine) {
    let t = Tower::new(engine).await;
    t.make_live(flight_with_arms("layout")).await;
    let one = report(1, "layout", Some("control"), "running", 0, T0);
    let r = send(&t, json!({"client": C1, "reports": [one.clone()]})).await;
    assert_eq!(r.json, json!({"accepted": 1, "duplicates": 0}));
    let upper = C1.to_ascii_uppercase();
    assert_ne!(upper, C1);
    let r = send(&t, json!({"client": upper, "reports": [one.clone()]})).await;
    assert_eq!(
        (r.status, r.json.clone()),
        (StatusCode::OK, json!({"accepted": 0, "duplicates": 1})),
        "a resend in upper case is a duplicate"
    );
    t.finish().await;
}

both!(malformed_reports_are_refused_with_paths);
async fn malformed_reports_are_refused_with_paths(engine: Engine) {
    let config = ApiConfig {
        limits: ClientLimits {
            max_reports: 3,
            ..ClientLimits::default()
        },
        ..ApiConfig::default()
    };
    let t = Tower::with(engine, config).await;
    let not_json = t
        .send(
            Request::post("/api/v1/reports")
                .header("content-type", "application/json")
                .body(Body::from("{\"client\""))
                .unwrap(),
        )
        .await;
    assert_eq!(not_json.status, StatusCode::BAD_REQUEST);
    assert_eq!(not_json.json["problems"][0]["path"], "$");

    // A key given twice is refused, in a report as in a flight, not the last one taken.
    let twice = format!(
        "{{\"client\": \"{C1}\", \"reports\": [{{\"seq\": 1, \"seq\": 2, \"flight\": \"x\", \"version\": 1, \"status\": \"running\", \"step\": 0, \"at\": {T0}}}]}}"
    );
    for (path, token) in [
        ("/api/v1/reports", None),
        ("/api/v1/flights", Some(&t.author)),
    ] {
        let mut req = Request::post(path).header("content-type", "application/json");
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let body = if token.is_some() {
            let f = flight("twice").to_string();
            f.replacen('{', "{\"sample\": 0.05, \"sample\": 1, ", 1)
        } else {
            twice.clone()
        };
        let r = t.send(req.body(Body::from(body)).unwrap()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.json);
        assert_eq!(r.json["problems"][0]["path"], "$");
        let message = r.json["problems"][0]["message"].as_str().unwrap();
        assert!(message.contains("appears twice in one object"), "{message}");
    }

    let bad = json!({"client": "not-a-uuid", "reports": [
        {"seq": 1, "flight": "x", "version": 1, "status": "flying", "step": 0, "at": T0},
        {"seq": -1, "flight": "x", "version": 1, "status": "running", "step": 0, "at": "yesterday", "colour": 1},
    ]});
    let r = send(&t, bad).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let paths: Vec<&str> = r.json["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    for want in [
        "client",
        "reports[0].status",
        "reports[1].seq",
        "reports[1].at",
    ] {
        assert!(paths.contains(&want), "{want} in {paths:?}");
    }
    let many: Vec<Value> = (0..4)
        .map(|i| report(i, "x", None, "running", 0, T0))
        .collect();
    let r = send(&t, json!({"client": C1, "reports": many})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json["problems"][0]["path"], "reports");
    assert_eq!(
        t.state.store.report_count().await.unwrap(),
        0,
        "nothing of a refused batch is stored"
    );
    t.finish().await;
}

both!(oversize_bodies_are_refused);
async fn oversize_bodies_are_refused(engine: Engine) {
    let config = ApiConfig {
        limits: ClientLimits {
            max_body_bytes: 2_000,
            ..ClientLimits::default()
        },
        ..ApiConfig::default()
    };
    let t = Tower::with(engine, config).await;
    let many: Vec<Value> = (0..40)
        .map(|i| report(i, "x", None, "running", 0, T0))
        .collect();
    let body = json!({"client": C1, "reports": many});
    assert!(body.to_string().len() > 2_000);
    let r = send(&t, body).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        r.json["error"].as_str().unwrap().contains("2000 bytes"),
        "{}",
        r.json
    );
    let mut big = flight("big");
    big["description"] = json!("x".repeat(3_000));
    let r = t.post("/api/v1/flights", &t.author, big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(t.state.store.report_count().await.unwrap(), 0);
    t.finish().await;
}

#[tokio::test]
async fn reports_are_rate_limited_per_address() {
    let config = ApiConfig {
        limits: ClientLimits {
            rate_per_sec: 1.0,
            burst: 2.0,
            ..ClientLimits::default()
        },
        ..ApiConfig::default()
    };
    let t = Tower::with(Engine::Sqlite, config).await;
    t.make_live(flight("x")).await;
    let from = |ip: &str, seq: u64| {
        let addr: SocketAddr = format!("{ip}:5000").parse().unwrap();
        let body = json!({"client": C1, "reports": [report(seq, "x", None, "running", 0, T0)]});
        Request::post("/api/v1/reports")
            .header("content-type", "application/json")
            .extension(ConnectInfo(addr))
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    assert_eq!(t.send(from("10.0.0.1", 1)).await.status, StatusCode::OK);
    assert_eq!(t.send(from("10.0.0.1", 2)).await.status, StatusCode::OK);
    let limited = t.send(from("10.0.0.1", 3)).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers["retry-after"], "1");
    assert!(limited.json["error"].as_str().unwrap().contains("10.0.0.1"));
    assert_eq!(
        t.send(from("10.0.0.2", 4)).await.status,
        StatusCode::OK,
        "another address has its own budget"
    );
    t.clock.advance(1_000);
    assert_eq!(
        t.send(from("10.0.0.1", 5)).await.status,
        StatusCode::OK,
        "the budget refills with time"
    );
    t.finish().await;
}

// Issue 11: behind a reverse proxy every request comes from the proxy; with `--trusted-proxy`
// its `X-Forwarded-For` names the client, and only its.
#[tokio::test]
async fn clients_behind_a_trusted_proxy_get_their_own_buckets() {
    let config = ApiConfig {
        limits: ClientLimits {
            rate_per_sec: 1.0,
            burst: 1.0,
            ..ClientLimits::default()
        },
        trusted_proxies: TrustedProxies(vec![parse_network("10.0.0.0/8").unwrap()]),
        ..ApiConfig::default()
    };
    let t = Tower::with(Engine::Sqlite, config).await;
    t.make_live(flight("x")).await;
    let from = |ip: &str, xff: &str, seq: u64| {
        let addr: SocketAddr = format!("{ip}:5000").parse().unwrap();
        let body = json!({"client": C1, "reports": [report(seq, "x", None, "running", 0, T0)]});
        Request::post("/api/v1/reports")
            .header("content-type", "application/json")
            .header("x-forwarded-for", xff)
            .extension(ConnectInfo(addr))
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let proxy = "10.0.0.1";
    assert_eq!(
        t.send(from(proxy, "198.51.100.1", 1)).await.status,
        StatusCode::OK
    );
    let limited = t.send(from(proxy, "198.51.100.1", 2)).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.json["error"]
        .as_str()
        .unwrap()
        .contains("198.51.100.1"));
    assert_eq!(
        t.send(from(proxy, "198.51.100.2", 3)).await.status,
        StatusCode::OK,
        "a second client behind the same proxy has its own bucket"
    );
    // From an untrusted peer the header is ignored: a fresh spoofed address buys nothing.
    assert_eq!(
        t.send(from("203.0.113.9", "198.51.100.3", 4)).await.status,
        StatusCode::OK
    );
    let spoofed = t.send(from("203.0.113.9", "198.51.100.4", 5)).await;
    assert_eq!(spoofed.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(spoofed.json["error"]
        .as_str()
        .unwrap()
        .contains("203.0.113.9"));
    t.finish().await;
}

fn progress_of(p: &Value) -> (u64, Value, Value) {
    (
        p["clients"].as_u64().unwrap(),
        p["byStatus"].clone(),
        p["byStep"].clone(),
    )
}

// Issue 8, item 6: `client_state` was built from every report of a batch, duplicates
// included, so resending a stored `(client, seq)` with other content moved progress — and
// 40,000 such duplicates naming another flight made 50 clients appear on it.
both!(duplicates_never_move_progress);
async fn duplicates_never_move_progress(engine: Engine) {
    let t = Tower::new(engine).await;
    t.make_live(flight_with_arms("real")).await;
    t.make_live(flight_with_arms("other")).await;
    let r = send(
        &t,
        json!({"client": C1, "reports": [report(1, "real", Some("control"), "running", 0, T0)]}),
    )
    .await;
    assert_eq!(r.json, json!({"accepted": 1, "duplicates": 0}));
    // The same (client, seq) again, saying something else, on this flight and another.
    let r = send(
        &t,
        json!({"client": C1, "reports": [
            report(1, "real", Some("control"), "completed", 1, T0 + 5),
            report(1, "other", Some("control"), "completed", 1, T0 + 5),
        ]}),
    )
    .await;
    assert_eq!(
        r.json,
        json!({"accepted": 0, "duplicates": 2}),
        "{}",
        r.json
    );
    // Duplicates within one batch: the first of each seq is the report; the rest are
    // resends and change nothing.
    let r = send(
        &t,
        json!({"client": C2, "reports": [
            report(7, "real", Some("treatment"), "running", 0, T0),
            report(7, "real", Some("treatment"), "failed", 1, T0 + 1),
            report(7, "other", Some("treatment"), "failed", 1, T0 + 1),
        ]}),
    )
    .await;
    assert_eq!(
        r.json,
        json!({"accepted": 1, "duplicates": 2}),
        "{}",
        r.json
    );
    let real = t.get("/api/v1/flights/real/progress", &t.author).await.json;
    assert_eq!(
        progress_of(&real),
        (2, json!({"running": 2}), json!({"0": 2})),
        "{real}"
    );
    assert_eq!(real["reports"], 2);
    let other = t
        .get("/api/v1/flights/other/progress", &t.author)
        .await
        .json;
    assert_eq!(
        other["clients"], 0,
        "no client appears through duplicates: {other}"
    );

    // Duplicates across batches committed together (one group commit): the first batch's
    // report counts, the second batch's copy does not.
    use testpilot_flight::report::ReportBatch;
    let batch = |status: &str, step: u64| {
        ReportBatch::from_json(
            &json!({"client": C3, "reports": [report(3, "real", None, status, step, T0)]}),
            10,
        )
        .unwrap()
    };
    let (a, b) = (batch("running", 0), batch("completed", 1));
    let got = t
        .state
        .store
        .insert_reports(&[&a, &b], t.clock_now())
        .await
        .unwrap();
    assert_eq!(
        got.iter()
            .map(|g| (g.accepted, g.duplicates))
            .collect::<Vec<_>>(),
        [(1, 0), (0, 1)]
    );
    let real = t.get("/api/v1/flights/real/progress", &t.author).await.json;
    assert_eq!(
        progress_of(&real),
        (3, json!({"running": 3}), json!({"0": 3})),
        "{real}"
    );
    t.finish().await;
}

// Issue 8, item 6: reports on any name were taken, so anyone could fake progress for a
// flight that never went live (or does not exist).
both!(reports_on_flights_never_live_are_refused);
async fn reports_on_flights_never_live_are_refused(engine: Engine) {
    let t = Tower::new(engine).await;
    t.make_live(flight("live")).await;
    t.post("/api/v1/flights", &t.author, flight("drafted"))
        .await;
    let r = send(
        &t,
        json!({"client": C1, "reports": [
            report(1, "live", None, "running", 0, T0),
            report(2, "made-up", None, "running", 0, T0),
            report(3, "drafted", None, "running", 0, T0),
            report(4, "made-up", None, "completed", 1, T0),
        ]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.json);
    let error = r.json["error"].as_str().unwrap();
    assert!(
        error.contains("`drafted`, `made-up`") && error.contains("never live"),
        "{error}"
    );
    let paths: Vec<&str> = r.json["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "reports[1].flight",
            "reports[2].flight",
            "reports[3].flight"
        ]
    );
    assert_eq!(
        t.state.store.report_count().await.unwrap(),
        0,
        "a batch is taken whole or not at all: the good report is not stored either"
    );
    let m = t.call(Method::GET, "/metrics", None, None).await;
    assert!(String::from_utf8(m.bytes)
        .unwrap()
        .contains("testpilot_report_batches_total{result=\"rejected\"} 1"));

    // A flight that goes live behind this tower's back (another tower on the database) is
    // taken once this tower's index has moved — and not before: the check is from memory.
    let bob = testpilot_tower::Actor::new("bob", testpilot_tower::Role::Approver);
    let alice = testpilot_tower::Actor::new("alice", testpilot_tower::Role::Author);
    let now = t.clock_now();
    t.state
        .store
        .review(&alice, "drafted", None, now)
        .await
        .unwrap();
    t.state
        .store
        .approve(&bob, "drafted", None, false, now)
        .await
        .unwrap();
    let on_drafted =
        json!({"client": C1, "reports": [report(3, "drafted", None, "running", 0, T0)]});
    let r = send(&t, on_drafted.clone()).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.json);
    t.state.refresh_index().await.unwrap();
    let r = send(&t, on_drafted).await;
    assert_eq!(
        r.json,
        json!({"accepted": 1, "duplicates": 0}),
        "{}",
        r.json
    );

    // Killed and ended flights were live: their pilots' last reports are taken.
    t.post("/api/v1/flights/live/kill", &t.approver, json!({}))
        .await;
    t.post("/api/v1/flights/drafted/end", &t.approver, json!({}))
        .await;
    let r = send(
        &t,
        json!({"client": C2, "reports": [
            report(1, "live", None, "killed", 0, T0),
            report(2, "drafted", None, "withdrawn", 0, T0),
        ]}),
    )
    .await;
    assert_eq!(
        r.json,
        json!({"accepted": 2, "duplicates": 0}),
        "{}",
        r.json
    );
    t.finish().await;
}

// Reports are taken only on what the tower served: a version that was never live, or an
// arm that the reported version does not have, is refused like a name never live.
both!(reports_on_versions_and_arms_never_served_are_refused);
async fn reports_on_versions_and_arms_never_served_are_refused(engine: Engine) {
    let t = Tower::new(engine).await;
    t.make_live(flight_with_arms("layout")).await;
    t.make_live(flight("plain")).await;
    let r = send(
        &t,
        json!({"client": C1, "reports": [
            report(1, "layout", Some("control"), "running", 0, T0),
            json!({"seq": 2, "flight": "layout", "version": 999, "arm": "control", "status": "running", "step": 0, "at": T0}),
            report(3, "layout", Some("bigger"), "running", 0, T0),
            report(4, "plain", Some("control"), "running", 0, T0),
            report(5, "layout", None, "unsampled", 0, T0),
        ]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.json);
    let problems: Vec<(String, String)> = r.json["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["path"].as_str().unwrap().to_string(),
                p["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let paths: Vec<&str> = problems.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(
        paths,
        ["reports[1].version", "reports[2].arm", "reports[3].arm"],
        "{problems:?}"
    );
    assert!(
        problems[0]
            .1
            .contains("version 999 of `layout` was never live on this tower (versions served: 1)"),
        "{problems:?}"
    );
    assert!(
        problems[1]
            .1
            .contains("`bigger` is not an arm of version 1 of `layout`"),
        "{problems:?}"
    );
    assert!(problems[2].1.contains("has no arms"), "{problems:?}");
    assert_eq!(t.state.store.report_count().await.unwrap(), 0);

    // Version 2 with a third arm goes live: its reports are taken, and version 1's still are.
    let mut v2 = flight_with_arms("layout");
    v2["arms"] = json!([{"name": "control", "ratio": 1}, {"name": "bigger", "ratio": 1}]);
    assert_eq!(t.make_live(v2).await, 2);
    let mut on_v2 = report(3, "layout", Some("bigger"), "running", 0, T0);
    on_v2["version"] = json!(2);
    let r = send(
        &t,
        json!({"client": C1, "reports": [
            report(1, "layout", Some("treatment"), "running", 0, T0),
            on_v2,
            report(5, "layout", None, "unsampled", 0, T0),
        ]}),
    )
    .await;
    assert_eq!(
        r.json,
        json!({"accepted": 3, "duplicates": 0}),
        "{}",
        r.json
    );
    // An arm of version 2 is still not one of version 1.
    let r = send(
        &t,
        json!({"client": C2, "reports": [report(1, "layout", Some("bigger"), "running", 0, T0)]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.json);
    assert_eq!(r.json["problems"][0]["path"], "reports[0].arm");
    // Killed, the flight still takes its pilots' last reports, on the retired version too.
    t.post("/api/v1/flights/layout/kill", &t.approver, json!({}))
        .await;
    let r = send(
        &t,
        json!({"client": C2, "reports": [report(1, "layout", Some("treatment"), "killed", 0, T0)]}),
    )
    .await;
    assert_eq!(
        r.json,
        json!({"accepted": 1, "duplicates": 0}),
        "{}",
        r.json
    );
    t.finish().await;
}

both!(an_index_expired_ending_is_accepted_and_counted);
/// A pilot whose index expired ends its flights `indexexpired` (docs/reports.md): the tower
/// takes that status and counts it like any other ending.
async fn an_index_expired_ending_is_accepted_and_counted(engine: Engine) {
    let t = Tower::new(engine).await;
    t.make_live(flight("cut-off")).await;
    let r = send(
        &t,
        json!({"client": C1, "reports": [
            report(1, "cut-off", None, "running", 0, T0),
            report(2, "cut-off", None, "indexexpired", 1, T0 + DAY),
        ]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let p = t.get("/api/v1/flights/cut-off/progress", &t.author).await;
    assert_eq!(p.json["byStatus"], json!({"indexexpired": 1}), "{}", p.json);
    t.finish().await;
}
