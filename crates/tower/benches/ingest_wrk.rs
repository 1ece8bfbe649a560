//! Report ingest as an operator would measure it: `wrk` over HTTP against a tower, side by
//! side with the database's own floor for the same rows, in the same run.
//!
//! For each engine and each scenario (reports per request, connections):
//! 1. A tower in this process on a fresh database (real socket on 127.0.0.1, no rate limit,
//!    one live flight `bench`). The request bodies — each a batch of new reports from its own
//!    client, none repeated — are written to files *before* the run; `wrk` (with a Lua script
//!    that only hands out the next body) POSTs them to `/api/v1/reports` for `BENCH_SECONDS`.
//!    Every 2xx is durable (SQLite `synchronous = FULL`, PostgreSQL `synchronous_commit =
//!    on`) with its progress rollups. Figures: requests/s, reports/s and the p99 latency wrk
//!    reports; the run fails if any answer was not 2xx or fewer reports were stored than
//!    answered.
//! 2. The floor, on a second fresh database made by the same migrations (so the very table
//!    and indexes, no rollups, no HTTP): SQLite by rusqlite, WAL, `synchronous = FULL`, one
//!    prepared `INSERT` and `BENCH_RAW_ROWS` rows a transaction; PostgreSQL by `COPY reports
//!    FROM STDIN`, `BENCH_RAW_ROWS` rows a `COPY`.
//!
//! `scripts/bench-ingest.sh` (installs wrk if missing), or `cargo bench -p testpilot-tower
//! --bench ingest_wrk`. Environment: `BENCH_ENGINES` (`sqlite,postgres`), `BENCH_SECONDS`
//! (10), `BENCH_SCENARIOS` (`100x64,3x64`: reports a request × connections), `WRK_THREADS`
//! (2), `BENCH_RAW_ROWS` (1000), `TESTPILOT_TEST_PG`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use testpilot_flight::Clock;
use testpilot_tower::dashboard::fixtures;
use testpilot_tower::store::Engine;
use testpilot_tower::testing::TestDb;
use testpilot_tower::{ClientLimits, SystemClock, TowerConfig};

const AT: i64 = 1_776_902_400_000;
const DAY: i64 = 86_400_000;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Client `i`'s id: a version-4 UUID, scattered as real ones are (so inserts land all over
/// the primary key's B-tree, as they do in production) and distinct per `i`.
fn uuid(i: u64) -> String {
    // splitmix64: a bijection, so distinct `i` give distinct ids.
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    format!(
        "{:08x}-{:04x}-4{:03x}-8000-{i:012}",
        z >> 32,
        (z >> 16) & 0xffff,
        z & 0xfff
    )
}

/// One request body: a batch of `batch` new reports from client `i`, as a pilot sends them
/// (a flight's status changes: running at steps, the last one completed).
fn body(i: u64, batch: u64) -> String {
    let mut b = format!("{{\"client\":\"{}\",\"reports\":[", uuid(i));
    for s in 1..=batch {
        if s > 1 {
            b.push(',');
        }
        let status = if s == batch { "completed" } else { "running" };
        b.push_str(&format!(
            "{{\"seq\":{s},\"flight\":\"bench\",\"version\":1,\"arm\":\"control\",\"status\":\"{status}\",\"step\":{},\"at\":{}}}",
            s % 5,
            AT + (s as i64) * 1000
        ));
    }
    b.push_str("]}");
    b
}

