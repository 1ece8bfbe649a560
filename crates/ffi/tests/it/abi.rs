//! The boundary's own rules: NULL, text that is not UTF-8, closed handles, strings freed
//! twice, and one pilot per profile (in this process and across processes).

use crate::support::*;
use serde_json::json;
use std::ffi::{c_char, CString};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use testpilot::c::*;

fn wait_plan() -> serde_json::Value {
    json!([{"action": "feature", "id": "color", "value": {"c": "red"}}, {"action": "wait", "for": "30d"}])
}

#[test]
fn null_bad_utf8_and_bad_config_are_named_errors() {
    let s = Setup::new(vec![]);
    let mut p = std::ptr::null_mut();
    // SAFETY: every pointer is NULL, valid, or a NUL-terminated byte string.
    unsafe {
        assert_eq!(
            tp_pilot_open(std::ptr::null(), &mut p),
            TP_ERR_INVALID_ARGUMENT
        );
        assert!(
            last_error().contains("config_json is NULL"),
            "{}",
            last_error()
        );
        assert_eq!(
            tp_pilot_open(s.config("p").as_ptr(), std::ptr::null_mut()),
            TP_ERR_INVALID_ARGUMENT
        );
        assert!(last_error().contains("out is NULL"), "{}", last_error());
        let bad = b"{\"profile\": \"\xff\"}\0";
        assert_eq!(
            tp_pilot_open(bad.as_ptr().cast(), &mut p),
            TP_ERR_INVALID_ARGUMENT
        );
        assert!(
            last_error().contains("config_json is not valid UTF-8 (byte 13"),
            "{}",
            last_error()
        );
        let wrong = c(
            r#"{"profile": "x", "tower": "file:///i", "insecureUnsigned": true, "poll": "soon"}"#,
        );
        assert_eq!(tp_pilot_open(wrong.as_ptr(), &mut p), TP_ERR_USAGE);
        assert!(
            last_error().starts_with("tp_pilot_open: configuration.poll:"),
            "{}",
            last_error()
        );
        assert!(p.is_null());
        assert_eq!(
            tp_pilot_open_with_host(s.config("p").as_ptr(), std::ptr::null(), &mut p),
            TP_ERR_INVALID_ARGUMENT
        );
        assert!(last_error().contains("host is NULL"), "{}", last_error());
    }
    assert!(
        !s.profile("p").exists(),
        "a refused open leaves nothing behind"
    );

    let (rc, p) = open(&s.config("p"));
    assert_eq!(rc, TP_OK, "{}", last_error());
    // SAFETY: as above.
    unsafe {
        let mut out: *mut c_char = std::ptr::null_mut();
        assert_eq!(
            tp_pilot_feature(p, std::ptr::null(), &mut out),
            TP_ERR_INVALID_ARGUMENT
        );
        assert!(last_error().contains("id is NULL"), "{}", last_error());
        assert_eq!(
            tp_pilot_feature(p, c"a\xc3".as_ptr(), &mut out),
            TP_ERR_INVALID_ARGUMENT
        );
        assert!(
            last_error().contains("id is not valid UTF-8"),
            "{}",
            last_error()
        );
        assert_eq!(
            tp_pilot_observe(p, c("t").as_ptr(), c"\xfe".as_ptr()),
            TP_ERR_INVALID_ARGUMENT
        );
        assert!(
            last_error().contains("subject is not valid UTF-8"),
            "{}",
            last_error()
        );
        let long = CString::new("x".repeat(64 * 1024 + 1)).unwrap();
        assert_eq!(
            tp_pilot_observe(p, long.as_ptr(), std::ptr::null()),
            TP_ERR_INVALID_ARGUMENT
        );
        assert!(
            last_error().contains("topic is longer than 65536 bytes"),
            "{}",
            last_error()
        );
        assert_eq!(
            tp_pilot_observe_value(p, c("t").as_ptr(), std::ptr::null(), f64::NAN),
            TP_ERR_USAGE
        );
        assert_eq!(tp_pilot_answer(p, 1, c("maybe").as_ptr()), TP_ERR_USAGE);
        assert!(
            last_error().contains("give \"ok\", \"no\" or \"later\""),
            "{}",
            last_error()
        );
        assert_eq!(
            tp_pilot_log(p, std::ptr::null_mut()),
            TP_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            tp_pilot_feature(std::ptr::null_mut(), c("x").as_ptr(), &mut out),
            TP_ERR_INVALID_ARGUMENT
        );
        assert!(last_error().contains("handle is NULL"), "{}", last_error());
        assert_eq!(
            tp_pilot_optout(p, c("nope").as_ptr(), std::ptr::null_mut()),
            TP_ERR_USAGE
        );
        assert!(
            last_error().contains("no flight named `nope`"),
            "{}",
            last_error()
        );
    }
    // What works with the handle open: an event, an empty log, nothing set.
    // SAFETY: as above.
    assert_eq!(
        unsafe { tp_pilot_observe(p, c("t").as_ptr(), std::ptr::null()) },
        TP_OK
    );
    assert_eq!(log(p), json!([]));
    assert_eq!(feature(p, "x"), serde_json::Value::Null);
    // SAFETY: as above.
    let flights = out_string(|out| unsafe { tp_pilot_flights(p, out) }).unwrap();
    assert_eq!(flights, "[]");
    // SAFETY: as above.
    let prompts = out_string(|out| unsafe { tp_pilot_prompts(p, out) }).unwrap();
    assert_eq!(prompts, "[]");

    // A string freed twice (or never handed out) is refused, not a heap corruption.
    let mut out: *mut c_char = std::ptr::null_mut();
    // SAFETY: as above.
    assert_eq!(unsafe { tp_pilot_log(p, &mut out) }, TP_OK);
    tp_string_free(out);
    tp_string_free(out);
    assert!(last_error().contains("freed already"), "{}", last_error());
    let mine = CString::new("mine").unwrap().into_raw();
    tp_string_free(mine);
    assert!(last_error().contains("not handed out"), "{}", last_error());
    // SAFETY: made by into_raw above and not freed by the pilot.
    drop(unsafe { CString::from_raw(mine) });
    tp_string_free(std::ptr::null_mut());

    // After close, the handle is dead for every call (and close twice is only noted).
    tp_pilot_close(p);
    // SAFETY: as above.
    unsafe {
        let mut out: *mut c_char = std::ptr::null_mut();
        assert_eq!(tp_pilot_start(p), TP_ERR_CLOSED_HANDLE);
        assert!(
            last_error().contains("tp_pilot_start: the pilot handle is closed"),
            "{}",
            last_error()
        );
        assert_eq!(
            tp_pilot_feature(p, c("x").as_ptr(), &mut out),
            TP_ERR_CLOSED_HANDLE
        );
        assert!(out.is_null());
        assert_eq!(
            tp_pilot_observe(p, c("t").as_ptr(), std::ptr::null()),
            TP_ERR_CLOSED_HANDLE
        );
        assert_eq!(tp_pilot_log(p, &mut out), TP_ERR_CLOSED_HANDLE);
        assert_eq!(tp_pilot_stop(p), TP_ERR_CLOSED_HANDLE);
        assert_eq!(
            tp_pilot_answer(p, 1, c("ok").as_ptr()),
            TP_ERR_CLOSED_HANDLE
        );
        // A number that was never a handle is refused the same way.
        assert_eq!(
            tp_pilot_start(0xdead_beef as *mut TpPilot),
            TP_ERR_CLOSED_HANDLE
        );
    }
    tp_pilot_close(p);
    assert!(last_error().contains("closed already"), "{}", last_error());
    // The profile is free again, and its event is there.
    let (rc, p2) = open(&s.config("p"));
    assert_eq!(rc, TP_OK, "{}", last_error());
    assert_ne!(p2, p, "handles are never reused");
    tp_pilot_close(p2);
}

