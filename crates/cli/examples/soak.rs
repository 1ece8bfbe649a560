//! The tower soak (RELIABILITY.md, `scripts/soak-tower.sh`): many simulated pilots, each
//! polling `/control/index.json` with its ETag (so most get 304) and posting a batch of three
//! reports (docs/reports.md) once per period, for a while; meanwhile the tower's resident
//! memory (VmRSS of `--pid`) is sampled every 10 s. Prints the figures and whether memory
//! stayed flat after warm-up (growth within 10 %) and report latency p99 stayed under 50 ms;
//! exits 1 when a request failed or a goal was missed.
//!
//! Each request opens its own connection, as a pilot waking from its poll interval does.
//!
//!   cargo run --release -p testpilot --example soak -- --tower URL --pid PID \
//!     --author-token T --approver-token T [--clients 10000] [--seconds 600] [--period 60]

use clap::Parser;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Soak a running tower with simulated pilots (RELIABILITY.md)")]
struct Args {
    /// The tower, http://HOST:PORT.
    #[arg(long)]
    tower: String,
    /// The tower's process id, whose VmRSS is sampled (Linux /proc).
    #[arg(long)]
    pid: u32,
    /// A token with the author role (pushes the soak's flight).
    #[arg(long)]
    author_token: String,
    /// A token with the approver role (approves it, so reports are taken).
    #[arg(long)]
    approver_token: String,
    /// Simulated pilots.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    clients: u64,
    /// How long the soak runs, in seconds.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    seconds: u64,
    /// Each pilot polls the index and posts its reports once per this many seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    period: u64,
    /// Seconds of warm-up before the memory baseline is taken (default: a fifth of the run,
    /// at most 120: by then every pilot has fetched the index and the report writer's page
    /// cache, 8 MiB, is full, so what grows after is what would grow without bound).
    #[arg(long)]
    warmup: Option<u64>,
    /// Seconds between memory samples.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    sample_every: u64,
}

const FLIGHT: &str = "soak";
const RSS_GROWTH_LIMIT: f64 = 0.10;
const P99_GOAL_MS: f64 = 50.0;

/// What all pilots did, counted as they go.
#[derive(Default)]
struct Counts {
    index_full: AtomicU64,
    index_not_modified: AtomicU64,
    report_batches: AtomicU64,
    errors: AtomicU64,
    /// Report latencies, in microseconds.
    latencies: Mutex<Vec<u32>>,
    /// The first few errors, said once each.
    said: Mutex<Vec<String>>,
}

impl Counts {
    fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut said = self.said.lock().unwrap();
        if said.len() < 10 {
            eprintln!("soak: {what}");
            said.push(what);
        }
    }
}

/// The tower's resident memory in KiB, from /proc/PID/status.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| {
        anyhow::anyhow!("cannot read /proc/{pid}/status (is the tower running?): {e}")
    })?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("/proc/{pid}/status has no VmRSS line"))
}

async fn post(http: &reqwest::Client, url: String, token: &str, body: Value) -> anyhow::Result<()> {
    let res = http
        .post(&url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?;
    let status = res.status();
    if !status.is_success() {
        anyhow::bail!("{url}: {status}: {}", res.text().await.unwrap_or_default());
    }
    Ok(())
}

/// Pushes, reviews and approves the soak's flight through the API, as a team would.
async fn make_flight_live(a: &Args) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let base = format!("{}/api/v1/flights", a.tower);
    let flight = json!({"studyname": FLIGHT, "author": "soak@example.com", "description": "soak test",
    "flightplan": [
        {"action": "feature", "id": "soak.on", "value": {"on": true}},
        {"action": "wait", "for": "7d"},
        {"action": "log", "text": "done"}
    ]});
    post(&http, base.clone(), &a.author_token, flight).await?;
    post(
        &http,
        format!("{base}/{FLIGHT}/review"),
        &a.author_token,
        json!({}),
    )
    .await?;
    post(
        &http,
        format!("{base}/{FLIGHT}/approve"),
        &a.approver_token,
        json!({}),
    )
    .await?;
    Ok(())
}

