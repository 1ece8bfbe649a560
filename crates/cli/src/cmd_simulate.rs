//! `testpilot simulate`: the fleet simulator (docs/simulate.md). Reads the flights (files or
//! a tower's verified index) and the population, runs `testpilot_sim`, prints the report.

use crate::cmd_flight::read_json;
use crate::term::{self, outln};
use anyhow::{anyhow, bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use testpilot_flight::index::{self, IndexPayload};
use testpilot_flight::{parse_dateish, parse_duration, Timestamp};
use testpilot_sim::{load::Capacity, Config, Population, SimFlight, Stage};

/// Engine runs by default: enough for outcome shares within about ±0.7 % (95 %), and about
/// half a minute on two cores; `--runs all` runs every enrolled client.
pub const DEFAULT_RUNS: u64 = 20_000;

#[derive(Args)]
pub struct SimulateArgs {
    /// Flight files or copilot documents to simulate (or use --tower).
    files: Vec<PathBuf>,
    /// Simulate the flights of a live tower's index instead (verified with --public-key).
    #[arg(long, requires = "public_key")]
    tower: Option<String>,
    /// The tower's index signing key (base64), as `testpilot tower pubkey` prints it.
    #[arg(long)]
    public_key: Option<String>,
    /// A population file (docs/simulate.md); default: the built-in desktop population.
    #[arg(long)]
    population: Option<PathBuf>,
    /// How many clients (at most 100,000,000).
    #[arg(long, default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(0..=testpilot_sim::MAX_CLIENTS))]
    clients: u64,
    /// How many days of virtual time.
    #[arg(long, default_value_t = 30.0)]
    days: f64,
    /// The seed: the same seed gives the same report.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Enrolled clients run through the pilot engine: a number (a random sample; outcomes
    /// are then estimates with intervals) or `all`.
    #[arg(long, default_value_t = DEFAULT_RUNS.to_string())]
    runs: String,
    /// The pilots' poll interval, for the load on the tower.
    #[arg(long, default_value = "15m")]
    poll: String,
    /// The launch moment (RFC 3339, a date, or ms since the epoch); default: now.
    #[arg(long)]
    start: Option<String>,
    /// Kill a flight during the run: `STUDYNAME@DURATION` after the launch (repeatable).
    #[arg(long = "kill")]
    kills: Vec<String>,
    /// Write enrolment and completion over virtual time as an SVG chart.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn moment(s: &str, what: &str) -> anyhow::Result<Timestamp> {
    let v = s
        .parse::<i64>()
        .map(Value::from)
        .unwrap_or_else(|_| Value::String(s.into()));
    Ok(parse_dateish(&v).map_err(|e| anyhow!("{what}: {e}"))?.at)
}

/// The flights of a tower's index, fetched and verified like a pilot does.
fn tower_flights(url: &str, key: &str, now: Timestamp) -> anyhow::Result<(Vec<Value>, usize)> {
    use testpilot_pilot::net::{Answer, HttpNet, Net, Request};
    let source =
        testpilot_pilot::sync::TowerSource::parse(url).map_err(|e| anyhow!("--tower: {e}"))?;
    // The key, or a file holding it (as `pilot run` takes it).
    let key = match std::path::Path::new(key).is_file() {
        true => std::fs::read_to_string(key).with_context(|| format!("--public-key {key}"))?,
        false => key.to_string(),
    };
    let key = index::parse_public_key(key.trim()).map_err(|e| anyhow!("--public-key: {e}"))?;
    let text = match &source {
        testpilot_pilot::sync::TowerSource::File(p) => {
            let p = [
                p.join("control").join("index.json"),
                p.join("index.json"),
                p.clone(),
            ]
            .into_iter()
            .find(|x| x.is_file())
            .unwrap_or_else(|| p.clone());
            let size = std::fs::metadata(&p)
                .with_context(|| format!("reading {}", p.display()))?
                .len();
            if size > 8 << 20 {
                bail!("{}: the index is larger than 8 MiB; refused", p.display());
            }
            std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?
        }
        testpilot_pilot::sync::TowerSource::Http { index: u, .. } => {
            let net = HttpNet::new(std::time::Duration::from_secs(20))?;
            let req = Request {
                method: "GET".into(),
                url: u.clone(),
                headers: Vec::new(),
                body: None,
                answer: Answer::Whole {
                    what: "index",
                    max: 8 << 20,
                },
            };
            let r = net.send(&req)?;
            if r.status != 200 {
                bail!("{u}: the tower answered {}", r.status);
            }
            String::from_utf8(r.body).map_err(|_| anyhow!("{u}: the index is not UTF-8"))?
        }
    };
    let payload: IndexPayload = index::accept(&text, &index::Trust::Pinned(&key), None, now)
        .map_err(|e| anyhow!("{}: the index was refused: {e}", source.describe()))?;
    Ok((payload.flights, text.len()))
}

/// Reads a population file, bounded in size; its problems as lines `FILE: PATH: message`.
fn read_population(p: &Path) -> Result<Population, Vec<String>> {
    let text = std::fs::read(p)
        .map_err(|e| vec![format!("{}: $: cannot read the file: {e}", p.display())])?;
    if text.len() > testpilot_sim::population::MAX_POPULATION_BYTES {
        return Err(vec![format!(
            "{}: $: the population file is {} bytes; the limit is {}",
            p.display(),
            text.len(),
            testpilot_sim::population::MAX_POPULATION_BYTES
        )]);
    }
    Population::from_text(&String::from_utf8_lossy(&text)).map_err(|d| {
        d.iter()
            .map(|d| format!("{}: {}: {}", p.display(), d.path, d.message))
            .collect()
    })
}

pub fn run(a: SimulateArgs) -> anyhow::Result<ExitCode> {
    let start = match &a.start {
        Some(s) => moment(s, "--start")?,
        None => Timestamp(chrono::Utc::now().timestamp_millis()),
    };
    let poll =
        parse_duration(&Value::String(a.poll.clone())).map_err(|e| anyhow!("--poll: {e}"))?;
    if !(a.days > 0.0 && a.days <= 3650.0) {
        bail!("--days: give a number of days above 0 and at most 3650");
    }
    // A chart that cannot be written is said now, not after the whole run.
    if let Some(p) = &a.plot {
        let dir = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => std::path::Path::new("."),
        };
        if p.is_dir() {
            bail!("--plot {}: that is a folder; give a file name", p.display());
        }
        if !dir.is_dir() {
            bail!(
                "--plot {}: the folder {} does not exist",
                p.display(),
                dir.display()
            );
        }
    }
    let runs = match a.runs.as_str() {
        "all" => None,
        n => Some(
            n.parse::<u64>()
                .map_err(|_| anyhow!("--runs: `{n}` is neither a number nor `all`"))?,
        ),
    };
    // Every problem of the population and of the flight files is said at once, so one
    // run of the command shows all there is to fix.
    let mut problems: Vec<String> = Vec::new();
    match (&a.tower, a.files.is_empty()) {
        (Some(_), false) => bail!("give flight files or --tower, not both"),
        (None, true) => bail!("give flight files to simulate, or --tower URL --public-key KEY"),
        _ => {}
    }
    let population = match &a.population {
        None => Some(Population::builtin()),
        Some(p) => read_population(p)
            .map_err(|lines| problems.extend(lines))
            .ok(),
    };
    let scratch = std::env::temp_dir().join(format!("testpilot-simulate-{}", std::process::id()));
    let package = testpilot_sim::flights::stand_in_path(&scratch);
    let (specs, index_bytes) = match &a.tower {
        Some(url) => match tower_flights(url, a.public_key.as_deref().unwrap_or(""), start) {
            Ok((specs, size)) => (specs.into_iter().map(Some).collect(), size),
            Err(e) => {
                problems.push(format!("{e:#}"));
                (Vec::new(), 0)
            }
        },
        None => {
            let specs: Vec<Option<Value>> = a
                .files
                .iter()
                .map(|f| {
                    read_json(f)
                        .map_err(|e| problems.push(format!("{}: $: {e}", f.display())))
                        .ok()
                })
                .collect();
            // The signed envelope is the payload's text and about 250 bytes around it.
            let size = serde_json::to_string(&specs).map_or(0, |s| s.len()) + 250;
            (specs, size)
        }
    };
    let mut flights: Vec<SimFlight> = Vec::new();
    for (i, v) in specs.iter().enumerate() {
        let Some(v) = v else { continue };
        let name = a
            .files
            .get(i)
            .map_or_else(|| format!("index flight #{i}"), |f| f.display().to_string());
        match SimFlight::from_document(v, &package) {
            Err(d) => problems.extend(
                d.iter()
                    .map(|d| format!("{name}: {}: {}", d.path, d.message)),
            ),
            Ok(f) if flights.iter().any(|x| x.name() == f.name()) => {
                problems.push(format!("{name}: flight `{}` is given twice", f.name()));
            }
            Ok(f) => flights.push(f),
        }
    }
    let population = match population {
        Some(p) if problems.is_empty() => p,
        _ => bail!(
            "nothing was simulated; fix these first:\n{}",
            problems.join("\n")
        ),
    };
    let mut kills = Vec::new();
    for k in &a.kills {
        let (name, after) = k.rsplit_once('@').ok_or_else(|| {
            anyhow!("--kill `{k}`: write STUDYNAME@DURATION, like newtab-layout-2@3d")
        })?;
        let i = flights
            .iter()
            .position(|f| f.name() == name)
            .ok_or_else(|| anyhow!("--kill `{k}`: no flight named `{name}` is simulated"))?;
        let d = parse_duration(&Value::String(after.into()))
            .map_err(|e| anyhow!("--kill `{k}`: {e}"))?;
        kills.push((i, Timestamp(start.0 + d.ms as i64)));
    }
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let config = Config {
        population,
        flights,
        clients: a.clients,
        days: a.days,
        seed: a.seed,
        start,
        runs,
        poll_ms: poll.ms as i64,
        kills,
        index_bytes,
        capacity: Capacity::default(),
        threads,
        scratch: scratch.clone(),
        cancel: None,
    };
    let show = !a.json && std::io::stderr().is_terminal();
    let bar = ProgressBar::with_draw_target(
        None,
        if show {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        ProgressStyle::with_template("{msg:12} [{bar:40}] {pos}/{len} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let stage = Mutex::new(None);
    let report = testpilot_sim::simulate(&config, &|s, done, total| {
        if let Ok(mut cur) = stage.lock() {
            if *cur != Some(s) {
                *cur = Some(s);
                bar.reset();
                bar.set_length(total);
                bar.set_message(match s {
                    Stage::Targeting => "targeting",
                    Stage::Engine => "pilot engine",
                });
            }
        }
        if done % 1024 == 0 || done == total {
            bar.set_position(done);
        }
    });
    bar.finish_and_clear();
    let _ = std::fs::remove_dir_all(&scratch);
    let report = report.map_err(|e| anyhow!(e))?;
    if a.json {
        term::print_json(&report)?;
    } else {
        for line in report.text().lines() {
            outln!("{line}");
        }
    }
    if let Some(p) = &a.plot {
        std::fs::write(p, report.svg()).with_context(|| format!("writing {}", p.display()))?;
        if !a.json {
            outln!("wrote the chart to {}", p.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
