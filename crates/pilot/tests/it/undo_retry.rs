//! An undo stuck on a host error is tried again with backoff and said so (flight log,
//! `cleanedUp` false, a report for the tower), never silently hangs, and does not hold up
//! other flights.

use crate::support::*;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use testpilot_flight::Timestamp;
use testpilot_pilot::engine::PilotConfig;
use testpilot_pilot::host::MemoryHost;
use testpilot_pilot::{Error, Faults, Host, Pilot};

/// A host whose `addon_undo_install` fails while `fails` is above zero (each failure counts
/// one down; `u32::MAX` fails for ever).
#[derive(Clone, Default)]
struct Flaky {
    inner: Arc<Mutex<MemoryHost>>,
    fails: Arc<AtomicU32>,
}

impl Host for Flaky {
    fn addon_present(&self, id: &str) -> Result<bool, Error> {
        self.inner.lock().unwrap().addon_present(id)
    }
    fn addon_install(&mut self, key: &str, id: &str, pkg: &Path, sha: &str) -> Result<(), Error> {
        self.inner.lock().unwrap().addon_install(key, id, pkg, sha)
    }
    fn addon_undo_install(&mut self, key: &str, id: &str) -> Result<(), Error> {
        let left = self.fails.load(Ordering::SeqCst);
        if left > 0 {
            if left != u32::MAX {
                self.fails.store(left - 1, Ordering::SeqCst);
            }
            return Err(Error::Io {
                what: "cannot write",
                path: "addons/registry.json".into(),
                source: std::io::Error::other("no space left on device"),
            });
        }
        self.inner.lock().unwrap().addon_undo_install(key, id)
    }
    fn addon_handover(&mut self, from: &str, to: &str, id: &str) -> Result<(), Error> {
        self.inner.lock().unwrap().addon_handover(from, to, id)
    }
    fn addon_uninstall(&mut self, key: &str, id: &str) -> Result<(), Error> {
        self.inner.lock().unwrap().addon_uninstall(key, id)
    }
    fn addon_undo_uninstall(&mut self, key: &str, id: &str) -> Result<(), Error> {
        self.inner.lock().unwrap().addon_undo_uninstall(key, id)
    }
    fn feature_get(&self, id: &str) -> Result<Option<Value>, Error> {
        self.inner.lock().unwrap().feature_get(id)
    }
    fn feature_set(&mut self, id: &str, value: Option<&Value>) -> Result<(), Error> {
        self.inner.lock().unwrap().feature_set(id, value)
    }
    fn notify(
        &mut self,
        key: &str,
        topic: &str,
        subject: Option<&str>,
        data: Option<&Value>,
    ) -> Result<(), Error> {
        self.inner.lock().unwrap().notify(key, topic, subject, data)
    }
}

fn pilot(rig: &Rig, host: &Flaky) -> Pilot {
    let config = PilotConfig {
        profile: rig.profile.clone(),
        person: Some(json!({"personid": "person-1", "os": "linux"})),
    };
    Pilot::open(
        config,
        Box::new(host.clone()),
        rig.net.clone(),
        Arc::new(rig.clock.clone()),
        Faults::default(),
    )
    .unwrap()
}

/// A flight that installs an add-on and waits.
fn installer(rig: &Rig, name: &str) -> Value {
    let pkg = rig.scratch("a.zip");
    let sha = zip_package(&pkg, &[("main.js", "new")]);
    flight(
        name,
        json!([
            {"action": "addon", "do": "install", "id": "a@x", "url": format!("file://{}", pkg.display()), "sha256": sha, "permission": "none"},
            {"action": "wait", "for": "1d"}
        ]),
    )
}

/// The reports of a flight in the outbox, oldest first.
fn reports(p: &Pilot, name: &str) -> Vec<Value> {
    p.journal
        .outbox(1000)
        .unwrap()
        .into_iter()
        .map(|(_, r)| r)
        .filter(|r| r["flight"] == name)
        .collect()
}

