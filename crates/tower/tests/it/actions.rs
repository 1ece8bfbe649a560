//! The lifecycle actions over the API as one service: send-back, the two-person rule over
//! every revision since the flight was last live, the role checked before the body, JSON
//! bodies only with `Content-Type: application/json`, and the metrics every action counts.

use crate::both;
use crate::support::{flight, Resp, Tower};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{json, Value};
use testpilot_tower::store::Engine;
use testpilot_tower::Role;

/// A POST with a bearer token, a raw body and the given `Content-Type` (or none).
async fn raw(t: &Tower, path: &str, token: Option<&str>, ct: Option<&str>, body: &str) -> Resp {
    let mut req = Request::builder().method(Method::POST).uri(path);
    if let Some(tok) = token {
        req = req.header("authorization", format!("Bearer {tok}"));
    }
    if let Some(ct) = ct {
        req = req.header("content-type", ct);
    }
    t.send(req.body(Body::from(body.to_string())).unwrap())
        .await
}

fn management_actions(t: &Tower) -> u64 {
    t.state
        .metrics
        .management_actions
        .load(std::sync::atomic::Ordering::Relaxed)
}

fn with_description(name: &str, d: &str) -> Value {
    let mut f = flight(name);
    f["description"] = json!(d);
    f
}

// Issue 8, item 11: alice pushes v1, carol changes one character as v2, alice approves v2.
// Before, only the newest revision's pusher was compared, so alice approved her own flight.
both!(two_person_rule_counts_every_revision_since_live);
async fn two_person_rule_counts_every_revision_since_live(engine: Engine) {
    let t = Tower::new(engine).await;
    let carol = t.token(Role::Author, "carol").await;
    let alice_approver = t.token(Role::Approver, "alice").await;
    let alice_shouting = t.token(Role::Approver, "ALICE").await;
    t.post(
        "/api/v1/flights",
        &t.author,
        with_description("two", "says hello"),
    )
    .await;
    let v2 = t
        .post(
            "/api/v1/flights",
            &carol,
            with_description("two", "says hellO"),
        )
        .await;
    assert_eq!(v2.json["version"], 2, "{}", v2.json);
    t.post("/api/v1/flights/two/review", &carol, json!({}))
        .await;
    for token in [&alice_approver, &alice_shouting] {
        let r = t
            .post("/api/v1/flights/two/approve", token, json!({"version": 2}))
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.json);
        let msg = r.json["error"].as_str().unwrap();
        assert!(
            msg.contains("pushed revision 1") && msg.contains("needs someone else"),
            "{msg}"
        );
    }
    let r = t
        .post("/api/v1/flights/two/approve", &t.approver, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "someone else may: {}", r.json);

    // Once v2 is live, only revisions pushed since count: carol pushes v3 and v4; alice
    // (who pushed nothing since v2 went live) may approve v4, carol's other name may not.
    t.post("/api/v1/flights", &carol, with_description("two", "v3"))
        .await;
    t.post("/api/v1/flights", &carol, with_description("two", "v4"))
        .await;
    t.post("/api/v1/flights/two/review", &carol, json!({}))
        .await;
    let carol_approver = t.token(Role::Approver, "Carol").await;
    let r = t
        .post("/api/v1/flights/two/approve", &carol_approver, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.json);
    let r = t
        .post("/api/v1/flights/two/approve", &alice_approver, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["version"], 4);
    t.finish().await;
}

