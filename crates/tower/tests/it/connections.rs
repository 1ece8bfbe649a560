//! Issue 8, item 8: no read timeouts. A client that sent part of its headers and then
//! nothing held its connection forever, and 300 of them starved the tower. These tests speak
//! HTTP/1.1 by hand over real sockets on 127.0.0.1 to a tower with short limits.

use crate::support::T0;
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testpilot_flight::Clock;
use testpilot_tower::connections::ConnectionLimits;
use testpilot_tower::store::Engine;
use testpilot_tower::testing::TestDb;
use testpilot_tower::{ManualClock, RunningTower, TowerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// How long any test here waits for something that should happen within a second or two;
/// reaching it means the tower did not cut a connection it should have.
const BOUND: Duration = Duration::from_secs(20);

async fn tower(limits: ConnectionLimits) -> (TestDb, RunningTower) {
    let db = TestDb::new(Engine::Sqlite).await.unwrap();
    let mut config = TowerConfig::new(db.url.clone(), "127.0.0.1:0".parse().unwrap());
    config.connections = limits;
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(testpilot_flight::Timestamp(T0)));
    let t = testpilot_tower::start(config, clock).await.unwrap();
    (db, t)
}

fn short() -> ConnectionLimits {
    ConnectionLimits {
        header_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(30),
        per_address: 4,
        total: 100,
    }
}

/// A connection to `to` from the loopback address `from` (all of 127/8 is local on Linux).
async fn connect(to: SocketAddr, from: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    socket.connect(to).await.unwrap()
}

/// Reads until the tower closes the connection; what it sent, and when it closed.
async fn read_until_closed(s: &mut TcpStream) -> (String, Instant) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(BOUND, read)
        .await
        .expect("the tower kept the connection open");
    (String::from_utf8_lossy(&got).into_owned(), Instant::now())
}

/// `GET /control/index.json` on a fresh connection from `from`: the status line's code.
async fn index_status(to: SocketAddr, from: &str) -> String {
    let mut s = connect(to, from).await;
    s.write_all(b"GET /control/index.json HTTP/1.1\r\nHost: tower\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (answer, _) = read_until_closed(&mut s).await;
    answer.get(9..12).unwrap_or("").to_string()
}

fn json_body(answer: &str) -> Value {
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_is_cut_off_after_the_header_timeout() {
    let (db, t) = tower(short()).await;
    let mut s = connect(t.addr, "127.0.0.1").await;
    let started = Instant::now();
    s.write_all(b"GET /control/index.json HTTP/1.1\r\nHost: tower\r\n")
        .await
        .unwrap();
    // Trickling a header byte every 200 ms does not buy more time: the limit is on the
    // whole head, not between bytes.
    let (mut rd, mut wr) = s.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if wr.write_all(b"X").await.is_err() {
                return;
            }
        }
    });
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(BOUND, async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("a slow-headers client held its connection");
    trickle.abort();
    assert!(closed - started >= Duration::from_millis(900));

    // A keep-alive connection idle after an answer is closed after the same time.
    let mut s = connect(t.addr, "127.0.0.1").await;
    s.write_all(b"GET /control/index.json HTTP/1.1\r\nHost: tower\r\n\r\n")
        .await
        .unwrap();
    let answered = Instant::now();
    let (answer, closed) = read_until_closed(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed - answered >= Duration::from_millis(900));
    t.stop().await.unwrap();
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_from_one_address_cannot_starve_another() {
    let limits = ConnectionLimits {
        header_timeout: Duration::from_secs(60),
        ..short()
    };
    let (db, t) = tower(limits).await;
    let mut slow = Vec::new();
    for _ in 0..limits.per_address {
        let mut s = connect(t.addr, "127.0.0.1").await;
        s.write_all(b"GET /control/index.json HTTP/1.1\r\nHost: tow")
            .await
            .unwrap();
        slow.push(s);
    }
    // The (limit+1)th connection from that address, and every one after it, is refused at
    // once with a 503 in the error shape.
    for _ in 0..20 {
        let mut s = connect(t.addr, "127.0.0.1").await;
        let (answer, _) = read_until_closed(&mut s).await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(json_body(&answer)["error"]
            .as_str()
            .unwrap()
            .contains("too many connections"));
    }
    // Another address still gets the index.
    assert_eq!(index_status(t.addr, "127.0.0.2").await, "200");
    assert_eq!(index_status(t.addr, "127.0.0.3").await, "200");
    // A place freed by a slow client is taken by the next one.
    drop(slow.pop());
    let started = Instant::now();
    loop {
        match index_status(t.addr, "127.0.0.1").await.as_str() {
            "200" => break,
            other => {
                assert_eq!(other, "503");
                assert!(started.elapsed() < BOUND, "the freed place never came back");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    drop(slow);
    t.stop().await.unwrap();
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_limit_refuses_beyond_it() {
    let limits = ConnectionLimits {
        header_timeout: Duration::from_secs(60),
        per_address: 100,
        total: 6,
        ..short()
    };
    let (db, t) = tower(limits).await;
    let mut held = Vec::new();
    for i in 0..limits.total {
        let mut s = connect(t.addr, &format!("127.0.1.{}", i + 1)).await;
        s.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        held.push(s);
    }
    let mut s = connect(t.addr, "127.0.2.1").await;
    let (answer, _) = read_until_closed(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    drop(held);
    t.stop().await.unwrap();
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stalls_is_answered_408() {
    let (db, t) = tower(short()).await;
    let mut s = connect(t.addr, "127.0.0.1").await;
    let started = Instant::now();
    s.write_all(
        b"POST /api/v1/reports HTTP/1.1\r\nHost: tower\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"client\"",
    )
    .await
    .unwrap();
    let (answer, closed) = read_until_closed(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        json_body(&answer)["error"]
            .as_str()
            .unwrap()
            .contains("did not arrive within 1 s"),
        "{answer}"
    );
    assert!(closed - started >= Duration::from_millis(900));
    t.stop().await.unwrap();
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_where_nothing_moves_is_closed_after_the_idle_timeout() {
    let limits = ConnectionLimits {
        body_timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(1),
        ..short()
    };
    let (db, t) = tower(limits).await;
    let mut s = connect(t.addr, "127.0.0.1").await;
    let started = Instant::now();
    s.write_all(
        b"POST /api/v1/reports HTTP/1.1\r\nHost: tower\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    .await
    .unwrap();
    let (_, closed) = read_until_closed(&mut s).await;
    assert!(closed - started >= Duration::from_millis(900));
    assert!(
        closed - started < Duration::from_secs(30),
        "closed by the idle timeout, not the body timeout"
    );
    t.stop().await.unwrap();
    db.cleanup().await;
}
