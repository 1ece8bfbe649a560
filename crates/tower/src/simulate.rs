//! The fleet simulation of a revision under review (docs/api.md#simulate): `testpilot
//! simulate`'s simulator (`testpilot_sim`, docs/simulate.md) run by the tower on the spec an
//! approver is asked to approve, beside the flights live now, so the approver sees its
//! reach, its overlaps and its load before approving.
//!
//! [`simulate`] is the one function the review page (`dashboard::review`) and
//! `POST /api/v1/flights/{studyname}/simulate` call; [`SimRequest`] is the one reading and
//! checking of their parameters.
//!
//! Invariants:
//! - Read-only: it reads the flight and the index in memory and never changes a flight, the
//!   audit log or the index.
//! - Bounded: clients, days and engine runs are capped ([`SimLimits`]), so are
//!   clients × flights (the targeting pass's work); it runs on a blocking thread on at
//!   most [`SimLimits::threads`] threads, at most [`SimLimits::concurrent`] at a time per
//!   tower (others are answered "busy" at once, never queued), and its answer is awaited at
//!   most [`SimLimits::timeout`]; a simulation no longer awaited (timeout, or the caller
//!   gone) is stopped between clients, which frees its place.
//! - Its scratch folder is made new, with a random name, 0700, and removed after.
//! - The population list is read and validated once, at start ([`Populations::load`]).

use crate::api::AppState;
use crate::error::{Error, Result};
use crate::lifecycle::RevisionState;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use testpilot_flight::index::Envelope;
use testpilot_flight::{Diagnostics, JsonPath};
use testpilot_sim::{load::Capacity, Config, Population, Report, SimFlight};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The name of the built-in population (`crates/sim/src/default-population.json`).
pub const BUILTIN: &str = "builtin";
/// The most population files a tower reads from `--populations`.
pub const MAX_POPULATION_FILES: usize = 64;

/// One population the tower offers.
#[derive(Debug, Clone)]
pub struct NamedPopulation {
    /// `builtin`, or the file's name without `.json`.
    pub name: String,
    /// Where it comes from: "built in" or the file's path.
    pub source: String,
    pub population: Population,
}

/// The populations a tower offers: the built-in one first, then the operator's files
/// sorted by name.
#[derive(Debug, Clone)]
pub struct Populations(Vec<NamedPopulation>);

impl Default for Populations {
    fn default() -> Self {
        Populations(vec![NamedPopulation {
            name: BUILTIN.into(),
            source: "built in".into(),
            population: Population::builtin(),
        }])
    }
}

/// A population's name: what a file may be called (`NAME.json`).
fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !name.starts_with('.')
}

impl Populations {
    /// The built-in population and every `*.json` file in `dir` (`--populations DIR`), each
    /// read with the simulator's own parser. A file that is not a valid population is an
    /// error naming the file and every problem's field, so a tower does not start with it.
    pub fn load(dir: &Path) -> Result<Populations> {
        let bad = |m: String| Error::Config(format!("--populations {}: {m}", dir.display()));
        let entries = std::fs::read_dir(dir).map_err(|e| bad(format!("cannot read it: {e}")))?;
        let mut files: Vec<PathBuf> = Vec::new();
        for e in entries {
            let p = e.map_err(|e| bad(format!("cannot read it: {e}")))?.path();
            if p.extension().and_then(|x| x.to_str()) == Some("json") && p.is_file() {
                files.push(p);
            }
        }
        files.sort();
        if files.len() > MAX_POPULATION_FILES {
            return Err(bad(format!(
                "{} population files; a tower offers at most {MAX_POPULATION_FILES}",
                files.len()
            )));
        }
        let mut all = Populations::default();
        for f in files {
            let name = f
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("")
                .to_string();
            let shown = f.display().to_string();
            if !name_ok(&name) {
                return Err(Error::Config(format!(
                    "{shown}: a population's file name must be letters, digits, `-`, `_` or `.` (at most 64) before `.json`"
                )));
            }
            if name == BUILTIN {
                return Err(Error::Config(format!(
                    "{shown}: `{BUILTIN}` is the built-in population's name; call the file something else"
                )));
            }
            let size = std::fs::metadata(&f)
                .map_err(|e| Error::Config(format!("{shown}: {e}")))?
                .len();
            let max = testpilot_sim::population::MAX_POPULATION_BYTES;
            if size > max as u64 {
                return Err(Error::Config(format!(
                    "{shown}: the population file is {size} bytes; the limit is {max}"
                )));
            }
            let text = std::fs::read(&f).map_err(|e| Error::Config(format!("{shown}: {e}")))?;
            let population =
                Population::from_text(&String::from_utf8_lossy(&text)).map_err(|d| {
                    let lines: Vec<String> = d
                        .iter()
                        .map(|x| format!("{shown}: {}: {}", x.path, x.message))
                        .collect();
                    Error::Config(format!(
                        "the population is not valid:\n{}",
                        lines.join("\n")
                    ))
                })?;
            all.0.push(NamedPopulation {
                name,
                source: shown,
                population,
            });
        }
        Ok(all)
    }

