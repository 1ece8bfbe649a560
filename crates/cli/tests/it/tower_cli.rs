//! The tower's command line end to end, with the real `testpilot` binary: tokens, pubkey,
//! serve, and an author and an approver taking a flight from push to kill, with each
//! refusal's exit code and message; on SQLite and on PostgreSQL.

use crate::support::{
    as_holder, make_token, now_ms, scratch, stderr, stdout, tp, tp_env, Engine, TestDb, Tower,
};
use serde_json::Value;
use testpilot_flight::index::{accept, parse_public_key, Trust};
use testpilot_flight::Timestamp;

async fn flight_from_push_to_kill(engine: Engine) {
    let db = TestDb::new(engine).await.unwrap();
    let data = scratch(&format!("tower-cli-{engine:?}"));
    let url = db.url.clone();
    let alice = make_token(&url, "author", "alice");
    let bob = make_token(&url, "approver", "bob");
    let pubkey = stdout(&tp(&["tower", "pubkey", "--db", &url]))
        .trim()
        .to_string();
    let key = parse_public_key(&pubkey).unwrap();

    let tower = Tower::serve(&url, &data, &[]);
    let base = tower.url.clone();
    let as_alice = as_holder(&tower, &alice);
    let as_bob = as_holder(&tower, &bob);

    let file = data.join("hello.json");
    std::fs::write(
        &file,
        r#"{"studyname": "hello", "author": "a@example.com", "description": "says hello",
            "flightplan": [{"action": "log", "text": "hello {{os}}"}]}"#,
    )
    .unwrap();
    let file_s = file.to_str().unwrap();
    let pushed = tp_env(&["flight", "push", file_s], &as_alice);
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
    let early = tp_env(&["flight", "approve", "hello"], &as_bob);
    assert_eq!(early.status.code(), Some(1));
    assert!(
        stderr(&early).contains("send it for review first"),
        "{}",
        stderr(&early)
    );
    assert!(tp_env(&["flight", "review", "hello"], &as_alice)
        .status
        .success());
    let own = tp_env(&["flight", "approve", "hello"], &as_alice);
    assert_eq!(own.status.code(), Some(1));
    assert!(
        stderr(&own).contains("not allowed (403 Forbidden)"),
        "{}",
        stderr(&own)
    );
    let bad_token = tp_env(
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
    let no_comment = tp_env(&["flight", "send-back", "hello"], &as_bob);
    assert_eq!(no_comment.status.code(), Some(2), "{}", stderr(&no_comment));
    assert!(stderr(&no_comment).contains("--comment"));
    let blank = tp_env(&["flight", "send-back", "hello", "--comment", " "], &as_bob);
    assert_eq!(blank.status.code(), Some(1));
    assert!(stderr(&blank).contains("say why"), "{}", stderr(&blank));
    let back = tp_env(
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
        stdout(&back).contains("the flight is a draft"),
        "{}",
        stdout(&back)
    );
    let shown = tp_env(&["flight", "status", "hello"], &as_alice);
    assert!(
        stdout(&shown).contains("sendback v1  (comment: log the channel too)"),
        "{}",
        stdout(&shown)
    );
    assert!(tp_env(&["flight", "review", "hello"], &as_alice)
        .status
        .success());

    let approved = tp_env(&["flight", "approve", "hello", "--version", "1"], &as_bob);
    assert!(approved.status.success(), "{}", stderr(&approved));
    let index = reqwest::get(format!("{base}/control/index.json"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let now = Timestamp(now_ms());
    let payload = accept(&index, &Trust::Pinned(&key), None, now)
        .expect("the served index verifies with `tower pubkey`");
    assert_eq!(payload.flights[0]["studyname"], "hello");

    assert!(
        tp_env(&["flight", "kill", "hello", "--reason", "test"], &as_bob)
            .status
            .success()
    );
    let status = tp_env(&["flight", "status", "hello", "--json"], &as_alice);
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
    let refused = tp_env(&["flight", "push", bad.to_str().unwrap()], &as_alice);
    let validated = tp(&["flight", "validate", bad.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(stdout(&refused), stdout(&validated));

    tower.kill();
    let out = data.join("static");
    let exported = tp_env(
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_flight_from_push_to_kill_through_the_cli() {
    flight_from_push_to_kill(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_flight_from_push_to_kill_through_the_cli() {
    flight_from_push_to_kill(Engine::Postgres).await;
}
