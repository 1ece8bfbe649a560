//! Events: durable ingest over HTTP side by side with the database's own raw batched insert
//! rate, in the same run; then the results endpoint's latency with millions of events stored.
//!
//! 1. Raw: the same table shape (`events` with its primary key and export index) filled by
//!    plain batched inserts of `BENCH_RAW_ROWS` rows per transaction, no HTTP and no rollups:
//!    on SQLite with rusqlite (WAL, `synchronous = FULL`, one prepared statement), on
//!    PostgreSQL with sqlx multi-row `INSERT … VALUES` (default `synchronous_commit = on`).
//! 2. HTTP: a tower in this process on a fresh database over a real socket; `BENCH_CLIENTS`
//!    concurrent clients POST batches of `BENCH_BATCH` (100) new events to
//!    `/api/v1/events`; only events answered 2xx count (each is committed, with its rollups).
//! 3. Results: `BENCH_EVENTS` (10 million) events of `BENCH_RESULT_CLIENTS` (100,000)
//!    enrolled clients are seeded straight into the tables by fast paths (one
//!    `INSERT … SELECT` from a generated series for the raw events; the rollups and
//!    `client_state` (and its `progress_states` rollup) from arithmetic, in a few thousand rows) and `GET …/results` is timed
//!    over HTTP `BENCH_RESULT_RUNS` times.
//!
//! `cargo bench -p testpilot-tower --bench events_ingest`. Environment: `BENCH_ENGINES`
//! (`sqlite,postgres`), `BENCH_SECONDS` (10), `BENCH_BATCH` (100), `BENCH_CLIENTS` (32),
//! `BENCH_RAW_ROWS` (1000), `BENCH_EVENTS`, `BENCH_RESULT_CLIENTS`, `BENCH_RESULT_RUNS` (50),
//! `BENCH_ONLY` (`ingest` or `results`), `TESTPILOT_TEST_PG`.

use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testpilot_flight::{Clock, Timestamp};
use testpilot_tower::dashboard::fixtures;
use testpilot_tower::store::Engine;
use testpilot_tower::testing::TestDb;
use testpilot_tower::{ClientLimits, SystemClock, TowerConfig};

const AT: i64 = 1_799_143_200_000; // 2027-01-05T10:00:00Z
const DAY: i64 = 86_400_000;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn uuid(i: u64) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

fn spec() -> Value {
    json!({
        "studyname": "bench", "author": "research@example.com", "description": "events benchmark",
        "arms": [{"name": "control", "ratio": 1}, {"name": "new-bar", "ratio": 1}],
        "flightplan": [{"action": "instrument", "watch": ["search", "open"], "for": "14d"}]
    })
}

const EVENTS_DDL: &str = "CREATE TABLE events (client TEXT NOT NULL, seq BIGINT NOT NULL, flight TEXT NOT NULL, \
    version BIGINT NOT NULL, arm TEXT NOT NULL, topic TEXT NOT NULL, subject TEXT, value DOUBLE PRECISION, \
    at BIGINT NOT NULL, day BIGINT NOT NULL, received_at BIGINT NOT NULL, PRIMARY KEY (client, seq))";
const EVENTS_INDEX: &str = "CREATE INDEX events_by_flight ON events (flight, at, client, seq)";

