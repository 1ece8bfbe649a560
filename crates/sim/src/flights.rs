//! The flights of a simulation: validated specs, what their plans touch (add-ons, features,
//! topics), and the copy of each spec the simulated pilots run.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::Path;
use testpilot_flight::spec::{Directive, Entry, Permission};
use testpilot_flight::{copilot, Diagnostics, Flight};

/// A step of a plan that waits on events (`observe`) or records them (`instrument`).
#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    /// The step's path in the plan ("3", "3.1"), as the pilot journals it.
    pub path: String,
    pub topics: Vec<String>,
    /// An `observe` (the pilot must look again when an event comes) or an `instrument`
    /// (events are only counted when it ends).
    pub observe: bool,
    /// An `instrument` without `upload`: it streams its events to the tower.
    pub streams: bool,
}

/// One flight, ready to simulate.
#[derive(Debug, Clone)]
pub struct SimFlight {
    pub flight: Flight,
    /// The spec the simulated pilots get: the author's, with add-on packages replaced by a
    /// stand-in (see [`stand_in_packages`]).
    pub spec: Value,
    pub addons: BTreeSet<String>,
    pub features: BTreeSet<String>,
    /// Per arm (by index; one entry `None` for a flight without arms): the listeners.
    pub listeners: Vec<(Option<String>, Vec<Listener>)>,
    /// Whether a plan asks the person something and waits for the answer.
    pub asks: bool,
}

impl SimFlight {
    /// Reads and validates a spec. `package` is the stand-in package file (see
    /// [`stand_in_packages`]).
    pub fn new(v: &Value, package: &Path) -> Result<SimFlight, Diagnostics> {
        let flight = Flight::from_json(v)?;
        let mut addons = BTreeSet::new();
        let mut features = BTreeSet::new();
        let mut plans: Vec<(Option<String>, &[Entry])> = Vec::new();
        if flight.arms.is_empty() {
            plans.push((None, &flight.flightplan));
        } else {
            for a in &flight.arms {
                plans.push((Some(a.name.clone()), flight.plan_for(Some(&a.name))));
            }
        }
        let mut listeners = Vec::new();
        let mut asks = false;
        for (arm, plan) in &plans {
            let mut l = Vec::new();
            walk(plan, "", &mut |path, d| match d {
                Directive::Addon(a) => {
                    asks |= a.permission == Permission::Warn;
                    addons.insert(a.id.clone());
                }
                Directive::External(x) => asks |= x.wait_for.is_some(),
                Directive::Feature(f) => {
                    features.insert(f.id.clone());
                }
                Directive::Observe(o) => l.push(Listener {
                    path: path.to_string(),
                    topics: vec![o.topic.clone()],
                    observe: true,
                    streams: false,
                }),
                Directive::Instrument(i) => l.push(Listener {
                    path: path.to_string(),
                    topics: i.watch.clone(),
                    observe: false,
                    streams: i.upload.is_none(),
                }),
                _ => {}
            });
            listeners.push((arm.clone(), l));
        }
        let mut spec = v.clone();
        stand_in_packages(&mut spec, package);
        Ok(SimFlight {
            flight,
            spec,
            addons,
            features,
            listeners,
            asks,
        })
    }

    /// Reads a flight, or a copilot document (a top-level `copilot` key) as the flight it
    /// expands to.
    pub fn from_document(v: &Value, package: &Path) -> Result<SimFlight, Diagnostics> {
        if copilot::is_copilot(v) {
            let (_, flight) = copilot::expand_json(v)?;
            return SimFlight::new(&flight.to_json(), package);
        }
        SimFlight::new(v, package)
    }

    pub fn name(&self) -> &str {
        &self.flight.studyname
    }

    /// The listeners of the plan an arm runs.
    pub fn listeners_of(&self, arm: Option<&str>) -> &[Listener] {
        self.listeners
            .iter()
            .find(|(a, _)| a.as_deref() == arm)
            .or(self.listeners.first())
            .map(|(_, l)| l.as_slice())
            .unwrap_or(&[])
    }
}

fn walk(plan: &[Entry], prefix: &str, f: &mut dyn FnMut(&str, &Directive)) {
    for (i, e) in plan.iter().enumerate() {
        let path = if prefix.is_empty() {
            i.to_string()
        } else {
            format!("{prefix}.{i}")
        };
        match e {
            Entry::Directive(d) => f(&path, d),
            Entry::Parallel(list) => walk(list, &path, f),
        }
    }
}

/// The bytes of the stand-in package.
pub const STAND_IN: &[u8] = b"testpilot simulate: a stand-in add-on package\n";

/// Where a simulation keeps the stand-in package, in its scratch folder.
pub fn stand_in_path(scratch: &Path) -> std::path::PathBuf {
    scratch.join("stand-in-package.zip")
}

/// The sha256 of [`STAND_IN`].
pub fn stand_in_sha256() -> String {
    hex(&Sha256::digest(STAND_IN))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Add-on packages are not at hand in a simulation (nor should a million virtual machines
/// download them): every `addon` step that installs gets a stand-in package from a local
/// file with its sha256, the same id, permission and message, so the pilot goes through the
/// same prompts, journal entries and undo. Nothing else in the spec changes.
pub fn stand_in_packages(v: &mut Value, package: &Path) {
    let sha = stand_in_sha256();
    let path = package.to_string_lossy().to_string();
    let fix = |plan: &mut Value| fix_plan(plan, &path, &sha);
    if let Some(plan) = v.get_mut("flightplan") {
        fix(plan);
    }
    if let Some(Value::Array(arms)) = v.get_mut("arms") {
        for a in arms {
            if let Some(plan) = a.get_mut("flightplan") {
                fix(plan);
            }
        }
    }
}

fn fix_plan(plan: &mut Value, path: &str, sha: &str) {
    match plan {
        Value::Array(list) => list.iter_mut().for_each(|e| fix_plan(e, path, sha)),
        Value::Object(m) if m.get("action").and_then(Value::as_str) == Some("addon") => {
            let op = m.get("do").and_then(Value::as_str).unwrap_or("");
            if op != "uninstall" {
                m.remove("url");
                m.insert("path".into(), json!(path));
                m.insert("sha256".into(), json!(sha));
            }
        }
        _ => {}
    }
}
