//! `testpilot pilot run|observe`, `log`, `later`, `optout`: the client side. Thin: the work is
//! in `testpilot-pilot`.

use crate::term::{self, errln, outln};
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use testpilot_flight::{parse_duration, Clock};
use testpilot_pilot::agent::ProfileLock;
use testpilot_pilot::engine::PilotConfig;
use testpilot_pilot::net::Offline;
use testpilot_pilot::{
    flightlog, AgentConfig, Error, Faults, Journal, Pilot, ReferenceHost, SystemClock,
};

#[derive(clap::Subcommand)]
pub enum PilotCmd {
    /// Run the pilot agent for a profile: sync with the tower, run flights, report. One agent
    /// per profile; SIGTERM or Ctrl-C stops it cleanly.
    Run(RunArgs),
    /// Tell the pilot that something happened, for `observe` and `instrument` steps.
    Observe {
        /// The event's topic.
        topic: String,
        /// The event's subject, if any.
        subject: Option<String>,
        /// A number the event carries (a finite number, e.g. `3` or `2.5`), recorded and sent
        /// with it by a streaming `instrument`.
        #[arg(long, value_parser = parse_value, allow_negative_numbers = true)]
        value: Option<f64>,
        /// The pilot's profile folder (as given to `testpilot pilot run --profile`).
        #[arg(long)]
        profile: PathBuf,
    },
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// The tower: http(s)://HOST[:PORT] (the index at /control/index.json), or file://PATH of an
    /// exported index.
    #[arg(long)]
    pub tower: String,
    /// The profile folder (journal, add-ons, features); created if missing.
    #[arg(long)]
    pub profile: PathBuf,
    /// The tower's Ed25519 public key (standard base64 of 32 bytes), or a file holding it.
    /// The pilot pins it and then follows key rotations the index announces. Giving a
    /// different key than last time that is not pinned replaces the pinned keys and resets
    /// the rollback floor (the recovery from a leaked key; docs/keys.md).
    #[arg(long, conflicts_with = "insecure_unsigned")]
    pub public_key: Option<String>,
    /// Development only: accept unsigned indexes.
    #[arg(long)]
    pub insecure_unsigned: bool,
    /// The person context, a JSON file: {"personid"?, "os", "channel", "locale", "appversion", ...}.
    #[arg(long)]
    pub person: Option<PathBuf>,
    /// How often to ask the tower for the index ("15m", "30s", ...).
    #[arg(long, default_value = "15m")]
    pub poll: String,
    /// Sync once, move flights on once, upload reports, and exit.
    #[arg(long)]
    pub once: bool,
    /// How long the journal keeps sent reports, observed events and the history of ended
    /// flights ("90d", "2w", ...). Pruned at start and hourly; running flights keep what
    /// they need, and ended flights stay listed in `testpilot log`.
    #[arg(long, default_value = "90d")]
    pub retention: String,
}

#[derive(clap::Args)]
pub struct LogArgs {
    /// The pilot's profile folder (as given to `testpilot pilot run --profile`).
    #[arg(long)]
    pub profile: PathBuf,
    /// Only this flight.
    pub flight: Option<String>,
    /// Print a JSON array, one object per flight.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct LaterArgs {
    /// The pilot's profile folder (as given to `testpilot pilot run --profile`).
    #[arg(long)]
    pub profile: PathBuf,
    #[command(subcommand)]
    pub action: Option<LaterAction>,
}

#[derive(clap::Subcommand)]
pub enum LaterAction {
    /// List the prompts waiting for an answer (the default).
    List {
        /// Print a JSON array, one object per pending prompt.
        #[arg(long)]
        json: bool,
    },
    /// Answer yes to a prompt.
    Ok {
        /// The prompt's number, from `later list`.
        id: i64,
    },
    /// Answer no to a prompt.
    No {
        /// The prompt's number, from `later list`.
        id: i64,
    },
    /// Keep a prompt for later.
    Later {
        /// The prompt's number, from `later list`.
        id: i64,
    },
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["flight", "all"])))]
pub struct OptoutArgs {
    /// The pilot's profile folder (as given to `testpilot pilot run --profile`).
    #[arg(long)]
    pub profile: PathBuf,
    /// The flight to leave.
    pub flight: Option<String>,
    /// Leave every flight, and start no new ones.
    #[arg(long)]
    pub all: bool,
}

