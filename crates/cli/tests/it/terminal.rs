//! Issue 8, item 7: terminal escape codes from outside — anonymous reports, a tower's
//! answers, an index's flights, file names — never reach the terminal of the person who
//! runs `testpilot`. Each test feeds ESC sequences, carriage returns and newlines in, and
//! checks the real binary's output: no byte a terminal acts on, the text still readable
//! (made visible as `\x1b`, `\r`, `\n`), and `--json` exact.

use crate::support::{
    as_holder, command, make_token, run, scratch, stderr, stdout, tp, tp_env, tp_json, Engine,
    TestDb, Tower,
};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::process::Output;

/// Fails if the output holds a byte a terminal acts on: C0 controls other than the line
/// ends, DEL, or a C1 control in UTF-8 (`\u{80}`–`\u{9f}`).
fn assert_inert(what: &str, o: &Output) {
    for (name, bytes) in [("stdout", &o.stdout), ("stderr", &o.stderr)] {
        let text = String::from_utf8_lossy(bytes);
        let bad: Vec<char> = text
            .chars()
            .filter(|c| *c != '\n' && (c.is_control()))
            .collect();
        assert!(
            bad.is_empty(),
            "{what}: {name} holds control characters {bad:?}:\n{text}"
        );
    }
}

fn uuid() -> &'static str {
    "0f8fad5b-d9cb-469f-a165-70867728950e"
}

/// A report's `detail` is anyone's to write; `flight status` shows it to an approver. Code
/// that printed it raw let `\x1b[2J` clear the approver's screen. (An `arm` with escape
/// codes is refused by the tower.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flight_status_shows_escape_codes_from_reports_as_text() {
    let db = TestDb::new(Engine::Sqlite).await.unwrap();
    let data = scratch("terminal-status");
    let alice = make_token(&db.url, "author", "alice");
    let bob = make_token(&db.url, "approver", "bob");
    let tower = Tower::serve(&db.url, &data, &[]);
    let file = data.join("esc.json");
    std::fs::write(
        &file,
        json!({"studyname": "esc", "author": "a@example.com", "description": "d",
               "arms": [{"name": "red", "ratio": 1}],
               "flightplan": [{"action": "log", "text": "hi"}]})
        .to_string(),
    )
    .unwrap();
    for (args, who) in [
        (vec!["flight", "push", file.to_str().unwrap()], &alice),
        (vec!["flight", "review", "esc"], &alice),
        (vec!["flight", "approve", "esc"], &bob),
    ] {
        let o = tp_env(&args, &as_holder(&tower, who));
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    }

    let detail = "\x1b[2J\x1b[Hall good\rhidden\nsecond line\u{9b}2J";
    let post = |arm: &str| {
        let batch = json!({"client": uuid(), "reports": [
            {"seq": 1, "flight": "esc", "version": 1, "arm": arm, "status": "failed", "step": 0,
             "at": "2026-12-01T00:00:00Z", "detail": detail}
        ]});
        reqwest::Client::new()
            .post(format!("{}/api/v1/reports", tower.url))
            .json(&batch)
            .send()
    };
    // An arm is a name by the flight's rule: one with escape codes is refused at the door.
    let res = post("\x1b[8mred").await.unwrap();
    assert_eq!(res.status().as_u16(), 422);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["problems"][0]["path"], "reports[0].arm", "{body}");
    let arm = "red";
    let res = post(arm).await.unwrap();
    assert!(res.status().is_success(), "{}", res.text().await.unwrap());

    let status = tp_env(&["flight", "status", "esc"], &as_holder(&tower, &bob));
    assert!(status.status.success(), "{}", stderr(&status));
    assert_inert("flight status", &status);
    let text = stdout(&status);
    assert!(
        text.contains("\\x1b[2J\\x1b[Hall good\\rhidden\\nsecond line\\u{9b}2J"),
        "the detail is shown, made visible, on one line:\n{text}"
    );

    // --json stays exact JSON: the same strings, escaped as JSON escapes them.
    let json_out = tp_env(
        &["flight", "status", "esc", "--json"],
        &as_holder(&tower, &bob),
    );
    assert_inert("flight status --json", &json_out);
    let v: Value = serde_json::from_slice(&json_out.stdout).unwrap();
    assert_eq!(v["errors"][0]["detail"], detail);
    assert_eq!(v["progress"]["byArm"][arm], 1);

    tower.kill();
    let _ = std::fs::remove_dir_all(&data);
    db.cleanup().await;
}

