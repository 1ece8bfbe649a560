//! A copilot study end to end with real processes: a tower (SQLite, then PostgreSQL), 100 pilot
//! profiles across two arms, events fed with `testpilot pilot observe`, the tower and some
//! pilots killed with SIGKILL in the middle and restarted. The tower's results count exactly
//! what was fed, per arm and topic: nothing lost, nothing counted twice.

use crate::support::{
    as_holder, command, make_token, scratch, stderr, stdout, tp, tp_env, tp_json, Engine, TestDb,
    Tower,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

const PROFILES: usize = 100;
const TOPICS: [&str; 2] = ["clicks", "searches"];
const STUDY: &str = "e2e-copilot";

/// How many events of `topic` profile `i` is fed in round `round`.
fn fed(i: usize, topic: &str, round: usize) -> usize {
    match (topic, round) {
        ("clicks", 0) => i % 4,
        ("searches", 0) => (i * 7) % 3,
        ("clicks", _) => i % 2,
        _ => usize::from(i.is_multiple_of(5)),
    }
}

fn tower(db: &str, data: &Path) -> Tower {
    Tower::serve(db, data, &["--report-rate", "0"])
}

/// `pilot run --once` for one profile; success expected.
fn once(base: &str, key: &str, profile: &Path, person: &Path) -> std::process::Output {
    crate::support::run(
        command()
            .args([
                "pilot",
                "run",
                "--once",
                "--tower",
                base,
                "--public-key",
                key,
            ])
            .arg("--profile")
            .arg(profile)
            .arg("--person")
            .arg(person),
    )
}

fn in_parallel(n: usize, f: impl Fn(usize) + Sync) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let (next, f) = (&next, &f);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(move || loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= n {
                    break;
                }
                f(i);
            });
        }
    });
}

