//! Every answer the pilot reads is bounded, over real sockets: a server on 127.0.0.1 that sends
//! an endless or oversized body is cut off, and the pilot says which limit it hit.
//!
//! Regression: downloads were read whole into memory before any check; an answer of 400 MB
//! took the pilot to 830 MB resident.

use crate::support::*;
use crate::sync_http::http_pilot;
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{mpsc, Arc};
use std::time::Duration;
use testpilot_flight::index::Trust;
use testpilot_pilot::net::{Answer, HttpNet, Net, Request};
use testpilot_pilot::package;
use testpilot_pilot::sync::{sync, TowerSource};

/// What the hose offers: far more than any limit.
const OFFERED: u64 = 400 << 20;
/// What a server may get into the kernel's socket buffers and the client's read buffers after
/// the client stopped reading: generous, and still far below [`OFFERED`].
const SLACK: u64 = 24 << 20;

/// A server that answers every request with 200 and a body of zeros of up to [`OFFERED`] bytes,
/// declared in `Content-Length` or sent chunked without one.
struct Hose {
    url: String,
    /// Body bytes written per connection, once it is over.
    done: mpsc::Receiver<u64>,
}

impl Hose {
    fn new(declare_length: bool) -> Hose {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, done) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let mut r = BufReader::new(s.try_clone().unwrap());
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                let head = if declare_length {
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {OFFERED}\r\n\r\n")
                } else {
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_string()
                };
                if s.write_all(head.as_bytes()).is_err() {
                    continue;
                }
                let chunk = vec![0u8; 64 << 10];
                let mut sent = 0u64;
                while sent < OFFERED {
                    let ok = if declare_length {
                        s.write_all(&chunk)
                    } else {
                        s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                            .and_then(|()| s.write_all(&chunk))
                            .and_then(|()| s.write_all(b"\r\n"))
                    };
                    if ok.is_err() {
                        break;
                    }
                    sent += chunk.len() as u64;
                }
                let _ = tx.send(sent);
            }
        });
        Hose { url, done }
    }

    /// How much the server got out before the client hung up.
    fn sent(&self) -> u64 {
        self.done.recv_timeout(Duration::from_secs(60)).unwrap()
    }
}

fn net() -> HttpNet {
    HttpNet::new(Duration::from_secs(30)).unwrap()
}

#[test]
fn an_index_answer_over_8_mib_is_refused_and_cut_off() {
    for declare_length in [true, false] {
        let rig = Rig::new();
        let hose = Hose::new(declare_length);
        let mut p = http_pilot(&rig);
        let tower = TowerSource::parse(&hose.url).unwrap();
        let e = sync(&mut p, &tower, &Trust::InsecureUnsigned)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("the index answer is larger than 8 MiB; refused"),
            "{e}"
        );
        assert!(timeline_text(&p, "").contains("larger than 8 MiB; refused"));
        let sent = hose.sent();
        drop(p);
        assert!(sent < (8 << 20) + SLACK, "the server sent {sent} bytes");
    }
}

#[test]
fn a_package_that_declares_more_than_256_mib_is_refused_before_reading() {
    let rig = Rig::new();
    let hose = Hose::new(true);
    let dest = rig.scratch("downloads/pkg");
    let e = package::fetch(&net(), &hose.url, &"0".repeat(64), &dest)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("the add-on package answer is larger than 256 MiB; refused"),
        "{e}"
    );
    assert!(hose.sent() < SLACK);
    assert!(!dest.exists() && !dest.with_extension("part").exists());
}

#[test]
fn an_endless_package_streams_to_disk_up_to_the_limit_and_leaves_nothing() {
    let rig = Rig::new();
    let hose = Hose::new(false);
    let dest = rig.scratch("downloads/pkg");
    let e = package::fetch_within(&net(), &hose.url, &"0".repeat(64), &dest, 4 << 20)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("the add-on package answer is larger than 4 MiB; refused"),
        "{e}"
    );
    assert!(hose.sent() < (4 << 20) + SLACK);
    assert!(!dest.exists() && !dest.with_extension("part").exists());
    assert!(
        !rig.scratch("downloads").exists(),
        "not even the folder is left"
    );
}