#[test]
fn one_pilot_per_profile_and_two_profiles_side_by_side() {
    let s = Setup::new(vec![flight("colors", wait_plan())]);
    let (rc, a) = open(&s.config("a"));
    assert_eq!(rc, TP_OK, "{}", last_error());
    let (rc, again) = open(&s.config("a"));
    assert_eq!(rc, TP_ERR_LOCKED);
    assert!(again.is_null());
    let msg = last_error();
    assert!(
        msg.contains("already running for the profile")
            && msg.contains(&format!("pid {}", std::process::id())),
        "{msg}"
    );
    let (rc, b) = open(&s.config("b"));
    assert_eq!(rc, TP_OK, "{}", last_error());
    assert_eq!(tp_pilot_start(a), TP_OK);
    assert_eq!(tp_pilot_start(b), TP_OK);
    assert_eq!(tp_pilot_start(b), TP_ERR_USAGE);
    assert!(last_error().contains("already started"), "{}", last_error());
    for p in [a, b] {
        wait_for(
            "the flight's feature",
            || feature(p, "color"),
            |v| v["value"] == json!({"c": "red"}),
        );
    }
    // Opting one profile out leaves the other alone.
    let mut out: *mut c_char = std::ptr::null_mut();
    // SAFETY: a valid out-pointer; NULL flight is "every flight".
    assert_eq!(
        unsafe { tp_pilot_optout(a, std::ptr::null(), &mut out) },
        TP_OK,
        "{}",
        last_error()
    );
    // SAFETY: handed out above.
    let ended = unsafe { std::ffi::CStr::from_ptr(out) }
        .to_str()
        .unwrap()
        .to_string();
    tp_string_free(out);
    assert_eq!(ended, r#"["colors"]"#);
    assert_eq!(feature(a, "color"), serde_json::Value::Null);
    assert_eq!(feature(b, "color")["studyname"], "colors");
    assert_eq!(tp_pilot_stop(a), TP_OK);
    assert_eq!(tp_pilot_stop(b), TP_OK);
    tp_pilot_close(a);
    tp_pilot_close(b);
    let (rc, a) = open(&s.config("a"));
    assert_eq!(rc, TP_OK, "closing releases the profile: {}", last_error());
    assert_eq!(flight_log(a, "colors")["cleanedUp"], true);
    tp_pilot_close(a);
}

/// Run as a child by the test below: opens the profile named by the environment, says so,
/// and holds it until its standard input closes.
#[test]
fn holder_process() {
    let Some(config) = std::env::var_os("TESTPILOT_HOLD_CONFIG") else {
        return;
    };
    let (rc, p) = open(&CString::new(config.into_encoded_bytes()).unwrap());
    println!("holding {rc} {}", last_error());
    std::io::stdout().flush().unwrap();
    let _ = std::io::stdin().read_line(&mut String::new());
    tp_pilot_close(p);
}

#[test]
fn a_profile_another_process_holds_is_locked_until_it_ends() {
    let s = Setup::new(vec![flight("colors", wait_plan())]);
    let config = s.config("p");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "abi::holder_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("TESTPILOT_HOLD_CONFIG", config.to_str().unwrap())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // libtest prints the test's name on the same line first.
    let held = lines.find_map(|l| {
        l.ok()
            .and_then(|l| l.find("holding ").map(|i| l[i..].to_string()))
    });
    let Some(held) = held else {
        child.kill().unwrap();
        panic!("the child did not say it holds the profile");
    };
    assert!(held.starts_with("holding 0 "), "{held}");

    let (rc, p) = open(&config);
    assert_eq!(rc, TP_ERR_LOCKED);
    assert!(p.is_null());
    assert!(
        last_error().contains(&format!("pid {}", child.id())),
        "{}",
        last_error()
    );

    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    let (rc, p) = open(&config);
    assert_eq!(rc, TP_OK, "{}", last_error());
    assert_eq!(tp_pilot_start(p), TP_OK);
    wait_for(
        "the flight's feature",
        || feature(p, "color"),
        |v| v["studyname"] == "colors",
    );
    tp_pilot_close(p);
}
