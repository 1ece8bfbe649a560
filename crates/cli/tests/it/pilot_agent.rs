//! The real agent, end to end: a flight from a file:// index, prompts answered through
//! `testpilot later`, an event through `testpilot pilot observe`, one agent per profile, a
//! clean stop on SIGTERM, and the profile left exactly as it was.

use crate::support::{command, run, scratch, snapshot, tp, tp_json, until};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Stdio};

fn agent(index: &Path, profile: &Path) -> Child {
    command()
        .args([
            "pilot",
            "run",
            "--insecure-unsigned",
            "--poll",
            "1h",
            "--profile",
        ])
        .arg(profile)
        .arg("--tower")
        .arg(format!("file://{}", index.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_flight_runs_through_the_agent_and_leaves_the_profile_as_it_was() {
    let dir = scratch("agent");
    let profile = dir.join("profile");
    std::fs::create_dir_all(&profile).unwrap();
    std::fs::write(
        profile.join("features.json"),
        "{\n  \"e2e.flag\": {\n    \"on\": false\n  }\n}",
    )
    .unwrap();
    let pkg = dir.join("helper.js");
    std::fs::write(&pkg, "helper()").unwrap();
    let before = snapshot(&profile);
    let plan = json!([
        {"action": "feature", "id": "e2e.flag", "value": {"on": true}},
        {"action": "addon", "do": "install", "id": "e2e@x", "path": pkg.display().to_string(), "permission": "warn", "msg": "May we?"},
        {"action": "external", "type": "survey", "title": "How is it?", "url": "https://s.test/q?who={{personid}}", "waitFor": "ok"},
        {"action": "observe", "topic": "e2e-go"},
        {"action": "notify", "topic": "e2e-done"},
        {"action": "wait", "for": "1s"},
        {"action": "log", "text": "bye"}
    ]);
    let flight = json!({"studyname": "e2e", "author": "t@example.com", "description": "end to end", "version": 1, "flightplan": plan});
    let far = 4_102_444_800_000i64; // 2100
    let index = dir.join("index.json");
    std::fs::write(
        &index,
        json!({"serial": 1, "generatedAt": 0, "expiresAt": far, "flights": [flight]}).to_string(),
    )
    .unwrap();

    let mut a = agent(&index, &profile);
    let p = profile.to_str().unwrap();

    // The person is asked before the add-on is installed.
    let prompt = until("the add-on prompt", || {
        let v = tp(&["later", "--profile", p, "list", "--json"]);
        let list: Value = serde_json::from_slice(&v.stdout).ok()?;
        list.as_array()?
            .iter()
            .find(|x| x["type"] == "addon")
            .cloned()
    });
    assert_eq!(prompt["studyname"], "e2e");
    assert_eq!(prompt["text"], "May we?");
    assert!(!profile.join("addons/e2e@x").exists());

    // One agent per profile.
    let second = run(command()
        .args([
            "pilot",
            "run",
            "--insecure-unsigned",
            "--once",
            "--profile",
            p,
            "--tower",
        ])
        .arg(format!("file://{}", index.display())));
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("another pilot agent is already running"),
        "{err}"
    );

    let out = tp(&["later", "--profile", p, "ok", &prompt["id"].to_string()]);
    assert!(out.status.success());
    let survey = until("the survey", || {
        let list = tp_json(&["later", "--profile", p, "list", "--json"]);
        list.as_array()?
            .iter()
            .find(|x| x["type"] == "survey")
            .cloned()
    });
    assert!(profile.join("addons/e2e@x/helper.js").exists());
    assert!(survey["url"]
        .as_str()
        .unwrap()
        .starts_with("https://s.test/q?who="));
    // "later" keeps it pending; then ok.
    assert!(
        tp(&["later", "--profile", p, "later", &survey["id"].to_string()])
            .status
            .success()
    );
    assert_eq!(
        tp_json(&["later", "--profile", p, "list", "--json"])[0]["state"],
        "later"
    );
    assert!(
        tp(&["later", "--profile", p, "ok", &survey["id"].to_string()])
            .status
            .success()
    );
    let bad = tp(&["later", "--profile", p, "ok", "99999"]);
    assert!(
        !bad.status.success()
            && String::from_utf8_lossy(&bad.stderr).contains("there is no prompt 99999")
    );

    until("the observe step", || {
        let log = tp_json(&["log", "--profile", p, "e2e", "--json"]);
        (log[0]["step"] == 3).then_some(())
    });
    assert!(tp(&["pilot", "observe", "e2e-go", "--profile", p])
        .status
        .success());
    let log = until("the flight to complete and clean up", || {
        let log = tp_json(&["log", "--profile", p, "--json"]);
        (log[0]["status"] == "completed" && log[0]["cleanedUp"] == true).then_some(log)
    });
    assert_eq!(log[0]["step"], 7);
    assert!(log[0]["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t.get("at").is_some() && t.get("what").is_some()));

    // SIGTERM: a clean exit.
    let st = Command::new("sh")
        .args(["-c", &format!("kill -TERM {}", a.id())])
        .status()
        .unwrap();
    assert!(st.success());
    let status = until("the agent to stop", || a.try_wait().unwrap());
    assert!(status.success(), "{status:?}");
    let text = String::from_utf8_lossy(&tp(&["log", "--profile", p]).stdout).into_owned();
    assert!(text.contains("agent stopped"), "{text}");
    assert!(
        text.contains("e2e (version 1): completed at step 7"),
        "{text}"
    );

    assert_eq!(
        snapshot(&profile),
        before,
        "the profile is exactly as it was"
    );
    let notes = std::fs::read_to_string(profile.join("notifications.jsonl")).unwrap();
    assert_eq!(notes.lines().count(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn optout_cleans_up_without_an_agent_and_bad_profiles_say_why() {
    let dir = scratch("optout");
    let profile = dir.join("profile");
    let plan = json!([{"action": "feature", "id": "x", "value": {"on": true}}, {"action": "wait", "for": "30d"}]);
    let flight = json!({"studyname": "long", "author": "t", "description": "d", "version": 1, "flightplan": plan});
    let index = dir.join("index.json");
    std::fs::write(&index, json!({"serial": 1, "generatedAt": 0, "expiresAt": 4_102_444_800_000i64, "flights": [flight]}).to_string()).unwrap();
    let out = run(command()
        .args(["pilot", "run", "--insecure-unsigned", "--once", "--profile"])
        .arg(&profile)
        .arg("--tower")
        .arg(format!("file://{}", index.display())));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("WARNING: --insecure-unsigned"));
    let p = profile.to_str().unwrap();
    assert_eq!(
        std::fs::read_to_string(profile.join("features.json"))
            .map(|t| t.contains("\"on\": true"))
            .ok(),
        Some(true)
    );
    let out = tp(&["optout", "--profile", p, "long"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("long: optedout, everything it did is undone"));
    assert!(!profile.join("features.json").exists());
    let out = tp(&["optout", "--profile", p, "nope"]);
    assert!(!out.status.success());
    let out = tp(&["optout", "--profile", p, "--all"]);
    assert!(out.status.success());
    let log = tp_json(&["log", "--profile", p, "--json"]);
    assert_eq!(log[0]["status"], "optedout");

    // Not a profile; a corrupt journal; a signed tower without a key.
    let out = tp(&["log", "--profile", dir.join("nothing").to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a pilot profile"));
    let bad = dir.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("journal.sqlite"), "garbage ".repeat(100)).unwrap();
    let out = tp(&["log", "--profile", bad.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a Test Pilot journal"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tp(&[
        "pilot",
        "run",
        "--once",
        "--profile",
        p,
        "--tower",
        "file:///nowhere.json",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--public-key"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn optout_while_the_agent_runs_is_carried_out_by_the_agent() {
    let dir = scratch("optout-live");
    let profile = dir.join("profile");
    let plan = json!([{"action": "feature", "id": "live", "value": {"on": true}}, {"action": "wait", "for": "30d"}]);
    let flights: Vec<Value> = ["one", "two"]
        .iter()
        .map(|n| json!({"studyname": n, "author": "t", "description": "d", "version": 1, "flightplan": plan}))
        .collect();
    let index = dir.join("index.json");
    std::fs::write(&index, json!({"serial": 1, "generatedAt": 0, "expiresAt": 4_102_444_800_000i64, "flights": flights}).to_string()).unwrap();
    let mut a = agent(&index, &profile);
    let p = profile.to_str().unwrap().to_string();
    until("both flights to start", || {
        let log: Value =
            serde_json::from_slice(&tp(&["log", "--profile", &p, "--json"]).stdout).ok()?;
        (log.as_array()?.len() == 2 && log[1]["step"] == 1).then_some(())
    });
    let out = tp(&["optout", "--profile", &p, "one"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("one: optedout"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = tp(&["optout", "--profile", &p, "--all"]);
    assert!(out.status.success());
    let log = until("both to be cleaned up", || {
        let log = tp_json(&["log", "--profile", &p, "--json"]);
        log.as_array()?
            .iter()
            .all(|f| f["cleanedUp"] == true)
            .then_some(log)
    });
    assert!(log
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["status"] == "optedout"));
    assert!(!profile.join("features.json").exists());
    a.kill().unwrap();
    a.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// `pilot run --once` fails (exit 2, a message that says why) when it refused the index:
/// unsigned where a key is pinned, a rollback, an expired one; and an expired index ends the
/// flights it started (`indexexpired`), undone.
#[test]
fn pilot_run_once_fails_when_it_refuses_the_index() {
    let dir = scratch("once-refused");
    let profile = dir.join("profile");
    let p = profile.to_str().unwrap();
    let index = dir.join("index.json");
    let plan = json!([{"action": "feature", "id": "x", "value": {"on": true}}, {"action": "wait", "for": "30d"}]);
    let flight = json!({"studyname": "long", "author": "t", "description": "d", "version": 1, "flightplan": plan});
    let write = |serial: u64, expires_at: i64| {
        let doc = json!({"serial": serial, "generatedAt": 0, "expiresAt": expires_at, "flights": [flight]});
        std::fs::write(&index, doc.to_string()).unwrap();
    };
    let once = |extra: &[&str]| {
        command()
            .args(["pilot", "run", "--once", "--profile", p])
            .args(extra)
            .arg("--tower")
            .arg(format!("file://{}", index.display()))
            .output()
            .unwrap()
    };
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    let expires = now_ms() + 8_000;
    write(2, expires);

    // Unsigned while a key is pinned (the Ed25519 base point, a valid key).
    let key = "WGZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY=";
    let out = once(&["--public-key", key]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("refused the index from file://"), "{err}");
    assert!(err.contains("not signed"), "{err}");

    let out = once(&["--insecure-unsigned"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = tp_json(&["log", "--profile", p, "--json"]);
    assert_eq!(log[0]["status"], "running");

    // A rollback: refused, and the flight runs on.
    write(1, expires);
    let out = once(&["--insecure-unsigned"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("a rollback"), "{err}");
    assert_eq!(
        tp_json(&["log", "--profile", p, "--json"])[0]["status"],
        "running"
    );

    // Past its expiry the same index is refused, and the flight it started ends, undone.
    write(2, expires);
    while now_ms() <= expires {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = once(&["--insecure-unsigned"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("refused the index"), "{err}");
    assert!(err.contains("the index expired at"), "{err}");
    let log = tp_json(&["log", "--profile", p, "--json"]);
    assert_eq!(log[0]["status"], "indexexpired", "{log:#}");
    assert_eq!(log[0]["cleanedUp"], true);
    let text = String::from_utf8_lossy(&tp(&["log", "--profile", p]).stdout).into_owned();
    assert!(
        text.contains("ended indexexpired: the index expired at")
            && text.contains("no newer one could be fetched"),
        "{text}"
    );
    let features = std::fs::read_to_string(profile.join("features.json")).unwrap_or_default();
    assert!(
        !features.contains("\"on\": true"),
        "the feature is undone: {features}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
