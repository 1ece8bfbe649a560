//! Faults at the boundary: host callbacks that fail, block or (a Rust host) panic, and an
//! application without add-on callbacks. Each is a clear error of the flight or the call,
//! and the profile stays consistent: the next opener finds every effect undone or going on.

use crate::support::*;
use serde_json::{json, Value};
use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testpilot::c::*;
use testpilot_pilot::{EmbedConfig, EmbeddedPilot, Error, Host};

/// What the callbacks saw, and how they behave: `user_data` points to one of these.
#[derive(Default)]
struct Calls {
    seen: Mutex<Vec<String>>,
    /// `feature_set` of this id with a value fails (returns -7).
    fail_id: Option<&'static str>,
    /// `feature_set` with a value blocks while this is true.
    block: AtomicBool,
}

unsafe fn text(p: *const c_char) -> String {
    if p.is_null() {
        "NULL".into()
    } else {
        // SAFETY: the pilot passes NUL-terminated strings.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

unsafe extern "C" fn feature_set(
    ud: *mut c_void,
    id: *const c_char,
    value: *const c_char,
) -> c_int {
    // SAFETY: user_data is the test's Calls, alive for the whole test.
    let calls = unsafe { &*(ud as *const Calls) };
    // SAFETY: the pilot's strings.
    let (id, value) = unsafe { (text(id), text(value)) };
    calls.seen.lock().unwrap().push(format!("set {id} {value}"));
    if value != "NULL" {
        while calls.block.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
        if calls.fail_id == Some(id.as_str()) {
            return -7;
        }
    }
    0
}

unsafe extern "C" fn addon_present(_: *mut c_void, _: *const c_char, present: *mut c_int) -> c_int {
    // SAFETY: the pilot passes a writable int.
    unsafe { *present = 0 };
    0
}

fn host(calls: &Calls) -> TpHost {
    TpHost {
        user_data: calls as *const Calls as *mut c_void,
        feature_set: Some(feature_set),
        notify: None,
        addon_present: None,
        addon_install: None,
        addon_undo_install: None,
        addon_uninstall: None,
        addon_undo_uninstall: None,
        addon_handover: None,
    }
}

fn open_with(config: &CStr, host: &TpHost) -> (c_int, *mut TpPilot) {
    let mut p = std::ptr::null_mut();
    // SAFETY: valid pointers; the callbacks are thread-safe and user_data outlives the pilot.
    let rc = unsafe { tp_pilot_open_with_host(config.as_ptr(), host, &mut p) };
    (rc, p)
}

fn timeline(f: &Value) -> String {
    f["timeline"]
        .as_array()
        .map(|t| {
            t.iter()
                .map(|e| e["what"].as_str().unwrap_or("").to_string())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

#[test]
fn a_failing_callback_fails_its_flight_which_is_undone() {
    let plan = json!([
        {"action": "feature", "id": "ok.one", "value": {"v": 1}},
        {"action": "feature", "id": "broken", "value": {"v": 2}},
        {"action": "wait", "for": "30d"},
    ]);
    let s = Setup::new(vec![flight("fragile", plan)]);
    let calls = Calls {
        fail_id: Some("broken"),
        ..Calls::default()
    };
    let (rc, p) = open_with(&s.config("p"), &host(&calls));
    assert_eq!(rc, TP_OK, "{}", last_error());
    assert_eq!(tp_pilot_start(p), TP_OK);
    let f = wait_for(
        "the flight to fail and be undone",
        || flight_log(p, "fragile"),
        |f| f["cleanedUp"] == true,
    );
    assert_eq!(f["status"], "failed", "{f:#}");
    assert!(
        timeline(&f)
            .contains("the application's feature_set(`broken`) callback failed (returned -7)"),
        "{}",
        timeline(&f)
    );
    assert_eq!(
        *calls.seen.lock().unwrap(),
        [
            r#"set ok.one {"v":1}"#,
            r#"set broken {"v":2}"#,
            // The failed set is undone too: the pilot cannot know how far it got.
            "set broken NULL",
            "set ok.one NULL"
        ],
        "every feature set is undone to what the application had (nothing)"
    );
    assert_eq!(feature(p, "ok.one"), Value::Null);
    assert_eq!(tp_pilot_stop(p), TP_OK, "{}", last_error());
    tp_pilot_close(p);
}

#[test]
fn add_on_steps_fail_clearly_without_add_on_callbacks() {
    let pkg = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let plan = json!([
        {"action": "feature", "id": "with.addon", "value": {"v": 1}},
        {"action": "addon", "do": "install", "id": "helper@example.com", "path": pkg, "permission": "none"},
        {"action": "wait", "for": "30d"},
    ]);
    let s = Setup::new(vec![flight("needs-addon", plan)]);
    let calls = Calls::default();
    // Some add-on callbacks but not all: refused at open, with the missing ones named.
    let mut partial = host(&calls);
    partial.addon_present = Some(addon_present);
    let (rc, p) = open_with(&s.config("p"), &partial);
    assert_eq!(rc, TP_ERR_INVALID_ARGUMENT);
    assert!(p.is_null());
    assert!(
        last_error().contains("all together or not at all; addon_present given, addon_install, "),
        "{}",
        last_error()
    );
    let mut no_set = host(&calls);
    no_set.feature_set = None;
    assert_eq!(
        open_with(&s.config("p"), &no_set).0,
        TP_ERR_INVALID_ARGUMENT
    );
    assert!(
        last_error().contains("host.feature_set is NULL"),
        "{}",
        last_error()
    );

    let (rc, p) = open_with(&s.config("p"), &host(&calls));
    assert_eq!(rc, TP_OK, "{}", last_error());
    assert_eq!(tp_pilot_start(p), TP_OK);
    let f = wait_for(
        "the flight to fail",
        || flight_log(p, "needs-addon"),
        |f| f["cleanedUp"] == true,
    );
    assert_eq!(f["status"], "failed", "{f:#}");
    assert!(
        timeline(&f).contains(
            "cannot install add-on `helper@example.com`: this application takes no add-ons"
        ),
        "{}",
        timeline(&f)
    );
    assert_eq!(
        calls.seen.lock().unwrap().last().unwrap(),
        "set with.addon NULL"
    );
    tp_pilot_close(p);
}

#[test]
fn a_blocking_callback_makes_stop_give_up_and_keeps_the_profile_until_it_returns() {
    let plan = json!([{"action": "feature", "id": "slow", "value": {"v": 1}}, {"action": "wait", "for": "30d"}]);
    let s = Setup::new(vec![flight("slowpoke", plan)]);
    let calls = Calls::default();
    calls.block.store(true, Ordering::SeqCst);
    let (rc, p) = open_with(&s.config("p"), &host(&calls));
    assert_eq!(rc, TP_OK, "{}", last_error());
    testpilot::c::handles::get(p)
        .unwrap()
        .set_stop_timeout(Duration::from_millis(300));
    assert_eq!(tp_pilot_start(p), TP_OK);
    wait_for(
        "the callback to be called",
        || calls.seen.lock().unwrap().len(),
        |n| *n == 1,
    );

    assert_eq!(tp_pilot_stop(p), TP_ERR_HOST);
    assert!(
        last_error().contains("did not stop within 0.3 s: a host callback has not returned"),
        "{}",
        last_error()
    );
    // Reads go on while the agent is held.
    assert_eq!(feature(p, "slow"), Value::Null);
    tp_pilot_close(p);
    assert!(
        last_error().contains("tp_pilot_close: the agent did not stop"),
        "{}",
        last_error()
    );
    // SAFETY: a valid out-pointer.
    assert_eq!(
        unsafe { tp_pilot_log(p, &mut std::ptr::null_mut()) },
        TP_ERR_CLOSED_HANDLE
    );

    // The blocked agent still has the profile: nobody else may open it yet.
    let (rc, _) = open(&s.config("p"));
    assert_eq!(rc, TP_ERR_LOCKED, "{}", last_error());
    calls.block.store(false, Ordering::SeqCst);
    let (rc, p) = wait_for(
        "the profile to be released",
        || open(&s.config("p")),
        |(rc, _)| *rc != TP_ERR_LOCKED,
    );
    assert_eq!(rc, TP_OK, "{}", last_error());
    // Consistent: the flight runs on, and its feature is in effect.
    let f = flight_log(p, "slowpoke");
    assert_eq!(f["status"], "running", "{f:#}");
    assert_eq!(tp_pilot_start(p), TP_OK);
    wait_for(
        "the feature",
        || feature(p, "slow"),
        |v| v["value"] == json!({"v": 1}),
    );
    tp_pilot_close(p);
}

/// A Rust host whose `feature_set` panics when it sets a value.
struct PanickyHost(Arc<Mutex<Vec<String>>>);

impl Host for PanickyHost {
    fn addon_present(&self, _: &str) -> Result<bool, Error> {
        Ok(false)
    }
    fn addon_install(&mut self, _: &str, _: &str, _: &Path, _: &str) -> Result<(), Error> {
        Ok(())
    }
    fn addon_undo_install(&mut self, _: &str, _: &str) -> Result<(), Error> {
        Ok(())
    }
    fn addon_handover(&mut self, _: &str, _: &str, _: &str) -> Result<(), Error> {
        Ok(())
    }
    fn addon_uninstall(&mut self, _: &str, _: &str) -> Result<(), Error> {
        Ok(())
    }
    fn addon_undo_uninstall(&mut self, _: &str, _: &str) -> Result<(), Error> {
        Ok(())
    }
    fn feature_get(&self, _: &str) -> Result<Option<Value>, Error> {
        Ok(None)
    }
    fn feature_set(&mut self, id: &str, value: Option<&Value>) -> Result<(), Error> {
        self.0.lock().unwrap().push(format!("{id} {value:?}"));
        if value.is_some() {
            panic!("the application's feature store is gone");
        }
        Ok(())
    }
    fn notify(
        &mut self,
        _: &str,
        _: &str,
        _: Option<&str>,
        _: Option<&Value>,
    ) -> Result<(), Error> {
        Ok(())
    }
}

#[test]
fn a_panicking_rust_host_fails_the_flight_not_the_application() {
    let plan = json!([{"action": "feature", "id": "boom", "value": {"v": 1}}, {"action": "wait", "for": "30d"}]);
    let s = Setup::new(vec![flight("boom", plan)]);
    let mut config = EmbedConfig::new(s.profile("p"), format!("file://{}", s.index.display()));
    config.public_key = Some(s.key.clone());
    config.poll = Duration::from_secs(1);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let pilot = EmbeddedPilot::open(config, Some(Box::new(PanickyHost(seen.clone())))).unwrap();
    pilot.start().unwrap();
    let f = wait_for(
        "the flight to fail",
        || {
            pilot
                .log()
                .unwrap()
                .into_iter()
                .find(|f| f["studyname"] == "boom")
                .unwrap_or(Value::Null)
        },
        |f| f["cleanedUp"] == true,
    );
    assert_eq!(f["status"], "failed", "{f:#}");
    assert!(
        timeline(&f).contains(
            "the application's feature_set panicked: the application's feature store is gone"
        ),
        "{}",
        timeline(&f)
    );
    assert!(pilot.running(), "the agent goes on");
    pilot.observe("after", None, None).unwrap();
    pilot.stop().unwrap();
}
