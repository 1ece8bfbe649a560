//! Events (docs/api.md#events, #results, #export): idempotency, rollups equal to the raw
//! count, refusals that store nothing, size limits, concurrency, results and export.

use crate::both;
use crate::support::{Resp, Tower, T0};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use testpilot_tower::api::ApiConfig;
use testpilot_tower::store::Engine;
use testpilot_tower::ClientLimits;

pub(crate) const DAY: i64 = 86_400_000;
/// 2026-04-23T00:00:00Z as RFC 3339 (`T0`).
pub(crate) const AT: &str = "2026-04-23T00:00:00Z";

/// A live-able flight with two arms and a recording streamed to the tower every two days.
pub(crate) fn recorded(name: &str) -> Value {
    json!({
        "studyname": name,
        "author": "study-team@example.com",
        "description": "search bar",
        "arms": [{"name": "control", "ratio": 1}, {"name": "new-bar", "ratio": 1}],
        "flightplan": [{"action": "instrument", "watch": ["search", "open"], "for": "7d", "uploadEvery": "2d"}]
    })
}

pub(crate) fn client(i: u64) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

pub(crate) fn ev(seq: u64, flight: &str, arm: &str, topic: &str) -> Value {
    json!({"seq": seq, "flight": flight, "version": 1, "arm": arm, "topic": topic,
           "subject": null, "value": null, "at": AT})
}

pub(crate) async fn post(t: &Tower, body: Value) -> Resp {
    t.call(Method::POST, "/api/v1/events", None, Some(body))
        .await
}

