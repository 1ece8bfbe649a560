//! The flightplan interpreter (DESIGN §4).
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
//! undo also survives crashes and happens once.

use crate::host::Host;
use crate::journal::{add_timeline, phase, prompt_state, FlightRow, Journal};
use crate::net::{Answer, Net, Request};
use crate::package::{self, sha256_file};
use crate::{Error, Faults};
use rusqlite::{params, Transaction};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use testpilot_flight::report::Status;
use testpilot_flight::spec::*;
use testpilot_flight::template::{render, render_json, Escape};
use testpilot_flight::{enrollment, Clock, Flight, Person, Timestamp};

/// How often a retryable action (ping, upload, download) is tried before the flight fails.
pub const MAX_ATTEMPTS: u32 = 5;

/// The wait before try `attempt + 1`: 30 s, doubling, at most an hour.
pub fn backoff_ms(attempt: u32) -> i64 {
    (30_000i64 << attempt.saturating_sub(1).min(7)).min(3_600_000)
}

/// How a plan entry stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    True,
    False(String),
    Failed(String),
    /// Not resolved yet; due again at that time (or when something outside happens).
    Pending(Option<Timestamp>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Res {
    True,
    False,
    Failed,
}

/// The journaled state of one plan entry (a directive or a parallel list), by path ("3", "3.1").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Node {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    res: Option<Res>,
    started: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry_at: Option<i64>,
    /// The effect under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    effect: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prompt: Option<i64>,
    /// Events up to this id happened before the step started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mark: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    why: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One flight being advanced.
struct Ctx {
    name: String,
    flight: Flight,
    row: FlightRow,
    nodes: BTreeMap<String, Node>,
    now: Timestamp,
}

/// A prompt to put in the message center.
struct NewPrompt {
    kind: &'static str,
    title: String,
    text: String,
    url: Option<String>,
    /// The step waits for the person's answer.
    wait: bool,
    expires: Option<Timestamp>,
}

/// A request a step sends off the machine.
struct Outgoing {
    kind: &'static str,
    method: String,
    url: String,
    body: Option<Value>,
}

/// Who the pilot runs flights for, and where.
pub struct PilotConfig {
    pub profile: PathBuf,
    /// The person context; `personid` is generated and kept in the journal when absent.
    pub person: Option<Value>,
}

pub struct Pilot {
    pub journal: Journal,
    /// Set by the agent on shutdown: [`Pilot::tick`] stops between flights.
    interrupt: Option<Arc<std::sync::atomic::AtomicBool>>,
    host: Box<dyn Host + Send>,
    net: Arc<dyn Net>,
    clock: Arc<dyn Clock>,
    person: Person,
    profile: PathBuf,
}

fn min_wake(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
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
        })
    }

    /// A flag that, once set, makes [`Pilot::tick`] return between two flights.
    pub fn set_interrupt(&mut self, flag: Arc<std::sync::atomic::AtomicBool>) {
        self.interrupt = Some(flag);
    }

    fn interrupted(&self) -> bool {
        self.interrupt
            .as_ref()
            .is_some_and(|f| f.load(std::sync::atomic::Ordering::SeqCst))
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

    /// Moves every flight as far as it goes now. Returns when something is next due by the
    /// clock (`None`: only something from outside can move a flight on: an answer, an event).
    pub fn tick(&mut self) -> Result<Option<Timestamp>, Error> {
        let now = self.clock.now();
        self.process_requests()?;
        let mut wake = self.expire_prompts(now)?;
        for row in self.journal.flights()? {
            if self.interrupted() {
                break;
            }
            let name = row.studyname.clone();
            let result = if row.status == Status::Running.as_str() {
                self.advance_flight(row, now)
            } else if !row.cleaned_up && row.started_at.is_some() {
                self.cleanup(&name, now).map(|()| None)
            } else {
                Ok(None)
            };
            match result {
                Ok(w) => wake = min_wake(wake, w),
                Err(e) if e.is_fatal() => return Err(e),
                // The host or the machine failed under this flight (a full disk, a file it
                // cannot write): the flight ends failed, and whatever cannot be undone now is
                // tried again a minute later. Other flights go on.
                Err(e) => {
                    self.note_once(&name, now, "error", &format!("stopped on an error: {e}"))?;
                    match self.end_flight(
                        &name,
                        Status::Failed,
                        &format!("stopped on an error: {e}"),
                        None,
                        now,
                    ) {
                        Ok(()) => {}
                        Err(e) if e.is_fatal() => return Err(e),
                        Err(e) => self.note_once(
                            &name,
                            now,
                            "error",
                            &format!("cleanup could not finish yet: {e}; trying again later"),
                        )?,
                    }
                    wake = min_wake(wake, Some(Timestamp(now.0 + 60_000)));
                }
            }
        }
        Ok(wake)
    }

    /// Adds a timeline line unless it repeats the flight's last one.
    fn note_once(
        &mut self,
        flight: &str,
        now: Timestamp,
        kind: &str,
        what: &str,
    ) -> Result<(), Error> {
        if self
            .journal
            .timeline(flight)?
            .last()
            .is_some_and(|t| t.what == what)
        {
            return Ok(());
        }
        self.journal.note(flight, now, kind, what, None)
    }

    /// Whether any flight is still running.
    pub fn running(&self) -> Result<Vec<String>, Error> {
        Ok(self
            .journal
            .flights()?
            .into_iter()
            .filter(|f| f.status == "running")
            .map(|f| f.studyname)
            .collect())
    }

    fn expire_prompts(&mut self, now: Timestamp) -> Result<Option<Timestamp>, Error> {
        let open = self.journal.open_prompts()?;
        let mut wake = None;
        for p in open {
            match p.expires_at {
                Some(e) if e <= now => {
                    self.journal.write("expire prompt", |tx| {
                        tx.execute("UPDATE prompts SET state = 'expired', answered_at = ?2 WHERE id = ?1 AND state IN ('pending', 'later')", params![p.id, now.0])?;
                        add_timeline(tx, &p.flight, now, "prompt", &format!("prompt {} \"{}\" expired unanswered", p.id, p.title), None)
                    })?;
                }
                Some(e) => wake = min_wake(wake, Some(e)),
                None => {}
            }
        }
        Ok(wake)
    }

    /// Carries out the person's wishes relayed by other processes (opt-out).
    pub fn process_requests(&mut self) -> Result<(), Error> {
        for r in self.journal.open_requests()? {
            if r.kind == "optout" {
                if let Err(e) = self.optout(r.flight.as_deref()) {
                    if !matches!(e, Error::Usage(_)) {
                        return Err(e);
                    }
                    let now = self.clock.now();
                    self.journal.note(
                        r.flight.as_deref().unwrap_or(""),
                        now,
                        "optout",
                        &e.to_string(),
                        None,
                    )?;
                }
            }
            let now = self.clock.now();
            self.journal.write("request done", |tx| {
                tx.execute(
                    "UPDATE requests SET done_at = ?2 WHERE id = ?1",
                    params![r.id, now.0],
                )
            })?;
        }
        Ok(())
    }

    /// Ends a flight (or, with `None`, every running one and all future ones) at the person's
    /// wish, undoing everything it did.
    pub fn optout(&mut self, flight: Option<&str>) -> Result<Vec<String>, Error> {
        let now = self.clock.now();
        match flight {
            None => {
                if self.journal.meta("optout_all")?.is_none() {
                    self.journal.write("optout all", |tx| {
                        tx.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('optout_all', ?1)", [now.0.to_string()])?;
                        add_timeline(tx, "", now, "optout", "the person opted out of all flights: running ones end and new ones will not start", None)
                    })?;
                }
                let mut ended = Vec::new();
                for name in self.running()? {
                    self.end_flight(
                        &name,
                        Status::Optedout,
                        "the person opted out of all flights",
                        None,
                        now,
                    )?;
                    ended.push(name);
                }
                Ok(ended)
            }
            Some(name) => {
                let row = self.journal.flight(name)?.ok_or_else(|| {
                    Error::Usage(format!(
                        "this profile knows no flight named `{name}`; `testpilot log` lists them"
                    ))
                })?;
                if row.status != "running" {
                    return Err(Error::Usage(format!(
                        "flight `{name}` is not running (it is {})",
                        row.status
                    )));
                }
                self.end_flight(name, Status::Optedout, "the person opted out", None, now)?;
                Ok(vec![name.to_string()])
            }
        }
    }

    // ---- enrollment (the index) ----

    /// Sets up flights from an accepted index: starts the ones this person is in, ends killed
    /// and withdrawn ones. A running flight keeps the version it started with ("update only on
    /// kill").
    pub fn apply_index(&mut self, flights: &[Value], serial: u64) -> Result<(), Error> {
        let now = self.clock.now();
        let optout_all = self.journal.meta("optout_all")?.is_some();
        // Problems with an index are noted once, when it is new, not at every poll.
        let fresh = self.journal.meta("last_serial")? != Some(serial.to_string());
        let mut seen = BTreeSet::new();
        for (i, v) in flights.iter().enumerate() {
            let name_hint = v
                .get("studyname")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string();
            let flight = match Flight::from_json(v) {
                Ok(f) => f,
                Err(d) => {
                    seen.insert(name_hint.clone());
                    let msg = format!(
                        "flight #{i} (`{name_hint}`) in index serial {serial} is invalid and was skipped: {}",
                        d.iter().map(|x| format!("{}: {}", x.path, x.message)).collect::<Vec<_>>().join("; ")
                    );
                    if fresh {
                        self.journal.note("", now, "index", &msg, None)?;
                    }
                    continue;
                }
            };
            let name = flight.studyname.clone();
            seen.insert(name.clone());
            let existing = self.journal.flight(&name)?;
            match existing {
                Some(row) if row.status == "running" => {
                    if flight.kill {
                        self.end_flight(&name, Status::Killed, "the flight was killed", None, now)?;
                    }
                }
                Some(row) if row.started_at.is_some() => {
                    let _ = row; // Ran here and ended: a flight runs once per profile.
                }
                existing => {
                    if flight.kill || optout_all {
                        continue;
                    }
                    self.enroll(&flight, v, existing.as_ref(), now)?;
                }
            }
        }
        for name in self.running()? {
            if !seen.contains(&name) {
                self.end_flight(
                    &name,
                    Status::Withdrawn,
                    &format!("the flight is no longer in the index (serial {serial})"),
                    None,
                    now,
                )?;
            }
        }
        Ok(())
    }

    fn enroll(
        &mut self,
        flight: &Flight,
        spec: &Value,
        existing: Option<&FlightRow>,
        now: Timestamp,
    ) -> Result<(), Error> {
        let e = enrollment::explain(flight, &self.person, now);
        if e.expired {
            return Ok(());
        }
        let version = flight.version.unwrap_or(0);
        let status = if !e.eligible {
            Status::Ineligible
        } else if !e.sampled {
            Status::Unsampled
        } else {
            Status::Running
        };
        if let Some(row) = existing {
            if row.status == status.as_str() && row.version == version {
                return Ok(());
            }
        }
        let arm = if status == Status::Running {
            e.arm.clone()
        } else {
            None
        };
        let spec_text = spec.to_string();
        let name = flight.studyname.clone();
        let started = (status == Status::Running).then_some(now.0);
        let what = match status {
            Status::Running => format!(
                "started version {version}{}",
                arm.as_ref()
                    .map(|a| format!(" in arm `{a}`"))
                    .unwrap_or_default()
            ),
            Status::Ineligible => format!("not eligible for version {version}"),
            _ => format!("not sampled for version {version}"),
        };
        let detail = json!({"reasons": e.reasons, "bucket": e.bucket});
        let report = json!({"flight": name, "version": version, "arm": arm, "status": status, "step": 0, "at": now.to_rfc3339(), "detail": {"reasons": e.reasons}});
        self.journal.write("enroll", |tx| {
            tx.execute(
                "INSERT INTO flights (studyname, version, spec, arm, status, step, started_at, cleaned_up) VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, 0)
                 ON CONFLICT(studyname) DO UPDATE SET version = excluded.version, spec = excluded.spec, arm = excluded.arm, status = excluded.status, step = 0, started_at = excluded.started_at",
                params![name, version as i64, spec_text, arm, status.as_str(), started],
            )?;
            add_timeline(tx, &name, now, "status", &what, Some(&detail))?;
            queue_report(tx, &name, &report, now)
        })?;
        Ok(())
    }

    // ---- running a flight ----

    fn advance_flight(
        &mut self,
        row: FlightRow,
        now: Timestamp,
    ) -> Result<Option<Timestamp>, Error> {
        let name = row.studyname.clone();
        let flight = match Flight::from_json(&row.spec) {
            Ok(f) => f,
            Err(d) => {
                let why = format!(
                    "its stored spec no longer validates: {}",
                    d.iter()
                        .map(|x| x.message.clone())
                        .collect::<Vec<_>>()
                        .join("; ")
                );
                self.end_flight(&name, Status::Failed, &why, None, now)?;
                return Ok(None);
            }
        };
        if let Some(end) = &flight.end_by {
            if now >= end.at {
                self.end_flight(
                    &name,
                    Status::Expired,
                    &format!("endBy {} passed before the flight completed", end.at),
                    None,
                    now,
                )?;
                return Ok(None);
            }
        }
        let fuse_at = match (&flight.fuse, row.started_at) {
            (Some(f), Some(s)) => Some(s.plus(f.clone())),
            _ => None,
        };
        if let Some(at) = fuse_at {
            if now >= at {
                let fuse = flight
                    .fuse
                    .as_ref()
                    .map(|f| serde_json::to_value(f).unwrap_or_default().to_string())
                    .unwrap_or_default();
                self.end_flight(
                    &name,
                    Status::Timedout,
                    &format!("the fuse of {fuse} burnt out at {at} before the flight completed"),
                    None,
                    now,
                )?;
                return Ok(None);
            }
        }
        let deadline = min_wake(flight.end_by.as_ref().map(|e| e.at), fuse_at);
        let nodes = self
            .journal
            .nodes(&name)?
            .into_iter()
            .filter_map(|(p, v)| serde_json::from_value::<Node>(v).ok().map(|n| (p, n)))
            .collect();
        let mut cx = Ctx {
            name: name.clone(),
            flight,
            row,
            nodes,
            now,
        };
        let plan: Vec<Entry> = cx.flight.plan_for(cx.row.arm.as_deref()).to_vec();
        loop {
            let step = cx.row.step as usize;
            if step >= plan.len() {
                self.end_flight(
                    &name,
                    Status::Completed,
                    "every step of the flightplan resolved true",
                    Some(plan.len() as u64),
                    now,
                )?;
                return Ok(None);
            }
            match self.advance_entry(&mut cx, &plan[step], &step.to_string())? {
                Outcome::True => {
                    let next = step as u64 + 1;
                    if (next as usize) < plan.len() {
                        let report = self.report_json(&cx, Status::Running, next, None);
                        self.journal.write("step", |tx| {
                            tx.execute(
                                "UPDATE flights SET step = ?2 WHERE studyname = ?1",
                                params![name, next as i64],
                            )?;
                            queue_report(tx, &name, &report, now)
                        })?;
                    }
                    cx.row.step = next;
                }
                Outcome::False(why) => {
                    self.end_flight(
                        &name,
                        Status::Declined,
                        &format!("step {step}: {why}"),
                        None,
                        now,
                    )?;
                    return Ok(None);
                }
                Outcome::Failed(why) => {
                    self.end_flight(
                        &name,
                        Status::Failed,
                        &format!("step {step}: {why}"),
                        None,
                        now,
                    )?;
                    return Ok(None);
                }
                Outcome::Pending(w) => return Ok(min_wake(w, deadline)),
            }
        }
    }

    fn report_json(&self, cx: &Ctx, status: Status, step: u64, detail: Option<Value>) -> Value {
        json!({"flight": cx.name, "version": cx.row.version, "arm": cx.row.arm, "status": status, "step": step, "at": cx.now.to_rfc3339(), "detail": detail})
    }

    fn advance_entry(&mut self, cx: &mut Ctx, entry: &Entry, path: &str) -> Result<Outcome, Error> {
        match entry {
            Entry::Directive(d) => self.advance_directive(cx, d, path),
            Entry::Parallel(list) => {
                let mut wake = None;
                let mut all = true;
                for (i, e) in list.iter().enumerate() {
                    match self.advance_entry(cx, e, &format!("{path}.{i}"))? {
                        Outcome::True => {}
                        Outcome::Pending(w) => {
                            all = false;
                            wake = min_wake(wake, w);
                        }
                        // One branch false or failed decides the list; the flight ends and
                        // the others' effects are undone with everything else.
                        other => return Ok(other),
                    }
                }
                Ok(if all {
                    Outcome::True
                } else {
                    Outcome::Pending(wake)
                })
            }
        }
    }

    /// The template variables of a flight.
    fn lookup<'a>(&'a self, cx: &'a Ctx) -> impl Fn(&str) -> Option<String> + 'a {
        move |name: &str| {
            let arm = cx
                .row
                .arm
                .as_deref()
                .and_then(|a| cx.flight.arms.iter().find(|x| x.name == a));
            if let Some(v) = arm.and_then(|a| a.variables.get(name)) {
                return Some(v.render());
            }
            if let Some(v) = cx.flight.variables.get(name) {
                return Some(v.render());
            }
            match name {
                "studyname" => Some(cx.name.clone()),
                "version" => Some(cx.row.version.to_string()),
                "arm" => Some(cx.row.arm.clone().unwrap_or_default()),
                "starttime" => cx.row.started_at.map(|t| t.to_rfc3339()),
                "status" => Some(
                    cx.row
                        .status_line
                        .clone()
                        .unwrap_or_else(|| cx.row.status.clone()),
                ),
                "step" => Some(cx.row.step.to_string()),
                "personid" => Some(self.person.personid().to_string()),
                "os" | "channel" | "locale" | "appversion" => self.person.text(name),
                other => other
                    .strip_prefix("person.")
                    .and_then(|k| self.person.text(k)),
            }
        }
    }

    /// Renders a template; variables without a value render empty and are noted in the log.
    fn render(&mut self, cx: &Ctx, template: &str, escape: Escape) -> Result<String, Error> {
        let r = render(template, &self.lookup(cx), escape);
        self.note_missing(cx, &r.missing)?;
        Ok(r.text)
    }

    fn render_data(&mut self, cx: &Ctx, data: &Value) -> Result<Value, Error> {
        let mut missing = Vec::new();
        let v = render_json(data, &self.lookup(cx), &mut missing);
        self.note_missing(cx, &missing)?;
        Ok(v)
    }

    fn note_missing(&mut self, cx: &Ctx, missing: &[String]) -> Result<(), Error> {
        if missing.is_empty() {
            return Ok(());
        }
        let names = missing
            .iter()
            .map(|m| format!("{{{{{m}}}}}"))
            .collect::<Vec<_>>()
            .join(", ");
        self.journal.note(
            &cx.name,
            cx.now,
            "template",
            &format!("no value for {names} in this person's context: rendered empty"),
            None,
        )
    }

    fn save_node(
        &mut self,
        cx: &mut Ctx,
        path: &str,
        node: Node,
        what: &str,
        extra: impl FnOnce(&Transaction) -> rusqlite::Result<()>,
    ) -> Result<(), Error> {
        let text = serde_json::to_string(&node).unwrap_or_default();
        let name = cx.name.clone();
        self.journal.write(what, |tx| {
            tx.execute(
                "INSERT INTO nodes (flight, path, state) VALUES (?1, ?2, ?3) ON CONFLICT(flight, path) DO UPDATE SET state = excluded.state",
                params![name, path, text],
            )?;
            extra(tx)
        })?;
        cx.nodes.insert(path.to_string(), node);
        Ok(())
    }

    /// Resolves a directive, with a timeline line, in one write.
    fn resolve(
        &mut self,
        cx: &mut Ctx,
        path: &str,
        mut node: Node,
        res: Res,
        what: &str,
        extra: impl FnOnce(&Transaction) -> rusqlite::Result<()>,
    ) -> Result<Outcome, Error> {
        node.res = Some(res);
        node.why = Some(what.to_string());
        let name = cx.name.clone();
        let now = cx.now;
        let kind = match res {
            Res::True => "step",
            Res::False => "declined",
            Res::Failed => "failed",
        };
        let line = format!("step {path}: {what}");
        self.save_node(cx, path, node, "resolve", |tx| {
            extra(tx)?;
            add_timeline(tx, &name, now, kind, &line, None)
        })?;
        Ok(match res {
            Res::True => Outcome::True,
            Res::False => Outcome::False(what.to_string()),
            Res::Failed => Outcome::Failed(what.to_string()),
        })
    }

    /// Journals an effect's intent, and points the step at it, in one write before the effect
    /// happens. `log` adds a timeline line in the same write (a request being sent).
    fn intent(
        &mut self,
        cx: &mut Ctx,
        path: &str,
        node: Node,
        kind: &str,
        spec: Value,
        summary: &str,
    ) -> Result<(i64, Node), Error> {
        self.intent_logged(cx, path, node, kind, spec, summary, None)
    }

    #[allow(clippy::too_many_arguments)]
    fn intent_logged(
        &mut self,
        cx: &mut Ctx,
        path: &str,
        node: Node,
        kind: &str,
        spec: Value,
        summary: &str,
        log: Option<(&str, String, Value)>,
    ) -> Result<(i64, Node), Error> {
        let name = cx.name.clone();
        let now = cx.now;
        let spec_text = spec.to_string();
        let (id, node) = self.journal.write("intent", |tx| {
            tx.execute(
                "INSERT INTO effects (flight, path, kind, phase, spec, summary, at) VALUES (?1, ?2, ?3, 'intent', ?4, ?5, ?6)",
                params![name, path, kind, spec_text, summary, now.0],
            )?;
            let id = tx.last_insert_rowid();
            let node = Node { effect: Some(id), ..node };
            tx.execute(
                "INSERT INTO nodes (flight, path, state) VALUES (?1, ?2, ?3) ON CONFLICT(flight, path) DO UPDATE SET state = excluded.state",
                params![name, path, serde_json::to_string(&node).unwrap_or_default()],
            )?;
            if let Some((k, what, detail)) = &log {
                add_timeline(tx, &name, now, k, what, Some(detail))?;
            }
            Ok((id, node))
        })?;
        cx.nodes.insert(path.to_string(), node.clone());
        Ok((id, node))
    }

    /// The effect of a step that was journaled but not finished (after a crash).
    fn pending_effect(&self, node: &Node) -> Result<Option<crate::journal::EffectRow>, Error> {
        match node.effect {
            Some(id) => Ok(self
                .journal
                .effect(id)?
                .filter(|e| e.phase == phase::INTENT)),
            None => Ok(None),
        }
    }

    fn key(cx: &Ctx, effect: i64) -> String {
        format!("{}.{effect}", cx.name)
    }

    fn advance_directive(
        &mut self,
        cx: &mut Ctx,
        d: &Directive,
        path: &str,
    ) -> Result<Outcome, Error> {
        let node = match cx.nodes.get(path) {
            Some(n) => n.clone(),
            None => {
                let mark = self.journal.last_event_id()?;
                let n = Node {
                    started: cx.now.0,
                    mark: Some(mark),
                    ..Node::default()
                };
                let what = format!("step {path}: {}", d.action());
                let (name, now) = (cx.name.clone(), cx.now);
                self.save_node(cx, path, n.clone(), "start step", |tx| {
                    add_timeline(tx, &name, now, "begin", &what, None)
                })?;
                n
            }
        };
        match node.res {
            Some(Res::True) => return Ok(Outcome::True),
            Some(Res::False) => return Ok(Outcome::False(node.why.clone().unwrap_or_default())),
            Some(Res::Failed) => return Ok(Outcome::Failed(node.why.clone().unwrap_or_default())),
            None => {}
        }
        match d {
            Directive::Wait(w) => {
                let at = match (&w.until, &w.for_) {
                    (Some(u), _) => u.at,
                    (None, Some(f)) => Timestamp(node.started).plus(f.clone()),
                    (None, None) => cx.now,
                };
                if cx.now >= at {
                    self.resolve(
                        cx,
                        path,
                        node,
                        Res::True,
                        &format!("waited until {at}"),
                        |_| Ok(()),
                    )
                } else {
                    Ok(Outcome::Pending(Some(at)))
                }
            }
            Directive::Log(t) | Directive::Message(t) => {
                // The step's own line in the timeline is the log entry.
                let text = self.render(cx, &t.text, Escape::None)?;
                let what = format!("{}: {text}", d.action());
                self.resolve(cx, path, node, Res::True, &what, |_| Ok(()))
            }
            Directive::Status(t) => {
                let text = self.render(cx, &t.text, Escape::None)?;
                let name = cx.name.clone();
                cx.row.status_line = Some(text.clone());
                self.resolve(
                    cx,
                    path,
                    node,
                    Res::True,
                    &format!("status: {text}"),
                    |tx| {
                        tx.execute(
                            "UPDATE flights SET status_line = ?2 WHERE studyname = ?1",
                            params![name, text],
                        )?;
                        Ok(())
                    },
                )
            }
            Directive::Observe(o) => {
                let topic = self.render(cx, &o.topic, Escape::None)?;
                let subject = match &o.subject {
                    Some(s) => Some(self.render(cx, s, Escape::None)?),
                    None => None,
                };
                let seen = self
                    .journal
                    .events_after(node.mark.unwrap_or(0), &topic)?
                    .into_iter()
                    .filter(|e| subject.is_none() || e.subject == subject)
                    .count() as u64;
                if seen >= o.count {
                    let what = format!(
                        "observed `{topic}`{} {seen} time(s)",
                        subject.map(|s| format!(" `{s}`")).unwrap_or_default()
                    );
                    self.resolve(cx, path, node, Res::True, &what, |_| Ok(()))
                } else {
                    Ok(Outcome::Pending(None))
                }
            }
            Directive::Notify(n) => {
                let topic = self.render(cx, &n.topic, Escape::None)?;
                let subject = match &n.subject {
                    Some(s) => Some(self.render(cx, s, Escape::None)?),
                    None => None,
                };
                let data = match &n.data {
                    Some(x) => Some(self.render_data(cx, x)?),
                    None => None,
                };
                let (id, node) = match self.pending_effect(&node)? {
                    Some(e) => (
                        e.id,
                        Node {
                            effect: Some(e.id),
                            ..node
                        },
                    ),
                    None => {
                        let spec = json!({"topic": topic, "subject": subject, "data": data});
                        self.intent(
                            cx,
                            path,
                            node,
                            "notify",
                            spec,
                            &format!("notified the application: {topic}"),
                        )?
                    }
                };
                let key = Pilot::key(cx, id);
                self.faults().point("host notify")?;
                self.host
                    .notify(&key, &topic, subject.as_deref(), data.as_ref())?;
                let now = cx.now;
                self.resolve(
                    cx,
                    path,
                    node,
                    Res::True,
                    &format!("delivered `{topic}` to the application"),
                    |tx| mark_done(tx, id, now),
                )
            }
            Directive::Feature(f) => {
                let (id, node, spec) = match self.pending_effect(&node)? {
                    Some(e) => (
                        e.id,
                        Node {
                            effect: Some(e.id),
                            ..node
                        },
                        e.spec,
                    ),
                    None => {
                        let prior = self.host.feature_get(&f.id)?;
                        let spec = json!({"id": f.id, "value": Value::Object(f.value.clone()), "prior": prior});
                        let (id, node) = self.intent(
                            cx,
                            path,
                            node,
                            "feature",
                            spec.clone(),
                            &format!("set feature `{}`", f.id),
                        )?;
                        (id, node, spec)
                    }
                };
                self.faults().point("host feature")?;
                self.host.feature_set(&f.id, spec.get("value"))?;
                let now = cx.now;
                let what = format!(
                    "set feature `{}` to {} (was {})",
                    f.id,
                    Value::Object(f.value.clone()),
                    spec.get("prior")
                        .filter(|p| !p.is_null())
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| "unset".into())
                );
                self.resolve(cx, path, node, Res::True, &what, |tx| {
                    mark_done(tx, id, now)
                })
            }
            Directive::External(x) => self.external(cx, x, path, node),
            Directive::Ping(p) => {
                let url = self.render(cx, &p.url, Escape::Url)?;
                let body = match &p.data {
                    Some(d) => Some(self.render_data(cx, d)?),
                    None => None,
                };
                self.request_step(
                    cx,
                    path,
                    node,
                    Outgoing {
                        kind: "ping",
                        method: p.method.as_str().into(),
                        url,
                        body,
                    },
                )
            }
            Directive::Addon(a) => self.addon(cx, a, path, node),
            Directive::Instrument(i) => self.instrument(cx, i, path, node),
        }
    }

    /// Puts a prompt in the message center (with the step's state, in one write).
    fn create_prompt(
        &mut self,
        cx: &mut Ctx,
        path: &str,
        mut node: Node,
        p: NewPrompt,
    ) -> Result<Node, Error> {
        let NewPrompt {
            kind,
            title,
            text,
            url,
            wait,
            expires,
        } = p;
        let url = url.as_deref();
        let (name, now) = (cx.name.clone(), cx.now);
        let id = self.journal.write("prompt", |tx| {
            tx.execute(
                "INSERT INTO prompts (flight, path, type, title, text, url, wait, state, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?9)",
                params![name, path, kind, title, text, url, wait as i64, now.0, expires.map(|e| e.0)],
            )?;
            let id = tx.last_insert_rowid();
            node.prompt = Some(id);
            tx.execute(
                "INSERT INTO nodes (flight, path, state) VALUES (?1, ?2, ?3) ON CONFLICT(flight, path) DO UPDATE SET state = excluded.state",
                params![name, path, serde_json::to_string(&node).unwrap_or_default()],
            )?;
            add_timeline(tx, &name, now, "prompt", &format!("prompt {id} ({kind}) \"{title}\" put in the message center"), url.map(|u| json!({"url": u})).as_ref())?;
            Ok(id)
        })?;
        node.prompt = Some(id);
        cx.nodes.insert(path.to_string(), node.clone());
        Ok(node)
    }

    fn external(
        &mut self,
        cx: &mut Ctx,
        x: &External,
        path: &str,
        node: Node,
    ) -> Result<Outcome, Error> {
        let node = match node.prompt {
            Some(_) => node,
            None => {
                let title = self.render(cx, &x.title, Escape::None)?;
                let text = self.render(cx, &x.text, Escape::None)?;
                let url = match &x.url {
                    Some(u) => Some(self.render(cx, u, Escape::Url)?),
                    None => None,
                };
                let expires = x.expires.as_ref().map(|e| cx.now.plus(e.clone()));
                let wait = x.wait_for.is_some();
                let title2 = title.clone();
                let spec = NewPrompt {
                    kind: x.kind.as_str(),
                    title: title2,
                    text,
                    url,
                    wait,
                    expires,
                };
                let node = self.create_prompt(cx, path, node, spec)?;
                if !wait {
                    return self.resolve(
                        cx,
                        path,
                        node,
                        Res::True,
                        &format!("showed {} \"{title}\"", x.kind.as_str()),
                        |_| Ok(()),
                    );
                }
                node
            }
        };
        self.await_answer(cx, path, node, "the prompt")
    }

    /// A step waiting for the person's answer to its prompt.
    fn await_answer(
        &mut self,
        cx: &mut Ctx,
        path: &str,
        node: Node,
        what: &str,
    ) -> Result<Outcome, Error> {
        let Some(p) = node
            .prompt
            .and_then(|id| self.journal.prompt(id).ok().flatten())
        else {
            return Ok(Outcome::Failed(format!(
                "{what} is missing from the message center"
            )));
        };
        match p.state.as_str() {
            prompt_state::OK => self.resolve(
                cx,
                path,
                node,
                Res::True,
                &format!("the person said ok to \"{}\"", p.title),
                |_| Ok(()),
            ),
            prompt_state::NO => self.resolve(
                cx,
                path,
                node,
                Res::False,
                &format!("the person said no to \"{}\"", p.title),
                |_| Ok(()),
            ),
            prompt_state::EXPIRED => self.resolve(
                cx,
                path,
                node,
                Res::False,
                &format!("\"{}\" expired unanswered", p.title),
                |_| Ok(()),
            ),
            prompt_state::WITHDRAWN => self.resolve(
                cx,
                path,
                node,
                Res::False,
                &format!("\"{}\" was withdrawn", p.title),
                |_| Ok(()),
            ),
            _ => Ok(Outcome::Pending(p.expires_at)),
        }
    }

    /// A request sent off the machine (ping, instrument upload): at most once per try, retried
    /// with backoff on network errors and 5xx.
    fn request_step(
        &mut self,
        cx: &mut Ctx,
        path: &str,
        node: Node,
        out: Outgoing,
    ) -> Result<Outcome, Error> {
        let Outgoing {
            kind,
            method,
            url,
            body,
        } = out;
        let (method, url) = (method.as_str(), url.as_str());
        if let Some(e) = self.pending_effect(&node)? {
            // The pilot stopped while this request was being sent: it may or may not have
            // arrived. Requests are never repeated, so take it as sent.
            let now = cx.now;
            let what =
                format!("{method} {url} may have been sent when the pilot stopped; not repeated");
            return self.resolve(cx, path, node, Res::True, &what, |tx| {
                tx.execute("UPDATE effects SET phase = 'done', done_at = ?2, summary = summary || ' (outcome unknown: the pilot stopped)' WHERE id = ?1", params![e.id, now.0])?;
                Ok(())
            });
        }
        if let Some(at) = node.retry_at {
            if cx.now.0 < at {
                return Ok(Outcome::Pending(Some(Timestamp(at))));
            }
        }
        let spec =
            json!({"method": method, "url": url, "body": body, "attempt": node.attempts + 1});
        let detail = json!({"method": method, "url": url, "body": body});
        let log = Some(("request", format!("{method} {url}"), detail));
        let (id, mut node) =
            self.intent_logged(cx, path, node, kind, spec, &format!("{method} {url}"), log)?;
        let mut headers = vec![("Idempotency-Key".to_string(), Pilot::key(cx, id))];
        let bytes = body.as_ref().map(|b| {
            headers.push(("Content-Type".into(), "application/json".into()));
            b.to_string().into_bytes()
        });
        self.faults().point("send")?;
        let result = self.net.send(&Request {
            method: method.into(),
            url: url.into(),
            headers,
            body: bytes,
            answer: Answer::Status,
        });
        let now = cx.now;
        node.effect = None;
        node.attempts += 1;
        let (retry, why) = match result {
            Ok(r) if (200..300).contains(&r.status) => {
                return self.resolve(
                    cx,
                    path,
                    node,
                    Res::True,
                    &format!("{method} {url} answered {}", r.status),
                    |tx| mark_done(tx, id, now),
                );
            }
            Ok(r) if r.status >= 500 => (true, format!("{method} {url} answered {}", r.status)),
            Ok(r) => (false, format!("{method} {url} answered {}", r.status)),
            Err(e) => (true, format!("{method} {url} failed: {e}")),
        };
        if retry && node.attempts < MAX_ATTEMPTS {
            let at = now.0 + backoff_ms(node.attempts);
            node.retry_at = Some(at);
            let line = format!(
                "step {path}: {why}; trying again at {} (try {} of {MAX_ATTEMPTS})",
                Timestamp(at),
                node.attempts + 1
            );
            let name = cx.name.clone();
            self.save_node(cx, path, node, "retry", |tx| {
                mark_failed(tx, id, now)?;
                add_timeline(tx, &name, now, "retry", &line, None)
            })?;
            return Ok(Outcome::Pending(Some(Timestamp(at))));
        }
        let why = if retry {
            format!("{why}; gave up after {} tries", node.attempts)
        } else {
            why
        };
        self.resolve(cx, path, node, Res::Failed, &why, |tx| {
            mark_failed(tx, id, now)
        })
    }

    fn addon(&mut self, cx: &mut Ctx, a: &Addon, path: &str, node: Node) -> Result<Outcome, Error> {
        let pending = self.pending_effect(&node)?;
        if pending.is_none() {
            let present = self.host.addon_present(&a.id)?;
            let nothing = match a.op {
                AddonOp::Uninstall if !present => Some(format!(
                    "add-on `{}` is not installed: nothing to uninstall",
                    a.id
                )),
                AddonOp::Ensure if present => Some(format!(
                    "add-on `{}` is already installed: left as it is",
                    a.id
                )),
                _ => None,
            };
            if let Some(what) = nothing {
                return self.resolve(cx, path, node, Res::True, &what, |_| Ok(()));
            }
            if a.permission == Permission::Warn {
                let node = match node.prompt {
                    Some(_) => node,
                    None => {
                        let verb = if a.op == AddonOp::Uninstall {
                            "Remove"
                        } else {
                            "Install"
                        };
                        let title = format!("{verb} the add-on {}?", a.id);
                        let text = match &a.msg {
                            Some(m) => self.render(cx, m, Escape::None)?,
                            None => format!(
                                "The study {} would like to {} the add-on {}.",
                                cx.name,
                                verb.to_lowercase(),
                                a.id
                            ),
                        };
                        let spec = NewPrompt {
                            kind: "addon",
                            title,
                            text,
                            url: None,
                            wait: true,
                            expires: None,
                        };
                        self.create_prompt(cx, path, node, spec)?
                    }
                };
                let prompt = node
                    .prompt
                    .and_then(|id| self.journal.prompt(id).ok().flatten());
                let Some(p) = prompt else {
                    return self.resolve(
                        cx,
                        path,
                        node,
                        Res::Failed,
                        "the add-on's permission prompt is missing from the message center",
                        |_| Ok(()),
                    );
                };
                match p.state.as_str() {
                    prompt_state::OK => {}
                    prompt_state::PENDING | prompt_state::LATER => {
                        return Ok(Outcome::Pending(p.expires_at))
                    }
                    other => {
                        let what = format!("the person did not agree to \"{}\" ({other}); nothing was installed or removed", p.title);
                        return self.resolve(cx, path, node, Res::False, &what, |_| Ok(()));
                    }
                }
            }
        }
        let node = cx.nodes.get(path).cloned().unwrap_or_default();
        if a.op == AddonOp::Uninstall {
            let (id, node) = match pending {
                Some(e) => (e.id, node),
                None => self.intent(
                    cx,
                    path,
                    node,
                    "addon-uninstall",
                    json!({"id": a.id}),
                    &format!("uninstalled add-on `{}`", a.id),
                )?,
            };
            let key = Pilot::key(cx, id);
            self.faults().point("host uninstall")?;
            self.host.addon_uninstall(&key, &a.id)?;
            let now = cx.now;
            return self.resolve(
                cx,
                path,
                node,
                Res::True,
                &format!(
                    "uninstalled add-on `{}` (kept aside to put back on undo)",
                    a.id
                ),
                |tx| mark_done(tx, id, now),
            );
        }
        // Install or ensure: get the package and check it before anything is installed.
        let (pkg, sha, source, downloaded) = match self.fetch_package(cx, a, path)? {
            Ok(x) => x,
            Err(outcome) => {
                let node = cx.nodes.get(path).cloned().unwrap_or(node);
                return match outcome {
                    Outcome::Failed(why) => {
                        self.resolve(cx, path, node, Res::Failed, &why, |_| Ok(()))
                    }
                    other => Ok(other),
                };
            }
        };
        let id = match pending {
            Some(e) => e.id,
            None => {
                let spec = json!({"id": a.id, "sha256": sha, "source": source, "op": a.op});
                self.intent(
                    cx,
                    path,
                    node.clone(),
                    "addon-install",
                    spec,
                    &format!("installed add-on `{}` from {source}", a.id),
                )?
                .0
            }
        };
        let node = cx.nodes.get(path).cloned().unwrap_or(node);
        let key = Pilot::key(cx, id);
        self.faults().point("host install")?;
        let result = self.host.addon_install(&key, &a.id, &pkg, &sha);
        if downloaded {
            let _ = std::fs::remove_file(&pkg);
            let _ = std::fs::remove_dir(self.profile.join("downloads"));
        }
        let now = cx.now;
        match result {
            Ok(()) => {
                let what = format!("installed add-on `{}` from {source} (sha256 {sha})", a.id);
                if a.permission == Permission::Notify {
                    let text = match &a.msg {
                        Some(m) => self.render(cx, m, Escape::None)?,
                        None => format!("The study {} installed the add-on {}.", cx.name, a.id),
                    };
                    let title = format!("Add-on {} installed", a.id);
                    let spec = NewPrompt {
                        kind: "message",
                        title,
                        text,
                        url: None,
                        wait: false,
                        expires: None,
                    };
                    let node = self.create_prompt(cx, path, node, spec)?;
                    return self.resolve(cx, path, node, Res::True, &what, |tx| {
                        mark_done(tx, id, now)
                    });
                }
                self.resolve(cx, path, node, Res::True, &what, |tx| {
                    mark_done(tx, id, now)
                })
            }
            Err(Error::Package(msg)) => self.resolve(cx, path, node, Res::Failed, &msg, |tx| {
                mark_failed(tx, id, now)
            }),
            Err(e) => Err(e),
        }
    }

    /// The package of an add-on as a local file, checked against its sha256:
    /// `(file, sha256, source, downloaded)`, or how the step stands when it is not there yet.
    #[allow(clippy::type_complexity)]
    fn fetch_package(
        &mut self,
        cx: &mut Ctx,
        a: &Addon,
        path: &str,
    ) -> Result<Result<(PathBuf, String, String, bool), Outcome>, Error> {
        let (file, source, downloaded) = if let Some(p) = &a.path {
            (PathBuf::from(p), p.clone(), false)
        } else if let Some(u) = &a.url {
            if let Some(rest) = u.strip_prefix("file://") {
                (PathBuf::from(rest), u.clone(), false)
            } else {
                let sha = a.sha256.clone().unwrap_or_default();
                let dir = self.profile.join("downloads");
                let file = dir.join(format!("{sha}.pkg"));
                if !file.exists() {
                    let node = cx.nodes.get(path).cloned().unwrap_or_default();
                    if let Some(at) = node.retry_at {
                        if cx.now.0 < at {
                            return Ok(Err(Outcome::Pending(Some(Timestamp(at)))));
                        }
                    }
                    let (name, now) = (cx.name.clone(), cx.now);
                    self.journal.write("request log", |tx| {
                        add_timeline(
                            tx,
                            &name,
                            now,
                            "request",
                            &format!("GET {u}"),
                            Some(&json!({"method": "GET", "url": u})),
                        )
                    })?;
                    match package::fetch(self.net.as_ref(), u, &sha, &file) {
                        Ok(()) => {}
                        Err(
                            e @ (Error::Package(_)
                            | Error::Net {
                                retryable: false, ..
                            }),
                        ) => {
                            return Ok(Err(Outcome::Failed(format!(
                                "downloading add-on `{}` failed: {e}",
                                a.id
                            ))));
                        }
                        Err(e) if e.is_fatal() => return Err(e),
                        Err(e) => {
                            // A network error or 5xx: try again later, with backoff.
                            let why = format!("downloading add-on `{}` failed: {e}", a.id);
                            let mut node = node;
                            node.attempts += 1;
                            if node.attempts >= MAX_ATTEMPTS {
                                return Ok(Err(Outcome::Failed(format!(
                                    "{why}; gave up after {} tries",
                                    node.attempts
                                ))));
                            }
                            let at = now.0 + backoff_ms(node.attempts);
                            node.retry_at = Some(at);
                            let line =
                                format!("step {path}: {why}; trying again at {}", Timestamp(at));
                            self.save_node(cx, path, node, "retry", |tx| {
                                add_timeline(tx, &name, now, "retry", &line, None)
                            })?;
                            return Ok(Err(Outcome::Pending(Some(Timestamp(at)))));
                        }
                    }
                }
                (file, u.clone(), true)
            }
        } else {
            return Ok(Err(Outcome::Failed(format!(
                "add-on `{}` has no package (`url` or `path`)",
                a.id
            ))));
        };
        if !file.is_file() {
            return Ok(Err(Outcome::Failed(format!(
                "the package of add-on `{}` is not at {}; nothing was installed",
                a.id,
                file.display()
            ))));
        }
        let actual = match sha256_file(&file) {
            Ok(s) => s,
            Err(e) => return Ok(Err(Outcome::Failed(e.to_string()))),
        };
        if let Some(expected) = &a.sha256 {
            if !expected.eq_ignore_ascii_case(&actual) {
                if downloaded {
                    let _ = std::fs::remove_file(&file);
                    let _ = std::fs::remove_dir(self.profile.join("downloads"));
                }
                return Ok(Err(Outcome::Failed(format!(
                    "the package of add-on `{}` from {source} has sha256 {actual}, but the flight says {expected}; nothing was installed",
                    a.id
                ))));
            }
        }
        Ok(Ok((file, actual, source, downloaded)))
    }

    fn instrument(
        &mut self,
        cx: &mut Ctx,
        i: &Instrument,
        path: &str,
        node: Node,
    ) -> Result<Outcome, Error> {
        let end = Timestamp(node.started).plus(i.for_.clone());
        let mark = node.mark.unwrap_or(0);
        // The recording itself is the undoable effect: its undo deletes the recorded events.
        let recorded = self
            .journal
            .effects(&cx.name)?
            .into_iter()
            .any(|e| e.path == path && e.kind == "record");
        if !recorded {
            let spec = json!({"watch": i.watch, "after": mark, "until": end.0});
            let (id, _) = self.intent(
                cx,
                path,
                node.clone(),
                "record",
                spec,
                &format!("recorded events {:?}", i.watch),
            )?;
            let now = cx.now;
            self.journal
                .write("record done", |tx| mark_done(tx, id, now))?;
        }
        let node = cx.nodes.get(path).cloned().unwrap_or(node);
        if cx.now < end {
            return Ok(Outcome::Pending(Some(end)));
        }
        let mut events = Vec::new();
        for topic in &i.watch {
            for e in self.journal.events_after(mark, topic)? {
                if e.at <= end {
                    events.push(
                        json!({"topic": e.topic, "subject": e.subject, "at": e.at.to_rfc3339()}),
                    );
                }
            }
        }
        let url = self.render(cx, &i.upload, Escape::Url)?;
        let body = json!({"studyname": cx.name, "version": cx.row.version, "arm": cx.row.arm, "events": events});
        let mut node = node;
        node.effect = None;
        self.request_step(
            cx,
            path,
            node,
            Outgoing {
                kind: "upload",
                method: "POST".into(),
                url,
                body: Some(body),
            },
        )
    }

    // ---- ending and undo ----

    /// Ends a flight: final status, pending prompts withdrawn and a report queued, in one write;
    /// then undoes its effects.
    pub fn end_flight(
        &mut self,
        name: &str,
        status: Status,
        why: &str,
        step: Option<u64>,
        now: Timestamp,
    ) -> Result<(), Error> {
        let Some(row) = self.journal.flight(name)? else {
            return Ok(());
        };
        if row.status != "running" {
            return Ok(());
        }
        let step = step.unwrap_or(row.step);
        let report = json!({"flight": name, "version": row.version, "arm": row.arm, "status": status, "step": step, "at": now.to_rfc3339(), "detail": {"reason": why}});
        self.journal.write("end flight", |tx| {
            tx.execute(
                "UPDATE flights SET status = ?2, ended_at = ?3, reason = ?4, step = ?5 WHERE studyname = ?1",
                params![name, status.as_str(), now.0, why, step as i64],
            )?;
            let withdrawn = tx.execute("UPDATE prompts SET state = 'withdrawn', answered_at = ?2 WHERE flight = ?1 AND state IN ('pending', 'later')", params![name, now.0])?;
            add_timeline(tx, name, now, "end", &format!("ended {status}: {why}"), None)?;
            if withdrawn > 0 {
                add_timeline(tx, name, now, "undo", &format!("withdrew {withdrawn} pending prompt(s) from the message center"), None)?;
            }
            queue_report(tx, name, &report, now)
        })?;
        self.cleanup(name, now)
    }

    /// Undoes every effect of an ended flight, newest first, each exactly once; then marks the
    /// flight cleaned up. Safe to call again after a crash at any point.
    pub fn cleanup(&mut self, name: &str, now: Timestamp) -> Result<(), Error> {
        let effects = self.journal.effects(name)?;
        for e in effects.iter().rev() {
            if !matches!(
                e.phase.as_str(),
                phase::INTENT | phase::DONE | phase::UNDOING
            ) {
                continue;
            }
            if !matches!(
                e.kind.as_str(),
                "addon-install" | "addon-uninstall" | "feature" | "record"
            ) {
                continue;
            }
            if e.phase != phase::UNDOING {
                self.journal.write("undoing", |tx| {
                    tx.execute("UPDATE effects SET phase = 'undoing' WHERE id = ?1", [e.id])
                })?;
            }
            let key = format!("{name}.{}", e.id);
            let id = e
                .spec
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            // Another step (of any flight) changed the same feature or add-on after this one
            // and is still in effect: it keeps its change, and takes over what was there
            // before this one, to put back when it is undone in turn.
            if let Some(next) = self.journal.successor(e)? {
                let next_key = format!("{}.{}", next.flight, next.id);
                let what = format!(
                    "undid: {} (flight `{}` changed it since and keeps its change; what was there before goes back when that is undone)",
                    e.summary, next.flight
                );
                let mut next_spec = next.spec.clone();
                if e.kind == "feature" {
                    next_spec["prior"] = e.spec.get("prior").cloned().unwrap_or(Value::Null);
                } else {
                    self.faults().point("host handover")?;
                    self.host.addon_handover(&key, &next_key, &id)?;
                }
                let next_text = next_spec.to_string();
                self.journal.write("handover", |tx| {
                    if e.kind == "feature" {
                        tx.execute(
                            "UPDATE effects SET spec = ?2 WHERE id = ?1",
                            params![next.id, next_text],
                        )?;
                    }
                    tx.execute(
                        "UPDATE effects SET phase = 'undone', undone_at = ?2 WHERE id = ?1",
                        params![e.id, now.0],
                    )?;
                    add_timeline(tx, name, now, "undo", &what, None)
                })?;
                continue;
            }
            self.faults().point("host undo")?;
            let what = match e.kind.as_str() {
                "addon-install" => {
                    self.host.addon_undo_install(&key, &id)?;
                    format!(
                        "undid: {} (removed it, and put back what was there before)",
                        e.summary
                    )
                }
                "addon-uninstall" => {
                    self.host.addon_undo_uninstall(&key, &id)?;
                    format!("undid: {} (put it back)", e.summary)
                }
                "feature" => {
                    let prior = e.spec.get("prior").filter(|p| !p.is_null());
                    self.host.feature_set(&id, prior)?;
                    format!(
                        "undid: {} (restored {})",
                        e.summary,
                        prior
                            .map(|p| p.to_string())
                            .unwrap_or_else(|| "unset".into())
                    )
                }
                _ => {
                    let after = e.spec.get("after").and_then(Value::as_i64).unwrap_or(0);
                    let until = e.spec.get("until").and_then(Value::as_i64).unwrap_or(0);
                    let topics: Vec<String> = e
                        .spec
                        .get("watch")
                        .and_then(|w| serde_json::from_value(w.clone()).ok())
                        .unwrap_or_default();
                    let (journal, topics2) = (&mut self.journal, topics.clone());
                    journal.write("delete recording", |tx| {
                        for t in &topics2 {
                            tx.execute(
                                "DELETE FROM events WHERE topic = ?1 AND id > ?2 AND at <= ?3",
                                params![t, after, until],
                            )?;
                        }
                        Ok(())
                    })?;
                    format!("undid: {} (deleted the recorded events)", e.summary)
                }
            };
            self.journal.write("undone", |tx| {
                tx.execute(
                    "UPDATE effects SET phase = 'undone', undone_at = ?2 WHERE id = ?1",
                    params![e.id, now.0],
                )?;
                add_timeline(tx, name, now, "undo", &what, None)
            })?;
        }
        self.journal.write("cleaned up", |tx| {
            tx.execute(
                "UPDATE flights SET cleaned_up = 1 WHERE studyname = ?1",
                [name],
            )?;
            add_timeline(
                tx,
                name,
                now,
                "cleanup",
                "cleaned up: everything the flight did is undone",
                None,
            )
        })?;
        Ok(())
    }
}

fn mark_done(tx: &Transaction, id: i64, now: Timestamp) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE effects SET phase = 'done', done_at = ?2 WHERE id = ?1 AND phase = 'intent'",
        params![id, now.0],
    )?;
    Ok(())
}

fn mark_failed(tx: &Transaction, id: i64, now: Timestamp) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE effects SET phase = 'failed', done_at = ?2 WHERE id = ?1 AND phase = 'intent'",
        params![id, now.0],
    )?;
    Ok(())
}

/// Queues a status report in the outbox (its `seq` is the outbox row id).
pub(crate) fn queue_report(
    tx: &Transaction,
    flight: &str,
    report: &Value,
    now: Timestamp,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO outbox (flight, report, created_at) VALUES (?1, ?2, ?3)",
        params![flight, report.to_string(), now.0],
    )?;
    Ok(())
}

/// The path of the profile a pilot works in (for the host and downloads).
pub fn profile_of(p: &Pilot) -> &Path {
    &p.profile
}