    pub fn all(&self) -> &[NamedPopulation] {
        &self.0
    }

    pub fn get(&self, name: &str) -> Option<&NamedPopulation> {
        self.0.iter().find(|p| p.name == name)
    }

    fn names(&self) -> String {
        let names: Vec<&str> = self.0.iter().map(|p| p.name.as_str()).collect();
        names.join(", ")
    }
}

/// The bounds of a simulation run by the tower.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimLimits {
    pub max_clients: u64,
    pub max_days: f64,
    /// Enrolled clients run through the pilot engine (about 1 ms of CPU each).
    pub max_runs: u64,
    /// Clients × flights (the revision and the live flights): the targeting pass's work,
    /// about 4 s of CPU for 10,000,000 (docs/simulate.md, "Speed").
    pub max_decisions: u64,
    /// Simulations at a time; more are answered "busy" (503).
    pub concurrent: usize,
    /// Threads per simulation.
    pub threads: usize,
    /// How long an answer is awaited.
    pub timeout: Duration,
}

impl Default for SimLimits {
    fn default() -> Self {
        SimLimits {
            max_clients: 1_000_000,
            max_days: 90.0,
            max_runs: 2_000,
            max_decisions: 10_000_000,
            concurrent: 1,
            threads: 2,
            timeout: Duration::from_secs(60),
        }
    }
}

/// What a tower's simulations may use.
#[derive(Debug, Clone, Default)]
pub struct SimConfig {
    pub populations: Arc<Populations>,
    pub limits: SimLimits,
}

/// The simulations running now: a slot each, taken without waiting.
pub struct Slots(Arc<Semaphore>);

impl Slots {
    pub fn new(n: usize) -> Slots {
        Slots(Arc::new(Semaphore::new(n)))
    }

    /// A slot, or `None` when every one is taken. Held until the simulation's thread ends.
    pub fn take(&self) -> Option<OwnedSemaphorePermit> {
        self.0.clone().try_acquire_owned().ok()
    }
}

/// What to simulate. Every field has a default. (Read by [`SimRequest::from_json`], which
/// names the field of every problem; the serde derive is for the schema.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct SimRequest {
    /// A population the tower offers (`builtin` or one from `--populations`; default
    /// `builtin`).
    pub population: String,
    /// Clients (default 100,000; 1 to 1,000,000, and clients × flights at most 10,000,000).
    pub clients: u64,
    /// Days of virtual time (default 30; more than 0, at most 90).
    pub days: f64,
    /// The seed: the same seed gives the same figures (default 1).
    pub seed: u64,
    /// Enrolled clients run through the pilot engine, a random sample (default 0: reach,
    /// overlaps and polling load only; at most 2,000).
    pub runs: u64,
    /// The revision meant; refused unless it is the one under review (default: that one).
    pub version: Option<u64>,
}

impl Default for SimRequest {
    fn default() -> Self {
        SimRequest {
            population: BUILTIN.into(),
            clients: 100_000,
            days: 30.0,
            seed: 1,
            runs: 0,
            version: None,
        }
    }
}

