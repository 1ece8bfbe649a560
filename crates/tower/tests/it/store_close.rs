//! Closing a SQLite store: every connection it opened is closed when `Store::close` returns,
//! and nothing a store does drops the locks SQLite holds for another connection of the
//! same process on the same file. Either fault let another process (a tower restarted after
//! a crash) delete the database's log and shared memory under a connection still open
//! here, which then read a stale index of the log: "database disk image is malformed".
//! Linux: the tests read `/proc`.
#![cfg(target_os = "linux")]

use crate::support::flight_with_arms;
use std::os::unix::fs::MetadataExt;
use testpilot_flight::{Clock, Timestamp};
use testpilot_tower::dashboard::fixtures;
use testpilot_tower::lifecycle::Role;
use testpilot_tower::store::Engine;
use testpilot_tower::testing::TestDb;
use testpilot_tower::{Store, SystemClock};

fn path_of(db: &TestDb) -> String {
    db.url.strip_prefix("sqlite://").unwrap().to_string()
}

/// This process's open descriptors of the database's log and shared memory: only an open
/// SQLite connection keeps those.
fn open_logs(path: &str) -> Vec<String> {
    let mut open = Vec::new();
    for fd in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            let target = target.to_string_lossy().into_owned();
            if target.starts_with(&format!("{path}-wal"))
                || target.starts_with(&format!("{path}-shm"))
            {
                open.push(target);
            }
        }
    }
    open
}

/// The POSIX locks this process holds on the file with inode `ino` (from `/proc/locks`).
fn locks_held(ino: u64) -> Vec<String> {
    let me = std::process::id().to_string();
    std::fs::read_to_string("/proc/locks")
        .unwrap()
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() >= 6
                && f[1] == "POSIX"
                && f[4] == me
                && f[5].rsplit(':').next() == Some(&ino.to_string())
        })
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_store_has_no_connection_left_open() {
    // A connection handed back to its pool while the pool closes is the case that leaked;
    // it depends on timing, so many rounds.
    for round in 0..40 {
        let db = TestDb::new(Engine::Sqlite).await.unwrap();
        let store = Store::open(&db.url).await.unwrap();
        fixtures::live_flight(&store, &flight_with_arms("closing"), SystemClock.now())
            .await
            .unwrap();
        let _ = store.report_count().await.unwrap();
        let secret = testpilot_tower::auth::new_secret().unwrap();
        store
            .create_token(Role::Author, None, &secret, "test", Timestamp(0))
            .await
            .unwrap();
        store.close().await;
        let left = open_logs(&path_of(&db));
        assert!(
            left.is_empty(),
            "round {round}: still open after the store closed: {left:?}"
        );
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_one_store_keeps_the_locks_of_another_on_the_same_file() {
    let db = TestDb::new(Engine::Sqlite).await.unwrap();
    let path = path_of(&db);
    let a = Store::open(&db.url).await.unwrap();
    let b = Store::open(&db.url).await.unwrap();
    // Reading puts a WAL connection's lasting shared lock on the database file.
    let _ = b.report_count().await.unwrap();
    let ino = std::fs::metadata(&path).unwrap().ino();
    assert!(!locks_held(ino).is_empty(), "no lock held to begin with");
    a.close().await;
    let held = locks_held(ino);
    assert!(
        !held.is_empty(),
        "closing one store dropped the locks of the other, still open, on {path}"
    );
    let _ = b.report_count().await.unwrap();
    b.close().await;
    db.cleanup().await;
}
