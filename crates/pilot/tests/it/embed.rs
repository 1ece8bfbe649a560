//! The pilot embedded in an application (docs/embedding.md): `EmbeddedPilot` against a signed
//! index in a file, with the reference host or a host of the test's own, on real threads and
//! the wall clock.

use crate::fixture::{flight, wait_until, FileIndex};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;
use testpilot_pilot::host::MemoryHost;
use testpilot_pilot::{EmbeddedPilot, Error, Host};

// The bindings share one pilot between threads.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<EmbeddedPilot>();
};

fn log_of(pilot: &EmbeddedPilot, name: &str) -> Value {
    pilot
        .log()
        .unwrap()
        .into_iter()
        .find(|f| f["studyname"] == name)
        .unwrap_or(Value::Null)
}

fn status(pilot: &EmbeddedPilot, name: &str) -> String {
    log_of(pilot, name)["status"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn step(pilot: &EmbeddedPilot, name: &str) -> u64 {
    pilot
        .active_flights()
        .unwrap()
        .iter()
        .find(|f| f["studyname"] == name)
        .and_then(|f| f["step"].as_u64())
        .unwrap_or(u64::MAX)
}

#[test]
fn a_flight_turns_a_feature_on_asks_waits_for_an_event_and_is_undone() {
    let index = FileIndex::new();
    index.publish(
        1,
        vec![flight(
            "search-bar-2027",
            json!([
                {"action": "feature", "id": "search.bar", "value": {"on": true, "color": "red"}},
                {"action": "external", "type": "message", "title": "New search bar", "text": "Try it", "waitFor": "ok"},
                {"action": "observe", "topic": "search-used"}
            ]),
        )],
    );
    let pilot = EmbeddedPilot::open(index.config("p"), None).unwrap();
    assert_eq!(pilot.feature("search.bar"), None, "nothing before start");
    assert!(!pilot.running());
    pilot.start().unwrap();
    assert!(pilot.running());
    assert!(pilot
        .start()
        .unwrap_err()
        .to_string()
        .contains("already started"));

    wait_until("the feature is on", || {
        pilot.feature("search.bar").is_some()
    });
    let f = pilot.feature("search.bar").unwrap();
    assert_eq!(f.value, json!({"on": true, "color": "red"}));
    assert_eq!(f.studyname, "search-bar-2027");
    assert_eq!(f.version, 1);
    assert_eq!(f.arm, None);
    assert!(!f.sampled);
    assert_eq!(pilot.features().len(), 1);
    // The reference host wrote it where the application's files are.
    let written: Value = serde_json::from_str(
        &std::fs::read_to_string(pilot.config().profile.join("features.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(written["search.bar"]["on"], true);

    wait_until("the prompt is shown", || {
        !pilot.prompts().unwrap().is_empty()
    });
    let prompt = pilot.prompts().unwrap().remove(0);
    assert_eq!(prompt["studyname"], "search-bar-2027");
    assert_eq!(prompt["title"], "New search bar");
    let id = prompt["id"].as_i64().unwrap();
    assert!(pilot
        .answer(id, "maybe")
        .unwrap_err()
        .to_string()
        .contains("\"ok\", \"no\" or \"later\""));
    pilot.answer(id, "ok").unwrap();
    wait_until("the flight waits for the event", || {
        step(&pilot, "search-bar-2027") == 2
    });
    assert!(pilot.prompts().unwrap().is_empty());
    assert_eq!(status(&pilot, "search-bar-2027"), "running");
    assert!(pilot.feature("search.bar").is_some());

    assert!(pilot
        .observe("search-used", None, Some(f64::NAN))
        .unwrap_err()
        .to_string()
        .contains("finite"));
    pilot.observe("search-used", Some("toolbar"), None).unwrap();
    wait_until("the flight completes", || {
        status(&pilot, "search-bar-2027") == "completed"
    });
    wait_until("the feature is undone", || {
        pilot.feature("search.bar").is_none()
    });
    let log = log_of(&pilot, "search-bar-2027");
    assert_eq!(log["cleanedUp"], true, "{log:#}");
    let written: Value = serde_json::from_str(
        &std::fs::read_to_string(pilot.config().profile.join("features.json"))
            .unwrap_or("{}".into()),
    )
    .unwrap();
    assert!(written.get("search.bar").is_none(), "{written}");
    assert!(pilot.active_flights().unwrap().is_empty());
    pilot.stop().unwrap();
    assert!(!pilot.running());
    assert!(pilot
        .start()
        .unwrap_err()
        .to_string()
        .contains("was stopped"));
}

#[test]
fn optout_with_the_agent_running_and_before_start() {
    let index = FileIndex::new();
    let plan = json!([{"action": "feature", "id": "x", "value": {"v": 1}}, {"action": "wait", "for": "30d"}]);
    index.publish(1, vec![flight("a", plan.clone()), flight("b", plan)]);
    let pilot = EmbeddedPilot::open(index.config("p"), None).unwrap();
    pilot.start().unwrap();
    wait_until("both flights run", || {
        pilot.active_flights().unwrap().len() == 2
    });
    let err = pilot.optout(Some("nope")).unwrap_err().to_string();
    assert!(err.contains("no flight named `nope`"), "{err}");

    // Running: the agent ends the flight, and this returns once it has.
    assert_eq!(pilot.optout(Some("a")).unwrap(), vec!["a".to_string()]);
    assert_eq!(status(&pilot, "a"), "optedout");
    assert_eq!(pilot.feature("x").unwrap().studyname, "b");
    assert!(pilot.optout(Some("a")).unwrap().is_empty(), "already ended");
    pilot.stop().unwrap();
    drop(pilot);

    // Before start: the features the last run left are read at open, and leaving undoes them
    // here, with the application's host.
    let pilot = EmbeddedPilot::open(index.config("p"), None).unwrap();
    assert_eq!(pilot.feature("x").unwrap().studyname, "b");
    assert_eq!(pilot.optout(None).unwrap(), vec!["b".to_string()]);
    assert_eq!(pilot.feature("x"), None);
    assert_eq!(status(&pilot, "b"), "optedout");
    let written =
        std::fs::read_to_string(pilot.config().profile.join("features.json")).unwrap_or_default();
    assert!(!written.contains("\"x\""), "{written}");
    // Opted out of everything: starting runs no new flight.
    pilot.start().unwrap();
    pilot.sync_now();
    std::thread::sleep(Duration::from_millis(500));
    assert!(pilot.active_flights().unwrap().is_empty());
    assert_eq!(pilot.feature("x"), None);
}

/// The test's host: features in memory; `feature_set` of `trap` to a value misbehaves.
struct TrapHost {
    inner: Arc<Mutex<MemoryHost>>,
    trap: &'static str,
    how: Trap,
}

enum Trap {
    Fail,
    Panic,
    /// Tells the test it is in the callback, then waits for its word.
    Block(mpsc::Sender<()>, Mutex<mpsc::Receiver<()>>),
}

impl Host for TrapHost {
    fn addon_present(&self, id: &str) -> Result<bool, Error> {
        self.inner.lock().unwrap().addon_present(id)
    }
    fn addon_install(&mut self, k: &str, id: &str, p: &Path, sha: &str) -> Result<(), Error> {
        self.inner.lock().unwrap().addon_install(k, id, p, sha)
    }
    fn addon_undo_install(&mut self, k: &str, id: &str) -> Result<(), Error> {
        self.inner.lock().unwrap().addon_undo_install(k, id)
    }
    fn addon_handover(&mut self, from: &str, to: &str, id: &str) -> Result<(), Error> {
        self.inner.lock().unwrap().addon_handover(from, to, id)
    }
    fn addon_uninstall(&mut self, k: &str, id: &str) -> Result<(), Error> {
        self.inner.lock().unwrap().addon_uninstall(k, id)
    }
    fn addon_undo_uninstall(&mut self, k: &str, id: &str) -> Result<(), Error> {
        self.inner.lock().unwrap().addon_undo_uninstall(k, id)
    }
    fn feature_get(&self, id: &str) -> Result<Option<Value>, Error> {
        self.inner.lock().unwrap().feature_get(id)
    }
    fn feature_set(&mut self, id: &str, value: Option<&Value>) -> Result<(), Error> {
        if id == self.trap && value.is_some() {
            match &self.how {
                Trap::Fail => return Err(Error::Host("the settings store is read-only".into())),
                Trap::Panic => panic!("the settings store fell over"),
                Trap::Block(entered, release) => {
                    entered.send(()).unwrap();
                    let _ = release.lock().unwrap().recv();
                }
            }
        }
        self.inner.lock().unwrap().feature_set(id, value)
    }
    fn notify(
        &mut self,
        k: &str,
        topic: &str,
        subject: Option<&str>,
        data: Option<&Value>,
    ) -> Result<(), Error> {
        self.inner.lock().unwrap().notify(k, topic, subject, data)
    }
}

fn trapped_flight() -> Value {
    flight(
        "trapped",
        json!([
            {"action": "feature", "id": "good", "value": {"v": 1}},
            {"action": "feature", "id": "trap", "value": {"v": 2}},
            {"action": "wait", "for": "30d"}
        ]),
    )
}

/// A host that fails (`Trap::Fail`) or panics: the flight fails and is undone, the agent and
/// the application go on.
fn a_misbehaving_host_fails_only_its_flight(how: Trap, says: &str) {
    let index = FileIndex::new();
    index.publish(1, vec![trapped_flight()]);
    let mem = Arc::new(Mutex::new(MemoryHost::default()));
    mem.lock()
        .unwrap()
        .features
        .insert("good".into(), json!({"v": 0}));
    let host = TrapHost {
        inner: mem.clone(),
        trap: "trap",
        how,
    };
    let pilot = EmbeddedPilot::open(index.config("p"), Some(Box::new(host))).unwrap();
    pilot.start().unwrap();
    wait_until("the flight fails", || status(&pilot, "trapped") == "failed");
    wait_until("it is undone", || {
        log_of(&pilot, "trapped")["cleanedUp"] == true
    });
    let log = log_of(&pilot, "trapped");
    assert!(log.to_string().contains(says), "{log:#}");
    assert_eq!(pilot.feature("good"), None);
    assert_eq!(pilot.feature("trap"), None);
    let host = mem.lock().unwrap().clone();
    assert_eq!(
        host.features.get("good"),
        Some(&json!({"v": 0})),
        "restored"
    );
    assert_eq!(host.features.get("trap"), None);
    assert!(pilot.running(), "the agent goes on");
    pilot.observe("still-alive", None, None).unwrap();
    pilot.stop().unwrap();
}

#[test]
fn a_host_that_fails_fails_its_flight_which_is_undone() {
    a_misbehaving_host_fails_only_its_flight(Trap::Fail, "the settings store is read-only");
}

#[test]
fn a_host_that_panics_fails_its_flight_which_is_undone() {
    a_misbehaving_host_fails_only_its_flight(
        Trap::Panic,
        "the application's feature_set panicked: the settings store fell over",
    );
}

#[test]
fn a_host_that_blocks_makes_stop_time_out_and_keeps_the_profile_locked() {
    let index = FileIndex::new();
    index.publish(1, vec![trapped_flight()]);
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    let host = TrapHost {
        inner: Arc::default(),
        trap: "trap",
        how: Trap::Block(entered_tx, Mutex::new(release_rx)),
    };
    let pilot = EmbeddedPilot::open(index.config("p"), Some(Box::new(host))).unwrap();
    pilot.set_stop_timeout(Duration::from_secs(1));
    pilot.start().unwrap();
    entered
        .recv_timeout(Duration::from_secs(20))
        .expect("the host's callback is called");
    let err = pilot.stop().unwrap_err().to_string();
    assert!(
        err.contains("did not stop within 1.0 s") && err.contains("has not returned"),
        "{err}"
    );
    // Dropped while the callback still blocks: the agent's thread keeps the profile locked.
    drop(pilot);
    let again = EmbeddedPilot::open(index.config("p"), None);
    assert!(matches!(again, Err(Error::Locked { .. })));
    // Once the callback returns, the agent sees it was asked to stop and lets go.
    release.send(()).unwrap();
    wait_until("the profile is free", || {
        EmbeddedPilot::open(index.config("p"), None).is_ok()
    });
}

#[test]
fn a_second_open_of_a_profile_in_this_process_is_locked_and_two_profiles_run_side_by_side() {
    let index = FileIndex::new();
    index.publish(
        1,
        vec![flight(
            "f",
            json!([{"action": "feature", "id": "x", "value": {"v": 1}}, {"action": "wait", "for": "30d"}]),
        )],
    );
    let one = EmbeddedPilot::open(index.config("one"), None).unwrap();
    let err = EmbeddedPilot::open(index.config("one"), None)
        .err()
        .unwrap();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    let two = EmbeddedPilot::open(index.config("two"), None).unwrap();
    one.start().unwrap();
    two.start().unwrap();
    wait_until("both run the flight", || {
        one.feature("x").is_some() && two.feature("x").is_some()
    });
    assert_eq!(one.optout(None).unwrap(), vec!["f".to_string()]);
    assert_eq!(one.feature("x"), None);
    assert!(two.feature("x").is_some(), "the other profile is its own");
}

/// Run by the next test in a child process: holds the profile's lock until stdin closes. (It
/// prints `locked` at the end of the harness's `test ... ` line.) In the suite itself, with no
/// profile named, it has nothing to do.
#[test]
fn child_holding_a_profile_lock() {
    let Ok(profile) = std::env::var("TESTPILOT_TEST_LOCK_PROFILE") else {
        return;
    };
    let _lock = testpilot_pilot::agent::ProfileLock::acquire(Path::new(&profile)).unwrap();
    println!("locked");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

#[test]
fn another_process_holding_the_profile_makes_open_fail_locked() {
    let index = FileIndex::new();
    let config = index.config("p");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "embed::child_holding_a_profile_lock",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("TESTPILOT_TEST_LOCK_PROFILE", &config.profile)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.trim_end().ends_with("locked") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the child ended");
    }
    let err = EmbeddedPilot::open(config.clone(), None).err().unwrap();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    assert!(
        err.to_string().contains(&format!("pid {}", child.id())),
        "{err}"
    );
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    EmbeddedPilot::open(config, None).unwrap();
}

#[test]
fn a_kill_in_a_newer_index_takes_the_feature_away_on_sync_now() {
    let index = FileIndex::new();
    let mut f = flight(
        "doomed",
        json!([{"action": "feature", "id": "x", "value": {"v": 1}}, {"action": "wait", "for": "30d"}]),
    );
    index.publish(1, vec![f.clone()]);
    let pilot = EmbeddedPilot::open(index.config("p"), None).unwrap();
    pilot.start().unwrap();
    wait_until("the feature is on", || pilot.feature("x").is_some());
    f["kill"] = json!(true);
    index.publish(2, vec![f]);
    // The poll is an hour away: only the asked-for sync sees the kill.
    pilot.sync_now();
    wait_until("the feature is gone", || pilot.feature("x").is_none());
    assert_eq!(status(&pilot, "doomed"), "killed");
    pilot.stop().unwrap();
}