/// A flight's texts come from an index (a tower, or anyone who can change a file:// index);
/// `testpilot log` and `testpilot later list` show them to the person on the machine.
#[test]
fn log_and_later_show_escape_codes_from_an_index_as_text() {
    let dir = scratch("terminal-log");
    let profile = dir.join("profile");
    let flight = json!({
        "studyname": "esc", "author": "\x1b[2Jme", "description": "\x1b[2J\x1b[1Ahidden", "version": 1,
        "flightplan": [
            {"action": "status", "text": "\x1b]0;pwned\x07ok"},
            {"action": "log", "text": "\x1b[2Jcleared\rhidden"},
            {"action": "message", "text": "line one\nline two"},
            {"action": "external", "type": "message", "title": "\x1b[31mtitle", "text": "a\rb", "waitFor": "ok"}
        ]
    });
    let index = dir.join("index.json");
    std::fs::write(
        &index,
        json!({"serial": 1, "generatedAt": 0, "expiresAt": 4_102_444_800_000i64, "flights": [flight]})
            .to_string(),
    )
    .unwrap();
    let once = run(command()
        .args(["pilot", "run", "--insecure-unsigned", "--once", "--profile"])
        .arg(&profile)
        .arg("--tower")
        .arg(format!("file://{}", index.display())));
    assert!(once.status.success(), "{}", stderr(&once));
    let p = profile.to_str().unwrap();

    let log = tp(&["log", "--profile", p]);
    assert!(log.status.success(), "{}", stderr(&log));
    assert_inert("log", &log);
    let text = stdout(&log);
    for shown in [
        "\\x1b]0;pwned\\x07ok",
        "\\x1b[2Jcleared\\rhidden",
        "line one\\nline two",
    ] {
        assert!(text.contains(shown), "`{shown}` not in:\n{text}");
    }

    let json_log = tp(&["log", "--profile", p, "--json"]);
    assert_inert("log --json", &json_log);
    let v: Value = serde_json::from_slice(&json_log.stdout).unwrap();
    assert_eq!(v[0]["statusLine"], "\x1b]0;pwned\x07ok");

    let later = tp(&["later", "--profile", p, "list"]);
    assert!(later.status.success(), "{}", stderr(&later));
    assert_inert("later list", &later);
    assert!(
        stdout(&later).contains("\\x1b[31mtitle"),
        "{}",
        stdout(&later)
    );
    let prompts = tp_json(&["later", "--profile", p, "list", "--json"]);
    assert_eq!(prompts[0]["title"], "\x1b[31mtitle");
    let _ = std::fs::remove_dir_all(&dir);
}

/// File names are outside data too: `validate` quotes them in every line.
#[test]
fn validate_shows_a_file_name_with_escape_codes_as_text() {
    let dir = scratch("terminal-validate");
    let file = dir.join("bad\x1b[2J\r.json");
    std::fs::write(&file, "{\"studyname\": 3}").unwrap();
    let out = tp(&["flight", "validate", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_inert("validate", &out);
    assert!(
        stdout(&out).contains("bad\\x1b[2J\\r.json: "),
        "{}",
        stdout(&out)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A tower — or whatever answers at its address — writes the error messages the CLI
/// prints when it refuses something.
#[test]
fn a_refusal_from_a_hostile_tower_is_shown_as_text() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = conn.read(&mut buf);
        let body = json!({"error": "\x1b[2Jnothing to see", "problems": [
            {"path": "$\x1b[1A", "message": "\rall\u{9b}good"}]})
        .to_string();
        let answer = format!(
            "HTTP/1.1 409 Conflict\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(answer.as_bytes()).unwrap();
    });
    let out = tp(&["flight", "approve", "x", "--tower", &url, "--token", "t"]);
    server.join().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_inert("approve", &out);
    assert!(
        stderr(&out).contains("\\x1b[2Jnothing to see"),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("x: $\\x1b[1A: \\rall\\u{9b}good"),
        "{}",
        stdout(&out)
    );
}
