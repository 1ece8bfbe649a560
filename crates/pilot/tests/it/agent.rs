//! The agent as `up` embeds it: `run_agent(config, shutdown)` against a tower over HTTP.

use crate::support::*;
use crate::sync_http::{serve, Handler, Seen};
use ed25519_dalek::SigningKey;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use testpilot_flight::index::{public_key_to_base64, Envelope, IndexPayload};
use testpilot_flight::Timestamp;
use testpilot_pilot::agent::ProfileLock;
use testpilot_pilot::{run_agent, AgentConfig, Error};

/// The pilot of a profile with the person it keeps (as the agent opens it without --person).
fn stored(rig: &Rig) -> testpilot_pilot::Pilot {
    let host = testpilot_pilot::ReferenceHost::new(&rig.profile, Default::default());
    let pc = testpilot_pilot::engine::PilotConfig {
        profile: rig.profile.clone(),
        person: None,
    };
    testpilot_pilot::Pilot::open(
        pc,
        Box::new(host),
        rig.net.clone(),
        Arc::new(rig.clock.clone()),
        Default::default(),
    )
    .unwrap()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test]
async fn run_agent_once_over_http_downloads_installs_and_reports() {
    let rig = Rig::new();
    let pkg = rig.scratch("remote.zip");
    let sha = zip_package(&pkg, &[("main.js", "from the web")]);
    let bytes = std::fs::read(&pkg).unwrap();
    let key = SigningKey::from_bytes(&[5; 32]);
    let downloads = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let d2 = downloads.clone();
    let base_cell: Arc<std::sync::Mutex<String>> = Arc::default();
    let cell2 = base_cell.clone();
    let key2 = key.clone();
    let handler: Arc<Handler> = Arc::new(move |r: &Seen| {
        let base = cell2.lock().unwrap().clone();
        match r.path.as_str() {
            "/control/index.json" => {
                let plan = json!([
                    {"action": "addon", "do": "install", "id": "web@x", "url": format!("{base}/pkg.zip"), "sha256": sha, "permission": "none"},
                    {"action": "ping", "url": format!("{base}/ping/{{{{os}}}}")},
                    {"action": "wait", "for": "30d"}
                ]);
                let f = flight("web", plan);
                let p = IndexPayload {
                    serial: 1,
                    generated_at: Timestamp(0),
                    expires_at: Timestamp(now_ms() + 86_400_000),
                    flights: vec![f],
                    next_key: None,
                };
                (
                    200,
                    vec![],
                    Envelope::sign(&p, &key2).to_text().into_bytes(),
                )
            }
            "/pkg.zip" => {
                // The first download fails with a 503: it is retried later, not failed.
                if d2.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                    return (503, vec![], Vec::new());
                }
                (200, vec![], bytes.clone())
            }
            "/api/v1/reports" => (202, vec![], b"{}".to_vec()),
            _ => (200, vec![], Vec::new()),
        }
    });
    let (base, seen) = serve(handler);
    *base_cell.lock().unwrap() = base.clone();

    let mut config = AgentConfig::new(&rig.profile, base.clone());
    config.public_key = Some(public_key_to_base64(&key.verifying_key()));
    config.once = true;
    config.person = None;
    run_agent(config.clone(), std::future::pending())
        .await
        .unwrap();

    let p = stored(&rig);
    let log = log_of(&p, "web");
    assert_eq!(log["status"], "running", "{log:#}");
    assert!(
        timeline_text(&p, "web").contains("answered 503; trying again at"),
        "{}",
        timeline_text(&p, "web")
    );
    assert!(!rig.profile.join("addons").exists());
    let posts: Vec<Value> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.path == "/api/v1/reports")
        .map(|s| serde_json::from_str(&s.body).unwrap())
        .collect();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0]["reports"][0]["flight"], "web");
    assert_eq!(posts[0]["reports"][0]["status"], "running");
    assert_eq!(p.journal.outbox_pending().unwrap(), 0);
    let personid = p.person().personid().to_string();
    assert_eq!(personid.len(), 36, "a personid is generated and kept");
    drop(p);

    // While an agent holds the profile, a second one is refused with a clear message.
    let lock = ProfileLock::acquire(&rig.profile).unwrap();
    let err = run_agent(config.clone(), std::future::pending())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    assert!(err
        .to_string()
        .contains("another pilot agent is already running"));
    drop(lock);

    // Shutdown while running: returns promptly and cleanly.
    let mut forever = config.clone();
    forever.once = false;
    forever.poll = Duration::from_secs(3600);
    run_agent(forever, tokio::time::sleep(Duration::from_millis(300)))
        .await
        .unwrap();
    let p = stored(&rig);
    assert!(p
        .journal
        .timeline("")
        .unwrap()
        .iter()
        .any(|t| t.what == "agent stopped"));
    assert_eq!(
        p.person().personid(),
        personid,
        "the same personid on every start"
    );
    drop(p);

    // Past the backoff, the download is tried again, checked and installed. (HttpNet blocks:
    // it is used from a thread outside the runtime, as the agent does.)
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let before = rig.snapshot();
                rig.clock.set(Timestamp(now_ms() + 120_000));
                let host = testpilot_pilot::ReferenceHost::new(&rig.profile, Default::default());
                let net =
                    Arc::new(testpilot_pilot::net::HttpNet::new(Duration::from_secs(10)).unwrap());
                let pc = testpilot_pilot::engine::PilotConfig {
                    profile: rig.profile.clone(),
                    person: None,
                };
                let mut p = testpilot_pilot::Pilot::open(
                    pc,
                    Box::new(host),
                    net,
                    Arc::new(rig.clock.clone()),
                    Default::default(),
                )
                .unwrap();
                p.tick().unwrap();
                assert_eq!(
                    std::fs::read_to_string(rig.profile.join("addons/web@x/main.js")).unwrap(),
                    "from the web"
                );
                assert!(
                    !rig.profile.join("downloads").exists(),
                    "the download is not kept"
                );
                assert!(seen.lock().unwrap().iter().any(|s| s.path == "/ping/linux"));
                p.optout(Some("web")).unwrap();
                assert_eq!(rig.snapshot(), before);
            })
            .join()
            .unwrap()
    });
}

#[test]
fn http_package_with_the_wrong_bytes_is_refused() {
    let rig = Rig::new();
    rig.net.set(|_| {
        Ok(testpilot_pilot::net::Response {
            status: 200,
            headers: vec![],
            body: b"not the package".to_vec(),
        })
    });
    let before = rig.snapshot();
    let mut p = rig.pilot();
    let plan = json!([{"action": "addon", "do": "install", "id": "web@x", "url": "https://cdn.test/p.zip", "sha256": "ab".repeat(32), "permission": "none"}]);
    p.apply_index(&[flight("f", plan)], 1).unwrap();
    drive(&rig, &mut p, Say::Ok, &[]).unwrap();
    assert_eq!(status(&p, "f"), "failed");
    assert!(p
        .journal
        .flight("f")
        .unwrap()
        .unwrap()
        .reason
        .unwrap()
        .contains("has sha256"));
    assert_eq!(rig.snapshot(), before);
    assert_eq!(
        log_of(&p, "f")["requests"][0]["url"],
        "https://cdn.test/p.zip"
    );
}