async fn copilot_study_counts_what_was_fed(engine: Engine) {
    let db = TestDb::new(engine).await.unwrap();
    let data = scratch(&format!("copilot-e2e-{engine:?}"));
    let url = db.url.clone();
    let alice = make_token(&url, "author", "alice");
    let bob = make_token(&url, "approver", "bob");
    let key = stdout(&tp(&["tower", "pubkey", "--db", &url]))
        .trim()
        .to_string();
    let mut t = tower(&url, &data);

    let doc = data.join("study.json");
    std::fs::write(
        &doc,
        json!({
            "copilot": 1, "studyname": STUDY, "author": "e2e@example.com",
            "description": "counts clicks and searches in two arms",
            "arms": [
                {"name": "control", "ratio": 1, "features": {}},
                {"name": "treat", "ratio": 1, "features": {"e2e.bar": {"v2": true}}}
            ],
            "watch": TOPICS, "duration": "1h", "uploadEvery": "1s"
        })
        .to_string(),
    )
    .unwrap();
    let doc_s = doc.to_str().unwrap();
    for (args, who) in [
        (vec!["flight", "push", doc_s], &alice),
        (vec!["flight", "review", STUDY], &alice),
        (vec!["flight", "approve", STUDY], &bob),
    ] {
        let o = tp_env(&args, &as_holder(&t, who));
        assert!(o.status.success(), "{args:?}: {}{}", stdout(&o), stderr(&o));
    }

    let profiles: Vec<PathBuf> = (0..PROFILES).map(|i| data.join(format!("p{i}"))).collect();
    let people: Vec<PathBuf> = (0..PROFILES)
        .map(|i| data.join(format!("person{i}.json")))
        .collect();
    for (i, p) in people.iter().enumerate() {
        std::fs::write(p, json!({"personid": format!("e2e-person-{i}"), "os": "Linux", "channel": "release", "locale": "en-US", "appversion": "130.0"}).to_string()).unwrap();
    }

    // Enrol every profile; read the arm each one got.
    let base = t.url.clone();
    in_parallel(PROFILES, |i| {
        let o = once(&base, &key, &profiles[i], &people[i]);
        assert!(o.status.success(), "profile {i}: {}", stderr(&o));
    });
    let arms: Vec<String> = profiles
        .iter()
        .map(|p| {
            let log = tp_json(&["log", "--profile", p.to_str().unwrap(), STUDY, "--json"]);
            log[0]["arm"]
                .as_str()
                .unwrap_or_else(|| panic!("no arm in {log}"))
                .to_string()
        })
        .collect();
    assert!(arms.iter().any(|a| a == "control") && arms.iter().any(|a| a == "treat"));

    let feed = |round: usize| {
        in_parallel(PROFILES, |i| {
            for topic in TOPICS {
                for _ in 0..fed(i, topic, round) {
                    let o = tp(&[
                        "pilot",
                        "observe",
                        topic,
                        "--profile",
                        profiles[i].to_str().unwrap(),
                    ]);
                    assert!(o.status.success(), "{}", stderr(&o));
                }
            }
        })
    };
    feed(0);
    std::thread::sleep(Duration::from_millis(1100));

    // Half the profiles upload while the tower is killed under them.
    let killer = {
        let pid = t.child.id();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(400));
            let _ = nix_kill(pid);
        })
    };
    in_parallel(PROFILES / 2, |i| {
        let _ = once(&base, &key, &profiles[i], &people[i]);
    });
    killer.join().unwrap();
    let _ = t.child.wait();
    t = tower(&url, &data);
    let base = t.url.clone();

    // The other half are killed at random moments of their round.
    in_parallel(PROFILES / 2, |k| {
        let i = PROFILES / 2 + k;
        let mut child = command()
            .args([
                "pilot",
                "run",
                "--once",
                "--tower",
                &base,
                "--public-key",
                &key,
            ])
            .arg("--profile")
            .arg(&profiles[i])
            .arg("--person")
            .arg(&people[i])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis((i as u64 * 37) % 250));
        let _ = child.kill();
        let _ = child.wait();
    });

    // More events, then every profile runs until nothing is left to send.
    feed(1);
    std::thread::sleep(Duration::from_millis(1100));
    for _ in 0..3 {
        in_parallel(PROFILES, |i| {
            let o = once(&base, &key, &profiles[i], &people[i]);
            assert!(o.status.success(), "profile {i}: {}", stderr(&o));
        });
        std::thread::sleep(Duration::from_millis(1100));
    }

    let mut want: BTreeMap<(String, String), u64> = BTreeMap::new();
    for (i, arm) in arms.iter().enumerate() {
        for topic in TOPICS {
            *want.entry((arm.clone(), topic.to_string())).or_default() +=
                (fed(i, topic, 0) + fed(i, topic, 1)) as u64;
        }
    }
    let results: Value = reqwest::Client::new()
        .get(format!("{base}/api/v1/flights/{STUDY}/results"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut got: BTreeMap<(String, String), u64> = BTreeMap::new();
    for topic in results["topics"].as_array().unwrap() {
        for arm in topic["arms"].as_array().unwrap() {
            got.insert(
                (
                    arm["arm"].as_str().unwrap().into(),
                    topic["topic"].as_str().unwrap().into(),
                ),
                arm["events"].as_u64().unwrap(),
            );
            let name = arm["arm"].as_str().unwrap();
            let topic = topic["topic"].as_str().unwrap();
            let n = arms.iter().filter(|a| *a == name).count() as u64;
            assert_eq!(arm["clients"].as_u64(), Some(n), "{arm}");
            let with = (0..PROFILES)
                .filter(|&i| arms[i] == name && fed(i, topic, 0) + fed(i, topic, 1) > 0)
                .count() as u64;
            assert_eq!(arm["clientsWithEvent"].as_u64(), Some(with), "{arm}");
        }
    }
    assert_eq!(got, want, "results {results:#}");
    // The export holds each event once too.
    let csv = reqwest::Client::new()
        .get(format!("{base}/api/v1/flights/{STUDY}/events.csv"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        csv.lines().count() as u64 - 1,
        want.values().sum::<u64>(),
        "one CSV line per event after the header"
    );
    t.kill();
    let _ = std::fs::remove_dir_all(&data);
    db.cleanup().await;
}

fn nix_kill(pid: u32) -> std::io::Result<()> {
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copilot_study_on_sqlite_counts_every_event_once_through_sigkills() {
    copilot_study_counts_what_was_fed(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copilot_study_on_postgres_counts_every_event_once_through_sigkills() {
    copilot_study_counts_what_was_fed(Engine::Postgres).await;
}
