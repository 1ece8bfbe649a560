//! The flightplan interpreter (docs/flight-spec.md).
//!
//! [`Pilot::tick`] moves every flight as far as it can go at the moment its clock gives, and
//! says when something will next be due. What it decides depends only on the journal, the
//! host's and the network's answers and that moment, so the same code runs in real time, in
//! tests and in a simulator with virtual time.
//!
//! Durability: before an effect touches the machine its intent is journaled (with what undoes
//! it); after, it is marked done, together with the step's resolution, in one transaction. A
//! restart finds an effect still at `intent` and performs it again — every host call is
//! idempotent per effect key — except for requests sent off the machine, which are never
//! repeated (at most once) and are noted as such in the flight log. When a flight ends, for any
//! reason, its effects are undone newest first, each marked `undoing` then `undone`, so the
//! undo also survives crashes and happens once. An undo that fails on a host error is tried
//! again with backoff, and said so in the flight log and to the tower.
//!
//! The parts, one job each:
//! - [`schedule`]: `tick`, what is due (deadlines, an expired index, prompts, relayed wishes).
//! - [`enrol`]: setting flights up from an accepted index.
//! - [`steps`]: walking the plan and the bookkeeping of each entry (its journaled state).
//! - [`directives`]: one executor per directive, each with its undo beside it.
//! - [`undo`]: ending a flight and undoing what it did.
//! - [`validated`]: flights validated from their spec, kept per thread.
//!
//! The engine writes the journal only through its typed methods ([`crate::journal`]).

mod directives;
mod enrol;
mod schedule;
mod steps;
mod undo;
mod validated;

pub use steps::Outcome;

use crate::host::Host;
use crate::journal::Journal;
use crate::net::Net;
use crate::{Error, Faults};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use testpilot_flight::report::{Report, Status};
use testpilot_flight::{Clock, Person, Timestamp};

/// How often a retryable action (ping, upload, download) is tried before the flight fails.
pub const MAX_ATTEMPTS: u32 = 5;

/// The wait before try `attempt + 1`: 30 s, doubling, at most an hour.
pub fn backoff_ms(attempt: u32) -> i64 {
    (30_000i64 << attempt.saturating_sub(1).min(7)).min(3_600_000)
}

/// The most events a streaming `instrument` records per flight (sent or not). When a flight
/// reaches it, the flight log says so once and later events are not recorded, so the
/// journal's recordings never grow without bound. [`Pilot::set_recording_cap`] lowers it.
pub const MAX_RECORDED: u64 = 100_000;

/// Who the pilot runs flights for, and where.
pub struct PilotConfig {
    pub profile: PathBuf,
    /// The person context; `personid` is generated and kept in the journal when absent.
    pub person: Option<Value>,
}

pub struct Pilot {
    pub journal: Journal,
    /// Set by the agent on shutdown: [`Pilot::tick`] stops between flights.
    interrupt: Option<Arc<AtomicBool>>,
    host: Box<dyn Host + Send>,
    net: Arc<dyn Net>,
    clock: Arc<dyn Clock>,
    person: Person,
    profile: PathBuf,
    /// At most this many events recorded per flight ([`MAX_RECORDED`]).
    recording_cap: u64,
}

fn min_wake(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// A status report of one flight (its `seq` is given by the outbox).
fn report(
    flight: &str,
    version: u64,
    arm: Option<&str>,
    status: Status,
    step: u64,
    at: Timestamp,
    detail: Option<Value>,
) -> Report {
    Report {
        seq: 0,
        flight: flight.to_string(),
        version,
        arm: arm.map(str::to_string),
        status,
        step,
        at,
        detail,
    }
}

/// Reads the person context, filling in the profile's `personid` when it has none.
fn make_person(journal: &mut Journal, given: Option<&Value>) -> Result<Person, Error> {
    let mut map = match given {
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            return Err(Error::Usage(
                "the person context must be a JSON object".into(),
            ))
        }
        None => serde_json::Map::new(),
    };
    if !map.contains_key("personid") {
        let id = journal.meta_or_init("personid", || uuid::Uuid::new_v4().to_string())?;
        map.insert("personid".into(), Value::String(id));
    }
    if !map.contains_key("os") {
        map.insert("os".into(), Value::String(default_os().into()));
    }
    let v = Value::Object(map);
    let person = Person::from_json(&v).map_err(|d| {
        Error::Usage(format!(
            "the person context is invalid: {}",
            d.iter()
                .map(|x| format!("{}: {}", x.path, x.message))
                .collect::<Vec<_>>()
                .join("; ")
        ))
    })?;
    if journal.meta("person")?.as_deref() != Some(v.to_string().as_str()) {
        journal.set_meta("person", &v.to_string())?;
    }
    Ok(person)
}

fn default_os() -> &'static str {
    match std::env::consts::OS {
        "macos" => "macos",
        "windows" => "windows",
        "android" => "android",
        "ios" => "ios",
        _ => "linux",
    }
}

impl Pilot {
    /// Opens the pilot of a profile: its journal, with the given host, network and clock.
    pub fn open(
        config: PilotConfig,
        host: Box<dyn Host + Send>,
        net: Arc<dyn Net>,
        clock: Arc<dyn Clock>,
        faults: Faults,
    ) -> Result<Pilot, Error> {
        let journal = Journal::open(&config.profile, faults)?;
        Pilot::with_journal(journal, config, host, net, clock)
    }

    /// A pilot over a journal opened by the caller, e.g. [`Journal::in_memory`] for a
    /// simulator that runs many clients in virtual time (`config.profile` is then only where
    /// downloaded packages are kept).
    pub fn with_journal(
        mut journal: Journal,
        config: PilotConfig,
        host: Box<dyn Host + Send>,
        net: Arc<dyn Net>,
        clock: Arc<dyn Clock>,
    ) -> Result<Pilot, Error> {
        let stored;
        let given = match &config.person {
            Some(p) => Some(p),
            None => {
                stored = journal
                    .meta("person")?
                    .and_then(|t| serde_json::from_str::<Value>(&t).ok());
                stored.as_ref()
            }
        };
        let person = make_person(&mut journal, given)?;
        journal.meta_or_init("client", || uuid::Uuid::new_v4().to_string())?;
        Ok(Pilot {
            journal,
            interrupt: None,
            host,
            net,
            clock,
            person,
            profile: config.profile,
            recording_cap: MAX_RECORDED,
        })
    }

    /// Gives the host back (an embedding that ran a cleanup before its agent starts).
    pub fn into_host(self) -> Box<dyn Host + Send> {
        self.host
    }

    /// A flag that, once set, makes [`Pilot::tick`] return between two flights.
    pub fn set_interrupt(&mut self, flag: Arc<AtomicBool>) {
        self.interrupt = Some(flag);
    }

    fn interrupted(&self) -> bool {
        self.interrupt
            .as_ref()
            .is_some_and(|f| f.load(Ordering::SeqCst))
    }

    /// Records at most `cap` events per flight (default [`MAX_RECORDED`]).
    pub fn set_recording_cap(&mut self, cap: u64) {
        self.recording_cap = cap;
    }

    pub fn recording_cap(&self) -> u64 {
        self.recording_cap
    }

    pub fn person(&self) -> &Person {
        &self.person
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn net(&self) -> &Arc<dyn Net> {
        &self.net
    }

    fn faults(&self) -> Faults {
        self.journal.faults().clone()
    }
}

/// The path of the profile a pilot works in (for the host and downloads).
pub fn profile_of(p: &Pilot) -> &Path {
    &p.profile
}
