//! Push, end to end with the real binaries (docs/api.md, "Push: GET /control/stream"): a
//! pilot that polls once an hour undoes a flight killed on the tower within seconds, because
//! the tower's stream wakes it; and a server without the stream (404) leaves the pilot
//! polling as before.

use crate::support::{
    as_holder, command, make_token, scratch, stderr, stdout, tp, tp_env, until, Engine, TestDb,
    Tower,
};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A generous bound for kill-to-undo (the figure is in BENCHMARKS.md; this only catches a
/// pilot that waited for its hourly poll).
const UNDO_BOUND: Duration = Duration::from_secs(10);

fn flag(profile: &Path) -> Value {
    std::fs::read_to_string(profile.join("features.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .map(|v| v["push.flag"].clone())
        .unwrap_or(Value::Null)
}

fn profile_with_flag_off(dir: &Path) -> std::path::PathBuf {
    let profile = dir.join("profile");
    std::fs::create_dir_all(&profile).unwrap();
    std::fs::write(
        profile.join("features.json"),
        json!({"push.flag": {"on": false}}).to_string(),
    )
    .unwrap();
    profile
}

fn the_flight() -> Value {
    json!({"studyname": "pushed", "author": "a@example.com", "description": "sets a flag for a day",
        "flightplan": [{"action": "feature", "id": "push.flag", "value": {"on": true}},
                       {"action": "wait", "for": "1d"}]})
}

fn stop(mut agent: Child) {
    let st = Command::new("sh")
        .args(["-c", &format!("kill -TERM {}", agent.id())])
        .status()
        .unwrap();
    assert!(st.success());
    let status = until("the agent to stop", || agent.try_wait().unwrap());
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_kill_reaches_a_pilot_that_polls_hourly_within_seconds() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::new(Engine::Sqlite)).unwrap();
    let dir = scratch("push-kill");
    let alice = make_token(&db.url, "author", "alice");
    let bob = make_token(&db.url, "approver", "bob");
    let key = stdout(&tp(&["tower", "pubkey", "--db", &db.url]))
        .trim()
        .to_string();
    let tower = Tower::serve(&db.url, &dir.join("data"), &[]);
    let file = dir.join("pushed.json");
    std::fs::write(&file, the_flight().to_string()).unwrap();
    let as_alice = as_holder(&tower, &alice);
    let as_bob = as_holder(&tower, &bob);
    for (args, who) in [
        (vec!["flight", "push", file.to_str().unwrap()], &as_alice),
        (vec!["flight", "review", "pushed"], &as_alice),
        (vec!["flight", "approve", "pushed"], &as_bob),
    ] {
        let o = tp_env(&args, who);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    }

    let profile = profile_with_flag_off(&dir);
    let agent = command()
        .args(["pilot", "run", "--poll", "1h", "--public-key", &key])
        .arg("--profile")
        .arg(&profile)
        .arg("--tower")
        .arg(&tower.url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    until("the flight to set the flag", || {
        (flag(&profile) == json!({"on": true})).then_some(())
    });
    let p = profile.to_str().unwrap();
    until("the pilot to listen to the stream", || {
        let log = stdout(&tp(&["log", "--profile", p]));
        log.contains("listening for index changes").then_some(())
    });

    let killed_at = Instant::now();
    let o = tp_env(&["flight", "kill", "pushed", "--reason", "test"], &as_bob);
    assert!(o.status.success(), "{}", stderr(&o));
    until("the flag to be undone", || {
        (flag(&profile) == json!({"on": false})).then_some(())
    });
    let took = killed_at.elapsed();
    eprintln!("kill to undo: {} ms (poll 1 h)", took.as_millis());
    assert!(
        took < UNDO_BOUND,
        "the kill took {took:?}: the pilot did not hear the stream"
    );
    stop(agent);
    let log = stdout(&tp(&["log", "--profile", p]));
    assert_eq!(
        log.matches("listening for index changes").count(),
        1,
        "said once: {log}"
    );
    drop(tower);
    rt.block_on(db.cleanup());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A server with the index (unsigned) and no stream: 404 on `/control/stream`, 503 on
/// anything else. Counts the requests for each.
struct NoStream {
    url: String,
    serial: Arc<AtomicU64>,
    index_hits: Arc<AtomicU64>,
    stream_hits: Arc<AtomicU64>,
}

fn no_stream_server() -> NoStream {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let serial = Arc::new(AtomicU64::new(1));
    let index_hits = Arc::new(AtomicU64::new(0));
    let stream_hits = Arc::new(AtomicU64::new(0));
    let (s, ih, sh) = (serial.clone(), index_hits.clone(), stream_hits.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let (s, ih, sh) = (s.clone(), ih.clone(), sh.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut first = String::new();
                let _ = reader.read_line(&mut first);
                let mut length = 0usize;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let _ = reader
                    .by_ref()
                    .take(length as u64)
                    .read_to_end(&mut Vec::new());
                let (status, body) = if first.starts_with("GET /control/index.json") {
                    ih.fetch_add(1, Ordering::SeqCst);
                    let serial = s.load(Ordering::SeqCst);
                    let flights = if serial > 1 {
                        vec![the_flight()]
                    } else {
                        vec![]
                    };
                    let far = 4_102_444_800_000i64;
                    let index = json!({"serial": serial, "generatedAt": 0, "expiresAt": far, "flights": flights});
                    ("200 OK", index.to_string())
                } else if first.starts_with("GET /control/stream") {
                    sh.fetch_add(1, Ordering::SeqCst);
                    ("404 Not Found", "{\"error\":\"no such page\"}".to_string())
                } else {
                    ("503 Service Unavailable", "{}".to_string())
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    NoStream {
        url,
        serial,
        index_hits,
        stream_hits,
    }
}

#[test]
fn without_a_stream_the_pilot_still_polls() {
    let server = no_stream_server();
    let dir = scratch("push-404");
    let profile = profile_with_flag_off(&dir);
    let agent = command()
        .args(["pilot", "run", "--insecure-unsigned", "--poll", "1s"])
        .arg("--profile")
        .arg(&profile)
        .arg("--tower")
        .arg(&server.url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    until("the first poll", || {
        (server.index_hits.load(Ordering::SeqCst) >= 1).then_some(())
    });
    server.serial.store(2, Ordering::SeqCst);
    until("a later poll to set the flag", || {
        (flag(&profile) == json!({"on": true})).then_some(())
    });
    assert!(server.index_hits.load(Ordering::SeqCst) >= 2);
    let p = profile.to_str().unwrap();
    let log = until("the pilot to say it polls only", || {
        let log = stdout(&tp(&["log", "--profile", p]));
        log.contains("no push stream").then_some(log)
    });
    assert!(log.contains("404"), "{log}");
    // The stream is retried once per poll interval (at least a minute), not in a loop.
    assert_eq!(server.stream_hits.load(Ordering::SeqCst), 1);
    stop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}
