//! The tower's command line end to end, with the real `testpilot` binary: tokens, pubkey,
//! serve, and an author and an approver taking a flight from push to kill, with each
//! refusal's exit code and message; on SQLite and on PostgreSQL.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use testpilot_flight::index::{accept, parse_public_key, Trust};
use testpilot_flight::Timestamp;
use testpilot_tower::store::Engine;
use testpilot_tower::testing::{temp_dir, TestDb};

fn testpilot(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_testpilot"));
    c.args(args)
        .env_remove("TESTPILOT_TOWER")
        .env_remove("TESTPILOT_TOKEN")
        .env_remove("TESTPILOT_DB");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run testpilot")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn serve(db: &str, data: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_testpilot"))
        .args(["tower", "serve", "--db", db, "--listen", "127.0.0.1:0"])
        .arg("--data")
        .arg(data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("the tower to start").unwrap();
        if let Some(rest) = line.strip_prefix("tower listening on ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines.by_ref() {});
    (child, url)
}

async fn flight_from_push_to_kill(engine: Engine) {
    let db = TestDb::new(engine).await.unwrap();
    let data = temp_dir("testpilot-tower-cli");
    let url = db.url.clone();
    let token = |role: &str, name: &str| {
        let o = testpilot(
            &[
                "tower", "token", "create", "--role", role, "--name", name, "--db", &url,
            ],
            &[],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let out = stdout(&o);
        assert_eq!(
            out.lines().count(),
            1,
            "the token alone on standard output: {out:?}"
        );
        out.trim().to_string()
    };
    let alice = token("author", "alice");
    let bob = token("approver", "bob");
    let pubkey = stdout(&testpilot(&["tower", "pubkey", "--db", &url], &[]))
        .trim()
        .to_string();
    let key = parse_public_key(&pubkey).unwrap();

    let (mut tower, base) = serve(&url, &data);
    let as_alice = [
        ("TESTPILOT_TOWER", base.as_str()),
        ("TESTPILOT_TOKEN", alice.as_str()),
    ];
    let as_bob = [
        ("TESTPILOT_TOWER", base.as_str()),
        ("TESTPILOT_TOKEN", bob.as_str()),
    ];

    let file = data.join("hello.json");
    std::fs::write(
        &file,
        r#"{"studyname": "hello", "author": "a@example.com", "description": "says hello",
            "flightplan": [{"action": "log", "text": "hello {{os}}"}]}"#,
    )
    .unwrap();
    let file_s = file.to_str().unwrap();
    let pushed = testpilot(&["flight", "push", file_s], &as_alice);
    assert!(
        pushed.status.success(),
        "{}{}",
        stdout(&pushed),
        stderr(&pushed)
    );
    assert!(
        stdout(&pushed).contains("revision 1 pushed"),
        "{}",
        stdout(&pushed)
    );

    // Refusals: an author cannot approve; a flight not under review cannot be approved.
    let early = testpilot(&["flight", "approve", "hello"], &as_bob);
    assert_eq!(early.status.code(), Some(1));
    assert!(
        stderr(&early).contains("send it for review first"),
        "{}",
        stderr(&early)
    );
    assert!(testpilot(&["flight", "review", "hello"], &as_alice)
        .status
        .success());
    let own = testpilot(&["flight", "approve", "hello"], &as_alice);
    assert_eq!(own.status.code(), Some(1));
    assert!(
        stderr(&own).contains("not allowed (403 Forbidden)"),
        "{}",
        stderr(&own)
    );
    let bad_token = testpilot(
        &[
            "flight", "status", "hello", "--tower", &base, "--token", "tp_nope",
        ],
        &[],
    );
    assert_eq!(bad_token.status.code(), Some(1));
    assert!(
        stderr(&bad_token).contains("not authenticated"),
        "{}",
        stderr(&bad_token)
    );

    // Send-back: a comment is required; the revision returns to draft; the author sends it
    // for review again.
    let no_comment = testpilot(&["flight", "send-back", "hello"], &as_bob);
    assert_eq!(no_comment.status.code(), Some(2), "{}", stderr(&no_comment));
    assert!(stderr(&no_comment).contains("--comment"));
    let blank = testpilot(&["flight", "send-back", "hello", "--comment", " "], &as_bob);
    assert_eq!(blank.status.code(), Some(1));
    assert!(stderr(&blank).contains("say why"), "{}", stderr(&blank));
    let back = testpilot(
        &[
            "flight",
            "send-back",
            "hello",
            "--comment",
            "log the channel too",
        ],
        &as_bob,
    );
    assert!(back.status.success(), "{}", stderr(&back));
    assert!(
        stdout(&back).contains("the flight is draft"),
        "{}",
        stdout(&back)
    );
    let shown = testpilot(&["flight", "status", "hello"], &as_alice);
    assert!(
        stdout(&shown).contains("sendback v1  (comment: log the channel too)"),
        "{}",
        stdout(&shown)
    );
    assert!(testpilot(&["flight", "review", "hello"], &as_alice)
        .status
        .success());

    let approved = testpilot(&["flight", "approve", "hello", "--version", "1"], &as_bob);
    assert!(approved.status.success(), "{}", stderr(&approved));
    let index = reqwest::get(format!("{base}/control/index.json"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let now = Timestamp(chrono_now());
    let payload = accept(&index, &Trust::Pinned(&key), None, now)
        .expect("the served index verifies with `tower pubkey`");
    assert_eq!(payload.flights[0]["studyname"], "hello");

    assert!(
        testpilot(&["flight", "kill", "hello", "--reason", "test"], &as_bob)
            .status
            .success()
    );
    let status = testpilot(&["flight", "status", "hello", "--json"], &as_alice);
    let v: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(v["flight"]["state"], "killed");
    let steps: Vec<&str> = v["flight"]["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        ["push", "review", "sendback", "review", "approve", "kill"]
    );
    assert_eq!(v["progress"]["clients"], 0);

    // An invalid flight: the same lines as `flight validate`, exit 1, nothing sent.
    let bad = data.join("bad.json");
    std::fs::write(&bad, r#"{"studyname": "bad", "author": "a", "description": "d", "flightplan": [{"action": "wiat"}]}"#).unwrap();
    let refused = testpilot(&["flight", "push", bad.to_str().unwrap()], &as_alice);
    let validated = testpilot(&["flight", "validate", bad.to_str().unwrap()], &[]);
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(stdout(&refused), stdout(&validated));

    tower.kill().unwrap();
    tower.wait().unwrap();
    let out = data.join("static");
    let exported = testpilot(
        &[
            "tower",
            "export",
            "--out",
            out.to_str().unwrap(),
            "--db",
            &url,
        ],
        &[],
    );
    assert!(exported.status.success(), "{}", stderr(&exported));
    let text = std::fs::read_to_string(out.join("control").join("index.json")).unwrap();
    let payload = accept(&text, &Trust::Pinned(&key), None, now).unwrap();
    assert_eq!(payload.flights[0]["kill"], true);
    let _ = std::fs::remove_dir_all(&data);
    db.cleanup().await;
}

/// Wall-clock ms, for checking expiry of what a real tower signed.
fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_flight_from_push_to_kill_through_the_cli() {
    flight_from_push_to_kill(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_flight_from_push_to_kill_through_the_cli() {
    flight_from_push_to_kill(Engine::Postgres).await;
}