/// One simulated pilot: from a random offset into the first period, polls the index (with
/// its ETag once it has one) and posts three reports, once per period, until `end`.
async fn pilot(
    i: u64,
    run: u64,
    http: reqwest::Client,
    tower: Arc<str>,
    period: Duration,
    end: Instant,
    counts: Arc<Counts>,
) {
    let client = format!("{:08x}-0000-4000-8000-{i:012}", run as u32);
    let mut rng = (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    rng ^= rng << 13;
    rng ^= rng >> 7;
    let offset = Duration::from_millis(rng % period.as_millis().max(1) as u64);
    let mut next = Instant::now() + offset;
    let mut etag: Option<String> = None;
    let mut seq = 1u64;
    while next < end {
        tokio::time::sleep_until(next.into()).await;
        next += period;
        let mut req = http.get(format!("{tower}/control/index.json"));
        if let Some(t) = &etag {
            req = req.header("If-None-Match", t);
        }
        match req.send().await {
            Ok(res) if res.status() == reqwest::StatusCode::NOT_MODIFIED => {
                counts.index_not_modified.fetch_add(1, Ordering::Relaxed);
            }
            Ok(res) if res.status().is_success() => {
                etag = res
                    .headers()
                    .get("etag")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                match res.bytes().await {
                    Ok(_) => counts.index_full.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        counts.error(format!("index body: {e}"));
                        continue;
                    }
                };
            }
            Ok(res) => counts.error(format!("index: {}", res.status())),
            Err(e) => counts.error(format!("index: {e}")),
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let reports: Vec<Value> = (seq..seq + 3)
            .map(|s| json!({"seq": s, "flight": FLIGHT, "version": 1, "status": "running", "step": s % 3, "at": now_ms}))
            .collect();
        seq += 3;
        let started = Instant::now();
        let sent = http
            .post(format!("{tower}/api/v1/reports"))
            .json(&json!({"client": client, "reports": reports}))
            .send()
            .await;
        match sent {
            Ok(res) if res.status().is_success() => {
                if let Err(e) = res.bytes().await {
                    counts.error(format!("reports body: {e}"));
                    continue;
                }
                let us = started.elapsed().as_micros().min(u32::MAX as u128) as u32;
                counts.latencies.lock().unwrap().push(us);
                counts.report_batches.fetch_add(1, Ordering::Relaxed);
            }
            Ok(res) => {
                let status = res.status();
                counts.error(format!(
                    "reports: {status}: {}",
                    res.text().await.unwrap_or_default()
                ));
            }
            Err(e) => counts.error(format!("reports: {e}")),
        }
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    rss_kib(a.pid)?;
    make_flight_live(&a).await?;
    let counts = Arc::new(Counts::default());
    // No pooled connections: each request connects, as a pilot waking up does.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()?;
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let started = Instant::now();
    let end = started + Duration::from_secs(a.seconds);
    let period = Duration::from_secs(a.period);
    let tower: Arc<str> = a.tower.clone().into();
    let pilots: Vec<_> = (0..a.clients)
        .map(|i| {
            tokio::spawn(pilot(
                i,
                run,
                http.clone(),
                tower.clone(),
                period,
                end,
                counts.clone(),
            ))
        })
        .collect();
    let warmup = Duration::from_secs(a.warmup.unwrap_or((a.seconds / 5).min(120)));
    println!(
        "soak: {} pilots, each polling the index and posting 3 reports every {} s, for {} s (warm-up {} s)",
        a.clients, a.period, a.seconds, warmup.as_secs()
    );
    let mut samples: Vec<(u64, u64)> = vec![(0, rss_kib(a.pid)?)];
    let mut tick = tokio::time::interval_at(
        (started + Duration::from_secs(a.sample_every)).into(),
        Duration::from_secs(a.sample_every),
    );
    while Instant::now() < end {
        tick.tick().await;
        let t = started.elapsed().as_secs();
        let rss = rss_kib(a.pid)?;
        samples.push((t, rss));
        println!(
            "  t={t:>4} s  tower RSS {:>7.1} MiB  index 200/304 {}/{}  report batches {}  errors {}",
            rss as f64 / 1024.0,
            counts.index_full.load(Ordering::Relaxed),
            counts.index_not_modified.load(Ordering::Relaxed),
            counts.report_batches.load(Ordering::Relaxed),
            counts.errors.load(Ordering::Relaxed)
        );
    }
    for p in pilots {
        p.await?;
    }
    let mut lat = std::mem::take(&mut *counts.latencies.lock().unwrap());
    lat.sort_unstable();
    let (p50, p99, max) = (
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0),
    );
    let after: Vec<u64> = samples
        .iter()
        .filter(|(t, _)| *t >= warmup.as_secs())
        .map(|(_, r)| *r)
        .collect();
    let base = after.first().copied().unwrap_or(samples[0].1).max(1);
    let peak = after.iter().copied().max().unwrap_or(base);
    let last = after.last().copied().unwrap_or(base);
    let growth = (peak as f64 - base as f64) / base as f64;
    let errors = counts.errors.load(Ordering::Relaxed);
    let mib = |k: u64| k as f64 / 1024.0;
    println!("soak figures:");
    println!(
        "  requests: index 200 {} / 304 {}, report batches {} ({} reports), errors {errors}",
        counts.index_full.load(Ordering::Relaxed),
        counts.index_not_modified.load(Ordering::Relaxed),
        lat.len(),
        3 * lat.len()
    );
    println!("  report latency: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms");
    println!(
        "  tower RSS: {:.1} MiB at start, {:.1} MiB after warm-up, peak {:.1} MiB, last {:.1} MiB",
        mib(samples[0].1),
        mib(base),
        mib(peak),
        mib(last)
    );
    let rss_ok = growth <= RSS_GROWTH_LIMIT;
    let p99_ok = p99 < P99_GOAL_MS;
    println!(
        "  RSS growth after warm-up (peak over baseline): {:.1} % (limit {:.0} %): {}",
        growth * 100.0,
        RSS_GROWTH_LIMIT * 100.0,
        if rss_ok { "ok" } else { "MISSED" }
    );
    println!(
        "  report p99 {p99:.1} ms (goal < {P99_GOAL_MS:.0} ms): {}",
        if p99_ok { "ok" } else { "MISSED" }
    );
    if errors > 0 || !rss_ok || !p99_ok || lat.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}