/// The Lua script: each wrk thread reads its own file of bodies (one a line) and sends each
/// once; should a thread run out, it starts again (resends: the run then says so).
const LUA: &str = r#"
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end
function init(args)
  bodies = {}
  for line in io.lines(args[1] .. "/bodies-" .. id .. ".txt") do
    bodies[#bodies + 1] = line
  end
  n = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end
function request()
  n = n + 1
  if n > #bodies then n = 1; wrapped = true end
  return wrk.format(nil, nil, nil, bodies[n])
end
"#;

/// Writes `per_thread` bodies for each wrk thread into `dir`.
fn write_bodies(dir: &Path, threads: usize, per_thread: u64, batch: u64) {
    for t in 0..threads {
        let f = std::fs::File::create(dir.join(format!("bodies-{t}.txt"))).unwrap();
        let mut w = std::io::BufWriter::new(f);
        for k in 0..per_thread {
            let i = 1 + t as u64 * per_thread + k;
            writeln!(w, "{}", body(i, batch)).unwrap();
        }
        w.flush().unwrap();
    }
    std::fs::write(dir.join("bodies.lua"), LUA).unwrap();
}

/// What wrk said.
#[derive(Debug, Default)]
struct Wrk {
    requests: u64,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
    errors: String,
    /// CPU seconds the tower (this process) and wrk used during the run.
    tower_cpu: f64,
    wrk_cpu: f64,
}

fn ms(text: &str) -> f64 {
    let t = text.trim();
    let (num, scale) = if let Some(v) = t.strip_suffix("us") {
        (v, 0.001)
    } else if let Some(v) = t.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = t.strip_suffix('s') {
        (v, 1000.0)
    } else {
        (t, 1.0)
    };
    num.parse::<f64>().unwrap_or(f64::NAN) * scale
}

fn parse_wrk(out: &str) -> Wrk {
    let mut w = Wrk::default();
    for line in out.lines() {
        let l = line.trim();
        let words: Vec<&str> = l.split_whitespace().collect();
        if l.starts_with("50%") {
            w.p50_ms = ms(words[1]);
        } else if l.starts_with("99%") {
            w.p99_ms = ms(words[1]);
        } else if l.contains("requests in") {
            // "123456 requests in 10.00s, 12.34MB read"
            w.requests = words[0].parse().unwrap_or(0);
            w.seconds = ms(words[3].trim_end_matches(',')) / 1000.0;
        } else if l.starts_with("Non-2xx or 3xx responses:") {
            w.non_2xx = words.last().and_then(|n| n.parse().ok()).unwrap_or(0);
        } else if l.starts_with("Socket errors:") {
            w.errors = l.to_string();
        }
    }
    w
}

/// CPU seconds used so far by this process (the tower's threads) and by its waited-for
/// children (wrk), from `/proc/self/stat`.
fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command's closing parenthesis; utime is the 14th field of the line.
    let rest = stat.rsplit_once(')').map(|r| r.1).unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    let tick = 100.0; // USER_HZ on Linux
    let at = |i: usize| f.get(i - 3).copied().unwrap_or(0.0) / tick;
    (at(14) + at(15), at(16) + at(17))
}

