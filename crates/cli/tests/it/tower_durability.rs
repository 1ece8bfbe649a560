//! Durability of reports and events: a tower killed with SIGKILL while load generators send
//! reports and events still has, after a restart, every report and event it answered 2xx
//! (docs/api.md#events, docs/reports.md). Runs the real `testpilot` binary, on SQLite and on
//! PostgreSQL. And two towers on one PostgreSQL, one killed: the other serves on.
//!
//! The long run (RELIABILITY.md, `scripts/prove-tower-kill.sh`) sets `TP_TOWER_KILLS` (kills
//! per database, default 1).

use crate::support::{make_token, scratch, Engine, TestDb, Tower};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testpilot_tower::Store;

/// The tower under load: no rate limit on reports and events.
fn spawn_tower(db_url: &str, data: &std::path::Path) -> Tower {
    Tower::serve(db_url, data, &["--report-rate", "0"])
}

fn uuid() -> String {
    let h: String = testpilot_tower::auth::random_bytes()
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

const BATCH: u64 = 20;
/// Load generators of each kind (reports, events).
const WORKERS: usize = 3;

/// What the tower answered 2xx: (client, seq) of reports and of events.
#[derive(Default)]
struct Acked {
    reports: Vec<(String, u64)>,
    events: Vec<(String, u64)>,
}

/// A live flight with two arms and a streamed recording of `tick`, so that the tower takes
/// both reports and events on it.
fn durable_flight() -> Value {
    json!({
        "studyname": "durable",
        "author": "research@example.com",
        "description": "durability",
        "arms": [{"name": "control", "ratio": 1}, {"name": "treatment", "ratio": 1}],
        "flightplan": [
            {"action": "feature", "id": "durable.on", "value": {"on": true}},
            {"action": "instrument", "watch": ["tick"], "for": "7d", "uploadEvery": "1d"}
        ]
    })
}

/// Sends batches of reports (or events) from one client until the tower stops answering;
/// records what got a 2xx.
async fn generate(url: String, events: bool, acked: Arc<Mutex<Acked>>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let client = uuid();
    let mut seq = 1;
    loop {
        let (path, body) = if events {
            let batch: Vec<Value> = (seq..seq + BATCH)
                .map(|s| json!({"seq": s, "flight": "durable", "version": 1, "arm": "control", "topic": "tick", "subject": null, "value": s, "at": "2026-04-23T00:00:00Z"}))
                .collect();
            ("events", json!({"client": client, "events": batch}))
        } else {
            let batch: Vec<Value> = (seq..seq + BATCH)
                .map(|s| json!({"seq": s, "flight": "durable", "version": 1, "status": "running", "step": s % 2, "at": 1_776_902_400_000u64 + s}))
                .collect();
            ("reports", json!({"client": client, "reports": batch}))
        };
        let sent = http
            .post(format!("{url}/api/v1/{path}"))
            .json(&body)
            .send()
            .await;
        match sent {
            Ok(res) if res.status().is_success() => {
                let mut a = acked.lock().unwrap();
                let to = if events {
                    &mut a.events
                } else {
                    &mut a.reports
                };
                to.extend((seq..seq + BATCH).map(|s| (client.clone(), s)));
            }
            Ok(res) if res.status().is_server_error() => return,
            Ok(res) => panic!(
                "unexpected answer {} to {path}: {}",
                res.status(),
                res.text().await.unwrap_or_default()
            ),
            Err(_) => return,
        }
        seq += BATCH;
    }
}

/// Every (client, seq) of the flight's stored events.
async fn stored_events(store: &Store) -> HashSet<(String, u64)> {
    let mut out = HashSet::new();
    let mut after: Option<(i64, String, i64)> = None;
    loop {
        let page = store
            .events_page("durable", after.as_ref(), 5_000)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some((last.at.0, last.client.clone(), last.seq as i64));
        out.extend(page.into_iter().map(|e| (e.client, e.seq)));
    }
    out
}

fn kills_wanted() -> u32 {
    match std::env::var("TP_TOWER_KILLS") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("TP_TOWER_KILLS={v}: expected a whole number")),
        Err(_) => 1,
    }
}