// Send-back existed only in the dashboard, with its own transitions; now the API has it,
// through the same service.
both!(send_back_over_the_api);
async fn send_back_over_the_api(engine: Engine) {
    let t = Tower::new(engine).await;
    t.post("/api/v1/flights", &t.author, flight("back")).await;
    let path = "/api/v1/flights/back/send-back";
    let r = t
        .post(path, &t.approver, json!({"comment": "too early"}))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "a draft: {}", r.json);
    assert!(r.json["error"]
        .as_str()
        .unwrap()
        .contains("no revision under review"));
    t.post("/api/v1/flights/back/review", &t.author, json!({}))
        .await;
    for body in [json!({}), json!({"comment": "  "})] {
        let r = t.post(path, &t.approver, body).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.json);
        assert_eq!(r.json["problems"][0]["path"], "comment", "{}", r.json);
    }
    let empty = raw(&t, path, Some(&t.approver), None, "").await;
    assert_eq!(
        empty.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        empty.json
    );
    assert_eq!(empty.json["problems"][0]["path"], "comment");
    let long = t
        .post(path, &t.approver, json!({"comment": "x".repeat(4001)}))
        .await;
    assert_eq!(long.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = t.post(path, &t.author, json!({"comment": "my own"})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "an author may not");
    let before = management_actions(&t);
    let r = t
        .post(
            path,
            &t.approver,
            json!({"comment": "make the survey shorter", "version": 1}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(
        (r.json["state"].as_str(), r.json["revisionState"].as_str()),
        (Some("draft"), Some("draft"))
    );
    assert_eq!(
        management_actions(&t),
        before + 1,
        "counted like the others"
    );
    let d = t.get("/api/v1/flights/back", &t.author).await.json;
    let last = d["audit"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["actor"].as_str(), last["action"].as_str()),
        (Some("bob"), Some("sendback"))
    );
    assert_eq!(last["detail"]["comment"], "make the survey shorter");

    // On a live flight a pending revision goes back; the live one keeps running.
    t.post("/api/v1/flights/back/review", &t.author, json!({}))
        .await;
    t.post("/api/v1/flights/back/approve", &t.approver, json!({}))
        .await;
    t.post("/api/v1/flights", &t.author, with_description("back", "v2"))
        .await;
    t.post("/api/v1/flights/back/review", &t.author, json!({}))
        .await;
    let r = t.post(path, &t.admin, json!({"comment": "not yet"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(
        (r.json["state"].as_str(), r.json["version"].as_u64()),
        (Some("live"), Some(2))
    );
    let s = t.get("/api/v1/flights/back", &t.author).await.json;
    assert_eq!(
        (s["liveVersion"].as_u64(), s["pending"].clone()),
        (Some(1), json!({"version": 2, "state": "draft"}))
    );
    let doc = t.call(Method::GET, "/api/openapi.json", None, None).await;
    assert!(doc.json["paths"]["/api/v1/flights/{studyname}/send-back"]["post"].is_object());
    assert_eq!(
        doc.json["components"]["schemas"]["SendBackBody"]["required"],
        json!(["comment"])
    );
    t.finish().await;
}

// Issue 8, item 10: an author asking to approve with a bad body got 400/422 (the body was
// read first) instead of 403.
both!(the_role_is_checked_before_the_body);
async fn the_role_is_checked_before_the_body(engine: Engine) {
    let t = Tower::new(engine).await;
    t.post("/api/v1/flights", &t.author, flight("order")).await;
    let json = Some("application/json");
    let cases: [(&str, &str, Option<&str>, &str); 9] = [
        (
            "/api/v1/flights/order/approve",
            &t.author,
            json,
            "{\"versoin\": 1}",
        ),
        (
            "/api/v1/flights/order/approve",
            &t.author,
            json,
            "{not json",
        ),
        (
            "/api/v1/flights/order/approve",
            &t.author,
            Some("text/plain"),
            "x",
        ),
        ("/api/v1/flights/order/send-back", &t.author, json, "{}"),
        ("/api/v1/flights/order/kill", &t.author, json, "[1]"),
        ("/api/v1/flights/order/end", &t.author, None, "{}"),
        ("/api/v1/flights/order/review", &t.approver, json, "{nope"),
        ("/api/v1/flights", &t.approver, json, "{nope"),
        ("/api/v1/tokens", &t.author, Some("text/plain"), "{nope"),
    ];
    for (path, token, ct, body) in cases {
        let r = raw(&t, path, Some(token), ct, body).await;
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "{path} with {body:?}: {}",
            r.json
        );
        assert!(r.json["error"].as_str().unwrap().contains("which may not"));
    }
    t.finish().await;
}

// Issue 8, item 10: `text/plain` bodies were taken, so any web page could post reports or
// flights to a tower its visitor's browser can reach (no CORS preflight for text/plain).
both!(json_bodies_need_the_json_content_type);
async fn json_bodies_need_the_json_content_type(engine: Engine) {
    let t = Tower::new(engine).await;
    t.make_live(flight("typed")).await;
    let report = json!({"client": "0f8fad5b-d9cb-469f-a165-70867728950e", "reports": [
        {"seq": 1, "flight": "typed", "version": 1, "status": "running", "step": 0, "at": 0}]})
    .to_string();
    let spec = with_description("typed2", "x").to_string();
    let token = json!({"role": "author", "name": "mallory"}).to_string();
    for ct in [
        None,
        Some("text/plain"),
        Some("text/plain; charset=utf-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonp"),
    ] {
        for (path, tok, body) in [
            ("/api/v1/reports", None, report.as_str()),
            ("/api/v1/flights", Some(t.author.as_str()), spec.as_str()),
            ("/api/v1/flights/typed/kill", Some(&t.approver), "{}"),
            (
                "/api/v1/flights/typed/send-back",
                Some(&t.approver),
                "{\"comment\": \"x\"}",
            ),
            ("/api/v1/tokens", Some(&t.admin), token.as_str()),
        ] {
            let r = raw(&t, path, tok, ct, body).await;
            assert_eq!(
                r.status,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{path} with {ct:?}: {}",
                r.json
            );
            assert!(
                r.json["error"]
                    .as_str()
                    .unwrap()
                    .contains("Content-Type: application/json"),
                "{}",
                r.json
            );
            assert_eq!(r.json["problems"][0]["path"], "$");
        }
    }
    assert_eq!(t.state.store.report_count().await.unwrap(), 0);
    let d = t.get("/api/v1/flights/typed", &t.author).await.json;
    assert_eq!(d["state"], "live", "nothing was killed");
    assert!(t
        .get("/api/v1/flights/typed2", &t.author)
        .await
        .status
        .is_client_error());

    // With the right type (any case, with parameters) they are taken; an empty action
    // body needs no type.
    let ok = raw(
        &t,
        "/api/v1/reports",
        None,
        Some("Application/JSON; charset=utf-8"),
        &report,
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.json);
    let ok = raw(
        &t,
        "/api/v1/flights",
        Some(&t.author),
        Some("application/json"),
        &spec,
    )
    .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.json);
    let ok = raw(
        &t,
        "/api/v1/flights/typed2/review",
        Some(&t.author),
        None,
        "",
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.json);
    let doc = t.call(Method::GET, "/api/openapi.json", None, None).await;
    assert!(doc.json["paths"]["/api/v1/reports"]["post"]["responses"]["415"].is_object());
    t.finish().await;
}