/// Raw batched inserts into the same table shape: rows per second.
async fn raw(engine: Engine, db: &TestDb, seconds: u64, rows: u64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut n = 0u64;
    match engine {
        Engine::Sqlite => {
            let path = db.dir.as_ref().unwrap().join("raw.db");
            let mut conn = rusqlite::Connection::open(&path).unwrap();
            conn.pragma_update(None, "journal_mode", "WAL").unwrap();
            conn.pragma_update(None, "synchronous", "FULL").unwrap();
            conn.execute(EVENTS_DDL, []).unwrap();
            conn.execute(EVENTS_INDEX, []).unwrap();
            let mut client = 0u64;
            while Instant::now() < deadline {
                client += 1;
                let c = uuid(client);
                let tx = conn.transaction().unwrap();
                {
                    let mut st = tx
                        .prepare_cached("INSERT INTO events VALUES (?1, ?2, 'bench', 1, 'control', 'search', NULL, NULL, ?3, ?4, ?5)")
                        .unwrap();
                    for s in 1..=rows as i64 {
                        let at = AT + s * 1000;
                        st.execute(rusqlite::params![c, s, at, at / DAY, AT])
                            .unwrap();
                    }
                }
                tx.commit().unwrap();
                n += rows;
            }
        }
        Engine::Postgres => {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
            sqlx::query(&EVENTS_DDL.replace("CREATE TABLE events", "CREATE TABLE raw_events"))
                .execute(&mut conn)
                .await
                .unwrap();
            sqlx::query(
                "CREATE INDEX raw_events_by_flight ON raw_events (flight, at, client, seq)",
            )
            .execute(&mut conn)
            .await
            .unwrap();
            let per = 1000.min(rows as usize);
            let mut sql = String::from("INSERT INTO raw_events VALUES ");
            for r in 0..per {
                let b = r * 5;
                if r > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!(
                    "(${}, ${}, 'bench', 1, 'control', 'search', NULL, NULL, ${}, ${}, ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5
                ));
            }
            let mut client = 0u64;
            while Instant::now() < deadline {
                client += 1;
                let c = uuid(client);
                let mut tx = conn.begin().await.unwrap();
                let mut s = 1i64;
                while s <= rows as i64 {
                    let mut q = sqlx::query(&sql);
                    for _ in 0..per {
                        let at = AT + s * 1000;
                        q = q.bind(&c).bind(s).bind(at).bind(at / DAY).bind(AT);
                        s += 1;
                    }
                    q.execute(&mut *tx).await.unwrap();
                }
                tx.commit().await.unwrap();
                n += rows;
            }
        }
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// Durable events per second over HTTP.
async fn http(engine: Engine, seconds: u64, batch: u64, clients: usize) -> f64 {
    let db = TestDb::new(engine).await.expect("a database");
    let mut config = TowerConfig::new(db.url.clone(), "127.0.0.1:0".parse().unwrap());
    config.api.limits = ClientLimits {
        rate_per_sec: 0.0,
        // Throughput, not the per-client cap: a few clients send millions.
        max_events_per_client: u64::MAX,
        ..ClientLimits::default()
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let tower = testpilot_tower::start(config, clock.clone())
        .await
        .expect("a tower");
    fixtures::live_flight(&tower.state.store, &spec(), clock.now())
        .await
        .expect("a live flight");
    tower.state.refresh_index().await.expect("the index");
    let acked = Arc::new(AtomicU64::new(0));
    // The tower takes events from the past (at most a day ahead of its clock): the run's
    // events start a day ago, whatever today is.
    let start_at = clock.now().0 - DAY;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..clients {
        let (url, acked) = (tower.url.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let client = uuid(k as u64 + 1);
            let arm = if k.is_multiple_of(2) { "control" } else { "new-bar" };
            let mut seq = 1u64;
            while Instant::now() < deadline {
                let mut body = format!("{{\"client\":\"{client}\",\"events\":[");
                for s in seq..seq + batch {
                    if s > seq {
                        body.push(',');
                    }
                    let topic = if s.is_multiple_of(3) { "open" } else { "search" };
                    let at = Timestamp(start_at + s as i64 * 1000).to_rfc3339();
                    body.push_str(&format!(
                        "{{\"seq\":{s},\"flight\":\"bench\",\"version\":1,\"arm\":\"{arm}\",\"topic\":\"{topic}\",\"subject\":null,\"value\":null,\"at\":\"{at}\"}}"
                    ));
                }
                body.push_str("]}");
                let res = http
                    .post(format!("{url}/api/v1/events"))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .expect("send");
                assert!(res.status().is_success(), "{}", res.status());
                let r: Value = res.json().await.expect("an answer");
                acked.fetch_add(r["accepted"].as_u64().unwrap(), Ordering::Relaxed);
                seq += batch;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rate = acked.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    let stored = tower.state.store.event_count(None).await.unwrap();
    assert_eq!(
        stored,
        acked.load(Ordering::Relaxed),
        "every acknowledged event is stored"
    );
    tower.stop().await.unwrap();
    db.cleanup().await;
    rate
}

/// Seeds `events` events of `clients` clients (half an arm, the same number each; topic
/// `open` for every third seq, else `search`; a day per seq modulo 14) with fast paths.
async fn seed(engine: Engine, url: &str, events: u64, clients: u64) {
    use sqlx::Connection;
    let per = events / clients;
    // `WITH g(i)`: the numbers 0 .. n - 1.
    let gen = |n: u64| match engine {
        Engine::Sqlite => format!(
            "WITH RECURSIVE g(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i + 1 < {n})"
        ),
        Engine::Postgres => format!("WITH g(i) AS (SELECT generate_series(0, {n} - 1)::bigint)"),
    };
    let series = gen(clients * per);
    let div = |a: &str, b: &str| match engine {
        Engine::Sqlite => format!("({a}) / ({b})"),
        Engine::Postgres => format!("div({a}, {b})"),
    };
    let uuid_sql = |e: &str| match engine {
        Engine::Sqlite => format!("printf('00000000-0000-4000-8000-%012d', {e})"),
        Engine::Postgres => format!("'00000000-0000-4000-8000-' || lpad(({e})::text, 12, '0')"),
    };
    let client = format!("{} + 1", div("i", &per.to_string()));
    let seq = format!("i % {per} + 1");
    let sql = format!(
        "{series} INSERT INTO events (client, seq, flight, version, arm, topic, subject, value, at, day, received_at) \
         SELECT {}, {seq}, 'bench', 1, CASE WHEN ({client}) % 2 = 0 THEN 'new-bar' ELSE 'control' END, \
         CASE WHEN ({seq}) % 3 = 0 THEN 'open' ELSE 'search' END, NULL, NULL, \
         {AT} + (({seq}) % 14) * {DAY}, {} + ({seq}) % 14, {AT} FROM g",
        uuid_sql(&client),
        AT / DAY,
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
    println!(
        "  seeded {} raw events in {:.1} s",
        clients * per,
        t.elapsed().as_secs_f64()
    );
    // The rollups, from arithmetic: every client has the same counts.
    let mut per_topic = std::collections::BTreeMap::<(&str, i64), u64>::new();
    for s in 1..=per as i64 {
        let topic = if s % 3 == 0 { "open" } else { "search" };
        *per_topic.entry((topic, AT / DAY + s % 14)).or_default() += 1;
    }
    let half = |arm: &str| {
        if arm == "control" {
            clients.div_ceil(2)
        } else {
            clients / 2
        }
    };
    let mut tx = conn.begin().await.unwrap();
    for arm in ["control", "new-bar"] {
        let mut totals = std::collections::BTreeMap::<&str, u64>::new();
        for ((topic, day), n) in &per_topic {
            *totals.entry(topic).or_default() += n;
            sqlx::query("INSERT INTO event_days (flight, version, arm, topic, day, events) VALUES ('bench', 1, $1, $2, $3, $4)")
                .bind(arm).bind(*topic).bind(*day).bind((n * half(arm)) as i64)
                .execute(&mut *tx).await.unwrap();
        }
        for (topic, n) in totals {
            let c = half(arm);
            sqlx::query("INSERT INTO event_arms (flight, arm, topic, events, clients_with_event, sum_sq) VALUES ('bench', $1, $2, $3, $4, $5)")
                .bind(arm).bind(topic).bind((n * c) as i64).bind(c as i64).bind((n * n * c) as i64)
                .execute(&mut *tx).await.unwrap();
            let parity = if arm == "control" { 1 } else { 0 };
            sqlx::query(&format!(
                "{} INSERT INTO event_clients (flight, arm, topic, client, n) SELECT 'bench', $1, $2, {}, $3 FROM g WHERE (i + 1) % 2 = {parity}",
                gen(clients),
                uuid_sql("i + 1"),
            ))
            .bind(arm).bind(topic).bind(n as i64)
            .execute(&mut *tx).await.unwrap();
        }
    }
    sqlx::query(&format!(
        "{} INSERT INTO client_state (flight, client, seq, version, arm, status, step, at, seen_day, seen_days) \
         SELECT 'bench', {}, 1, 1, CASE WHEN (i + 1) % 2 = 0 THEN 'new-bar' ELSE 'control' END, 'running', 0, {AT}, {}, 1 FROM g",
        gen(clients),
        uuid_sql("i + 1"),
        AT.div_euclid(86_400_000),
    ))
    .execute(&mut *tx)
    .await
    .unwrap();
    // Progress reads its rollup of `client_state`, kept with it at ingest.
    sqlx::query(
        "INSERT INTO progress_states (flight, version, arm, armed, status, step, clients) \
         SELECT flight, version, arm, 1, status, step, COUNT(*) FROM client_state GROUP BY flight, version, arm, status, step",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    if engine == Engine::Postgres {
        sqlx::query("ANALYZE").execute(&mut conn).await.unwrap();
    }
    println!("  seeded in all in {:.1} s", t.elapsed().as_secs_f64());
}

async fn results(engine: Engine, events: u64, clients: u64, runs: usize) {
    let db = TestDb::new(engine).await.expect("a database");
    let mut config = TowerConfig::new(db.url.clone(), "127.0.0.1:0".parse().unwrap());
    config.api.limits.rate_per_sec = 0.0;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let tower = testpilot_tower::start(config, clock.clone())
        .await
        .expect("a tower");
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
            clock.now(),
        )
        .await
        .unwrap();
    seed(engine, &db.url, events, clients).await;
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/flights/bench/results", tower.url);
    let mut times = Vec::with_capacity(runs);
    let mut last = Value::Null;
    for _ in 0..runs {
        let t = Instant::now();
        let res = http.get(&url).bearer_auth(&token).send().await.unwrap();
        assert!(res.status().is_success(), "{}", res.status());
        last = res.json().await.unwrap();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let total: u64 = last["topics"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["arms"].as_array().unwrap())
        .map(|a| a["events"].as_u64().unwrap())
        .sum();
    assert_eq!(
        total,
        events / clients * clients,
        "the results count every seeded event"
    );
    println!(
        "{engine:?}: results with {total} events of {clients} clients: median {:.1} ms, p95 {:.1} ms, max {:.1} ms over {runs} requests",
        times[runs / 2],
        times[runs * 95 / 100],
        times[runs - 1]
    );
    // The flight page (progress, funnels and the results section) as a signed-in person.
    let page = format!("{}/ui/flights/bench", tower.url);
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let res = http
            .get(&page)
            .header("cookie", format!("tp_dashboard={token}"))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{}", res.status());
        let html = res.text().await.unwrap();
        assert!(
            html.contains("Results"),
            "the page shows the results section"
        );
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{engine:?}: flight page with {total} events of {clients} clients: median {:.1} ms, p95 {:.1} ms, max {:.1} ms over {runs} requests",
        times[runs / 2],
        times[runs * 95 / 100],
        times[runs - 1]
    );
    tower.stop().await.unwrap();
    db.cleanup().await;
}

fn main() {
    let engines: String = env("BENCH_ENGINES", "sqlite,postgres".to_string());
    let only: String = env("BENCH_ONLY", String::new());
    let seconds = env("BENCH_SECONDS", 10u64);
    let batch = env("BENCH_BATCH", 100u64);
    let clients = env("BENCH_CLIENTS", 32usize);
    let raw_rows = env("BENCH_RAW_ROWS", 1000u64);
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
        if only.is_empty() || only == "ingest" {
            rt.block_on(async {
                let db = TestDb::new(engine).await.expect("a database");
                let raw_rate = raw(engine, &db, seconds, raw_rows).await;
                db.cleanup().await;
                let http_rate = http(engine, seconds, batch, clients).await;
                println!(
                    "{engine:?}: raw batched insert ({raw_rows} rows a transaction) {raw_rate:.0} rows/s | \
                     HTTP, batches of {batch} from {clients} clients, with rollups: {http_rate:.0} events/s = {:.0} % of raw",
                    http_rate / raw_rate * 100.0
                );
            });
        }
        if only.is_empty() || only == "results" {
            rt.block_on(results(
                engine,
                env("BENCH_EVENTS", 10_000_000u64),
                env("BENCH_RESULT_CLIENTS", 100_000u64),
                env("BENCH_RESULT_RUNS", 50usize),
            ));
        }
    }
}
