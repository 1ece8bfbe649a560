//! `POST /api/v1/flights/{studyname}/simulate` over real HTTP (docs/api.md#simulate): the
//! revision under review, beside the live flights, gives exactly what `testpilot_sim`
//! gives for the same inputs; bad parameters are 422 at their field; a second simulation
//! while one runs is 503; any token may ask (as anyone signed in may open the review
//! page); nothing about the flight or the index changes.

use crate::both;
use crate::support::{Tower, T0};
use serde_json::{json, Value};
use std::sync::Arc;
use testpilot_flight::Timestamp;
use testpilot_sim::{load::Capacity, Config, Population, SimFlight};
use testpilot_tower::api::ApiConfig;
use testpilot_tower::dashboard::fixtures::flight_json;
use testpilot_tower::server::serve;
use testpilot_tower::simulate::{Populations, SimConfig, SimLimits};
use testpilot_tower::store::Engine;

/// A live flight that changes the same feature as the fixture, for everyone on release.
fn companion() -> Value {
    json!({
        "studyname": "grid-everywhere",
        "author": "study-team@example.com",
        "description": "the grid for everyone on release",
        "filter": {"channels": ["release"]},
        "flightplan": [{"action": "feature", "id": "newtab.layout", "value": {"layout": "grid"}}]
    })
}

/// A tower with `companion` live and the fixture flight `newtab` under review.
async fn tower(engine: Engine, config: ApiConfig) -> (Tower, testpilot_tower::RunningTower) {
    let t = Tower::with(engine, config).await;
    t.make_live(companion()).await;
    let pushed = t
        .post(
            "/api/v1/flights",
            &t.author,
            flight_json("newtab", "a grid"),
        )
        .await;
    assert!(pushed.status.is_success(), "{}", pushed.json);
    let r = t
        .post("/api/v1/flights/newtab/review", &t.author, json!({}))
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.json);
    let running = serve(t.state.clone(), "127.0.0.1:0".parse().unwrap(), 100)
        .await
        .expect("serve the tower");
    (t, running)
}

async fn simulate(
    base: &str,
    name: &str,
    token: Option<&str>,
    body: Value,
) -> (u16, Option<String>, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{base}/api/v1/flights/{name}/simulate"))
        .json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("the tower answers");
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    (status, retry, r.json().await.unwrap_or(Value::Null))
}

/// What `testpilot_sim` gives for the same inputs, run here directly.
fn expected(
    t: &Tower,
    review_spec: &Value,
    clients: u64,
    days: f64,
    seed: u64,
    runs: u64,
) -> Value {
    let scratch = std::env::temp_dir().join(format!("tp-sim-expected-{}", std::process::id()));
    let package = testpilot_sim::flights::stand_in_path(&scratch);
    // The live flight as the index serves it.
    let doc = t.state.index.current();
    let envelope: testpilot_flight::index::Envelope = serde_json::from_slice(&doc.body).unwrap();
    let payload = envelope.verify(&doc.signed_by).unwrap();
    assert_eq!(payload.flights.len(), 1);
    let live = payload.flights[0].clone();
    let config = Config {
        population: Population::builtin(),
        flights: vec![
            SimFlight::from_document(review_spec, &package).unwrap(),
            SimFlight::from_document(&live, &package).unwrap(),
        ],
        clients,
        days,
        seed,
        start: t.clock_now(),
        runs: Some(runs),
        poll_ms: 15 * 60_000,
        kills: Vec::new(),
        index_bytes: 10_000,
        capacity: Capacity::default(),
        threads: 1,
        scratch: scratch.clone(),
        cancel: None,
    };
    let r = testpilot_sim::simulate(&config, &|_, _, _| {}).unwrap();
    let _ = std::fs::remove_dir_all(&scratch);
    serde_json::to_value(r).unwrap()
}

async fn the_answer_is_the_simulators(engine: Engine) {
    let (t, running) = tower(engine, ApiConfig::default()).await;
    let base = running.url.clone();
    let before = t.get("/api/v1/flights/newtab", &t.admin).await.json;
    let serial = t.state.index.current().serial;
    let (status, _, got) = simulate(
        &base,
        "newtab",
        Some(&t.approver),
        json!({"clients": 4000, "days": 5, "seed": 7, "runs": 40}),
    )
    .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["studyname"], "newtab");
    assert_eq!(got["version"], 1);
    assert_eq!(got["population"], "builtin");
    assert_eq!(got["companions"], json!(["grid-everywhere"]));
    let spec = &before["revisions"][0]["spec"];
    let want = expected(&t, spec, 4000, 5.0, 7, 40);
    let report = &got["report"];
    // Exact counts, arms, statistics, overlaps and outcomes, flight by flight.
    assert_eq!(report["flights"], want["flights"]);
    assert_eq!(report["overlaps"], want["overlaps"]);
    assert_eq!(report["engine"]["runs"], want["engine"]["runs"]);
    assert_eq!(report["timeline"]["enrolled"], want["timeline"]["enrolled"]);
    assert_eq!(report["start"], Timestamp(T0).to_rfc3339());
    let f = &report["flights"][0];
    assert_eq!(f["studyname"], "newtab");
    assert!(f["enrolled"].as_u64().unwrap() > 0, "{f}");
    assert_eq!(report["overlaps"][0]["features"], json!(["newtab.layout"]));
    assert!(report["overlaps"][0]["people"].as_u64().unwrap() > 0);
    // Read-only: the flight, its audit log and the index are as they were.
    let after = t.get("/api/v1/flights/newtab", &t.admin).await.json;
    assert_eq!(before, after);
    assert_eq!(t.state.index.current().serial, serial);
    running.stop().await.unwrap();
    t.finish().await;
}
both!(the_answer_is_the_simulators);

