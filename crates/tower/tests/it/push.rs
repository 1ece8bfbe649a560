//! Push (docs/api.md, "Push: GET /control/stream"), over real sockets on 127.0.0.1: the
//! serial on connect and at every change (the tower's own, and another tower's through
//! PostgreSQL NOTIFY), heartbeats that keep an idle stream past the idle timeout, the 9th
//! stream from one address refused, and shutdown not held up by open streams.

use crate::both;
use crate::support::{flight, Tower};
use serde_json::Value;
use std::net::IpAddr;
use std::time::Duration;
use testpilot_tower::api::{ApiConfig, PushLimits};
use testpilot_tower::connections::ConnectionLimits;
use testpilot_tower::server::serve_with;
use testpilot_tower::store::Engine;
use testpilot_tower::RunningTower;

/// How long a test waits for what should come within a second.
const BOUND: Duration = Duration::from_secs(20);

fn config(heartbeat: Duration) -> ApiConfig {
    ApiConfig {
        push: PushLimits {
            heartbeat,
            ..PushLimits::default()
        },
        ..ApiConfig::default()
    }
}

/// `t`'s tower on a socket, with an idle timeout of `idle`.
async fn serve(t: &Tower, idle: Duration) -> RunningTower {
    let limits = ConnectionLimits {
        idle_timeout: idle,
        ..ConnectionLimits::default()
    };
    serve_with(
        t.state.clone(),
        "127.0.0.1:0".parse().unwrap(),
        3_600_000,
        limits,
        None,
    )
    .await
    .unwrap()
}

fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// An open stream, read a chunk at a time.
struct Stream {
    resp: reqwest::Response,
    text: String,
}

impl Stream {
    async fn open(http: &reqwest::Client, url: &str) -> Stream {
        let resp = http
            .get(format!("{url}/control/stream"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Stream {
            resp,
            text: String::new(),
        }
    }

    /// Reads until the text received holds `what`; everything received up to it is dropped.
    async fn until(&mut self, what: &str) {
        let read = async {
            while !self.text.contains(what) {
                match self.resp.chunk().await {
                    Ok(Some(c)) => self.text.push_str(&String::from_utf8_lossy(&c)),
                    other => panic!(
                        "the stream ended ({other:?}) before {what:?}: {}",
                        self.text
                    ),
                }
            }
        };
        tokio::time::timeout(BOUND, read)
            .await
            .unwrap_or_else(|_| panic!("no {what:?} on the stream: {}", self.text));
        let at = self.text.find(what).unwrap() + what.len();
        self.text.drain(..at);
    }
}

fn serial_event(n: u64) -> String {
    format!("event: index\ndata: {{\"serial\": {n}}}\n\n")
}

both!(the_serial_on_connect_and_at_every_change);
async fn the_serial_on_connect_and_at_every_change(engine: Engine) {
    let t = Tower::with(engine, config(Duration::from_millis(300))).await;
    // A heartbeat of 300 ms keeps a stream past an idle timeout of 2 s.
    let running = serve(&t, Duration::from_secs(2)).await;
    let http = client_from("127.0.0.1");
    let before = t.state.index.current().serial;
    let mut s = Stream::open(&http, &running.url).await;
    s.until(&serial_event(before)).await;

    t.make_live(flight("hello")).await;
    let after = t.state.index.current().serial;
    assert!(after > before);
    s.until(&serial_event(after)).await;

    s.until(": heartbeat\n\n").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    s.until(": heartbeat\n\n").await;
    let killed = t
        .post(
            "/api/v1/flights/hello/kill",
            &t.approver,
            serde_json::json!({}),
        )
        .await;
    assert_eq!(killed.status, 200, "{}", killed.json);
    s.until(&serial_event(t.state.index.current().serial)).await;

    // Shutdown ends the open stream rather than waiting on it.
    tokio::time::timeout(BOUND, running.stop())
        .await
        .expect("shutdown waited on an open stream")
        .unwrap();
    let ended = tokio::time::timeout(BOUND, async {
        loop {
            match s.resp.chunk().await {
                Ok(Some(_)) => continue,
                _ => return,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream outlived the tower");
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ninth_stream_from_one_address_is_refused() {
    let t = Tower::with(Engine::Sqlite, config(Duration::from_secs(15))).await;
    let running = serve(&t, Duration::from_secs(60)).await;
    let http = client_from("127.0.0.1");
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(Stream::open(&http, &running.url).await);
    }
    let refused = http
        .get(format!("{}/control/stream", running.url))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "30");
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("8 push streams"),
        "{body}"
    );
    assert_eq!(body["problems"], serde_json::json!([]));
    // Another address still gets one, and so does this one once a stream is closed.
    Stream::open(&client_from("127.0.0.2"), &running.url).await;
    drop(held.pop());
    let started = std::time::Instant::now();
    loop {
        let r = http
            .get(format!("{}/control/stream", running.url))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            break;
        }
        assert_eq!(r.status(), 429);
        assert!(started.elapsed() < BOUND, "the freed place never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(t.state.push.open_streams() <= 9);
    drop(held);
    running.stop().await.unwrap();
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_total_streams_the_answer_is_503() {
    let config = ApiConfig {
        push: PushLimits {
            per_address: 8,
            total: 2,
            heartbeat: Duration::from_secs(15),
        },
        ..ApiConfig::default()
    };
    let t = Tower::with(Engine::Sqlite, config).await;
    let running = serve(&t, Duration::from_secs(60)).await;
    let _a = Stream::open(&client_from("127.0.0.1"), &running.url).await;
    let _b = Stream::open(&client_from("127.0.0.2"), &running.url).await;
    let refused = client_from("127.0.0.3")
        .get(format!("{}/control/stream", running.url))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    running.stop().await.unwrap();
    t.finish().await;
}

// Two towers on one PostgreSQL: a change made through one reaches the other's streams
// through NOTIFY (neither polls: once an hour), from the one place the index learns of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_on_another_tower_reaches_the_stream() {
    let a = Tower::with(Engine::Postgres, config(Duration::from_secs(15))).await;
    let db_url = a.db.as_ref().unwrap().url.clone();
    let store = testpilot_tower::Store::open(&db_url).await.unwrap();
    let b_state =
        testpilot_tower::AppState::new(store, a.clock.clone(), config(Duration::from_secs(15)))
            .await
            .unwrap();
    let b = serve_with(
        b_state.clone(),
        "127.0.0.1:0".parse().unwrap(),
        3_600_000,
        ConnectionLimits::default(),
        None,
    )
    .await
    .unwrap();
    let http = client_from("127.0.0.1");
    let mut s = Stream::open(&http, &b.url).await;
    s.until(&serial_event(b_state.index.current().serial)).await;
    a.make_live(flight("hello")).await;
    s.until(&serial_event(a.state.index.current().serial)).await;
    b.stop().await.unwrap();
    a.finish().await;
}
