//! Flights' lifecycle over the API: revisions, review, approval by a second person, kill,
//! end, the audit log, the role matrix and refusals.

use crate::both;
use crate::support::{flight, Tower};
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use testpilot_flight::index::{accept, parse_public_key, Trust};
use testpilot_flight::Flight;
use testpilot_tower::api::ApiConfig;
use testpilot_tower::store::Engine;
use testpilot_tower::Role;

fn actions(detail: &Value) -> Vec<(String, String)> {
    detail["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_string(),
                e["action"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn served_flights(t: &Tower, body: &[u8]) -> Vec<Value> {
    let key = parse_public_key(&t.state.public_key()).unwrap();
    let payload = accept(
        std::str::from_utf8(body).unwrap(),
        &Trust::Pinned(&key),
        None,
        t.clock_now(),
    )
    .unwrap();
    payload.flights
}

// The "done when": draft → review → approved by a second person → live in a signed
// index that verifies → killed, with the audit log showing each step.
both!(draft_review_approve_kill);
async fn draft_review_approve_kill(engine: Engine) {
    let t = Tower::new(engine).await;
    let pushed = t.post("/api/v1/flights", &t.author, flight("hello")).await;
    assert_eq!(pushed.status, StatusCode::CREATED, "{}", pushed.json);
    assert_eq!(
        (
            pushed.json["version"].as_u64(),
            pushed.json["state"].as_str()
        ),
        (Some(1), Some("draft"))
    );

    let index = t.call(Method::GET, "/control/index.json", None, None).await;
    assert!(
        served_flights(&t, &index.bytes).is_empty(),
        "a draft is not in the index"
    );

    let r = t
        .post(
            "/api/v1/flights/hello/review",
            &t.author,
            json!({"version": 1}),
        )
        .await;
    assert_eq!(
        (r.status, r.json["state"].as_str()),
        (StatusCode::OK, Some("review")),
        "{}",
        r.json
    );
    let a = t
        .post("/api/v1/flights/hello/approve", &t.approver, json!({}))
        .await;
    assert_eq!(
        (a.status, a.json["state"].as_str()),
        (StatusCode::OK, Some("live")),
        "{}",
        a.json
    );
    assert!(a.json["warning"].is_null());

    let index = t.call(Method::GET, "/control/index.json", None, None).await;
    let flights = served_flights(&t, &index.bytes);
    assert_eq!(flights.len(), 1);
    assert_eq!(flights[0]["studyname"], "hello");
    assert_eq!(flights[0]["version"], 1);
    assert!(
        Flight::from_json(&flights[0]).is_ok(),
        "what is served is a valid flight"
    );

    let k = t
        .post(
            "/api/v1/flights/hello/kill",
            &t.approver,
            json!({"reason": "it broke video"}),
        )
        .await;
    assert_eq!(
        (k.status, k.json["state"].as_str()),
        (StatusCode::OK, Some("killed")),
        "{}",
        k.json
    );
    let index = t.call(Method::GET, "/control/index.json", None, None).await;
    let flights = served_flights(&t, &index.bytes);
    assert_eq!(
        flights[0]["kill"], true,
        "a killed flight stays in the index with kill: true"
    );

    let detail = t.get("/api/v1/flights/hello", &t.author).await;
    assert_eq!(detail.json["state"], "killed");
    let expected: Vec<(String, String)> = [
        ("alice", "push"),
        ("alice", "review"),
        ("bob", "approve"),
        ("bob", "kill"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(actions(&detail.json), expected);
    let kill = &detail.json["audit"][3];
    assert_eq!(kill["detail"]["reason"], "it broke video");
    assert_eq!(kill["at"], "2026-04-23T00:00:00.000Z");
    t.finish().await;
}

both!(revisions_of_a_live_flight);
async fn revisions_of_a_live_flight(engine: Engine) {
    let t = Tower::new(engine).await;
    t.make_live(flight("hello")).await;
    let mut v2 = flight("hello");
    v2["description"] = json!("says hello, louder");
    v2["version"] = json!(99); // the tower assigns versions
    let pushed = t.post("/api/v1/flights", &t.author, v2.clone()).await;
    assert_eq!(pushed.status, StatusCode::CREATED);
    assert_eq!(pushed.json["version"], 2);
    assert_eq!(
        pushed.json["state"], "live",
        "the live revision keeps running"
    );
    assert_eq!(pushed.json["changes"][0]["path"], "description");

    let same = t.post("/api/v1/flights", &t.author, v2).await;
    assert_eq!(
        (same.status, same.json["unchanged"].as_bool()),
        (StatusCode::OK, Some(true))
    );

    let list = t.get("/api/v1/flights", &t.approver).await;
    assert_eq!(
        list.json[0]["pending"],
        json!({"version": 2, "state": "draft"})
    );
    assert_eq!(list.json[0]["liveVersion"], 1);

    let diff = t
        .get("/api/v1/flights/hello/diff?from=1&to=2", &t.author)
        .await;
    assert_eq!(diff.status, StatusCode::OK);
    assert_eq!(
        diff.json["changes"],
        json!([{"path": "description", "op": "changed", "from": "says hello", "to": "says hello, louder"}])
    );

    let index = t.call(Method::GET, "/control/index.json", None, None).await;
    assert_eq!(
        served_flights(&t, &index.bytes)[0]["version"],
        1,
        "the draft is not served"
    );
    t.post("/api/v1/flights/hello/review", &t.author, json!({}))
        .await;
    let a = t
        .post(
            "/api/v1/flights/hello/approve",
            &t.approver,
            json!({"version": 2}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    let index = t.call(Method::GET, "/control/index.json", None, None).await;
    assert_eq!(served_flights(&t, &index.bytes)[0]["version"], 2);

    let detail = t.get("/api/v1/flights/hello", &t.author).await;
    let states: Vec<&str> = detail.json["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["retired", "live"]);
    assert_eq!(detail.json["revisions"][1]["spec"]["version"], 2);

    let end = t
        .post("/api/v1/flights/hello/end", &t.approver, json!({}))
        .await;
    assert_eq!(
        (end.status, end.json["state"].as_str()),
        (StatusCode::OK, Some("ended"))
    );
    let index = t.call(Method::GET, "/control/index.json", None, None).await;
    assert!(
        served_flights(&t, &index.bytes).is_empty(),
        "an ended flight is withdrawn"
    );
    t.finish().await;
}

both!(an_author_cannot_approve_their_own_revision);
async fn an_author_cannot_approve_their_own_revision(engine: Engine) {
    let t = Tower::new(engine).await;
    t.post("/api/v1/flights", &t.author, flight("hello")).await;
    t.post("/api/v1/flights/hello/review", &t.author, json!({}))
        .await;
    // The author's own token lacks the role.
    let r = t
        .post("/api/v1/flights/hello/approve", &t.author, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        r.json["error"].as_str().unwrap().contains("role author"),
        "{}",
        r.json
    );
    // An approver or admin token held by the same person (same name) is refused too.
    for role in [Role::Approver, Role::Admin] {
        let same_person = t.token(role, "alice").await;
        let r = t
            .post("/api/v1/flights/hello/approve", &same_person, json!({}))
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.json);
        assert!(
            r.json["error"]
                .as_str()
                .unwrap()
                .contains("needs someone else"),
            "{}",
            r.json
        );
    }
    let r = t
        .post("/api/v1/flights/hello/approve", &t.admin, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "someone else may: {}", r.json);
    t.finish().await;
}

both!(single_user_mode_allows_self_approval_and_says_so);
async fn single_user_mode_allows_self_approval_and_says_so(engine: Engine) {
    let t = Tower::with(
        engine,
        ApiConfig {
            single_user: true,
            ..ApiConfig::default()
        },
    )
    .await;
    t.post("/api/v1/flights", &t.admin, flight("hello")).await;
    t.post("/api/v1/flights/hello/review", &t.admin, json!({}))
        .await;
    let r = t
        .post("/api/v1/flights/hello/approve", &t.admin, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert!(r.json["warning"]
        .as_str()
        .unwrap()
        .contains("single-user mode"));
    let detail = t.get("/api/v1/flights/hello", &t.admin).await;
    assert_eq!(detail.json["audit"][2]["detail"]["selfApproved"], true);
    let health = t.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(health.json["singleUser"], true);
    t.finish().await;
}

both!(role_matrix);
async fn role_matrix(engine: Engine) {
    let t = Tower::new(engine).await;
    let none = "tp_0000000000000000000000000000000000000000000000000000000000000000";
    // (role, token) × (what, expected status), each against a flight in the right state.
    let cases: [(&str, &str, [u16; 7]); 3] = [
        // push, review, approve, kill, end, create token, list flights
        ("author", &t.author, [201, 200, 403, 403, 403, 403, 200]),
        ("approver", &t.approver, [403, 403, 200, 200, 200, 403, 200]),
        ("admin", &t.admin, [201, 200, 200, 200, 200, 201, 200]),
    ];
    for (i, (role, token, expected)) in cases.iter().enumerate() {
        let name = format!("f{i}");
        let mut got = Vec::new();
        got.push(
            t.post("/api/v1/flights", token, flight(&format!("{name}-p")))
                .await
                .status
                .as_u16(),
        );
        // The flight acted on below is alice's, so that approving it is not self-approval.
        t.post("/api/v1/flights", &t.author, flight(&name)).await;
        got.push(
            t.post(&format!("/api/v1/flights/{name}/review"), token, json!({}))
                .await
                .status
                .as_u16(),
        );
        t.post(
            &format!("/api/v1/flights/{name}/review"),
            &t.author,
            json!({}),
        )
        .await;
        let approve = t
            .post(&format!("/api/v1/flights/{name}/approve"), token, json!({}))
            .await;
        got.push(approve.status.as_u16());
        if approve.status != StatusCode::OK {
            t.post(
                &format!("/api/v1/flights/{name}/approve"),
                &t.approver,
                json!({}),
            )
            .await;
        }
        got.push(
            t.post(&format!("/api/v1/flights/{name}/kill"), token, json!({}))
                .await
                .status
                .as_u16(),
        );
        got.push(
            t.post(&format!("/api/v1/flights/{name}/end"), token, json!({}))
                .await
                .status
                .as_u16(),
        );
        got.push(
            t.post("/api/v1/tokens", token, json!({"role": "author"}))
                .await
                .status
                .as_u16(),
        );
        got.push(t.get("/api/v1/flights", token).await.status.as_u16());
        assert_eq!(got, expected, "role {role}");
    }
    for token in [None, Some(none)] {
        for (method, path) in [
            (Method::GET, "/api/v1/flights"),
            (Method::POST, "/api/v1/flights"),
            (Method::GET, "/api/v1/flights/f0/progress"),
            (Method::POST, "/api/v1/flights/f0/kill"),
            (Method::GET, "/api/v1/tokens"),
        ] {
            let r = t.call(method, path, token, Some(json!({}))).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path} with {token:?}");
            assert_eq!(r.headers["www-authenticate"], "Bearer");
            assert!(r.json["error"].is_string());
        }
    }
    let made = t
        .post(
            "/api/v1/tokens",
            &t.admin,
            json!({"role": "approver", "name": "carol"}),
        )
        .await;
    let carol = made.json["token"].as_str().unwrap();
    assert_eq!(
        t.get("/api/v1/flights", carol).await.status,
        StatusCode::OK,
        "a token made over the API works"
    );
    t.finish().await;
}

both!(an_invalid_flight_is_refused_with_paths);
async fn an_invalid_flight_is_refused_with_paths(engine: Engine) {
    let t = Tower::new(engine).await;
    let bad = json!({
        "studyname": "Bad Name",
        "author": "a",
        "description": "d",
        "flightplan": [{"action": "ping", "url": "http://x/{{nope}}"}, {"action": "wiat", "for": "1h"}],
        "colour": "red"
    });
    let r = t.post("/api/v1/flights", &t.author, bad.clone()).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let expected: Vec<Value> = Flight::from_json(&bad)
        .unwrap_err()
        .into_iter()
        .map(|d| json!({"path": d.path.to_string(), "message": d.message}))
        .collect();
    assert!(expected.len() >= 3);
    assert_eq!(
        r.json["problems"],
        Value::Array(expected),
        "the same diagnostics as `flight validate`"
    );
    let not_json = t
        .send(
            axum::http::Request::post("/api/v1/flights")
                .header("authorization", format!("Bearer {}", t.author))
                .header("content-type", "application/json")
                .body(axum::body::Body::from("{\"studyname\": "))
                .unwrap(),
        )
        .await;
    assert_eq!(not_json.status, StatusCode::BAD_REQUEST);
    assert_eq!(not_json.json["problems"][0]["path"], "$");
    t.finish().await;
}

both!(refusals_that_depend_on_state);
async fn refusals_that_depend_on_state(engine: Engine) {
    let t = Tower::new(engine).await;
    let status = |r: crate::support::Resp| {
        (
            r.status.as_u16(),
            r.json["error"].as_str().unwrap_or("").to_string(),
        )
    };
    assert_eq!(
        status(
            t.post("/api/v1/flights/nope/review", &t.author, json!({}))
                .await
        )
        .0,
        404
    );
    assert_eq!(
        t.get("/api/v1/flights/nope", &t.author).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        t.get("/api/v1/flights/nope/progress", &t.author)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    t.post("/api/v1/flights", &t.author, flight("hello")).await;
    let (code, msg) = status(
        t.post("/api/v1/flights/hello/approve", &t.approver, json!({}))
            .await,
    );
    assert_eq!(code, 409);
    assert!(msg.contains("send it for review first"), "{msg}");
    assert_eq!(
        status(
            t.post("/api/v1/flights/hello/kill", &t.approver, json!({}))
                .await
        )
        .0,
        409
    );
    assert_eq!(
        status(
            t.post(
                "/api/v1/flights/hello/review",
                &t.author,
                json!({"version": 7})
            )
            .await
        )
        .0,
        409
    );
    let unknown_field = t
        .post(
            "/api/v1/flights/hello/review",
            &t.author,
            json!({"versoin": 1}),
        )
        .await;
    assert_eq!(unknown_field.status, StatusCode::UNPROCESSABLE_ENTITY);
    t.post("/api/v1/flights/hello/review", &t.author, json!({}))
        .await;
    // A new push while under review supersedes that revision: it must be reviewed again.
    let mut v2 = flight("hello");
    v2["description"] = json!("changed");
    t.post("/api/v1/flights", &t.author, v2).await;
    let (code, _) = status(
        t.post("/api/v1/flights/hello/approve", &t.approver, json!({}))
            .await,
    );
    assert_eq!(code, 409);
    let revs = t.get("/api/v1/flights/hello", &t.author).await.json["revisions"].clone();
    assert_eq!(revs[0]["state"], "superseded");
    t.post("/api/v1/flights/hello/end", &t.approver, json!({}))
        .await;
    let (code, msg) = status(t.post("/api/v1/flights", &t.author, flight("hello")).await);
    assert_eq!(code, 409);
    assert!(msg.contains("ended"), "{msg}");
    assert_eq!(
        status(
            t.post("/api/v1/flights/hello/end", &t.approver, json!({}))
                .await
        )
        .0,
        409
    );
    let audit = t.get("/api/v1/audit", &t.author).await;
    assert!(audit
        .json
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "token.create"));
    t.finish().await;
}

both!(openapi_metrics_health_and_tokens);
async fn openapi_metrics_health_and_tokens(engine: Engine) {
    let t = Tower::new(engine).await;
    let tokens = t.get("/api/v1/tokens", &t.admin).await;
    let names: Vec<&str> = tokens
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob", "root"]);
    assert!(
        !tokens.json.to_string().contains("tp_"),
        "secrets are never listed"
    );
    assert_eq!(
        t.get("/api/v1/tokens", &t.author).await.status,
        StatusCode::FORBIDDEN
    );
    let doc = t.call(Method::GET, "/api/openapi.json", None, None).await;
    assert_eq!(doc.status, StatusCode::OK);
    for path in [
        "/control/index.json",
        "/api/v1/reports",
        "/api/v1/flights",
        "/api/v1/flights/{studyname}/approve",
    ] {
        assert!(doc.json["paths"][path].is_object(), "{path} is described");
    }
    t.call(Method::GET, "/control/index.json", None, None).await;
    let m = t.call(Method::GET, "/metrics", None, None).await;
    let text = String::from_utf8(m.bytes).unwrap();
    assert!(
        text.contains("testpilot_index_requests_total{result=\"200\"} 1"),
        "{text}"
    );
    assert!(text.contains("# TYPE testpilot_index_serial gauge"));
    let h = t.call(Method::GET, "/healthz", None, None).await;
    let name = if engine == Engine::Sqlite {
        "sqlite"
    } else {
        "postgres"
    };
    assert_eq!(
        (h.status, h.json["ok"].as_bool(), h.json["engine"].as_str()),
        (StatusCode::OK, Some(true), Some(name))
    );
    let missing = t.call(Method::GET, "/nope", None, None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.json["error"].is_string());
    t.finish().await;
}

both!(killing_supersedes_a_pending_revision);
async fn killing_supersedes_a_pending_revision(engine: Engine) {
    let t = Tower::new(engine).await;
    t.make_live(flight("hello")).await;
    let mut v2 = flight("hello");
    v2["description"] = json!("v2");
    t.post("/api/v1/flights", &t.author, v2).await;
    t.post("/api/v1/flights/hello/review", &t.author, json!({}))
        .await;
    let k = t
        .post("/api/v1/flights/hello/kill", &t.approver, json!({}))
        .await;
    assert_eq!(
        (k.status, k.json["version"].as_u64()),
        (StatusCode::OK, Some(1)),
        "the live revision is killed"
    );
    let detail = t.get("/api/v1/flights/hello", &t.author).await;
    let states: Vec<&str> = detail.json["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["live", "superseded"]);
    assert!(detail.json["pending"].is_null());
    let a = t
        .post("/api/v1/flights/hello/approve", &t.approver, json!({}))
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    t.finish().await;
}
