//! The SQLite report writer (`store/sqlite_writer.rs`): the tower's other writes take turns
//! with it (no "database is locked", no read-then-write transaction refused), its log is
//! checkpointed beside it and restarted so the `-wal` file stays short under a steady
//! stream, a database reached through a symbolic link has its log synced where SQLite keeps
//! it, and a closed store refuses reports at once instead of hanging.

use crate::support::{flight_with_arms, T0};
use serde_json::json;
use std::path::PathBuf;
use testpilot_flight::report::ReportBatch;
use testpilot_flight::{Clock, Timestamp};
use testpilot_tower::dashboard::fixtures;
use testpilot_tower::store::Engine;
use testpilot_tower::testing::TestDb;
use testpilot_tower::{Store, SystemClock};

/// Client `i`'s id, scattered over the keys as real ones are.
fn client(i: u64) -> String {
    let z = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    format!(
        "{:08x}-{:04x}-4{:03x}-8000-{i:012}",
        z >> 32,
        (z >> 16) & 0xffff,
        z & 0xfff
    )
}

/// A pilot's usual batch: three reports from client `i` on `flight`.
fn batch(i: u64, flight: &str) -> ReportBatch {
    let reports: Vec<_> = (1..=3u64)
        .map(|s| {
            json!({"seq": s, "flight": flight, "version": 1, "arm": "control",
                   "status": if s == 3 { "completed" } else { "running" },
                   "step": s, "at": T0 + s as i64 * 1000})
        })
        .collect();
    ReportBatch::from_json(&json!({"client": client(i), "reports": reports}), 1000).unwrap()
}

async fn sqlite_store(flight: &str) -> (TestDb, Store) {
    let db = TestDb::new(Engine::Sqlite).await.expect("a test database");
    let store = Store::open(&db.url).await.expect("a store");
    assert!(store.has_blocking_report_writer());
    fixtures::live_flight(&store, &flight_with_arms(flight), SystemClock.now())
        .await
        .unwrap();
    (db, store)
}