/// The fields of a request, as JSON (the API) or as text (the review page's form).
enum Raw<'a> {
    Json(&'a Value),
    Text(&'a str),
}

const FIELDS: [&str; 6] = ["population", "clients", "days", "seed", "runs", "version"];

impl SimRequest {
    /// Reads the API's body (`None`: every default), every problem at its field.
    pub fn from_json(body: Option<&Value>, c: &SimConfig) -> Result<SimRequest, Diagnostics> {
        let mut d = Diagnostics::default();
        let mut fields = BTreeMap::new();
        match body {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    if v.is_null() {
                        continue;
                    }
                    if FIELDS.contains(&k.as_str()) {
                        fields.insert(k.as_str(), Raw::Json(v));
                    } else {
                        d.push(
                            &JsonPath::root().key(k),
                            format!("unknown field; expected one of {}", FIELDS.join(", ")),
                        );
                    }
                }
            }
            Some(_) => d.push(
                &JsonPath::root(),
                format!("expected an object with {}", FIELDS.join(", ")),
            ),
        }
        SimRequest::read(fields, d, c)
    }

    /// Reads the review page's form (empty fields take their defaults; others are ignored).
    pub fn from_form(
        form: &BTreeMap<String, String>,
        c: &SimConfig,
    ) -> Result<SimRequest, Diagnostics> {
        let fields = form
            .iter()
            .filter(|(k, v)| FIELDS.contains(&k.as_str()) && !v.trim().is_empty())
            .map(|(k, v)| (k.as_str(), Raw::Text(v.trim())))
            .collect();
        SimRequest::read(fields, Diagnostics::default(), c)
    }

    /// The one check of every field, whichever way it came.
    fn read(
        fields: BTreeMap<&str, Raw>,
        mut d: Diagnostics,
        c: &SimConfig,
    ) -> Result<SimRequest, Diagnostics> {
        let l = &c.limits;
        let mut r = SimRequest::default();
        let at = |k: &str| JsonPath::root().key(k);
        let whole = |k: &str, d: &mut Diagnostics| -> Option<u64> {
            let x = match fields.get(k)? {
                Raw::Json(v) => v.as_u64(),
                Raw::Text(t) => t.parse().ok(),
            };
            if x.is_none() {
                d.push(&at(k), "must be a whole number, 0 or more");
            }
            x
        };
        if let Some(raw) = fields.get("population") {
            let text = match raw {
                Raw::Json(Value::String(s)) => Some(s.as_str()),
                Raw::Text(s) => Some(*s),
                Raw::Json(_) => None,
            };
            match text {
                Some(s) if c.populations.get(s).is_some() => r.population = s.to_string(),
                Some(s) => d.push(
                    &at("population"),
                    format!(
                        "this tower has no population `{}`; it has {}",
                        s.chars().take(80).collect::<String>(),
                        c.populations.names()
                    ),
                ),
                None => d.push(&at("population"), "must be a population's name"),
            }
        }
        if let Some(n) = whole("clients", &mut d) {
            if n == 0 || n > l.max_clients {
                d.push(
                    &at("clients"),
                    format!("must be between 1 and {}", l.max_clients),
                );
            }
            r.clients = n;
        }
        if let Some(raw) = fields.get("days") {
            let x = match raw {
                Raw::Json(v) => v.as_f64(),
                Raw::Text(t) => t.parse::<f64>().ok(),
            };
            match x {
                Some(x) if x > 0.0 && x <= l.max_days => r.days = x,
                _ => d.push(
                    &at("days"),
                    format!(
                        "must be a number of days, more than 0 and at most {}",
                        l.max_days
                    ),
                ),
            }
        }
        if let Some(n) = whole("seed", &mut d) {
            r.seed = n;
        }
        if let Some(n) = whole("runs", &mut d) {
            if n > l.max_runs {
                d.push(
                    &at("runs"),
                    format!(
                        "at most {} enrolled clients go through the pilot engine here; `testpilot simulate --runs` takes more",
                        l.max_runs
                    ),
                );
            }
            r.runs = n;
        }
        if fields.contains_key("version") {
            r.version = whole("version", &mut d);
        }
        if d.is_empty() {
            Ok(r)
        } else {
            Err(d)
        }
    }
}

/// A simulation's answer: the simulator's report (docs/simulate.md, "`--json`"), whose
/// first flight is the revision under review and the others the flights live beside it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Simulation {
    pub studyname: String,
    /// The revision simulated: the one under review.
    pub version: u64,
    pub population: String,
    /// The live flights simulated beside it (their overlaps with it are in the report).
    pub companions: Vec<String>,
    /// `testpilot simulate --json`'s object.
    #[schema(value_type = Object)]
    pub report: Report,
}

