//! Several towers on one database agree on the index.

use crate::support::{flight, T0};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testpilot_flight::Clock;
use testpilot_tower::store::Engine;
use testpilot_tower::testing::TestDb;
use testpilot_tower::{ManualClock, Role, RunningTower, TowerConfig};

async fn start(url: &str, poll_ms: u64) -> RunningTower {
    let mut config = TowerConfig::new(url, "127.0.0.1:0".parse().unwrap());
    config.poll_ms = poll_ms;
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(testpilot_flight::Timestamp(T0)));
    testpilot_tower::start(config, clock)
        .await
        .expect("a tower")
}

async fn token(t: &RunningTower, role: Role, name: &str) -> String {
    let secret = testpilot_tower::auth::new_secret().unwrap();
    t.state
        .store
        .create_token(
            role,
            Some(name),
            &secret,
            "test",
            testpilot_flight::Timestamp(T0),
        )
        .await
        .unwrap();
    secret
}

async fn post(http: &reqwest::Client, url: String, token: &str, body: Value) -> Value {
    let res = http
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    res.json().await.unwrap()
}

/// Waits (up to a generous bound; the design target is 2 s) for `tower`'s index to have
/// `serial`, and returns the index's bytes and how long it took.
async fn wait_for_serial(
    http: &reqwest::Client,
    tower: &RunningTower,
    serial: u64,
) -> (String, Duration) {
    let started = Instant::now();
    loop {
        let body = http
            .get(format!("{}/control/index.json", tower.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let env: Value = serde_json::from_str(&body).unwrap();
        let payload: Value = serde_json::from_str(env["payload"].as_str().unwrap()).unwrap();
        if payload["serial"].as_u64() == Some(serial) {
            return (body, started.elapsed());
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "tower {} never served serial {serial}",
            tower.url
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// Two towers on one PostgreSQL: a flight approved through one is served by the other. The
// second tower does not poll (once an hour), so this is LISTEN/NOTIFY at work; both serve
// the same bytes, so the same ETag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_towers_on_one_postgres_agree() {
    let db = TestDb::new(Engine::Postgres).await.unwrap();
    let a = start(&db.url, 3_600_000).await;
    let b = start(&db.url, 3_600_000).await;
    assert_eq!(a.public_key, b.public_key, "one database, one signing key");
    let author = token(&a, Role::Author, "alice").await;
    let approver = token(&a, Role::Approver, "bob").await;
    let http = reqwest::Client::new();
    post(
        &http,
        format!("{}/api/v1/flights", a.url),
        &author,
        flight("hello"),
    )
    .await;
    post(
        &http,
        format!("{}/api/v1/flights/hello/review", a.url),
        &author,
        json!({}),
    )
    .await;
    let approved = post(
        &http,
        format!("{}/api/v1/flights/hello/approve", a.url),
        &approver,
        json!({}),
    )
    .await;
    let serial = approved["serial"].as_u64().unwrap();
    let (on_b, took) = wait_for_serial(&http, &b, serial).await;
    eprintln!(
        "tower B served serial {serial} {} ms after tower A approved",
        took.as_millis()
    );
    let (on_a, _) = wait_for_serial(&http, &a, serial).await;
    assert_eq!(on_a, on_b, "identical bytes from both towers");
    assert!(on_b.contains("hello"));

    // And back: a kill through B reaches A.
    let killed = post(
        &http,
        format!("{}/api/v1/flights/hello/kill", b.url),
        &approver,
        json!({}),
    )
    .await;
    let (on_a, _) = wait_for_serial(&http, &a, killed["serial"].as_u64().unwrap()).await;
    assert!(on_a.contains(r#"\"kill\":true"#), "{on_a}");
    a.stop().await.unwrap();
    b.stop().await.unwrap();
    db.cleanup().await;
}

// Two towers on one SQLite file (no NOTIFY there) agree by polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_towers_on_one_sqlite_file_agree() {
    let db = TestDb::new(Engine::Sqlite).await.unwrap();
    let a = start(&db.url, 50).await;
    let b = start(&db.url, 50).await;
    let author = token(&a, Role::Author, "alice").await;
    let approver = token(&a, Role::Approver, "bob").await;
    let http = reqwest::Client::new();
    post(
        &http,
        format!("{}/api/v1/flights", b.url),
        &author,
        flight("hello"),
    )
    .await;
    post(
        &http,
        format!("{}/api/v1/flights/hello/review", b.url),
        &author,
        json!({}),
    )
    .await;
    let approved = post(
        &http,
        format!("{}/api/v1/flights/hello/approve", b.url),
        &approver,
        json!({}),
    )
    .await;
    let (on_a, _) = wait_for_serial(&http, &a, approved["serial"].as_u64().unwrap()).await;
    assert!(on_a.contains("hello"));
    a.stop().await.unwrap();
    b.stop().await.unwrap();
    db.cleanup().await;
}
