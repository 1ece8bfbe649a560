//! Events the tower does not take (docs/api.md#events): arms and topics that are not the
//! flight's, NUL in texts, dates far ahead of the tower's clock, a client over its cap; and
//! a batch the database refuses failing alone, not with the batches grouped with it.

use crate::both;
use crate::events::{client, ev, post, recorded, unlimited, AT, DAY};
use crate::support::{Resp, Tower, T0};
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use testpilot_flight::event::{Event, EventBatch};
use testpilot_flight::Timestamp;
use testpilot_tower::api::ApiConfig;
use testpilot_tower::ingest_events::store_group;
use testpilot_tower::store::Engine;
use testpilot_tower::ClientLimits;

fn paths(r: &Resp) -> Vec<String> {
    r.json["problems"]
        .as_array()
        .unwrap_or_else(|| panic!("no problems in {}", r.json))
        .iter()
        .map(|p| p["path"].as_str().unwrap().to_string())
        .collect()
}

both!(arms_and_topics_not_of_the_flight_are_refused);
async fn arms_and_topics_not_of_the_flight_are_refused(engine: Engine) {
    let t = Tower::with(engine, unlimited()).await;
    t.make_live(recorded("bar")).await;
    let mut plain = recorded("plain");
    plain.as_object_mut().unwrap().remove("arms");
    t.make_live(plain).await;
    let c = client(1);
    let mut no_arm = ev(3, "bar", "control", "search");
    no_arm["arm"] = Value::Null;
    let r = post(
        &t,
        json!({"client": c, "events": [
            ev(1, "bar", "control", "search"),
            ev(2, "bar", "made-up", "search"),
            no_arm,
            ev(4, "bar", "control", "made.up"),
            ev(5, "plain", "control", "search"),
        ]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.json);
    assert_eq!(
        paths(&r),
        [
            "events[1].arm",
            "events[2].arm",
            "events[3].topic",
            "events[4].arm"
        ]
    );
    assert_eq!(t.state.store.event_count(None).await.unwrap(), 0);
    let mut plain_ok = ev(6, "plain", "control", "open");
    plain_ok["arm"] = Value::Null;
    let r = post(
        &t,
        json!({"client": c, "events": [ev(1, "bar", "control", "search"), plain_ok]}),
    )
    .await;
    assert_eq!(r.json, json!({"accepted": 2, "duplicates": 0}));

    // A new live revision with another arm and topic: pilots still running the old one
    // stream its arms and topics, and its grace (2 days) is kept though the new one has 1.
    let mut v2 = recorded("bar");
    v2["arms"] = json!([{"name": "control", "ratio": 1}, {"name": "third", "ratio": 1}]);
    v2["flightplan"] =
        json!([{"action": "instrument", "watch": ["click"], "for": "7d", "uploadEvery": "1d"}]);
    t.make_live(v2).await;
    let r = post(
        &t,
        json!({"client": c, "events": [ev(7, "bar", "new-bar", "search"), ev(8, "bar", "third", "click")]}),
    )
    .await;
    assert_eq!(
        r.json,
        json!({"accepted": 2, "duplicates": 0}),
        "{}",
        r.json
    );
    let k = t
        .post(
            "/api/v1/flights/bar/kill",
            &t.approver,
            json!({"reason": "done"}),
        )
        .await;
    assert_eq!(k.status, StatusCode::OK, "{}", k.json);
    t.clock.advance(2 * DAY - 1000);
    let r = post(
        &t,
        json!({"client": c, "events": [ev(9, "bar", "third", "open")]}),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "grace of the older revision: {}",
        r.json
    );
    t.finish().await;
}

both!(nul_in_texts_is_refused_with_its_path);
async fn nul_in_texts_is_refused_with_its_path(engine: Engine) {
    let t = Tower::with(engine, unlimited()).await;
    t.make_live(recorded("bar")).await;
    let c = client(1);
    let mut e = ev(1, "bar", "control", "search");
    e["subject"] = json!("a\u{0}b");
    let r = post(
        &t,
        json!({"client": c, "events": [ev(2, "bar", "control", "search"), e]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.json);
    assert_eq!(paths(&r), ["events[1].subject"]);
    let r = t
        .call(
            Method::POST,
            "/api/v1/reports",
            None,
            Some(json!({"client": c, "reports": [
                {"seq": 1, "flight": "bar", "version": 1, "arm": "control", "status": "running",
                 "step": 0, "at": T0, "detail": {"why": "x\u{0}"}}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.json);
    assert_eq!(paths(&r), ["reports[0].detail.why"]);
    assert_eq!(t.state.store.event_count(None).await.unwrap(), 0);
    t.finish().await;
}

fn batch(c: u64, subject: &str) -> EventBatch {
    EventBatch {
        client: client(c),
        events: vec![Event {
            seq: 1,
            flight: "bar".into(),
            version: 1,
            arm: Some("control".into()),
            topic: "search".into(),
            subject: Some(subject.into()),
            value: None,
            at: Timestamp(T0),
        }],
    }
}

both!(a_batch_the_database_refuses_fails_alone);
async fn a_batch_the_database_refuses_fails_alone(engine: Engine) {
    let t = Tower::with(engine, unlimited()).await;
    t.make_live(recorded("bar")).await;
    // NUL passes no reader, but if one came through, PostgreSQL could not unpack it: the
    // group's transaction fails, and each batch is then stored alone.
    let (a, poison, b) = (batch(1, "a"), batch(2, "x\u{0}y"), batch(3, "b"));
    let out = store_group(&t.state.store, &[&a, &poison, &b], Timestamp(T0)).await;
    assert_eq!(out.len(), 3);
    assert_eq!(out[0].as_ref().unwrap().accepted, 1, "{out:?}");
    assert_eq!(out[2].as_ref().unwrap().accepted, 1, "{out:?}");
    if engine == Engine::Postgres {
        assert!(out[1].is_err(), "{out:?}");
        assert_eq!(t.state.store.event_count(None).await.unwrap(), 2);
    }
    let res = t.get("/api/v1/flights/bar/results", &t.author).await;
    assert_eq!(
        res.json["topics"][0]["arms"][0]["clientsWithEvent"],
        if engine == Engine::Postgres { 2 } else { 3 }
    );
    t.finish().await;
}

both!(events_dated_far_ahead_are_refused);
async fn events_dated_far_ahead_are_refused(engine: Engine) {
    let t = Tower::with(engine, unlimited()).await;
    t.make_live(recorded("bar")).await;
    let c = client(1);
    let mut soon = ev(1, "bar", "control", "search");
    soon["at"] = json!(Timestamp(T0 + DAY - 60_000).to_rfc3339());
    let mut far = ev(2, "bar", "control", "search");
    far["at"] = json!("9999-12-31T00:00:00Z");
    let r = post(&t, json!({"client": c, "events": [soon.clone(), far]})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.json);
    assert_eq!(paths(&r), ["events[1].at"]);
    let r = post(
        &t,
        json!({"client": c, "events": [soon, ev(3, "bar", "control", "search")]}),
    )
    .await;
    assert_eq!(r.json, json!({"accepted": 2, "duplicates": 0}));
    assert_eq!(AT, "2026-04-23T00:00:00Z");
    t.finish().await;
}

both!(a_client_over_its_cap_is_refused);
async fn a_client_over_its_cap_is_refused(engine: Engine) {
    let config = ApiConfig {
        limits: ClientLimits {
            rate_per_sec: 0.0,
            max_events_per_client: 5,
            ..ClientLimits::default()
        },
        ..ApiConfig::default()
    };
    let t = Tower::with(engine, config).await;
    t.make_live(recorded("bar")).await;
    let c = client(1);
    let three = |from: u64| -> Vec<Value> {
        (from..from + 3)
            .map(|s| {
                ev(
                    s,
                    "bar",
                    if s % 2 == 0 { "control" } else { "new-bar" },
                    "search",
                )
            })
            .collect()
    };
    assert_eq!(
        post(&t, json!({"client": c, "events": three(1)}))
            .await
            .json["accepted"],
        3
    );
    let r = post(&t, json!({"client": c, "events": three(4)})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.json);
    assert_eq!(paths(&r), ["events[2]"]);
    let two: Vec<Value> = three(4).into_iter().take(2).collect();
    assert_eq!(
        post(&t, json!({"client": c, "events": two})).await.json["accepted"],
        2
    );
    // Another client is not held by the first one's count.
    assert_eq!(
        post(&t, json!({"client": client(2), "events": three(1)}))
            .await
            .json["accepted"],
        3
    );
    assert_eq!(t.state.store.event_count(None).await.unwrap(), 8);
    t.finish().await;
}