async fn bad_parameters_busy_and_permissions(engine: Engine) {
    let (t, running) = tower(engine, ApiConfig::default()).await;
    let base = running.url.clone();
    let small = json!({"clients": 500, "days": 1});
    for (body, field) in [
        (json!({"clients": 0}), "clients"),
        (json!({"clients": 1_000_001}), "clients"),
        (json!({"clients": "many"}), "clients"),
        (json!({"days": 0}), "days"),
        (json!({"days": 91}), "days"),
        (json!({"runs": 2001}), "runs"),
        (json!({"seed": -1}), "seed"),
        (json!({"population": "mars"}), "population"),
        (json!({"version": "one"}), "version"),
        (json!({"colour": "blue"}), "colour"),
    ] {
        let (status, _, e) = simulate(&base, "newtab", Some(&t.approver), body.clone()).await;
        assert_eq!(status, 422, "{body} → {e}");
        assert_eq!(e["problems"][0]["path"], field, "{body} → {e}");
    }
    let (status, _, e) = simulate(&base, "no-such", Some(&t.approver), small.clone()).await;
    assert_eq!(status, 404, "{e}");
    // Only the revision under review is simulated.
    let (status, _, e) = simulate(&base, "grid-everywhere", Some(&t.approver), small.clone()).await;
    assert_eq!(status, 409, "{e}");
    assert!(e["error"].as_str().unwrap().contains("under review"), "{e}");
    let (status, _, e) = simulate(
        &base,
        "newtab",
        Some(&t.approver),
        json!({"clients": 500, "version": 2}),
    )
    .await;
    assert_eq!(status, 409, "{e}");
    // Permissions as the review page's: any token, none without one.
    let (status, _, _) = simulate(&base, "newtab", None, small.clone()).await;
    assert_eq!(status, 401);
    for token in [&t.author, &t.approver, &t.admin] {
        let (status, _, e) = simulate(&base, "newtab", Some(token), small.clone()).await;
        assert_eq!(status, 200, "{e}");
    }
    // One at a time: while a slot is taken, a second one is told to come back.
    let slot = t.state.simulations.take().expect("a free slot");
    let (status, retry, e) = simulate(&base, "newtab", Some(&t.approver), small.clone()).await;
    assert_eq!(status, 503, "{e}");
    assert_eq!(retry.as_deref(), Some("5"));
    assert!(e["error"].as_str().unwrap().contains("try again"), "{e}");
    drop(slot);
    let (status, _, e) = simulate(&base, "newtab", Some(&t.approver), small).await;
    assert_eq!(status, 200, "{e}");
    running.stop().await.unwrap();
    t.finish().await;
}
both!(bad_parameters_busy_and_permissions);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn populations_from_a_folder_and_the_work_cap() {
    let dir = std::env::temp_dir().join(format!("tp-populations-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("windows-only.json"),
        r#"{"os": {"windows": 1}, "channel": {"release": 1}}"#,
    )
    .unwrap();
    let config = ApiConfig {
        simulate: SimConfig {
            populations: Arc::new(Populations::load(&dir).unwrap()),
            limits: SimLimits {
                max_decisions: 10_000,
                ..SimLimits::default()
            },
        },
        ..ApiConfig::default()
    };
    let (t, running) = tower(Engine::Sqlite, config).await;
    let base = running.url.clone();
    // The fixture takes linux and macos only: nobody of this population is eligible.
    let (status, _, got) = simulate(
        &base,
        "newtab",
        Some(&t.author),
        json!({"population": "windows-only", "clients": 3000}),
    )
    .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["population"], "windows-only");
    assert_eq!(got["report"]["flights"][0]["eligible"], 0);
    assert_eq!(got["report"]["flights"][1]["eligible"], 3000);
    // Two flights: 5,000 clients would be 10,000 decisions; 5,001 is too many.
    let (status, _, e) = simulate(&base, "newtab", Some(&t.author), json!({"clients": 5001})).await;
    assert_eq!(status, 422, "{e}");
    assert_eq!(e["problems"][0]["path"], "clients");
    assert!(
        e["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("give at most 5000 clients"),
        "{e}"
    );
    running.stop().await.unwrap();
    t.finish().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A simulation whose answer is no longer awaited stops: its slot is free again at once,
/// not when the thread would have finished the whole run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulation_given_up_on_stops_and_frees_its_slot() {
    let config = ApiConfig {
        simulate: SimConfig {
            limits: SimLimits {
                timeout: std::time::Duration::from_millis(200),
                ..SimLimits::default()
            },
            ..SimConfig::default()
        },
        ..ApiConfig::default()
    };
    let (t, running) = tower(Engine::Sqlite, config).await;
    let base = running.url.clone();
    // A million clients and engine runs: many seconds of work, far past the 200 ms.
    let (status, _, e) = simulate(
        &base,
        "newtab",
        Some(&t.author),
        json!({"clients": 1_000_000, "runs": 2000}),
    )
    .await;
    assert_eq!(status, 503, "{e}");
    assert!(e["error"].as_str().unwrap().contains("took longer"), "{e}");
    let asked = std::time::Instant::now();
    let slot = loop {
        if let Some(slot) = t.state.simulations.take() {
            break slot;
        }
        assert!(
            asked.elapsed() < std::time::Duration::from_secs(20),
            "the given-up simulation still holds its slot"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    drop(slot);
    running.stop().await.unwrap();
    t.finish().await;
}
