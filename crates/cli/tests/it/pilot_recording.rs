//! A streaming `instrument` through the real binary: events fed with `testpilot pilot observe`
//! (with `--value`) are recorded by the agent and shown by `testpilot log`, each one.

use crate::support::{command, run, scratch, stderr, tp, tp_json};
use serde_json::{json, Value};

fn once(index: &std::path::Path, profile: &str) {
    let out = run(command()
        .args([
            "pilot",
            "run",
            "--insecure-unsigned",
            "--once",
            "--profile",
            profile,
            "--tower",
        ])
        .arg(format!("file://{}", index.display())));
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn observed_values_are_recorded_and_the_log_shows_each_event() {
    let dir = scratch("recording");
    let profile = dir.join("profile");
    let p = profile.to_str().unwrap();
    let plan =
        json!([{"action": "instrument", "watch": ["searched"], "for": "1h", "uploadEvery": "1d"}]);
    let flight = json!({"studyname": "rec", "author": "t@example.com", "description": "records", "version": 1, "flightplan": plan});
    let index = dir.join("index.json");
    let far = 4_102_444_800_000i64; // 2100
    std::fs::write(
        &index,
        json!({"serial": 1, "generatedAt": 0, "expiresAt": far, "flights": [flight]}).to_string(),
    )
    .unwrap();
    once(&index, p);

    let ok = tp(&[
        "pilot",
        "observe",
        "searched",
        "bar",
        "--value",
        "2.5",
        "--profile",
        p,
    ]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("searched bar (value 2.5)"));
    let neg = tp(&[
        "pilot",
        "observe",
        "searched",
        "--value",
        "-3",
        "--profile",
        p,
    ]);
    assert!(neg.status.success(), "{}", stderr(&neg));
    for bad in ["NaN", "inf", "abc", ""] {
        let out = tp(&[
            "pilot",
            "observe",
            "searched",
            "--value",
            bad,
            "--profile",
            p,
        ]);
        assert!(!out.status.success(), "--value {bad} was taken");
        let err = stderr(&out);
        assert!(
            err.contains("--value") && err.contains("number"),
            "{bad}: {err}"
        );
    }
    // What the tower's events endpoint would refuse is refused here, with why.
    let long = "s".repeat(257);
    for (args, why) in [
        (vec![""], "\"\" is not an event topic"),
        (vec!["searched", long.as_str()], "257 bytes, more than 256"),
    ] {
        let mut all = vec!["pilot", "observe"];
        all.extend(args.iter().copied());
        all.extend(["--profile", p]);
        let out = tp(&all);
        assert!(!out.status.success(), "{args:?} was taken");
        let err = stderr(&out);
        assert!(err.contains(why), "{args:?}: {err}");
    }
    assert!(tp(&["pilot", "observe", "other", "--profile", p])
        .status
        .success());
    once(&index, p);

    let log = tp(&["log", "--profile", p]);
    assert!(log.status.success(), "{}", stderr(&log));
    let text = String::from_utf8_lossy(&log.stdout);
    assert!(text.contains("recorded 2 event(s): searched ×2"), "{text}");
    assert!(
        text.contains("#1 searched subject=bar value=2.5 at"),
        "{text}"
    );
    assert!(text.contains("#2 searched value=-3 at"), "{text}");
    assert!(
        text.contains("2 recorded event(s) wait on this machine"),
        "{text}"
    );
    assert!(!text.contains("other"), "{text}");
    let v = tp_json(&["log", "--profile", p, "--json"]);
    let recorded: Vec<Value> = v[0]["recorded"].as_array().unwrap().clone();
    assert_eq!(recorded.len(), 2);
    assert_eq!(recorded[0]["value"], json!(2.5));
    assert_eq!(recorded[0]["subject"], json!("bar"));
    assert_eq!(recorded[1]["value"], json!(-3.0));
}
