//! Kill the real agent (SIGKILL) at random moments over a real plan — add-ons, features,
//! prompts, events, a notification and waits — restart it each time, and check that the flight
//! still ends cleanly: nothing left installed or changed, nothing applied twice.

use crate::support::{command, scratch, snapshot, tp};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A small deterministic generator; the seed is printed so a failure can be replayed with
/// TP_SIGKILL_SEED.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn start(index: &Path, profile: &Path, time_scale: &str) -> Child {
    // A person file next to the index, when there is one.
    let person = index.with_file_name("person.json");
    let mut cmd = command();
    cmd.env("TESTPILOT_TIME_SCALE", time_scale)
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
        .stderr(Stdio::null());
    if person.exists() {
        cmd.arg("--person").arg(person);
    }
    cmd.spawn().unwrap()
}

/// The flight log, or None while the journal is busy or not there yet.
fn log(profile: &str) -> Option<Value> {
    let out = tp(&["log", "--profile", profile, "--json"]);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// How far the flights have come: the number of timeline lines.
fn progress(log: &Value) -> usize {
    log.as_array()
        .map(|a| {
            a.iter()
                .map(|f| f["timeline"].as_array().map_or(0, |t| t.len()))
                .sum()
        })
        .unwrap_or(0)
}

/// Does what the person would: answers prompts and makes the events the plan waits for.
fn act(profile: &str, topic: &str) {
    let out = tp(&["later", "--profile", profile, "list", "--json"]);
    if let Ok(Value::Array(list)) = serde_json::from_slice::<Value>(&out.stdout) {
        for p in list {
            let _ = tp(&["later", "--profile", profile, "ok", &p["id"].to_string()]);
        }
    }
    let _ = tp(&["pilot", "observe", topic, "--profile", profile]);
}

fn done(log: &Value) -> bool {
    log.as_array().is_some_and(|a| {
        !a.is_empty()
            && a.iter()
                .all(|f| f["status"] != "running" && f["cleanedUp"] == true)
    })
}

/// Runs the agent until every flight has ended and is cleaned up, killing it (SIGKILL) after
/// random amounts of progress, at most `max_kills` times, and doing what the person would in
/// between. Returns how often it was killed.
fn fly(
    index: &Path,
    profile: &Path,
    rng: &mut Rng,
    topic: &str,
    time_scale: &str,
    max_kills: u32,
) -> u32 {
    let p = profile.to_str().unwrap().to_string();
    let started = Instant::now();
    let mut kills = 0;
    let mut seen = 0;
    let mut child = start(index, profile, time_scale);
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the flights did not finish"
        );
        let current = log(&p);
        if current.as_ref().is_some_and(done) {
            break;
        }
        let now = current.as_ref().map(progress).unwrap_or(0);
        // Kill somewhere after the next 0 to 3 steps of progress.
        if kills < max_kills && now >= seen + rng.below(4) as usize {
            std::thread::sleep(Duration::from_millis(rng.below(40)));
            child.kill().unwrap();
            child.wait().unwrap();
            kills += 1;
            seen = now + 1;
            child = start(index, profile, time_scale);
            continue;
        }
        act(&p, topic);
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    kills
}