pub fn run(c: PilotCmd) -> anyhow::Result<ExitCode> {
    match c {
        PilotCmd::Run(a) => run_agent(a),
        PilotCmd::Observe {
            topic,
            subject,
            value,
            profile,
        } => {
            let mut j = open_journal(&profile)?;
            let id = j.record_event(&topic, subject.as_deref(), value, SystemClock.now())?;
            outln!(
                "recorded event {id}: {topic}{}{}",
                subject.map(|s| format!(" {s}")).unwrap_or_default(),
                value.map(|v| format!(" (value {v})")).unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `--value`: a finite number.
fn parse_value(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(format!("`{s}` is not a finite number")),
        Err(_) => Err(format!("`{s}` is not a number (give one like 3 or 2.5)")),
    }
}

fn run_agent(a: RunArgs) -> anyhow::Result<ExitCode> {
    // A duration like "15m", or a number of milliseconds.
    let poll_value = match a.poll.trim().parse::<u64>() {
        Ok(ms) => serde_json::Value::from(ms),
        Err(_) => serde_json::Value::String(a.poll.clone()),
    };
    let poll = parse_duration(&poll_value).map_err(|e| anyhow::anyhow!("--poll: {e}"))?;
    let retention = parse_duration(&serde_json::Value::String(a.retention.clone()))
        .map_err(|e| anyhow::anyhow!("--retention: {e}"))?;
    if retention.ms < 86_400_000 {
        anyhow::bail!(
            "--retention {}: give at least one day (\"1d\"); the journal is pruned by whole days",
            a.retention
        );
    }
    let person = match &a.person {
        Some(p) => Some(
            crate::cmd_flight::read_json(p)
                .map_err(|e| anyhow::anyhow!("--person {}: {e}", p.display()))?,
        ),
        None => None,
    };
    let public_key = match &a.public_key {
        Some(k) if Path::new(k).is_file() => Some(
            std::fs::read_to_string(k)
                .with_context(|| format!("--public-key {k}"))?
                .trim()
                .to_string(),
        ),
        other => other.clone(),
    };
    // The profile holds the journal: what ran on this machine and the pinned keys.
    for path in [a.profile.clone(), Journal::path_in(&a.profile)] {
        if let Some(w) = testpilot_pilot::journal::looseness(&path) {
            errln!("warning: {w}");
        }
    }
    if a.insecure_unsigned {
        errln!("WARNING: --insecure-unsigned: this pilot accepts UNSIGNED indexes from {}. Anyone who can change them can run flights on this machine. Use it for development only.", a.tower);
    }
    let config = AgentConfig {
        profile: a.profile,
        tower: a.tower,
        public_key,
        insecure_unsigned: a.insecure_unsigned,
        person,
        poll: Duration::from_millis(poll.ms),
        once: a.once,
        // Development only, for demos and end-to-end tests of flights that wait for days.
        time_scale: match std::env::var("TESTPILOT_TIME_SCALE") {
            Ok(v) => v.parse().map_err(|_| {
                anyhow::anyhow!("TESTPILOT_TIME_SCALE={v}: expected a number, like 1000")
            })?,
            Err(_) => 1.0,
        },
        retention: testpilot_pilot::journal::Retention {
            keep: Duration::from_millis(retention.ms),
            ..Default::default()
        },
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(testpilot_pilot::run_agent(config, shutdown_signal()))?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn open_journal(profile: &Path) -> anyhow::Result<Journal> {
    if !Journal::path_in(profile).exists() {
        anyhow::bail!("{} is not a pilot profile (it has no journal.sqlite); start one with `testpilot pilot run --profile {}`", profile.display(), profile.display());
    }
    Ok(Journal::open(profile, Faults::default())?)
}

pub fn log(a: LogArgs) -> anyhow::Result<ExitCode> {
    let j = open_journal(&a.profile)?;
    let flights = flightlog::flights(&j, a.flight.as_deref())?;
    if let Some(f) = &a.flight {
        if flights.is_empty() {
            anyhow::bail!("this profile knows no flight named `{f}`");
        }
    }
    if a.json {
        term::print_json(&flights)?;
    } else {
        let notes = if a.flight.is_some() {
            Vec::new()
        } else {
            flightlog::pilot_notes(&j)?
        };
        // Flight descriptions, prompt texts, request bodies and notes come from indexes
        // and towers: every string is made safe before it is laid out in lines.
        let safe = |v: Vec<serde_json::Value>| v.iter().map(term::safe_json).collect::<Vec<_>>();
        let text = flightlog::render_text(&safe(flights), &safe(notes), j.outbox_pending()?);
        term::out_lines(&text.replace(
            "--profile PROFILE",
            &format!("--profile {}", a.profile.display()),
        ));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn later(a: LaterArgs) -> anyhow::Result<ExitCode> {
    let mut j = open_journal(&a.profile)?;
    let (id, answer) = match a.action.unwrap_or(LaterAction::List { json: false }) {
        LaterAction::List { json } => {
            let prompts = flightlog::pending_prompts(&j)?;
            if json {
                term::print_json(&prompts)?;
            } else if prompts.is_empty() {
                outln!("Nothing is waiting for you.");
            } else {
                for p in prompts {
                    let s = |k: &str| p.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
                    outln!(
                        "{}  [{}] {} ({}){}",
                        p["id"],
                        s("type"),
                        s("title"),
                        s("studyname"),
                        if s("state") == "later" {
                            " — put off for later"
                        } else {
                            ""
                        }
                    );
                    if !s("text").is_empty() {
                        outln!("    {}", s("text"));
                    }
                    if !s("url").is_empty() {
                        outln!("    {}", s("url"));
                    }
                }
                outln!(
                    "Answer with `testpilot later --profile {} ok|no|later ID`.",
                    a.profile.display()
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        LaterAction::Ok { id } => (id, "ok"),
        LaterAction::No { id } => (id, "no"),
        LaterAction::Later { id } => (id, "later"),
    };
    match j.answer_prompt(id, answer, SystemClock.now()) {
        Ok(p) => {
            outln!("prompt {id} \"{}\": {answer}", p.title);
            Ok(ExitCode::SUCCESS)
        }
        Err(Error::Usage(msg)) => {
            errln!("error: {msg}");
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}

pub fn optout(a: OptoutArgs) -> anyhow::Result<ExitCode> {
    let flight = if a.all { None } else { a.flight.clone() };
    let mut j = open_journal(&a.profile)?;
    if let Some(f) = &flight {
        match j.flight(f)? {
            None => {
                errln!(
                    "error: this profile knows no flight named `{f}`; `testpilot log` lists them"
                );
                return Ok(ExitCode::from(1));
            }
            Some(row) if row.status != "running" => {
                outln!("{f} is not running (it is {}); nothing to do", row.status);
                return Ok(ExitCode::SUCCESS);
            }
            Some(_) => {}
        }
    }
    match ProfileLock::acquire(&a.profile) {
        Ok(_lock) => {
            // No agent runs: clean up here, with the same host the agent uses.
            drop(j);
            let faults = Faults::default();
            let host = ReferenceHost::new(&a.profile, faults.clone());
            let config = PilotConfig {
                profile: a.profile.clone(),
                person: None,
            };
            let mut pilot = Pilot::open(
                config,
                Box::new(host),
                Arc::new(Offline),
                Arc::new(SystemClock),
                faults,
            )?;
            let ended = pilot.optout(flight.as_deref())?;
            report_optout(&pilot.journal, &ended, a.all)
        }
        Err(Error::Locked { .. }) => {
            // The agent runs: ask it, and wait for it to finish the cleanup.
            let req = j.add_request("optout", flight.as_deref(), SystemClock.now())?;
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while !j.request_done(req)? {
                if std::time::Instant::now() > deadline {
                    outln!("The running agent was asked to end the flight(s) and will clean up shortly; see `testpilot log`.");
                    return Ok(ExitCode::SUCCESS);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let ended: Vec<String> = match &flight {
                Some(f) => vec![f.clone()],
                None => j
                    .flights()?
                    .into_iter()
                    .filter(|f| f.status == "optedout")
                    .map(|f| f.studyname)
                    .collect(),
            };
            report_optout(&j, &ended, a.all)
        }
        Err(e) => Err(e.into()),
    }
}

fn report_optout(j: &Journal, ended: &[String], all: bool) -> anyhow::Result<ExitCode> {
    for name in ended {
        if let Some(f) = j.flight(name)? {
            outln!(
                "{name}: {}{}",
                f.status,
                if f.cleaned_up {
                    ", everything it did is undone"
                } else {
                    ", cleanup under way"
                }
            );
        }
    }
    if all {
        outln!("Opted out of all flights: no new ones will start in this profile.");
    } else if ended.is_empty() {
        outln!("No running flight was ended.");
    }
    Ok(ExitCode::SUCCESS)
}
