//! Sync over real HTTP (a tiny server in the test on 127.0.0.1:0) and through file://, end to
//! end with a flight copied from examples/.

use crate::support::*;
use ed25519_dalek::SigningKey;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testpilot_flight::index::{Envelope, IndexPayload, Trust};
use testpilot_flight::Timestamp;
use testpilot_pilot::engine::PilotConfig;
use testpilot_pilot::net::HttpNet;
use testpilot_pilot::sync::{sync, upload_reports, Synced, TowerSource};
use testpilot_pilot::{Faults, Pilot, ReferenceHost};

#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

pub type Handler = dyn Fn(&Seen) -> (u16, Vec<(String, String)>, Vec<u8>) + Send + Sync;

/// A one-thread HTTP/1.1 server answering with `handler`; returns its base URL and what it saw.
pub fn serve(handler: Arc<Handler>) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            if r.read_line(&mut line).is_err() || line.is_empty() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or("").to_string();
            let path = parts.next().unwrap_or("").to_string();
            let mut headers = Vec::new();
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.trim().split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                }
            }
            let mut body = vec![0u8; len];
            let _ = r.read_exact(&mut body);
            let req = Seen {
                method,
                path,
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            };
            seen2.lock().unwrap().push(req.clone());
            let (status, extra, text) = handler(&req);
            let mut resp = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                text.len()
            );
            for (k, v) in extra {
                resp.push_str(&format!("{k}: {v}\r\n"));
            }
            resp.push_str("\r\n");
            let mut bytes = resp.into_bytes();
            bytes.extend_from_slice(&text);
            let _ = s.write_all(&bytes);
        }
    });
    (format!("http://{addr}"), seen)
}

pub fn http_pilot(rig: &Rig) -> Pilot {
    let host = ReferenceHost::new(&rig.profile, Faults::default());
    let config = PilotConfig {
        profile: rig.profile.clone(),
        person: Some(json!({"personid": "p-http", "os": "linux"})),
    };
    let net = Arc::new(HttpNet::new(Duration::from_secs(10)).unwrap());
    Pilot::open(
        config,
        Box::new(host),
        net,
        Arc::new(rig.clock.clone()),
        Faults::default(),
    )
    .unwrap()
}