impl Simulation {
    /// The revision's figures in the report.
    pub fn flight(&self) -> Option<&testpilot_sim::report::FlightReport> {
        self.report
            .flights
            .iter()
            .find(|f| f.studyname == self.studyname)
    }
}

/// The flights of the index served now (signed by this tower, so its signature holds).
fn live_flights(s: &AppState) -> Vec<Value> {
    let doc = s.index.current();
    serde_json::from_slice::<Envelope>(&doc.body)
        .ok()
        .and_then(|e| e.verify(&doc.signed_by).ok())
        .map(|p| p.flights)
        .unwrap_or_default()
}

/// Simulates the revision of `name` under review (with `req`), beside the flights live
/// now. Errors: 404 no such flight, 409 nothing under review (or `req.version` is not the
/// one), 422 too much work (clients × flights), 503 busy or too slow.
pub async fn simulate(s: &AppState, name: &str, req: &SimRequest) -> Result<Simulation> {
    let c = &s.config.simulate;
    let population = c
        .populations
        .get(&req.population)
        .ok_or_else(|| Error::NotFound(format!("no population `{}`", req.population)))?
        .clone();
    let d = s
        .store
        .flight(name)
        .await?
        .ok_or_else(|| Error::NotFound(format!("there is no flight named `{name}`")))?;
    let latest = d.summary.latest_version;
    let rev = d
        .revisions
        .iter()
        .find(|r| r.version == latest && r.state == RevisionState::Review)
        .ok_or_else(|| {
            Error::Conflict(format!(
                "no revision of `{name}` is under review (the newest, v{latest}, is not); send it for review first"
            ))
        })?;
    if let Some(v) = req.version.filter(|v| *v != rev.version) {
        return Err(Error::Conflict(format!(
            "v{v} of `{name}` is not under review; v{} is",
            rev.version
        )));
    }
    let index = live_flights(s);
    let index_bytes = s.index.current().body.len() + rev.spec.to_string().len();
    let slot = s.simulations.take().ok_or_else(|| {
        Error::Busy(
            "the tower is running as many simulations as it allows at a time; try again in a few seconds"
                .into(),
        )
    })?;
    let spec = rev.spec.clone();
    let (version, limits, req) = (rev.version, c.limits, req.clone());
    let start = s.clock.now();
    let studyname = name.to_string();
    // Stops the simulation when this answer gives up waiting (timeout) or is dropped (the
    // caller went away): otherwise the thread would run on, holding the slot.
    let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
    let cancel = stop.0.clone();
    let job = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        run(
            &studyname,
            &spec,
            &index,
            population,
            &req,
            limits,
            start,
            index_bytes,
            cancel,
        )
        .map(|(companions, report)| Simulation {
            studyname,
            version,
            population: req.population.clone(),
            companions,
            report,
        })
    });
    match tokio::time::timeout(limits.timeout, job).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(Error::Internal(format!("the simulation failed: {e}"))),
        Err(_) => Err(Error::Busy(format!(
            "the simulation took longer than {} s; try fewer clients or engine runs",
            limits.timeout.as_secs()
        ))),
    }
}