#[test]
fn an_undo_that_fails_on_the_host_is_retried_with_backoff_until_it_succeeds() {
    let rig = Rig::new();
    let host = Flaky::default();
    let mut p = pilot(&rig, &host);
    p.apply_index(&[installer(&rig, "a")], 1).unwrap();
    p.tick().unwrap();
    assert!(host.inner.lock().unwrap().addons.contains_key("a@x"));

    host.fails.store(3, Ordering::SeqCst);
    p.optout(Some("a")).unwrap();
    assert_eq!(status(&p, "a"), "optedout");
    let log = log_of(&p, "a");
    assert_eq!(
        log["cleanedUp"], false,
        "not cleaned up while the undo fails"
    );
    assert_eq!(log["undoTries"], 1);
    let text = timeline_text(&p, "a");
    assert!(
        text.contains("undo could not finish: cannot write addons/registry.json: no space left on device; it failed 1 time(s) and is tried again at"),
        "{text}"
    );
    // The tower hears of it.
    let last = reports(&p, "a").pop().unwrap();
    assert_eq!(last["status"], "optedout");
    assert_eq!(last["detail"]["cleanedUp"], false, "{last}");
    assert!(last["detail"]["undoError"]
        .as_str()
        .unwrap()
        .contains("no space left"));
    assert!(host.inner.lock().unwrap().addons.contains_key("a@x"));

    // Tried again when due, 30 s, 60 s, 120 s apart; not before.
    let mut waits = Vec::new();
    for _ in 0..4 {
        let before = rig.now();
        let wake = p.tick().unwrap();
        if log_of(&p, "a")["cleanedUp"] == true {
            break;
        }
        let wake = wake.expect("a stuck undo is due again at a set time");
        waits.push(wake.0 - before.0);
        rig.clock.set(wake);
    }
    assert_eq!(
        waits[0], 30_000,
        "the first retry is due 30 s after the failure"
    );
    assert_eq!(&waits[1..], &[60_000, 120_000], "{waits:?}");
    let log = log_of(&p, "a");
    assert_eq!(log["cleanedUp"], true, "{}", timeline_text(&p, "a"));
    assert!(!host.inner.lock().unwrap().addons.contains_key("a@x"));
    let text = timeline_text(&p, "a");
    assert_eq!(text.matches("undo could not finish").count(), 3, "{text}");
    assert!(text.ends_with("cleaned up: everything the flight did is undone"));
    let last = reports(&p, "a").pop().unwrap();
    assert_eq!(last["detail"]["cleanedUp"], true, "{last}");
    assert_eq!(last["detail"]["undoTries"], 4);
    // The report is one the tower reads.
    let mut r = last.clone();
    r["seq"] = json!(1);
    let batch = json!({"client": "0f8fad5b-d9cb-469f-a165-70867728950e", "reports": [r]});
    testpilot_flight::report::ReportBatch::from_json(&batch, 100).unwrap();
}

#[test]
fn an_undo_that_keeps_failing_is_reported_and_other_flights_go_on() {
    let rig = Rig::new();
    let host = Flaky::default();
    host.fails.store(u32::MAX, Ordering::SeqCst);
    let mut p = pilot(&rig, &host);
    let stuck = installer(&rig, "stuck");
    let other = flight(
        "other",
        json!([
            {"action": "feature", "id": "f", "value": {"on": true}},
            {"action": "wait", "for": "6h"},
            {"action": "log", "text": "done"}
        ]),
    );
    p.apply_index(&[stuck.clone(), other.clone()], 1).unwrap();
    p.tick().unwrap();
    let mut killed = stuck;
    killed["kill"] = json!(true);
    p.apply_index(&[killed, other], 2).unwrap();
    assert_eq!(status(&p, "stuck"), "killed");
    // Two days of the agent's life.
    let end = Timestamp(rig.now().0 + 2 * 86_400_000);
    let mut rounds = 0;
    while rig.now() < end {
        rounds += 1;
        assert!(rounds < 200, "the pilot never settles");
        let wake = p.tick().unwrap().expect("something is always due");
        rig.clock.set(wake.min(end));
    }
    assert_eq!(status(&p, "other"), "completed");
    assert_eq!(log_of(&p, "other")["cleanedUp"], true);
    assert_eq!(host.inner.lock().unwrap().features.get("f"), None);

    let log = log_of(&p, "stuck");
    assert_eq!(log["cleanedUp"], false);
    let tries = log["undoTries"].as_u64().unwrap();
    // 30 s doubling up to an hour: about 55 tries in two days, not one per tick.
    assert!((40..=70).contains(&tries), "{tries} tries");
    let text = timeline_text(&p, "stuck");
    assert!(
        text.contains(&format!("it failed {tries} time(s)")),
        "{text}"
    );
    let shown = testpilot_pilot::flightlog::render_text(&[log], &[], 0);
    assert!(
        shown.contains(&format!(
            "cleaned up: not yet (the undo failed {tries} time(s); next try at"
        )),
        "{shown}"
    );
    // The tower was told once, not at every try.
    let stuck_reports: Vec<Value> = reports(&p, "stuck")
        .into_iter()
        .filter(|r| r["detail"]["cleanedUp"] == false)
        .collect();
    assert_eq!(stuck_reports.len(), 1, "{stuck_reports:?}");
    assert!(host.inner.lock().unwrap().addons.contains_key("a@x"));
}