#[test]
fn index_over_http_with_etag_and_reports_in_batches() {
    let rig = Rig::new();
    let key = SigningKey::from_bytes(&[9; 32]);
    let mut flights = vec![flight(
        "live",
        json!([{"action": "log", "text": "hi"}, {"action": "wait", "for": "1d"}]),
    )];
    for i in 0..120 {
        let mut f = flight(
            &format!("other-{i}"),
            json!([{"action": "log", "text": "x"}]),
        );
        f["filter"] = json!({"oses": ["windows"]});
        flights.push(f);
    }
    let payload = IndexPayload {
        serial: 3,
        generated_at: T0,
        expires_at: Timestamp(T0.0 + 86_400_000),
        flights,
        next_key: None,
    };
    let envelope = Envelope::sign(&payload, &key).to_text();
    let accept_reports = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let accept2 = accept_reports.clone();
    let handler: Arc<Handler> = Arc::new(move |r: &Seen| {
        if r.path == "/control/index.json" {
            if r.headers
                .iter()
                .any(|(k, v)| k == "if-none-match" && v == "\"s3\"")
            {
                return (304, vec![], Vec::new());
            }
            return (
                200,
                vec![("ETag".into(), "\"s3\"".into())],
                envelope.clone().into_bytes(),
            );
        }
        if r.path == "/api/v1/reports" && r.method == "POST" {
            if accept2.load(std::sync::atomic::Ordering::SeqCst) {
                return (200, vec![], b"{}".to_vec());
            }
            return (
                503,
                vec![("Retry-After".into(), "120".into())],
                b"{\"error\": \"down for maintenance\"}".to_vec(),
            );
        }
        (404, vec![], Vec::new())
    });
    let (base, seen) = serve(handler);
    let tower = TowerSource::parse(&base).unwrap();
    let mut p = http_pilot(&rig);
    let vk = key.verifying_key();
    let trust = Trust::Pinned(&vk);
    assert_eq!(
        sync(&mut p, &tower, &trust).unwrap(),
        Synced::Accepted {
            serial: 3,
            flights: 121
        }
    );
    assert_eq!(sync(&mut p, &tower, &trust).unwrap(), Synced::NotModified);
    p.tick().unwrap();
    assert_eq!(status(&p, "live"), "running");
    assert_eq!(status(&p, "other-7"), "ineligible");

    // The tower is down: reports stay in the outbox.
    let queued = p.journal.outbox_pending().unwrap();
    assert!(queued >= 122, "{queued}");
    // It says when to come back: the agent waits that long.
    let down = upload_reports(&mut p, &tower).unwrap_err();
    assert_eq!(down.retry_after_ms, Some(120_000), "{down}");
    assert!(down.to_string().contains("answered 503"), "{down}");
    assert_eq!(p.journal.outbox_pending().unwrap(), queued);
    // It is back: everything goes, in batches of at most 100.
    accept_reports.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(upload_reports(&mut p, &tower).unwrap() as i64, queued);
    assert_eq!(p.journal.outbox_pending().unwrap(), 0);
    let posts: Vec<Seen> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.method == "POST")
        .cloned()
        .collect();
    let batches: Vec<Value> = posts
        .iter()
        .map(|s| serde_json::from_str(&s.body).unwrap())
        .collect();
    assert_eq!(batches.len(), 1 + 2, "one refused, then two batches");
    let client = p.journal.meta("client").unwrap().unwrap();
    let mut seqs = Vec::new();
    for b in &batches[1..] {
        assert_eq!(b["client"], client.as_str());
        assert_ne!(b["client"], "p-http", "the client id is not the personid");
        let rs = b["reports"].as_array().unwrap();
        assert!(rs.len() <= 100);
        for r in rs {
            for k in ["seq", "flight", "version", "arm", "status", "step", "at"] {
                assert!(r.get(k).is_some(), "report without {k}: {r}");
            }
            seqs.push(r["seq"].as_i64().unwrap());
        }
        // The tower's own reader accepts it.
        testpilot_flight::report::ReportBatch::from_json(b, 100).unwrap();
    }
    let mut sorted = seqs.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), seqs.len());
}

#[test]
fn an_example_flight_runs_end_to_end_from_a_file_index() {
    // examples/welcome-tour.json, copied into tests/data: log, a message, a feature, observe
    // and notify in parallel, a day's wait and a status line.
    let rig = Rig::new();
    let example: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/welcome-tour.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let name = example["studyname"].as_str().unwrap().to_string();
    let index = json!({"serial": 1, "generatedAt": T0.0, "expiresAt": T0.0 + 30 * 86_400_000i64, "flights": [example]});
    let file = rig.scratch("index.json");
    std::fs::write(&file, index.to_string()).unwrap();
    let tower = TowerSource::parse(&format!("file://{}", file.display())).unwrap();
    let before = rig.snapshot();
    let mut p = rig.pilot();
    sync(&mut p, &tower, &Trust::InsecureUnsigned).unwrap();
    p.tick().unwrap();
    assert_eq!(status(&p, &name), "running");
    assert_eq!(rig.features()["onboarding.tour"]["enabled"], true);
    let prompts = testpilot_pilot::flightlog::pending_prompts(&p.journal).unwrap();
    assert_eq!(prompts[0]["title"], "Welcome!");
    drive(&rig, &mut p, Say::Ok, &["page-opened"]).unwrap();
    let log = log_of(&p, &name);
    assert_eq!(log["status"], "completed", "{log:#}");
    assert_eq!(log["statusLine"], "Tour finished");
    assert_eq!(log["cleanedUp"], true);
    assert_eq!(rig.snapshot(), before, "the profile is as it was");
    let n = rig.notifications();
    assert_eq!(n.len(), 1);
    assert_eq!(n[0]["subject"], "first-day");
    assert_eq!(n[0]["data"]["step"], "3");
    assert!(timeline_text(&p, &name)
        .contains("Welcome tour first-day starting on linux (release, en-US)"));
}