#[test]
fn a_package_is_hashed_while_it_streams_and_kept_only_when_it_matches() {
    let rig = Rig::new();
    let pkg = rig.scratch("real.zip");
    let sha = zip_package(&pkg, &[("main.js", "ok")]);
    let bytes = std::fs::read(&pkg).unwrap();
    let handler: Arc<crate::sync_http::Handler> =
        Arc::new(move |_: &crate::sync_http::Seen| (200, vec![], bytes.clone()));
    let (base, _) = crate::sync_http::serve(handler);
    let dest = rig.scratch("downloads/pkg");
    let wrong = "1".repeat(64);
    let e = package::fetch(&net(), &base, &wrong, &dest)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("has sha256 {sha}, but the flight says {wrong}")),
        "{e}"
    );
    assert!(!dest.exists() && !dest.with_extension("part").exists());
    package::fetch(&net(), &base, &sha, &dest).unwrap();
    assert_eq!(sha256(&dest), sha);
}

#[test]
fn an_add_on_from_an_oversized_answer_fails_its_step_and_leaves_no_download() {
    let rig = Rig::new();
    let hose = Hose::new(true);
    let mut p = http_pilot(&rig);
    let plan = json!([{"action": "addon", "do": "install", "id": "big@x", "url": format!("{}/big.zip", hose.url), "sha256": "0".repeat(64), "permission": "none"}]);
    p.apply_index(&[flight("big", plan)], 1).unwrap();
    drive(&rig, &mut p, Say::Ok, &[]).unwrap();
    assert_eq!(status(&p, "big"), "failed");
    let reason = p.journal.flight("big").unwrap().unwrap().reason.unwrap();
    assert!(
        reason.contains("downloading add-on `big@x` failed")
            && reason.contains("the add-on package answer is larger than 256 MiB; refused"),
        "{reason}"
    );
    assert!(hose.sent() < SLACK);
    drop(p);
    assert!(!rig.profile.join("downloads").exists());
    assert!(!rig.profile.join("addons").exists());
}

#[test]
fn a_ping_answer_is_not_read_past_a_peek() {
    let rig = Rig::new();
    let hose = Hose::new(false);
    let mut p = http_pilot(&rig);
    let plan = json!([{"action": "ping", "url": format!("{}/ping", hose.url)}]);
    p.apply_index(&[flight("ping", plan)], 1).unwrap();
    drive(&rig, &mut p, Say::Ok, &[]).unwrap();
    // The status is what counts: the ping went through.
    assert_eq!(status(&p, "ping"), "completed");
    assert!(hose.sent() < SLACK);
    drop(p);
}

#[test]
fn send_keeps_a_status_answer_to_a_peek() {
    let hose = Hose::new(true);
    let resp = net()
        .send(&Request {
            method: "GET".into(),
            url: hose.url.clone(),
            headers: vec![],
            body: None,
            answer: Answer::Status,
        })
        .unwrap();
    assert_eq!(resp.status, 200);
    assert!(resp.body.len() <= testpilot_pilot::net::PEEK);
    assert!(hose.sent() < SLACK);
}

#[test]
fn an_index_file_over_8_mib_is_refused_without_reading_it_all() {
    let rig = Rig::new();
    let file = rig.scratch("index.json");
    let f = std::fs::File::create(&file).unwrap();
    f.set_len(64 << 20).unwrap();
    let mut p = rig.pilot();
    let e = sync(&mut p, &TowerSource::File(file), &Trust::InsecureUnsigned)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("the index answer is larger than 8 MiB; refused"),
        "{e}"
    );
}

/// A kept-alive connection idle past [`testpilot_pilot::net::IDLE_REUSE`] is not reused: the
/// tower closes idle ones after its 10 s header timeout, and a request sent on one just as it
/// closes fails ("connection closed before message completed", seen with `testpilot up`).
/// This server answers the first request of each connection and drops the connection at its
/// second, as such a race does.
#[test]
fn an_idle_connection_is_not_reused_past_the_idle_limit() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/x", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                for n in 0.. {
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line.trim().is_empty() {
                            break;
                        }
                    }
                    if n > 0 {
                        return; // closed without an answer
                    }
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                }
            });
        }
    });
    let net = net();
    let get = || Request {
        method: "GET".into(),
        url: url.clone(),
        headers: Vec::new(),
        body: None,
        answer: Answer::Status,
    };
    assert_eq!(net.send(&get()).unwrap().status, 200);
    std::thread::sleep(testpilot_pilot::net::IDLE_REUSE + Duration::from_secs(2));
    let second = net.send(&get());
    assert!(
        matches!(&second, Ok(r) if r.status == 200),
        "the idle connection was reused: {:?}",
        second.map(|r| r.status)
    );
}