/// The tower over HTTP with wrk: (what wrk said, reports stored).
async fn http(
    engine: Engine,
    seconds: u64,
    batch: u64,
    conns: usize,
    threads: usize,
    work: &Path,
) -> (Wrk, u64) {
    let db = TestDb::new(engine).await.expect("a database");
    let mut config = TowerConfig::new(db.url.clone(), "127.0.0.1:0".parse().unwrap());
    config.api.limits = ClientLimits {
        rate_per_sec: 0.0,
        ..ClientLimits::default()
    };
    config.connections.per_address = config.connections.per_address.max(conns * 2);
    config.connections.total = config.connections.total.max(conns * 2);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let tower = testpilot_tower::start(config, clock.clone())
        .await
        .expect("a tower");
    let spec = fixtures::flight_json("bench", "the ingest benchmark's flight");
    fixtures::live_flight(&tower.state.store, &spec, clock.now())
        .await
        .expect("a live flight");
    tower.state.refresh_index().await.expect("the index");

    // Enough bodies that no thread runs out: a generous guess at the rate (400,000 reports
    // or 40,000 requests a second), times the time.
    let per_thread = (400_000 / batch.max(1)).min(40_000) * seconds / threads as u64 + 1000;
    write_bodies(work, threads, per_thread, batch);
    let url = format!("{}/api/v1/reports", tower.url);
    let script = work.join("bodies.lua");
    let cpu_before = cpu_seconds();
    let out = tokio::task::spawn_blocking({
        let work = work.to_path_buf();
        move || {
            Command::new("wrk")
                .args([
                    "-t",
                    &threads.to_string(),
                    "-c",
                    &conns.to_string(),
                    "-d",
                    &format!("{seconds}s"),
                    "--timeout",
                    "10s",
                    "--latency",
                    "-s",
                    script.to_str().unwrap(),
                    &url,
                    "--",
                    work.to_str().unwrap(),
                ])
                .output()
                .expect("wrk runs (apt-get install wrk, or scripts/bench-ingest.sh)")
        }
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        panic!(
            "wrk failed: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut w = parse_wrk(&text);
    let cpu_after = cpu_seconds();
    w.tower_cpu = cpu_after.0 - cpu_before.0;
    w.wrk_cpu = cpu_after.1 - cpu_before.1;
    let stored = tower.state.store.report_count().await.unwrap();
    tower.stop().await.unwrap();
    db.cleanup().await;
    if w.non_2xx > 0 || w.requests == 0 {
        panic!("not every answer was 2xx:\n{text}");
    }
    assert!(
        stored >= w.requests * batch,
        "answered {} reports but stored {stored} (did wrk run out of bodies and resend?):\n{text}",
        w.requests * batch
    );
    (w, stored)
}

/// The floor: rows per second into the tower's own `reports` table (made by its migrations)
/// with the database's fastest plain path.
async fn raw(engine: Engine, seconds: u64, rows: u64) -> f64 {
    let db = TestDb::new(engine).await.expect("a database");
    let store = testpilot_tower::Store::open(&db.url)
        .await
        .expect("migrated");
    store.close().await;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut n = 0u64;
    let mut client = 0u64;
    match engine {
        Engine::Sqlite => {
            let path: PathBuf = db.url.trim_start_matches("sqlite://").into();
            let path = PathBuf::from(path.to_str().unwrap().split('?').next().unwrap());
            let mut conn = rusqlite::Connection::open(&path).unwrap();
            conn.pragma_update(None, "journal_mode", "WAL").unwrap();
            conn.pragma_update(None, "synchronous", "FULL").unwrap();
            while Instant::now() < deadline {
                let tx = conn.transaction().unwrap();
                {
                    let mut st = tx
                        .prepare_cached(
                            "INSERT INTO reports (client, seq, flight, version, arm, status, step, at, day, detail, received_at) \
                             VALUES (?1, ?2, 'bench', 1, 'control', 'running', ?3, ?4, ?5, NULL, ?6)",
                        )
                        .unwrap();
                    for k in 0..rows as i64 {
                        if k % 3 == 0 {
                            client += 1;
                        }
                        let at = AT + k * 1000;
                        st.execute(rusqlite::params![
                            uuid(client),
                            k % 3 + 1,
                            k % 5,
                            at,
                            at / DAY,
                            AT
                        ])
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
            while Instant::now() < deadline {
                let mut data = String::with_capacity(rows as usize * 96);
                for k in 0..rows as i64 {
                    if k % 3 == 0 {
                        client += 1;
                    }
                    let at = AT + k * 1000;
                    data.push_str(&format!(
                        "{}\t{}\tbench\t1\tcontrol\trunning\t{}\t{at}\t{}\t\\N\t{AT}\n",
                        uuid(client),
                        k % 3 + 1,
                        k % 5,
                        at / DAY
                    ));
                }
                let mut copy = conn
                    .copy_in_raw(
                        "COPY reports (client, seq, flight, version, arm, status, step, at, day, detail, received_at) FROM STDIN",
                    )
                    .await
                    .unwrap();
                copy.send(data.into_bytes()).await.unwrap();
                n += copy.finish().await.unwrap();
            }
        }
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    db.cleanup().await;
    rate
}

fn main() {
    let engines: String = env("BENCH_ENGINES", "sqlite,postgres".to_string());
    let seconds = env("BENCH_SECONDS", 10u64);
    let threads = env("WRK_THREADS", 2usize);
    let raw_rows = env("BENCH_RAW_ROWS", 1000u64);
    let scenarios: Vec<(u64, usize)> = env("BENCH_SCENARIOS", "100x64,3x64".to_string())
        .split(',')
        .map(|s| {
            let (b, c) = s
                .trim()
                .split_once('x')
                .expect("BENCH_SCENARIOS: BATCHxCONNS");
            (b.parse().unwrap(), c.parse().unwrap())
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let work = testpilot_tower::testing::temp_dir("ingest-wrk");
    for e in engines.split(',') {
        let engine = match e.trim() {
            "sqlite" => Engine::Sqlite,
            "postgres" => Engine::Postgres,
            other => panic!("unknown engine {other}"),
        };
        let floor = rt.block_on(raw(engine, seconds, raw_rows));
        let how = match engine {
            Engine::Sqlite => format!("rusqlite batched insert, {raw_rows} rows a transaction"),
            Engine::Postgres => format!("COPY, {raw_rows} rows a COPY"),
        };
        println!("{engine:?}: floor ({how}): {floor:.0} rows/s");
        for &(batch, conns) in &scenarios {
            let (w, stored) = rt.block_on(http(engine, seconds, batch, conns, threads, &work));
            let rps = w.requests as f64 / w.seconds;
            let reports = rps * batch as f64;
            // The machine may be shared: CPU a request says what two free cores could carry.
            let tower_us = w.tower_cpu / w.requests as f64 * 1e6;
            let wrk_us = w.wrk_cpu / w.requests as f64 * 1e6;
            println!(
                "{engine:?}: wrk, {batch} reports a request, {conns} connections: {rps:.0} requests/s = {reports:.0} reports/s \
                 ({:.0} % of the floor), p50 {:.1} ms, p99 {:.1} ms; {stored} stored{}\n  \
                 CPU a request: tower {tower_us:.0} µs, wrk {wrk_us:.0} µs (two free cores: at most {:.0} requests/s)",
                reports / floor * 100.0,
                w.p50_ms,
                w.p99_ms,
                if w.errors.is_empty() { String::new() } else { format!("; {}", w.errors) },
                2e6 / (tower_us + wrk_us)
            );
        }
    }
    let _ = std::fs::remove_dir_all(&work);
}