/// One round: a tower under report and event load, killed once a good number of batches of
/// each got through with more in flight. Adds what it acknowledged to `acked`.
async fn load_and_kill(db_url: &str, data: &std::path::Path, acked: &Arc<Mutex<Acked>>) {
    let tower = spawn_tower(db_url, data);
    let url = tower.url.clone();
    let round = Arc::new(Mutex::new(Acked::default()));
    let workers: Vec<_> = (0..2 * WORKERS)
        .map(|i| tokio::spawn(generate(url.clone(), i % 2 == 1, round.clone())))
        .collect();
    let started = Instant::now();
    let enough = (100 * BATCH) as usize;
    loop {
        {
            let r = round.lock().unwrap();
            if r.reports.len() >= enough && r.events.len() >= enough {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the tower acknowledged too little"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tower.kill();
    for w in workers {
        w.await.unwrap();
    }
    let mut r = round.lock().unwrap();
    let mut all = acked.lock().unwrap();
    all.reports.append(&mut r.reports);
    all.events.append(&mut r.events);
}

async fn killed_tower_keeps_acknowledged_reports_and_events(engine: Engine) {
    crate::support::log_warnings();
    let db = TestDb::new(engine).await.unwrap();
    let data = scratch(&format!("durability-{engine:?}"));
    // A tower takes reports and events only on flights that were ever live.
    let store = Store::open(&db.url).await.unwrap();
    testpilot_tower::dashboard::fixtures::live_flight(
        &store,
        &durable_flight(),
        testpilot_flight::Timestamp(1_776_902_400_000),
    )
    .await
    .unwrap();
    store.close().await;
    let kills = kills_wanted();
    let acked = Arc::new(Mutex::new(Acked::default()));
    for _ in 0..kills {
        load_and_kill(&db.url, &data, &acked).await;
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());

    // Restart on the same database; everything acknowledged is there.
    let again = spawn_tower(&db.url, &data);
    let health: Value = reqwest::get(format!("{}/healthz", again.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["ok"], true);
    let store = Store::open(&db.url)
        .await
        .expect("the store opens beside the restarted tower");
    let mut lost_reports = Vec::new();
    for (client, seq) in &acked.reports {
        if !store.has_report(client, *seq).await.unwrap() {
            lost_reports.push((client.clone(), *seq));
        }
    }
    let events = stored_events(&store).await;
    let lost_events: Vec<_> = acked
        .events
        .iter()
        .filter(|e| !events.contains(*e))
        .collect();
    let stored = store.report_count().await.unwrap();
    println!(
        "tower SIGKILL proof, {engine:?}: {kills} SIGKILL(s) under load; {} reports and {} events acknowledged, {stored} reports and {} events stored; acknowledged lost: {} reports, {} events",
        acked.reports.len(),
        acked.events.len(),
        events.len(),
        lost_reports.len(),
        lost_events.len()
    );
    assert!(
        lost_reports.is_empty(),
        "{} of {} acknowledged reports lost, e.g. {:?}",
        lost_reports.len(),
        acked.reports.len(),
        &lost_reports[..lost_reports.len().min(3)]
    );
    assert!(
        lost_events.is_empty(),
        "{} of {} acknowledged events lost, e.g. {:?}",
        lost_events.len(),
        acked.events.len(),
        &lost_events[..lost_events.len().min(3)]
    );
    assert!(stored >= acked.reports.len() as u64);
    store.close().await;
    again.kill();
    let _ = std::fs::remove_dir_all(&data);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_tower_killed_mid_load_keeps_every_acknowledged_report_and_event() {
    killed_tower_keeps_acknowledged_reports_and_events(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tower_killed_mid_load_keeps_every_acknowledged_report_and_event() {
    killed_tower_keeps_acknowledged_reports_and_events(Engine::Postgres).await;
}

/// POST with a bearer token; the answer's JSON, which must be 2xx.
async fn post(http: &reqwest::Client, url: String, token: &str, body: Value) -> Value {
    let res = http
        .post(&url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    assert!(status.is_success(), "{url}: {status} {text}");
    serde_json::from_str(&text).unwrap()
}

/// Pushes, reviews and approves a flight through `url`'s API: it is live. Returns the serial
/// of the index that has it.
async fn make_live(
    http: &reqwest::Client,
    url: &str,
    author: &str,
    approver: &str,
    name: &str,
) -> u64 {
    let flight = json!({"studyname": name, "author": "research@example.com", "description": "served on",
        "flightplan": [{"action": "log", "text": "hello"}]});
    post(http, format!("{url}/api/v1/flights"), author, flight).await;
    post(
        http,
        format!("{url}/api/v1/flights/{name}/review"),
        author,
        json!({}),
    )
    .await;
    let approved = post(
        http,
        format!("{url}/api/v1/flights/{name}/approve"),
        approver,
        json!({}),
    )
    .await;
    approved["serial"].as_u64().unwrap()
}

/// The index's bytes once it has `serial`.
async fn index_at(http: &reqwest::Client, url: &str, serial: u64) -> String {
    let started = Instant::now();
    loop {
        let body = http
            .get(format!("{url}/control/index.json"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let env: Value = serde_json::from_str(&body).unwrap();
        let payload: Value = serde_json::from_str(env["payload"].as_str().unwrap()).unwrap();
        if payload["serial"].as_u64() == Some(serial) {
            return body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{url} never served serial {serial}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// Two `testpilot tower serve` on one PostgreSQL; one is SIGKILLed under report load. The
// other serves on: the same index bytes as before, reports taken, and a flight approved
// through it is in its index. A restarted tower serves the survivor's bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_towers_on_one_postgres_one_killed_the_other_serves_on() {
    let db = TestDb::new(Engine::Postgres).await.unwrap();
    let data = scratch("two-towers");
    let author = make_token(&db.url, "author", "alice");
    let approver = make_token(&db.url, "approver", "bob");
    let a = spawn_tower(&db.url, &data.join("a"));
    let b = spawn_tower(&db.url, &data.join("b"));
    let http = reqwest::Client::new();
    let serial = make_live(&http, &a.url, &author, &approver, "durable").await;
    let before = index_at(&http, &b.url, serial).await;
    assert_eq!(before, index_at(&http, &a.url, serial).await, "one index");

    // A dies mid-load.
    let acked = Arc::new(Mutex::new(Acked::default()));
    let load = tokio::spawn(generate(a.url.clone(), false, acked.clone()));
    while acked.lock().unwrap().reports.len() < (20 * BATCH) as usize {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    a.kill();
    load.await.unwrap();

    // B serves on: the same bytes, and it takes reports.
    let after = index_at(&http, &b.url, serial).await;
    assert_eq!(before, after, "the survivor's index changed");
    let report = json!({"client": uuid(), "reports": [{"seq": 1, "flight": "durable", "version": 1, "status": "running", "step": 0, "at": 1_776_902_400_000u64}]});
    let res = http
        .post(format!("{}/api/v1/reports", b.url))
        .json(&report)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    // A change made on the survivor is in its index, and in a restarted tower's.
    let next = make_live(&http, &b.url, &author, &approver, "after-kill").await;
    assert!(next > serial);
    let on_b = index_at(&http, &b.url, next).await;
    assert!(on_b.contains("after-kill"));
    let a2 = spawn_tower(&db.url, &data.join("a"));
    assert_eq!(
        index_at(&http, &a2.url, next).await,
        on_b,
        "one index again"
    );
    println!(
        "two towers on one PostgreSQL: one SIGKILLed after {} acknowledged reports; the survivor's index bytes unchanged ({} bytes, serial {serial}), a flight approved on it served at serial {next} by it and by a restarted tower",
        acked.lock().unwrap().reports.len(),
        before.len()
    );
    a2.kill();
    b.kill();
    let _ = std::fs::remove_dir_all(&data);
    db.cleanup().await;
}
