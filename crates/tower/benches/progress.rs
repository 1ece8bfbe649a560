//! Progress with millions of reports stored: the rollups (`store/progress.rs`) against the
//! aggregation over `client_state` and `reports` they replaced, on the same data in one run.
//!
//! 1. A database migrated to version 5 (before the rollups) is filled straight in SQL with
//!    `BENCH_REPORTS` (10 million) reports of one live flight from `BENCH_PER_CLIENT` (10)
//!    reports a client over 14 days (enrol, steps, then completed / running / failed /
//!    declined / opted out; the failed ones with a `detail`), and each client's latest state.
//! 2. A tower opens it, which runs migration 6 and backfills the rollups (timed).
//! 3. Timed `BENCH_RUNS` (40) times each, median and p95: `Store::progress` (rollups) and
//!    the old aggregation (`BENCH_OLD_RUNS`, 5: it takes seconds); `GET …/progress` over
//!    HTTP; the flight page `/ui/flights/bench` as a signed-in person, each request as if a
//!    report had just arrived (so the page's progress snapshot is retaken), and the list
//!    `/ui/`.
//!
//! `cargo bench -p testpilot-tower --bench progress`. Environment: `BENCH_ENGINES`
//! (`sqlite,postgres`), `BENCH_REPORTS`, `BENCH_PER_CLIENT`, `BENCH_RUNS`, `BENCH_OLD_RUNS`,
//! `TESTPILOT_TEST_PG`.

use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;
use testpilot_flight::{Clock, Timestamp};
use testpilot_tower::dashboard::fixtures;
use testpilot_tower::metrics::Metrics;
use testpilot_tower::store::{migrate_to, Engine};
use testpilot_tower::testing::TestDb;
use testpilot_tower::{SystemClock, TowerConfig};

const AT: i64 = 1_799_143_200_000; // 2027-01-05T10:00:00Z
const DAY: i64 = 86_400_000;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn spec() -> Value {
    json!({
        "studyname": "bench", "author": "research@example.com", "description": "progress benchmark",
        "arms": [{"name": "control", "ratio": 1}, {"name": "new-bar", "ratio": 1}],
        "flightplan": [{"action": "log", "text": "one"}, {"action": "log", "text": "two"}]
    })
}

