//! Durable reports per second, end to end over HTTP, with batching: concurrent clients
//! POST batches of new reports to a tower (in this process, on a fresh database) and count
//! the reports answered 2xx — each of which is committed (SQLite `synchronous=FULL`,
//! PostgreSQL default `synchronous_commit=on`).
//!
//! The reports are on one live flight, `bench` (a tower takes reports only on flights that
//! were ever live).
//!
//! `cargo bench -p testpilot-tower --bench reports` (release profile). Environment:
//! `BENCH_ENGINES` (`sqlite,postgres`), `BENCH_SECONDS` (10), `BENCH_BATCH` (reports per
//! request, 500), `BENCH_CLIENTS` (concurrent requests, 16), `TESTPILOT_TEST_PG`.

use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testpilot_flight::Clock;
use testpilot_tower::dashboard::fixtures;
use testpilot_tower::store::Engine;
use testpilot_tower::testing::TestDb;
use testpilot_tower::{ClientLimits, SystemClock, TowerConfig};

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn uuid() -> String {
    let h = hex::encode(testpilot_tower::auth::random_bytes().unwrap());
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

async fn run(engine: Engine, seconds: u64, batch: u64, clients: usize) {
    let db = TestDb::new(engine).await.expect("a database");
    let mut config = TowerConfig::new(db.url.clone(), "127.0.0.1:0".parse().unwrap());
    config.api.limits = ClientLimits {
        rate_per_sec: 0.0,
        max_reports: batch as usize,
        max_body_bytes: 16 << 20,
        burst: 1.0,
        ..ClientLimits::default()
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let tower = testpilot_tower::start(config, clock.clone())
        .await
        .expect("a tower");
    let spec = fixtures::flight_json("bench", "the reports benchmark's flight");
    fixtures::live_flight(&tower.state.store, &spec, clock.now())
        .await
        .expect("a live flight");
    tower.state.refresh_index().await.expect("the index");
    let acked = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (url, acked, requests) = (tower.url.clone(), acked.clone(), requests.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let client = uuid();
            let mut seq = 0u64;
            while Instant::now() < deadline {
                // Written by hand rather than through `serde_json::Value`: the generator
                // shares the machine with the tower and should cost it little.
                let mut body = format!("{{\"client\":\"{client}\",\"reports\":[");
                for s in seq..seq + batch {
                    let status = if s % 10 == 9 { "completed" } else { "running" };
                    if s > seq {
                        body.push(',');
                    }
                    body.push_str(&format!(
                        "{{\"seq\":{s},\"flight\":\"bench\",\"version\":1,\"arm\":\"control\",\"status\":\"{status}\",\"step\":{},\"at\":{}}}",
                        s % 5,
                        1_776_902_400_000u64 + s * 1000
                    ));
                }
                body.push_str("]}");
                let res = http
                    .post(format!("{url}/api/v1/reports"))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .expect("send");
                assert!(res.status().is_success(), "{}", res.status());
                let r: Value = res.json().await.expect("an answer");
                acked.fetch_add(r["accepted"].as_u64().unwrap(), Ordering::Relaxed);
                requests.fetch_add(1, Ordering::Relaxed);
                seq += batch;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let n = acked.load(Ordering::Relaxed);
    let stored = tower.state.store.report_count().await.unwrap();
    assert_eq!(stored, n, "every acknowledged report is stored");
    println!(
        "{engine:?}: {n} reports in {} requests of {batch} from {clients} concurrent clients in {elapsed:.1} s = {:.0} durable reports/s",
        requests.load(Ordering::Relaxed),
        n as f64 / elapsed
    );
    tower.stop().await.unwrap();
    db.cleanup().await;
}

/// The store alone, no HTTP: `BENCH_MODE=store`. Batches go through the same group-commit
/// writer ([`testpilot_tower::ingest::Ingest`]) the HTTP handler uses.
async fn run_store(engine: Engine, seconds: u64, batch: u64, clients: usize) {
    use testpilot_flight::report::ReportBatch;
    let db = TestDb::new(engine).await.expect("a database");
    let store = testpilot_tower::Store::open(&db.url).await.unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let spec = fixtures::flight_json("bench", "the reports benchmark's flight");
    fixtures::live_flight(&store, &spec, clock.now())
        .await
        .expect("a live flight");
    let writers = if engine == Engine::Sqlite { 1 } else { 4 };
    let ingest = testpilot_tower::ingest::Ingest::start(
        store.clone(),
        clock,
        testpilot_tower::ingest::IngestConfig {
            writers,
            max_group: 20_000,
        },
    );
    let acked = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (ingest, acked) = (ingest.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let client = uuid();
            let mut seq = 0u64;
            while Instant::now() < deadline {
                let reports: Vec<Value> = (seq..seq + batch)
                    .map(|s| json!({"seq": s, "flight": "bench", "version": 1, "arm": "control", "status": "running", "step": s % 5, "at": 1_776_902_400_000u64 + s * 1000}))
                    .collect();
                let b = ReportBatch::from_json(&json!({"client": client, "reports": reports}), batch as usize).unwrap();
                // Serial 0: the revisions ever live are read once, on the first batch.
                let r = ingest.submit(b, 0).await.unwrap();
                acked.fetch_add(r.accepted, Ordering::Relaxed);
                seq += batch;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let n = acked.load(Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{engine:?} (store only, no HTTP): {n} reports in {elapsed:.1} s = {:.0} durable reports/s",
        n as f64 / elapsed
    );
    store.close().await;
    db.cleanup().await;
}

fn main() {
    // `cargo bench` passes `--bench`; there is nothing to filter.
    let engines: String = env("BENCH_ENGINES", "sqlite,postgres".to_string());
    let seconds = env("BENCH_SECONDS", 10u64);
    let batch = env("BENCH_BATCH", 500u64);
    let clients = env("BENCH_CLIENTS", 16usize);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for e in engines.split(',') {
        let engine = match e.trim() {
            "sqlite" => Engine::Sqlite,
            "postgres" => Engine::Postgres,
            other => panic!("unknown engine {other}"),
        };
        if env("BENCH_MODE", "http".to_string()) == "store" {
            rt.block_on(run_store(engine, seconds, batch, clients));
        } else {
            rt.block_on(run(engine, seconds, batch, clients));
        }
    }
}