/// Sets its flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A scratch folder for one simulation's stand-in add-on package: a new folder with a random
/// name, private to the tower's user (0700), made here and never taken over if something
/// already has that name (another local user cannot plant a link in it); removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch> {
        let name = hex::encode(&crate::auth::random_bytes()?[..12]);
        let path = std::env::temp_dir().join(format!("testpilot-tower-simulate-{name}"));
        let mut b = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(&path).map_err(|e| {
            Error::Internal(format!(
                "cannot make the simulation's scratch folder {}: {e}",
                path.display()
            ))
        })?;
        Ok(Scratch(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The simulation itself, on a blocking thread.
#[allow(clippy::too_many_arguments)]
fn run(
    name: &str,
    spec: &Value,
    index: &[Value],
    population: NamedPopulation,
    req: &SimRequest,
    limits: SimLimits,
    start: testpilot_flight::Timestamp,
    index_bytes: usize,
    cancel: Arc<AtomicBool>,
) -> Result<(Vec<String>, Report)> {
    let scratch = Scratch::new()?;
    let package = testpilot_sim::flights::stand_in_path(&scratch.0);
    let under_review = SimFlight::from_document(spec, &package).map_err(|d| {
        Error::Conflict(format!("the revision under review does not validate: {d}"))
    })?;
    let mut flights = vec![under_review];
    let mut left_out = Vec::new();
    for v in index {
        let other = v.get("studyname").and_then(Value::as_str).unwrap_or("?");
        if other == name {
            continue;
        }
        match SimFlight::from_document(v, &package) {
            Ok(f) if !flights.iter().any(|x| x.name() == f.name()) => flights.push(f),
            Ok(_) => {}
            Err(d) => left_out.push(format!(
                "live flight `{other}` is left out: it does not validate here ({d})"
            )),
        }
    }
    let decisions = req.clients.saturating_mul(flights.len() as u64);
    if decisions > limits.max_decisions {
        let mut d = Diagnostics::default();
        d.push(
            &JsonPath::root().key("clients"),
            format!(
                "{} clients × {} flights (this one and those live) is more than the {} decisions a tower simulates; give at most {} clients",
                req.clients,
                flights.len(),
                limits.max_decisions,
                limits.max_decisions / flights.len() as u64
            ),
        );
        return Err(Error::Invalid {
            message: "too many clients for the flights live now".into(),
            problems: d,
        });
    }
    let companions = flights[1..].iter().map(|f| f.name().to_string()).collect();
    let config = Config {
        population: population.population,
        flights,
        clients: req.clients,
        days: req.days,
        seed: req.seed,
        start,
        runs: Some(req.runs),
        poll_ms: 15 * 60_000,
        kills: Vec::new(),
        index_bytes,
        capacity: Capacity::default(),
        threads: limits.threads.max(1),
        scratch: scratch.0.clone(),
        cancel: Some(cancel),
    };
    let report = testpilot_sim::simulate(&config, &|_, _, _| {});
    drop(scratch);
    let mut report = report.map_err(Error::Internal)?;
    // The sample's size is a parameter here, not `--runs`: say it in the tower's words.
    report
        .warnings
        .retain(|w| !w.starts_with("outcomes are estimated"));
    if req.runs > 0 && report.engine.estimated {
        report.warnings.push(format!(
            "outcomes are estimated from {} of {} enrolled clients run through the pilot engine (95 % intervals in outcomeIntervals)",
            report.engine.runs, report.engine.enrolled_clients
        ));
    }
    report.warnings.extend(left_out);
    Ok((companions, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_problem_names_its_field() {
        let c = SimConfig::default();
        let bad = json!({"population": "nope", "clients": 0, "days": 400, "seed": -1,
                         "runs": 5000, "version": "x", "colour": 1});
        let d = SimRequest::from_json(Some(&bad), &c).unwrap_err();
        let paths: Vec<String> = d.iter().map(|x| x.path.to_string()).collect();
        for f in [
            "population",
            "clients",
            "days",
            "seed",
            "runs",
            "version",
            "colour",
        ] {
            assert!(paths.iter().any(|p| p == f), "{f} in {paths:?}");
        }
        assert_eq!(
            SimRequest::from_json(None, &c).unwrap(),
            SimRequest::default()
        );
        let form: BTreeMap<String, String> = [
            ("population", "builtin"),
            ("clients", "2000"),
            ("days", "7"),
            ("seed", ""),
            ("runs", "10"),
            ("csrf", "abc"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let r = SimRequest::from_form(&form, &c).unwrap();
        assert_eq!((r.clients, r.days, r.seed, r.runs), (2000, 7.0, 1, 10));
        let form: BTreeMap<String, String> =
            [("clients".to_string(), "1000001".to_string())].into();
        let d = SimRequest::from_form(&form, &c).unwrap_err();
        assert_eq!(d.iter().next().unwrap().path.to_string(), "clients");
    }

    #[test]
    fn a_bad_population_file_is_named_with_its_field() {
        let dir = std::env::temp_dir().join(format!("tp-pop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("good.json"), r#"{"os": {"linux": 1}}"#).unwrap();
        let p = Populations::load(&dir).unwrap();
        let names: Vec<&str> = p.all().iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["builtin", "good"]);
        std::fs::write(
            dir.join("bad.json"),
            r#"{"os": {"linux": 0.5}, "chanel": {}}"#,
        )
        .unwrap();
        let e = Populations::load(&dir).unwrap_err().to_string();
        assert!(e.contains("bad.json: os: the shares add up to"), "{e}");
        assert!(e.contains("bad.json: chanel: unknown field"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