/// Fills `reports` and `client_state` of a version-5 database in SQL.
async fn seed(engine: Engine, url: &str, reports: u64, per: u64) {
    use sqlx::Connection;
    let clients = reports / per;
    let gen = |n: u64| match engine {
        Engine::Sqlite => format!(
            "WITH RECURSIVE g(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i + 1 < {n})"
        ),
        Engine::Postgres => format!("WITH g(i) AS (SELECT generate_series(0, {n} - 1)::bigint)"),
    };
    let div = |a: &str, b: u64| match engine {
        Engine::Sqlite => format!("(({a}) / {b})"),
        Engine::Postgres => format!("div({a}, {b})"),
    };
    let uuid = |e: &str| match engine {
        Engine::Sqlite => format!("printf('00000000-0000-4000-8000-%012d', {e})"),
        Engine::Postgres => format!("'00000000-0000-4000-8000-' || lpad(({e})::text, 12, '0')"),
    };
    // Client c enrols on day c % 14; its report k (0-based) comes k hours later; the last
    // one ends it by c % 5.
    let end_status = |c: &str| {
        format!(
            "CASE ({c}) % 5 WHEN 0 THEN 'completed' WHEN 1 THEN 'running' WHEN 2 THEN 'failed' \
             WHEN 3 THEN 'declined' ELSE 'optedout' END"
        )
    };
    let arm = |c: &str| format!("CASE WHEN ({c}) % 2 = 0 THEN 'control' ELSE 'new-bar' END");
    let c = div("i", per);
    let k = format!("(i % {per})");
    let at = format!("{AT} + (({c}) % 14) * {DAY} + {k} * 3600000");
    let last = format!("{k} = {}", per - 1);
    let sql = format!(
        "{} INSERT INTO reports (client, seq, flight, version, arm, status, step, at, day, detail, received_at) \
         SELECT {}, {k} + 1, 'bench', 1, {}, CASE WHEN {last} THEN {} ELSE 'running' END, {k}, {at}, {}, \
         CASE WHEN {last} AND ({c}) % 5 = 2 THEN '{{\"error\":\"survey server answered 503\"}}' END, {at} FROM g",
        gen(clients * per),
        uuid(&c),
        arm(&c),
        end_status(&c),
        div(&at, DAY as u64),
    );
    let t = Instant::now();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    if engine == Engine::Sqlite {
        // Seeding only: nothing here needs to survive a crash.
        sqlx::query("PRAGMA synchronous = OFF")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    sqlx::query(&sql).execute(&mut conn).await.unwrap();
    let at_last = format!("{AT} + (i % 14) * {DAY} + {} * 3600000", per - 1);
    sqlx::query(&format!(
        "{} INSERT INTO client_state (flight, client, seq, version, arm, status, step, at) \
         SELECT 'bench', {}, {per}, 1, {}, {}, {}, {at_last} FROM g",
        gen(clients),
        uuid("i"),
        arm("i"),
        end_status("i"),
        per - 1,
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    if engine == Engine::Postgres {
        sqlx::query("ANALYZE").execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();
    println!(
        "  seeded {} reports of {clients} clients in {:.1} s",
        clients * per,
        t.elapsed().as_secs_f64()
    );
}

/// Median and p95 of `times` (ms).
fn stats(mut times: Vec<f64>) -> (f64, f64) {
    times.sort_by(|a, b| a.total_cmp(b));
    let n = times.len();
    (times[n / 2], times[(n * 95 / 100).min(n - 1)])
}

async fn run(engine: Engine, reports: u64, per: u64, runs: usize, old_runs: usize) {
    let db = TestDb::new(engine).await.expect("a database");
    migrate_to(&db.url, 5).await.expect("migrated to version 5");
    seed(engine, &db.url, reports, per).await;
    let mut config = TowerConfig::new(db.url.clone(), "127.0.0.1:0".parse().unwrap());
    config.api.limits.rate_per_sec = 0.0;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let t = Instant::now();
    let tower = testpilot_tower::start(config, clock.clone())
        .await
        .expect("a tower");
    println!(
        "{engine:?}: opening the tower (migration 6 backfills the rollups) took {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let store = &tower.state.store;
    fixtures::live_flight(store, &spec(), clock.now())
        .await
        .unwrap();
    let token = testpilot_tower::auth::new_secret().unwrap();
    store
        .create_token(
            testpilot_tower::Role::Author,
            Some("bench"),
            &token,
            "bench",
            Timestamp(clock.now().0),
        )
        .await
        .unwrap();
    let now = store.progress("bench").await.unwrap();
    let mut old_times = Vec::new();
    for _ in 0..old_runs {
        let t = Instant::now();
        let old = store.progress_by_aggregation("bench").await.unwrap();
        old_times.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(old, now, "the rollups give the aggregation's answer");
    }
    assert_eq!(now.reports, reports / per * per, "every report counted");
    let mut new_times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        store.progress("bench").await.unwrap();
        new_times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let (old_med, old_p95) = stats(old_times);
    let (new_med, new_p95) = stats(new_times);
    println!(
        "{engine:?}: Store::progress, {} reports of {} clients: rollups median {new_med:.2} ms (p95 {new_p95:.2}) | \
         aggregation (before) median {old_med:.0} ms (p95 {old_p95:.0}) | {:.0}x faster",
        now.reports,
        now.clients,
        old_med / new_med
    );
    let http = reqwest::Client::new();
    let timed = |path: String, cookie: bool| {
        let (http, token, tower) = (&http, &token, &tower);
        async move {
            let url = format!("{}{path}", tower.url);
            let mut times = Vec::with_capacity(runs);
            for _ in 0..runs {
                // As if a report had just arrived: the page's snapshot is retaken.
                Metrics::inc(&tower.state.metrics.reports_accepted, 1);
                let t = Instant::now();
                let req = if cookie {
                    http.get(&url)
                        .header("cookie", format!("tp_dashboard={token}"))
                } else {
                    http.get(&url).bearer_auth(token)
                };
                let res = req.send().await.unwrap();
                assert!(res.status().is_success(), "{path}: {}", res.status());
                res.bytes().await.unwrap();
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            let (med, p95) = stats(times);
            println!(
                "{engine:?}: {path}: median {med:.1} ms, p95 {p95:.1} ms over {runs} requests"
            );
        }
    };
    timed("/api/v1/flights/bench/progress".into(), false).await;
    timed("/ui/flights/bench".into(), true).await;
    timed("/ui/flights/bench/live".into(), true).await;
    timed("/ui/".into(), true).await;
    tower.stop().await.unwrap();
    db.cleanup().await;
}

fn main() {
    let engines: String = env("BENCH_ENGINES", "sqlite,postgres".to_string());
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
        rt.block_on(run(
            engine,
            env("BENCH_REPORTS", 10_000_000u64),
            env("BENCH_PER_CLIENT", 10u64),
            env("BENCH_RUNS", 40usize),
            env("BENCH_OLD_RUNS", 5usize),
        ));
    }
}
