//! Server time per dashboard page: the time from a request entering the router to the last
//! byte of the page (database reads and rendering; no network), on SQLite, for an empty
//! tower, a tower with 500 flights, and a flight with 100,000 reports.
//!
//! `cargo bench -p testpilot-tower --bench dashboard` (release profile). Prints a Markdown
//! table: median and 95th percentile over `BENCH_RUNS` (default 40) requests per page, after
//! 3 warm-up requests, each as if a report had just arrived (so progress is aggregated anew);
//! and the median when the progress snapshot is reused (a page polled by several tabs).
//! `BENCH_INDEX=1` also times the big flight with covering indexes on `reports`.

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Instant;
use testpilot_flight::Timestamp;
use testpilot_tower::api::ApiConfig;
use testpilot_tower::dashboard::fixtures;
use testpilot_tower::metrics::Metrics;
use testpilot_tower::store::Engine;
use testpilot_tower::testing::TestDb;
use testpilot_tower::{app, AppState, ManualClock, Role, Store};
use tower::ServiceExt;

const T0: i64 = 1_776_902_400_000;

struct Case {
    db: TestDb,
    state: AppState,
    router: axum::Router,
    token: String,
}

async fn case(fill: impl AsyncFnOnce(&Store)) -> Case {
    let db = TestDb::new(Engine::Sqlite).await.expect("a database");
    let store = Store::open(&db.url).await.expect("the store");
    fill(&store).await;
    let clock = Arc::new(ManualClock::new(Timestamp(T0 + 15 * 86_400_000)));
    let state = AppState::new(store, clock, ApiConfig::default())
        .await
        .expect("the tower");
    let token = testpilot_tower::auth::new_secret().unwrap();
    state
        .store
        .create_token(Role::Admin, Some("bench"), &token, "bench", Timestamp(T0))
        .await
        .unwrap();
    Case {
        db,
        router: app(state.clone()),
        state,
        token,
    }
}

/// Median and p95 ms of `runs` requests for `path`, and the page's size. `cold`: as if a
/// report had arrived before each request, so that no progress snapshot is reused.
async fn time(c: &Case, path: &str, runs: usize, cold: bool) -> (f64, f64, usize) {
    let mut ms = Vec::with_capacity(runs);
    let mut size = 0;
    for i in 0..runs + 3 {
        if cold {
            Metrics::inc(&c.state.metrics.reports_accepted, 1);
        }
        let req = Request::builder()
            .uri(path)
            .header("cookie", format!("tp_dashboard={}", c.token))
            .body(Body::empty())
            .unwrap();
        let started = Instant::now();
        let res = c.router.clone().oneshot(req).await.unwrap();
        assert!(res.status().is_success(), "{path}: {}", res.status());
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let took = started.elapsed().as_secs_f64() * 1000.0;
        size = body.len();
        if i >= 3 {
            ms.push(took);
        }
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    let p95 = ms[((ms.len() as f64 * 0.95) as usize).min(ms.len() - 1)];
    (ms[ms.len() / 2], p95, size)
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let now = Timestamp(T0);
    let empty = case(async |_: &Store| {}).await;
    let many = case(async |s: &Store| {
        fixtures::many_flights(s, 500, now).await.unwrap();
    })
    .await;
    let big = case(async |s: &Store| {
        fixtures::live_flight(s, &fixtures::flight_json("big", "big"), now)
            .await
            .unwrap();
        fixtures::many_reports(s, "big", 100_000, 14, now)
            .await
            .unwrap();
    })
    .await;
    println!("| database | page | median ms | p95 ms | median ms, snapshot reused | KiB |");
    println!("|---|---|---:|---:|---:|---:|");
    let table: [(&str, &Case, &[&str]); 3] = [
        (
            "empty",
            &empty,
            &["/ui/", "/ui/review", "/ui/push", "/ui/signin"],
        ),
        (
            "500 flights",
            &many,
            &[
                "/ui/",
                "/ui/live",
                "/ui/?q=flight-04",
                "/ui/review",
                "/ui/flights/flight-0002",
                "/ui/flights/flight-0001/review",
                "/ui/flights/flight-0002/kill",
            ],
        ),
        (
            "100,000 reports",
            &big,
            &[
                "/ui/",
                "/ui/flights/big",
                "/ui/flights/big/live",
                "/ui/flights/big/review",
                "/ui/flights/big/kill",
            ],
        ),
    ];
    for (name, c, pages) in table {
        for p in pages {
            let (median, p95, size) = time(c, p, runs, true).await;
            let (warm, _, _) = time(c, p, runs, false).await;
            println!(
                "| {name} | `{p}` | {median:.1} | {p95:.1} | {warm:.1} | {:.0} |",
                size as f64 / 1024.0
            );
        }
    }
    // Where the time of the big flight's page goes: the store calls it makes.
    let store = Store::open(&big.db.url).await.unwrap();
    if std::env::var("BENCH_INDEX").is_ok_and(|v| v == "1") {
        // An experiment: covering indexes for the per-day and error queries.
        let pool = sqlx::SqlitePool::connect(&big.db.url).await.unwrap();
        for sql in [
            "CREATE INDEX IF NOT EXISTS bench_reports_cover ON reports (flight, day, status, step, client)",
            "CREATE INDEX IF NOT EXISTS bench_reports_detail ON reports (flight, at) WHERE detail IS NOT NULL",
            "ANALYZE",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        pool.close().await;
        println!("\n(with covering indexes on reports)");
        for p in [
            "/ui/flights/big",
            "/ui/flights/big/live",
            "/ui/flights/big/kill",
        ] {
            let (median, p95, _) = time(&big, p, runs, true).await;
            println!("| 100,000 reports + indexes | `{p}` | {median:.1} | {p95:.1} | | |");
        }
    }
    println!("\n| store call (100,000 reports) | median ms |\n|---|---:|");
    macro_rules! call {
        ($label:expr, $e:expr) => {{
            let mut ms = Vec::new();
            for _ in 0..runs {
                let t = Instant::now();
                let _ = $e.await.unwrap();
                ms.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            ms.sort_by(|a, b| a.total_cmp(b));
            println!("| `{}` | {:.1} |", $label, ms[ms.len() / 2]);
        }};
    }
    call!("flight", store.flight("big"));
    call!("progress", store.progress("big"));
    call!("enrolments_per_day", store.enrolments_per_day("big"));
    call!("recent_errors(200)", store.recent_errors("big", 200));
    call!("glances", store.glances());
    call!("list_flights", store.list_flights());
    store.close().await;
    for c in [empty, many, big] {
        c.db.cleanup().await;
    }
}