fn wal_of(db: &TestDb) -> PathBuf {
    let path = db.url.strip_prefix("sqlite://").unwrap();
    PathBuf::from(format!("{path}-wal"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_writes_take_turns_with_the_report_writer() {
    let (db, store) = sqlite_store("layout").await;
    // Reports stream in from several tasks while flights are pushed, reviewed, approved
    // (transactions that read before they write) and tokens made, all on one database.
    let mut tasks = Vec::new();
    for t in 0..4u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for k in 0..100u64 {
                let b = batch(t * 1000 + k, "layout");
                store
                    .insert_reports(&[&b], Timestamp(T0))
                    .await
                    .map_err(|e| format!("reports: {e}"))?;
            }
            Ok::<_, String>(())
        }));
    }
    let writes = {
        let store = store.clone();
        tokio::spawn(async move {
            for f in 0..20 {
                let name = format!("flight{f}");
                fixtures::live_flight(&store, &flight_with_arms(&name), Timestamp(T0))
                    .await
                    .map_err(|e| format!("making {name} live: {e}"))?;
            }
            Ok::<_, String>(())
        })
    };
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    writes.await.unwrap().unwrap();
    assert_eq!(store.report_count().await.unwrap(), 4 * 100 * 3);
    let p = store.progress("layout").await.unwrap();
    assert_eq!(p.clients, 400);
    assert_eq!(p.by_status.get("completed"), Some(&400));
    store.close().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_restarts_under_a_steady_stream() {
    let (db, store) = sqlite_store("layout").await;
    // Groups of 64 batches from new clients, as a busy tower writes them: each dirties a
    // few hundred pages of the log, far more in all than the log is allowed to hold.
    let mut next = 0u64;
    let mut largest = 0u64;
    for _ in 0..120 {
        let group: Vec<ReportBatch> = (0..64)
            .map(|_| {
                next += 1;
                batch(next, "layout")
            })
            .collect();
        let refs: Vec<&ReportBatch> = group.iter().collect();
        store.insert_reports(&refs, Timestamp(T0)).await.unwrap();
        largest = largest.max(std::fs::metadata(wal_of(&db)).unwrap().len());
    }
    let pages = largest / 4096;
    // Restarted past 10,000 frames (plus the group that passed them), far below what the
    // stream wrote.
    assert!(
        pages < 12_000,
        "the -wal file grew to {pages} pages: it was not restarted"
    );
    assert_eq!(store.report_count().await.unwrap(), 120 * 64 * 3);
    store.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn a_closed_store_refuses_reports_at_once() {
    let (db, store) = sqlite_store("layout").await;
    let b = batch(1, "layout");
    store.insert_reports(&[&b], Timestamp(T0)).await.unwrap();
    store.close().await;
    let b = batch(2, "layout");
    let refused = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        store.insert_reports(&[&b], Timestamp(T0)),
    )
    .await
    .expect("answered, not hung");
    let e = refused.expect_err("a closed store stores nothing");
    assert!(e.to_string().contains("closed"), "{e}");
    // What was answered before the close is there when the database is opened again.
    let again = Store::open(&db.url).await.unwrap();
    assert_eq!(again.report_count().await.unwrap(), 3);
    again.close().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpointer_copies_the_log_beside_the_writer() {
    let (db, store) = sqlite_store("layout").await;
    let file = PathBuf::from(db.url.strip_prefix("sqlite://").unwrap());
    let before = std::fs::metadata(&file).unwrap().len();
    // Far fewer pages than the writers' own checkpoints wait for (10,000): without the
    // checkpointer they would all stay in the log.
    for g in 0..10u64 {
        let group: Vec<ReportBatch> = (0..64).map(|i| batch(g * 64 + i, "layout")).collect();
        let refs: Vec<&ReportBatch> = group.iter().collect();
        store.insert_reports(&refs, Timestamp(T0)).await.unwrap();
    }
    let mut after = before;
    for _ in 0..100 {
        after = std::fs::metadata(&file).unwrap().len();
        if after > before + 32 * 4096 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        after > before + 32 * 4096,
        "the database file stayed at {after} bytes ({before} before): nothing was checkpointed"
    );
    store.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn a_database_reached_through_a_symbolic_link() {
    let dir = testpilot_tower::testing::temp_dir("sqlite-writer-link");
    std::fs::create_dir_all(dir.join("real")).unwrap();
    let real = dir.join("real").join("tower.db");
    let link = dir.join("tower.db");
    std::fs::File::create(&real).unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let store = Store::open(&format!("sqlite://{}", link.display()))
        .await
        .expect("a store through the link");
    fixtures::live_flight(&store, &flight_with_arms("layout"), SystemClock.now())
        .await
        .unwrap();
    let b = batch(1, "layout");
    let stored = store.insert_reports(&[&b], Timestamp(T0)).await.unwrap();
    assert_eq!(stored[0].accepted, 3);
    // SQLite keeps the log beside the file the link points to.
    assert!(dir.join("real").join("tower.db-wal").exists());
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn migration_7_keeps_every_row_and_stores_by_key() {
    use sqlx::{Connection, Row};
    let db = TestDb::new(Engine::Sqlite).await.unwrap();
    testpilot_tower::store::migrate_to(&db.url, 6)
        .await
        .unwrap();
    let mut conn = sqlx::AnyConnection::connect(&db.url).await.unwrap();
    // Rows as a tower of version 6 stored them, edge values included.
    for (flight, client, seq, arm, at) in [
        ("layout", client(1), i64::MAX, None, 0i64),
        ("layout", client(2), 1, Some(""), T0),
        ("search", client(1), 7, Some("control"), T0 + 5),
    ] {
        sqlx::query(
            "INSERT INTO client_state (flight, client, seq, version, arm, status, step, at) \
             VALUES ($1, $2, $3, 1, $4, 'running', 2, $5)",
        )
        .bind(flight)
        .bind(client.clone())
        .bind(seq)
        .bind(arm)
        .bind(at)
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::query("INSERT INTO progress_day_seen (flight, day, client) VALUES ($1, $2, $3)")
            .bind(flight)
            .bind(at.div_euclid(86_400_000))
            .bind(client)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    async fn snapshot(conn: &mut sqlx::AnyConnection) -> Vec<String> {
        let mut out = Vec::new();
        for q in [
            "SELECT flight, client, seq, version, COALESCE(arm, '<null>'), typeof(arm), status, step, at \
             FROM client_state ORDER BY flight, client",
            "SELECT flight, day, client, '', '', '', '', 0, 0 FROM progress_day_seen ORDER BY flight, day, client",
        ] {
            for r in sqlx::query(q).fetch_all(&mut *conn).await.unwrap() {
                let cells: Vec<String> = (0..9)
                    .map(|i| {
                        r.try_get::<String, _>(i)
                            .or_else(|_| r.try_get::<i64, _>(i).map(|n| n.to_string()))
                            .unwrap()
                    })
                    .collect();
                out.push(cells.join("|"));
            }
        }
        out
    }
    let before = snapshot(&mut conn).await;
    conn.close().await.unwrap();
    let store = Store::open(&db.url).await.expect("migrated to 7");
    let mut conn = sqlx::AnyConnection::connect(&db.url).await.unwrap();
    assert_eq!(
        snapshot(&mut conn).await,
        before,
        "every row kept as it was"
    );
    let shapes: Vec<String> = sqlx::query(
        "SELECT name || ': ' || sql FROM sqlite_schema \
         WHERE name IN ('client_state', 'progress_day_seen') OR name LIKE '%by_key%' ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<String, _>(0))
    .collect();
    assert_eq!(shapes.len(), 2, "{shapes:?}");
    assert!(
        shapes.iter().all(|s| s.ends_with("WITHOUT ROWID")),
        "{shapes:?}"
    );
    let check: String = sqlx::query("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .get(0);
    assert_eq!(check, "ok");
    conn.close().await.unwrap();
    // A newer report of a migrated client moves its state.
    fixtures::live_flight(&store, &flight_with_arms("layout"), SystemClock.now())
        .await
        .unwrap();
    let b = ReportBatch::from_json(
        &json!({"client": client(2), "reports": [{"seq": 2, "flight": "layout", "version": 1,
            "arm": "control", "status": "completed", "step": 3, "at": T0 + 10}]}),
        1000,
    )
    .unwrap();
    assert_eq!(
        store.insert_reports(&[&b], Timestamp(T0)).await.unwrap()[0].accepted,
        1
    );
    let again = store.insert_reports(&[&b], Timestamp(T0)).await.unwrap();
    assert_eq!((again[0].accepted, again[0].duplicates), (0, 1));
    store.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn a_url_with_options_keeps_every_write_on_one_connection() {
    // Options that may change what sqlx opens keep SQLite on sqlx's writer, whose rows go
    // as one JSON text a statement: which were new comes back by their keys.
    let dir = testpilot_tower::testing::temp_dir("sqlite-writer-options");
    let url = format!(
        "sqlite://{}?mode=rwc&cache=private",
        dir.join("tower.db").display()
    );
    let store = Store::open(&url).await.unwrap();
    assert!(!store.has_blocking_report_writer());
    fixtures::live_flight(&store, &flight_with_arms("layout"), SystemClock.now())
        .await
        .unwrap();
    let (a, b) = (batch(1, "layout"), batch(2, "layout"));
    let first = store
        .insert_reports(&[&a, &b], Timestamp(T0))
        .await
        .unwrap();
    assert_eq!((first[0].accepted, first[1].accepted), (3, 3));
    let again = store
        .insert_reports(&[&b, &a], Timestamp(T0))
        .await
        .unwrap();
    assert_eq!((again[0].duplicates, again[1].duplicates), (3, 3));
    let p = store.progress("layout").await.unwrap();
    assert_eq!((p.clients, p.reports), (2, 6));
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