fn seed() -> u64 {
    let seed = std::env::var("TP_SIGKILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("TP_SIGKILL_SEED={seed}");
    seed
}

/// The "done" check of issue 3: a flight from examples/ (welcome-tour, frozen in the pilot's
/// test data) runs through the real agent from a file:// index, its prompt answered through
/// `testpilot later` and its events through `testpilot pilot observe`, killed and restarted
/// in the middle; its day-long wait passes on a clock sped up 100,000 times.
#[test]
fn an_example_flight_runs_through_the_agent_killed_and_restarted() {
    let mut rng = Rng(seed());
    let dir = scratch("example");
    let profile = dir.join("profile");
    std::fs::create_dir_all(&profile).unwrap();
    std::fs::write(
        profile.join("features.json"),
        "{\n  \"other\": {\n    \"kept\": true\n  }\n}",
    )
    .unwrap();
    let before = snapshot(&profile);
    let example: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../pilot/tests/data/welcome-tour.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let index = dir.join("index.json");
    std::fs::write(&index, json!({"serial": 1, "generatedAt": 0, "expiresAt": 4_102_444_800_000i64, "flights": [example]}).to_string()).unwrap();
    std::fs::write(
        dir.join("person.json"),
        json!({"os": "linux", "channel": "release", "locale": "en-US", "appversion": "130.0"})
            .to_string(),
    )
    .unwrap();
    let kills = fly(&index, &profile, &mut rng, "page-opened", "100000", 4);
    eprintln!("{kills} kills");
    assert!(kills >= 1, "the agent was never killed");
    let log = log(profile.to_str().unwrap()).unwrap();
    let f = &log[0];
    assert_eq!(f["studyname"], "welcome-tour-1");
    assert_eq!(f["status"], "completed", "{f:#}");
    assert_eq!(f["statusLine"], "Tour finished");
    assert_eq!(f["cleanedUp"], true);
    assert_eq!(
        snapshot(&profile),
        before,
        "the profile is exactly as it was\n{f:#}"
    );
    let notes = std::fs::read_to_string(profile.join("notifications.jsonl")).unwrap();
    assert_eq!(notes.lines().count(), 1, "{notes}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigkill_at_random_moments_leaves_nothing_behind() {
    let seed = seed();
    let mut rng = Rng(seed);

    let dir = scratch("sigkill");
    let profile = dir.join("profile");
    // What was there before: a feature and an add-on of the person's own.
    std::fs::create_dir_all(profile.join("addons/own@x")).unwrap();
    std::fs::write(profile.join("addons/own@x/main.js"), "mine").unwrap();
    std::fs::create_dir_all(profile.join("addon-host")).unwrap();
    std::fs::write(
        profile.join("addon-host/registry.json"),
        "{\n  \"own@x\": {\n    \"owner\": \"person\"\n  }\n}",
    )
    .unwrap();
    std::fs::write(
        profile.join("features.json"),
        "{\n  \"sk.a\": {\n    \"v\": 0\n  }\n}",
    )
    .unwrap();
    let pkg1 = dir.join("one.js");
    std::fs::write(&pkg1, "one()").unwrap();
    let pkg2 = dir.join("two.js");
    std::fs::write(&pkg2, "two()").unwrap();
    let before = snapshot(&profile);

    let plan = json!([
        {"action": "feature", "id": "sk.a", "value": {"v": 1}},
        [
            {"action": "addon", "do": "install", "id": "one@x", "path": pkg1.display().to_string(), "permission": "warn"},
            {"action": "addon", "do": "install", "id": "own@x", "path": pkg2.display().to_string(), "permission": "none"},
            {"action": "feature", "id": "sk.b", "value": {"v": 2}}
        ],
        {"action": "addon", "do": "uninstall", "id": "own@x", "permission": "none"},
        {"action": "notify", "topic": "sk-note"},
        {"action": "wait", "for": "1s"},
        {"action": "external", "type": "survey", "title": "Q", "url": "https://s.test/q", "waitFor": "ok"},
        {"action": "observe", "topic": "sk-go"},
        {"action": "feature", "id": "sk.a", "value": {"v": 3}},
        {"action": "wait", "for": "1s"},
        {"action": "log", "text": "landed"}
    ]);
    let flight = json!({"studyname": "sigkill", "author": "t", "description": "d", "version": 1, "flightplan": plan});
    let index = dir.join("index.json");
    std::fs::write(&index, json!({"serial": 1, "generatedAt": 0, "expiresAt": 4_102_444_800_000i64, "flights": [flight]}).to_string()).unwrap();
    let p = profile.to_str().unwrap().to_string();

    let kills = fly(&index, &profile, &mut rng, "sk-go", "1", 12);
    eprintln!("{kills} kills");
    assert!(
        kills >= 3,
        "too few kills to mean anything ({kills}, seed {seed})"
    );

    let log = log(&p).unwrap();
    let f = &log[0];
    assert_eq!(f["status"], "completed", "seed {seed}: {f:#}");
    assert_eq!(f["cleanedUp"], true);
    assert_eq!(
        snapshot(&profile),
        before,
        "seed {seed}: the profile is not as it was\n{f:#}"
    );
    for c in f["changes"].as_array().unwrap() {
        if c["kind"] != "notify" {
            assert_eq!(c["undone"], true, "seed {seed}: {c}");
        }
    }
    // Nothing twice: one notification, one journaled effect per step, one undo each.
    let notes = std::fs::read_to_string(profile.join("notifications.jsonl")).unwrap();
    assert_eq!(notes.lines().count(), 1, "seed {seed}: {notes}");
    let mut per_step = BTreeMap::new();
    for c in f["changes"].as_array().unwrap() {
        *per_step
            .entry(format!("{} {}", c["step"], c["kind"]))
            .or_insert(0) += 1;
    }
    assert!(
        per_step.values().all(|n| *n == 1),
        "seed {seed}: {per_step:?}"
    );
    let undos = f["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["what"].as_str().unwrap().starts_with("undid:"))
        .count();
    assert_eq!(
        undos,
        f["changes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["kind"] != "notify")
            .count(),
        "seed {seed}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
