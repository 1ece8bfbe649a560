//! `testpilot up` as a newcomer runs it: a tower with the examples live and a local pilot
//! that runs them; SIGTERM stops both cleanly; a second run resumes from the same data.

use crate::support::{command, examples, free_port, now_ms, run, scratch, tp, until};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use testpilot_flight::index::{accept, parse_public_key, Trust};
use testpilot_flight::Timestamp;

/// Starts `up` and reads its welcome text up to the last line.
fn up(data: &Path, port: u16) -> (Child, String) {
    let mut child = command()
        .args([
            "up",
            "--data",
            data.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["--examples", examples().to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = String::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        out.push_str(&line);
        out.push('\n');
        if line.starts_with("Ctrl-C stops it") {
            break;
        }
    }
    // Keep draining stdout so the process never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, out)
}

fn field<'a>(welcome: &'a str, label: &str) -> &'a str {
    welcome
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .map(|rest| rest.split_whitespace().next().unwrap_or(""))
        .unwrap_or_else(|| panic!("no `{label}` line in:\n{welcome}"))
}

fn log_json(profile: &Path) -> Option<Value> {
    let out = tp(&["log", "--profile", profile.to_str().unwrap(), "--json"]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

fn wait_for_flight(profile: &Path, name: &str, status: &str) -> Value {
    until(&format!("{name} to be {status}"), || {
        log_json(profile)?
            .as_array()?
            .iter()
            .find(|f| f["studyname"] == name && f["status"] == status)
            .cloned()
    })
}

fn stop(mut child: Child) {
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "up exited with {status}");
            return;
        }
        assert!(Instant::now() < deadline, "up did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn up_runs_tower_examples_and_pilot_and_resumes() {
    let dir = scratch("up");
    let data = dir.join("data");
    let port = free_port();
    let (child, welcome) = up(&data, port);
    assert!(welcome.contains("LOCAL, SINGLE-USER MODE"), "{welcome}");
    let url = field(&welcome, "tower").to_string();
    let key = parse_public_key(field(&welcome, "public key")).unwrap();
    let token = field(&welcome, "token").to_string();
    assert!(welcome.contains("welcome-tour-1 v1"), "{welcome}");

    // The index is signed with the printed key and holds the examples.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let body = rt.block_on(async {
        reqwest::get(format!("{url}/control/index.json"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    let now = Timestamp(now_ms());
    let index = accept(&body, &Trust::Pinned(&key), None, now).unwrap();
    assert!(index.flights.len() >= 6);

    // The local pilot runs the welcome tour: it is at the observe step with its prompt pending.
    let profile = data.join("pilot");
    let tour = wait_for_flight(&profile, "welcome-tour-1", "running");
    assert_eq!(tour["cleanedUp"], false);

    // A second `up` on the same data refuses at once instead of starting a second tower.
    let second = run(command()
        .args([
            "up",
            "--data",
            data.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .args(["--examples", examples().to_str().unwrap()]));
    assert_eq!(second.status.code(), Some(2));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("already running"), "{err}");
    // The example that says "kill": true is a killed flight on the tower, not a live one.
    assert!(welcome.contains("autoplay-block-3 v1: killed"), "{welcome}");
    // The copilot examples are live too, and the local pilot records for the simple one.
    assert!(welcome.contains("page-visits v1: now live"), "{welcome}");
    assert!(
        welcome.contains("search-bar-2027 v1: now live"),
        "{welcome}"
    );
    wait_for_flight(&profile, "page-visits", "running");
    stop(child);

    // Again: same data, same token, the tour still known to the pilot.
    let (child, welcome) = up(&data, port);
    assert_eq!(field(&welcome, "token"), token);
    wait_for_flight(&profile, "welcome-tour-1", "running");
    stop(child);
    let _ = std::fs::remove_dir_all(&dir);
}