/// Enrols a client in an arm (a `running` report).
async fn enrol(t: &Tower, c: &str, flight: &str, arm: &str) {
    let r = t
        .call(
            Method::POST,
            "/api/v1/reports",
            None,
            Some(json!({"client": c, "reports": [
                {"seq": 1, "flight": flight, "version": 1, "arm": arm, "status": "running", "step": 0, "at": T0}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
}

pub(crate) fn unlimited() -> ApiConfig {
    ApiConfig {
        limits: ClientLimits {
            rate_per_sec: 0.0,
            ..ClientLimits::default()
        },
        ..ApiConfig::default()
    }
}

both!(events_are_stored_once_and_counted);
async fn events_are_stored_once_and_counted(engine: Engine) {
    let t = Tower::with(engine, unlimited()).await;
    t.make_live(recorded("bar")).await;
    let c1 = client(1);
    // Seq 2 twice in one batch: stored once.
    let batch = json!({"client": c1, "events": [
        ev(1, "bar", "control", "search"), ev(2, "bar", "control", "search"),
        ev(2, "bar", "control", "search"), ev(3, "bar", "control", "open")]});
    let r = post(&t, batch.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json, json!({"accepted": 3, "duplicates": 1}));
    let again = post(&t, batch).await;
    assert_eq!(again.json, json!({"accepted": 0, "duplicates": 4}));
    // A resend mixed with new events: only the new count.
    let mixed = json!({"client": c1, "events": [ev(3, "bar", "control", "open"), ev(4, "bar", "control", "search")]});
    assert_eq!(
        post(&t, mixed).await.json,
        json!({"accepted": 1, "duplicates": 1})
    );
    assert_eq!(t.state.store.event_count(Some("bar")).await.unwrap(), 4);
    let res = t.get("/api/v1/flights/bar/results", &t.author).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.json);
    let search = &res.json["topics"][0];
    assert_eq!(search["topic"], "search");
    assert_eq!(search["arms"][0]["events"], 3, "{}", res.json);
    assert_eq!(search["arms"][0]["clientsWithEvent"], 1);
    assert_eq!(res.json["topics"][1]["arms"][0]["events"], 1);
    assert_eq!(
        search["days"],
        json!([{"day": "2026-04-23", "arm": "control", "events": 3}])
    );
    t.finish().await;
}

both!(results_count_per_arm_with_intervals);
async fn results_count_per_arm_with_intervals(engine: Engine) {
    let t = Tower::with(engine, unlimited()).await;
    t.make_live(recorded("bar")).await;
    // control: 4 clients with 0, 1, 2, 3 searches; new-bar: 3 clients with 2, 4, 6.
    let plan: [(&str, &[u64]); 2] = [("control", &[0, 1, 2, 3]), ("new-bar", &[2, 4, 6])];
    // Events of the 23rd and the 24th, sent on the 24th (the tower refuses dates more than
    // a day ahead of its clock).
    t.clock.advance(DAY);
    let mut i = 0;
    for (arm, counts) in plan {
        for &n in counts {
            i += 1;
            let c = client(i);
            enrol(&t, &c, "bar", arm).await;
            if n > 0 {
                let events: Vec<Value> = (1..=n)
                    .map(|s| {
                        let mut e = ev(s, "bar", arm, "search");
                        e["at"] = json!(format!("2026-04-2{}T12:00:00Z", 3 + (s % 2)));
                        e
                    })
                    .collect();
                let r = post(&t, json!({"client": c, "events": events})).await;
                assert_eq!(r.json["accepted"], n);
            }
        }
    }
    let res = t.get("/api/v1/flights/bar/results", &t.author).await.json;
    assert_eq!(res["arms"], json!(["control", "new-bar"]));
    // Both watched topics are there, `open` with no events.
    assert_eq!(res["topics"][1]["topic"], "open");
    assert_eq!(res["topics"][1]["arms"][0]["clients"], 4);
    assert_eq!(res["topics"][1]["arms"][0]["perClient"]["mean"], 0.0);
    let s = &res["topics"][0]["arms"];
    assert_eq!(s[0]["clients"], 4);
    assert_eq!(s[0]["clientsWithEvent"], 3);
    assert_eq!(s[0]["events"], 6);
    assert_eq!(s[1]["clients"], 3);
    assert_eq!(s[1]["events"], 12);
    let close = |v: &Value, want: f64| {
        let got = v.as_f64().unwrap_or(f64::NAN);
        assert!((got - want).abs() < 1e-9, "{got} != {want}");
    };
    // control: mean 1.5, s² = 5/3, t(0.975, 3) = 3.182446305284263.
    close(&s[0]["perClient"]["mean"], 1.5);
    let half = 3.182446305284263 * (5.0f64 / 3.0 / 4.0).sqrt();
    close(&s[0]["perClient"]["low"], 1.5 - half);
    close(&s[0]["perClient"]["high"], 1.5 + half);
    close(&s[0]["share"]["value"], 0.75);
    close(&s[1]["vsControl"]["perClient"]["diff"], 2.5);
    close(&s[1]["vsControl"]["share"]["diff"], 0.25);
    assert!(s[0].get("vsControl").is_none());
    let p = s[1]["vsControl"]["perClient"]["p"].as_f64().unwrap();
    assert!(p > 0.0 && p < 1.0, "{p}");
    let days = res["topics"][0]["days"].as_array().unwrap();
    let total: u64 = days.iter().map(|d| d["events"].as_u64().unwrap()).sum();
    assert_eq!(total, 18);
    assert_eq!(days[0]["day"], "2026-04-23");
    assert_eq!(days[0]["arm"], "control");
    t.finish().await;
}

both!(refused_batches_store_nothing);
async fn refused_batches_store_nothing(engine: Engine) {
    let t = Tower::with(engine, unlimited()).await;
    t.make_live(recorded("bar")).await;
    t.post("/api/v1/flights", &t.author, recorded("draft"))
        .await;
    t.make_live(recorded("gone")).await;
    let c = client(7);
    // Unknown and draft flights, mixed with a good event: refused whole, with paths.
    let r = post(
        &t,
        json!({"client": c, "events": [ev(1, "bar", "control", "search"), ev(2, "nothing", "control", "search"), ev(3, "draft", "control", "search")]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.json);
    let paths: Vec<&str> = r.json["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["events[1].flight", "events[2].flight"]);
    assert_eq!(t.state.store.event_count(None).await.unwrap(), 0);

    // Killed: still taken within its grace (uploadEvery 2d), refused after.
    let k = t
        .post(
            "/api/v1/flights/gone/kill",
            &t.approver,
            json!({"reason": "done"}),
        )
        .await;
    assert_eq!(k.status, StatusCode::OK, "{}", k.json);
    t.clock.advance(2 * DAY - 1000);
    let r = post(
        &t,
        json!({"client": c, "events": [ev(10, "gone", "control", "search")]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    // Ended after the kill: the grace still counts from the kill.
    t.post("/api/v1/flights/gone/end", &t.approver, json!({}))
        .await;
    t.clock.advance(2000);
    let r = post(
        &t,
        json!({"client": c, "events": [ev(11, "gone", "control", "search")]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.json);
    assert_eq!(r.json["problems"][0]["path"], "events[0].flight");
    assert!(r.json["problems"][0]["message"]
        .as_str()
        .unwrap()
        .contains("grace"));
    assert_eq!(t.state.store.event_count(None).await.unwrap(), 1);
    t.finish().await;
}

both!(bad_and_oversize_batches_are_refused);
async fn bad_and_oversize_batches_are_refused(engine: Engine) {
    let t = Tower::with(engine, unlimited()).await;
    t.make_live(recorded("bar")).await;
    let c = client(1);
    let mut neg = ev(1, "bar", "control", "search");
    neg["seq"] = json!(-1);
    let r = post(&t, json!({"client": c, "events": [neg]})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json["problems"][0]["path"], "events[0].seq");
    let many: Vec<Value> = (1..=1001)
        .map(|s| ev(s, "bar", "control", "search"))
        .collect();
    let r = post(&t, json!({"client": c, "events": many})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.json);
    assert_eq!(r.json["problems"][0]["path"], "events");
    let mut long = ev(1, "bar", "control", "search");
    long["subject"] = json!("x".repeat(257));
    let r = post(&t, json!({"client": c, "events": [long]})).await;
    assert_eq!(r.json["problems"][0]["path"], "events[0].subject");
    // A 10 MB subject: refused by size before anything is parsed.
    let huge = format!(
        "{{\"client\":\"{c}\",\"events\":[{{\"seq\":1,\"flight\":\"bar\",\"version\":1,\"arm\":\"control\",\"topic\":\"search\",\"subject\":\"{}\",\"value\":null,\"at\":\"{AT}\"}}]}}",
        "x".repeat(10 << 20)
    );
    let r = t
        .send(
            Request::post("/api/v1/events")
                .header("content-type", "application/json")
                .body(Body::from(huge))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.json);
    assert_eq!(t.state.store.event_count(None).await.unwrap(), 0);
    t.finish().await;
}

both!(parallel_batches_count_exactly);
async fn parallel_batches_count_exactly(engine: Engine) {
    let t = Tower::with(engine, unlimited()).await;
    t.make_live(recorded("bar")).await;
    let mut tasks = Vec::new();
    // 8 clients, each sends 4 batches of 50 in parallel, and each batch twice.
    for c in 0..8u64 {
        for b in 0..4u64 {
            for _ in 0..2 {
                let app = t.app.clone();
                tasks.push(tokio::spawn(async move {
                    use tower::ServiceExt;
                    let arm = if c.is_multiple_of(2) {
                        "control"
                    } else {
                        "new-bar"
                    };
                    let events: Vec<Value> = (1..=50)
                        .map(|s| {
                            let seq = b * 50 + s;
                            let topic = if seq.is_multiple_of(3) {
                                "open"
                            } else {
                                "search"
                            };
                            ev(seq, "bar", arm, topic)
                        })
                        .collect();
                    let body = json!({"client": client(c), "events": events}).to_string();
                    let res = app
                        .oneshot(
                            Request::post("/api/v1/events")
                                .header("content-type", "application/json")
                                .body(Body::from(body))
                                .unwrap(),
                        )
                        .await
                        .unwrap();
                    assert_eq!(res.status(), StatusCode::OK);
                    let bytes = http_body_util::BodyExt::collect(res.into_body())
                        .await
                        .unwrap()
                        .to_bytes();
                    let v: Value = serde_json::from_slice(&bytes).unwrap();
                    v["accepted"].as_u64().unwrap()
                }));
            }
        }
    }
    let mut accepted = 0;
    for task in tasks {
        accepted += task.await.unwrap();
    }
    assert_eq!(accepted, 8 * 4 * 50, "each event accepted exactly once");
    assert_eq!(t.state.store.event_count(None).await.unwrap(), 1600);
    let res = t.get("/api/v1/flights/bar/results", &t.author).await.json;
    let mut by: BTreeMap<(String, String), u64> = BTreeMap::new();
    for topic in res["topics"].as_array().unwrap() {
        for arm in topic["arms"].as_array().unwrap() {
            by.insert(
                (
                    topic["topic"].as_str().unwrap().into(),
                    arm["arm"].as_str().unwrap().into(),
                ),
                arm["events"].as_u64().unwrap(),
            );
            assert_eq!(arm["clientsWithEvent"], 4);
        }
    }
    // 200 events a client: 66 `open` (every third) and 134 `search`; 4 clients an arm.
    assert_eq!(by[&("open".into(), "control".into())], 4 * 66);
    assert_eq!(by[&("search".into(), "new-bar".into())], 4 * 134);
    // Each client has the same count, so no variance: the interval is the mean itself.
    let search = &res["topics"][0]["arms"][0]["perClient"];
    assert_eq!(search["mean"], 134.0);
    assert_eq!(search["low"], 134.0);
    t.finish().await;
}

both!(export_streams_every_event_quoted);
async fn export_streams_every_event_quoted(engine: Engine) {
    let t = Tower::with(engine, unlimited()).await;
    t.make_live(recorded("bar")).await;
    let c = client(1);
    let tricky = [
        "a,b",
        "say \"hi\"",
        "two\nlines",
        "=1+2",
        "@SUM(A1)",
        "-3",
        "+4",
    ];
    let events: Vec<Value> = tricky
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut e = ev(i as u64 + 1, "bar", "new-bar", "search");
            e["subject"] = json!(s);
            e["value"] = json!(-1.5);
            e["at"] = json!(format!("2026-04-23T00:00:0{i}Z"));
            e
        })
        .collect();
    post(&t, json!({"client": c, "events": events})).await;
    // More than a page (2,000) from other clients, older than those above.
    for k in 0..3u64 {
        let events: Vec<Value> = (1..=1000)
            .map(|s| {
                let mut e = ev(s, "bar", "control", "open");
                e["at"] = json!("2026-04-22T00:00:00Z");
                e
            })
            .collect();
        let r = post(&t, json!({"client": client(10 + k), "events": events})).await;
        assert_eq!(r.json["accepted"], 1000);
    }
    let csv = t.get("/api/v1/flights/bar/events.csv", &t.author).await;
    assert_eq!(csv.status, StatusCode::OK);
    assert_eq!(csv.headers["content-type"], "text/csv; charset=utf-8");
    assert_eq!(
        csv.headers["content-disposition"],
        "attachment; filename=\"bar-events.csv\""
    );
    let text = String::from_utf8(csv.bytes).unwrap();
    assert!(text.starts_with("client,seq,version,arm,topic,subject,value,at,received\r\n"));
    let tail: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(tail.len(), 1 + 3000 + 7, "a header and every event");
    let mine: Vec<&str> = tail[3001..].to_vec();
    let want_subjects = [
        "\"a,b\"",
        "\"say \"\"hi\"\"\"",
        "\"two\nlines\"",
        "'=1+2",
        "'@SUM(A1)",
        "'-3",
        "'+4",
    ];
    for (line, want) in mine.iter().zip(want_subjects) {
        assert!(
            line.starts_with(&format!("{c},"))
                && line.contains(&format!(",new-bar,search,{want},-1.5,")),
            "{line:?} should hold {want:?}"
        );
    }
    // Oldest first: every `open` event of the 22nd before those of the 23rd.
    assert!(tail[1].contains(",control,open,,,2026-04-22T00:00:00"));

    let jl = t.get("/api/v1/flights/bar/events.jsonl", &t.author).await;
    assert_eq!(jl.headers["content-type"], "application/x-ndjson");
    let lines: Vec<Value> = String::from_utf8(jl.bytes)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3007);
    assert_eq!(
        lines[3003]["subject"], "=1+2",
        "JSON Lines keep texts as sent"
    );
    assert_eq!(lines[3003]["value"], -1.5);
    assert_eq!(lines[3003]["arm"], "new-bar");
    let missing = t.get("/api/v1/flights/nothing/events.csv", &t.author).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    t.finish().await;
}
