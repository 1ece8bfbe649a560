//! Durability of reports: a tower killed with SIGKILL while a load generator sends reports
//! still has, after a restart, every report it answered 2xx. Runs the real `testpilot`
//! binary, on SQLite and on PostgreSQL.

use crate::support::{scratch, Engine, TestDb, Tower};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testpilot_tower::Store;

/// The tower under load: no rate limit on reports.
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
const WORKERS: usize = 6;

/// Sends batches from one client until the tower stops answering; records what got a 2xx.
async fn generate(url: String, acked: Arc<Mutex<Vec<(String, u64)>>>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let client = uuid();
    let mut seq = 0;
    loop {
        let reports: Vec<Value> = (seq..seq + BATCH)
            .map(|s| json!({"seq": s, "flight": "durable", "version": 1, "status": "running", "step": s % 3, "at": 1_776_902_400_000u64 + s}))
            .collect();
        let sent = http
            .post(format!("{url}/api/v1/reports"))
            .json(&json!({"client": client, "reports": reports}))
            .send()
            .await;
        match sent {
            Ok(res) if res.status().is_success() => {
                let mut a = acked.lock().unwrap();
                a.extend((seq..seq + BATCH).map(|s| (client.clone(), s)));
            }
            Ok(res) if res.status().is_server_error() => return,
            Ok(res) => panic!("unexpected answer {}", res.status()),
            Err(_) => return,
        }
        seq += BATCH;
    }
}

async fn killed_tower_keeps_acknowledged_reports(engine: Engine) {
    let db = TestDb::new(engine).await.unwrap();
    let data = scratch(&format!("durability-{engine:?}"));
    // A tower takes reports only on flights that were ever live.
    let store = Store::open(&db.url).await.unwrap();
    let spec = testpilot_tower::dashboard::fixtures::flight_json("durable", "durability");
    testpilot_tower::dashboard::fixtures::live_flight(
        &store,
        &spec,
        testpilot_flight::Timestamp(1_776_902_400_000),
    )
    .await
    .unwrap();
    store.close().await;
    let tower = spawn_tower(&db.url, &data);
    let url = tower.url.clone();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| tokio::spawn(generate(url.clone(), acked.clone())))
        .collect();
    // Kill it mid-stream: once a good number of batches got through, with more in flight.
    let mut waited = Duration::ZERO;
    while acked.lock().unwrap().len() < (200 * BATCH) as usize {
        assert!(
            waited < Duration::from_secs(120),
            "the tower acknowledged too little"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += Duration::from_millis(10);
    }
    tower.kill();
    for w in workers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    // Restart on the same database; everything acknowledged is there.
    let again = spawn_tower(&db.url, &data);
    let url2 = again.url.clone();
    let health: Value = reqwest::get(format!("{url2}/healthz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["ok"], true);
    let store = Store::open(&db.url).await.unwrap();
    let mut missing = Vec::new();
    for (client, seq) in &acked {
        if !store.has_report(client, *seq).await.unwrap() {
            missing.push((client.clone(), *seq));
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged reports lost, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(3)]
    );
    let stored = store.report_count().await.unwrap();
    assert!(stored >= acked.len() as u64);
    eprintln!(
        "{engine:?}: {} reports acknowledged before SIGKILL, {stored} stored after restart",
        acked.len()
    );
    store.close().await;
    again.kill();
    let _ = std::fs::remove_dir_all(&data);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_tower_killed_mid_load_keeps_every_acknowledged_report() {
    killed_tower_keeps_acknowledged_reports(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tower_killed_mid_load_keeps_every_acknowledged_report() {
    killed_tower_keeps_acknowledged_reports(Engine::Postgres).await;
}
