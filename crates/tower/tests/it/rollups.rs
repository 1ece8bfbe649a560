//! Progress rollups (`store/progress.rs`): after random batches — resends, older seqs,
//! repeated seqs in a batch, many clients, status, step, arm and version changes, several
//! batches in one transaction, concurrent writers — progress, enrolments, the flight list's
//! counts and results' clients per arm read from the rollups equal the aggregations over
//! `client_state` and `reports` they replace; and migrations 6 and 8 backfill rollups equal to
//! them from what an older tower stored.

use crate::both;
use crate::support::{flight_with_arms, T0};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use testpilot_flight::report::ReportBatch;
use testpilot_flight::Clock;
use testpilot_tower::dashboard::fixtures;
use testpilot_tower::store::{migrate_to, Engine};
use testpilot_tower::testing::TestDb;
use testpilot_tower::{Store, SystemClock};

const DAY: i64 = 86_400_000;
const FLIGHTS: [&str; 3] = ["layout", "search", "toolbar"];
const STATUSES: [&str; 7] = [
    "running",
    "completed",
    "declined",
    "failed",
    "optedout",
    "ineligible",
    "unsampled",
];

/// xorshift64*: a fixed seed gives the same run every time.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
}

fn client(i: u64) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

/// One random report on one of `days` days from `T0`; seqs come from a small range so that
/// resends and older seqs are common.
fn report_in(rng: &mut Rng, days: u64) -> Value {
    let arm = match rng.below(5) {
        0 => Value::Null,
        1 => json!("x"),
        2 => json!("control"),
        _ => json!("treatment"),
    };
    let mut r = json!({
        "seq": rng.below(40),
        "flight": rng.pick(&FLIGHTS),
        "version": 1 + rng.below(3),
        "arm": arm,
        "status": rng.pick(&STATUSES),
        "step": rng.below(4),
        "at": T0 + rng.below(days) as i64 * DAY + rng.below(DAY as u64) as i64,
    });
    if rng.below(6) == 0 {
        r["detail"] = json!({"error": "x"});
    }
    r
}

/// A random group of batches (as one group commit stores them), each of one client.
fn group(rng: &mut Rng, clients: u64) -> Vec<ReportBatch> {
    group_in(rng, clients, 5)
}

/// [`group`] with reports on one of `days` days.
fn group_in(rng: &mut Rng, clients: u64, days: u64) -> Vec<ReportBatch> {
    (0..1 + rng.below(4))
        .map(|_| {
            let c = client(rng.below(clients));
            let mut reports: Vec<Value> = (0..1 + rng.below(8))
                .map(|_| report_in(rng, days))
                .collect();
            if rng.below(4) == 0 {
                // The same seq twice in one batch, saying something else the second time.
                let mut again = report_in(rng, days);
                again["seq"] = reports[0]["seq"].clone();
                reports.push(again);
            }
            ReportBatch::from_json(&json!({"client": c, "reports": reports}), 1000)
                .expect("a valid batch")
        })
        .collect()
}

async fn store_group(store: &Store, batches: &[ReportBatch]) {
    let refs: Vec<&ReportBatch> = batches.iter().collect();
    store
        .insert_reports(&refs, SystemClock.now())
        .await
        .expect("stored");
}

/// Everything read from the rollups equals the aggregation it replaces.
async fn assert_same(store: &Store, context: &str) {
    for f in FLIGHTS {
        assert_eq!(
            store.progress(f).await.unwrap(),
            store.progress_by_aggregation(f).await.unwrap(),
            "progress of {f} {context}"
        );
        assert_eq!(
            store.enrolments_per_day(f).await.unwrap(),
            store.enrolments_by_aggregation(f).await.unwrap(),
            "enrolments of {f} {context}"
        );
    }
    let (by_status, by_arm) = store.client_counts_by_aggregation().await.unwrap();
    let mut glanced = BTreeMap::new();
    for (f, g) in store.glances().await.unwrap() {
        for (s, n) in g.by_status {
            glanced.insert((f.clone(), s), n);
        }
    }
    assert_eq!(glanced, by_status, "the flight list's statuses {context}");
    let mut listed = BTreeMap::new();
    for s in store.list_flights().await.unwrap() {
        listed.insert(s.studyname, s.clients);
    }
    let mut counted: BTreeMap<String, u64> = FLIGHTS.iter().map(|f| (f.to_string(), 0)).collect();
    for ((f, _), n) in &by_status {
        *counted.get_mut(f).unwrap() += n;
    }
    assert_eq!(listed, counted, "the flight list's clients {context}");
    let mut arms = BTreeMap::new();
    for f in FLIGHTS {
        for (a, n) in store.rollups(f).await.unwrap().enrolled {
            arms.insert((f.to_string(), a), n);
        }
    }
    assert_eq!(arms, by_arm, "results' clients per arm {context}");
}

async fn with_flights(engine: Engine) -> (TestDb, Store) {
    let db = TestDb::new(engine).await.expect("a test database");
    let store = Store::open(&db.url).await.expect("a store");
    for f in FLIGHTS {
        fixtures::live_flight(&store, &flight_with_arms(f), SystemClock.now())
            .await
            .expect("a live flight");
    }
    (db, store)
}

both!(random_batches_keep_rollups_equal_to_aggregation);
async fn random_batches_keep_rollups_equal_to_aggregation(engine: Engine) {
    let (db, store) = with_flights(engine).await;
    let mut rng = Rng(0x5eed_0011);
    for round in 0..60 {
        let g = group(&mut rng, 25);
        store_group(&store, &g).await;
        if round % 6 == 5 {
            assert_same(&store, &format!("after round {round}")).await;
        }
    }
    // Everything again: all duplicates, nothing may move.
    let before = store.progress("layout").await.unwrap();
    let mut rng = Rng(0x5eed_0011);
    for _ in 0..60 {
        store_group(&store, &group(&mut rng, 25)).await;
    }
    assert_eq!(store.progress("layout").await.unwrap(), before);
    assert_same(&store, "after resending everything").await;
    store.close().await;
    db.cleanup().await;
}

both!(days_far_apart_count_each_client_once_a_day);
/// Reports of a few clients on 200 days in any order — a window of days in `client_state`
/// moving forward, days leaving it, reports for days before it (`store/seen.rs`) — still
/// count each client once on each day it reported, as the aggregation over reports does.
async fn days_far_apart_count_each_client_once_a_day(engine: Engine) {
    let (db, store) = with_flights(engine).await;
    let mut rng = Rng(0xda75_f0a2);
    for round in 0..120 {
        store_group(&store, &group_in(&mut rng, 6, 200)).await;
        if round % 20 == 19 {
            assert_same(&store, &format!("after round {round}")).await;
        }
    }
    store.close().await;
    db.cleanup().await;
}

both!(concurrent_writers_keep_rollups_equal_to_aggregation);
async fn concurrent_writers_keep_rollups_equal_to_aggregation(engine: Engine) {
    let (db, store) = with_flights(engine).await;
    // Four writers at once on the same few clients (on PostgreSQL: four connections, rows
    // locked by concurrent transactions).
    let tasks: Vec<_> = (0..4u64)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut rng = Rng(0xc0c0 + w);
                for _ in 0..40 {
                    let g = group_in(&mut rng, 6, 100);
                    store_group(&store, &g).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("a writer");
    }
    assert_same(&store, "after concurrent writers").await;
    store.close().await;
    db.cleanup().await;
}

both!(migration_backfills_rollups_equal_to_aggregation);
async fn migration_backfills_rollups_equal_to_aggregation(engine: Engine) {
    use sqlx::Connection;
    let db = TestDb::new(engine).await.expect("a test database");
    migrate_to(&db.url, 5).await.expect("migrated to version 5");
    // Reports and client states as a tower of version 5 stored them.
    let mut rng = Rng(0xbac4_f111);
    let mut reports = BTreeMap::new();
    for _ in 0..400 {
        // Few clients on 90 days: reports after the migration often land on a day a
        // client's backfilled window already holds.
        let c = client(rng.below(8));
        let r = report_in(&mut rng, 90);
        reports.entry((c, r["seq"].as_u64().unwrap())).or_insert(r);
    }
    let mut latest: BTreeMap<(String, String), (u64, &Value)> = BTreeMap::new();
    let mut conn = sqlx::AnyConnection::connect(&db.url).await.unwrap();
    for ((c, seq), r) in &reports {
        let at = r["at"].as_i64().unwrap();
        sqlx::query(
            "INSERT INTO reports (client, seq, flight, version, arm, status, step, at, day, detail, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(c.as_str())
        .bind(*seq as i64)
        .bind(r["flight"].as_str().unwrap())
        .bind(r["version"].as_i64().unwrap())
        .bind(r["arm"].as_str())
        .bind(r["status"].as_str().unwrap())
        .bind(r["step"].as_i64().unwrap())
        .bind(at)
        .bind(at.div_euclid(DAY))
        .bind(r.get("detail").map(Value::to_string))
        .bind(at)
        .execute(&mut conn)
        .await
        .unwrap();
        let key = (r["flight"].as_str().unwrap().to_string(), c.clone());
        let e = latest.entry(key).or_insert((*seq, r));
        if *seq > e.0 {
            *e = (*seq, r);
        }
    }
    for ((f, c), (seq, r)) in &latest {
        sqlx::query(
            "INSERT INTO client_state (flight, client, seq, version, arm, status, step, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(f.as_str())
        .bind(c.as_str())
        .bind(*seq as i64)
        .bind(r["version"].as_i64().unwrap())
        .bind(r["arm"].as_str())
        .bind(r["status"].as_str().unwrap())
        .bind(r["step"].as_i64().unwrap())
        .bind(r["at"].as_i64().unwrap())
        .execute(&mut conn)
        .await
        .unwrap();
    }
    conn.close().await.unwrap();
    // Opening migrates to the newest version, backfilling the rollups.
    let store = Store::open(&db.url).await.expect("migrated");
    for f in FLIGHTS {
        fixtures::live_flight(&store, &flight_with_arms(f), SystemClock.now())
            .await
            .unwrap();
    }
    let p = store.progress("layout").await.unwrap();
    assert!(
        p.clients > 0 && p.reports > 0,
        "the backfill counted: {p:?}"
    );
    assert_same(&store, "after the migration").await;
    // And reports after the migration move the backfilled rollups.
    for _ in 0..40 {
        let g = group_in(&mut rng, 8, 90);
        store_group(&store, &g).await;
    }
    assert_same(&store, "after reports on the backfilled rollups").await;
    store.close().await;
    db.cleanup().await;
}

both!(pruning_keeps_progress_whole);
async fn pruning_keeps_progress_whole(engine: Engine) {
    let (db, store) = with_flights(engine).await;
    let mut rng = Rng(0x9e0e);
    for _ in 0..30 {
        store_group(&store, &group(&mut rng, 25)).await;
    }
    let before = store.progress("layout").await.unwrap();
    let enrolments = store.enrolments_per_day("layout").await.unwrap();
    // Reports span days T0 .. T0 + 4: keeping one day before T0 + 4 prunes the first three.
    let pruned = store
        .prune(
            testpilot_flight::Timestamp(T0 + 4 * DAY),
            std::time::Duration::from_secs(86_400),
        )
        .await
        .unwrap();
    assert!(pruned.reports > 0, "some reports were old enough to prune");
    assert_eq!(store.progress("layout").await.unwrap(), before);
    assert_eq!(
        store.enrolments_per_day("layout").await.unwrap(),
        enrolments
    );
    store.close().await;
    db.cleanup().await;
}

both!(a_group_larger_than_one_statement_is_stored_whole);
/// A group whose `detail`s pass one statement's byte budget (`store/reports.rs`) goes in
/// several statements in one transaction: every report is stored once, a report repeated in
/// a later batch of the group is a duplicate however far apart the two land, and the
/// rollups still equal the aggregation.
async fn a_group_larger_than_one_statement_is_stored_whole(engine: Engine) {
    let (db, store) = with_flights(engine).await;
    let big = "x".repeat(900 * 1024);
    let batch = |c: u64, seqs: std::ops::RangeInclusive<u64>| {
        let reports: Vec<Value> = seqs
            .map(|s| {
                json!({"seq": s, "flight": "layout", "version": 1, "arm": "control",
                       "status": "running", "step": s % 3, "at": T0 + s as i64 * 1000,
                       "detail": {"why": big}})
            })
            .collect();
        ReportBatch::from_json(&json!({"client": client(c), "reports": reports}), 1000).unwrap()
    };
    // 40 reports of about 0.9 MiB: more than two statements' worth.
    let mut g: Vec<ReportBatch> = (1..=10).map(|c| batch(c, 1..=4)).collect();
    // Client 1's seq 2 again, in the last batch: a duplicate.
    g.push(batch(1, 2..=2));
    let refs: Vec<&ReportBatch> = g.iter().collect();
    let out = store
        .insert_reports(&refs, SystemClock.now())
        .await
        .expect("stored");
    assert!(
        out[..10]
            .iter()
            .all(|r| r.accepted == 4 && r.duplicates == 0),
        "{out:?}"
    );
    assert_eq!((out[10].accepted, out[10].duplicates), (0, 1));
    assert_eq!(store.report_count().await.unwrap(), 40);
    assert_eq!(store.progress("layout").await.unwrap().clients, 10);
    assert_same(&store, "after a group of several statements").await;
    store.close().await;
    db.cleanup().await;
}

/// On PostgreSQL, where towers of two versions can share a database during an upgrade, a
/// tower from before migration 8 inserting a client without a window of days is refused
/// (docs/api.md, upgrading towers) rather than left to count that client twice on a day.
#[tokio::test]
async fn an_older_towers_client_insert_is_refused_on_postgres() {
    use sqlx::Connection;
    let (db, store) = with_flights(Engine::Postgres).await;
    let mut conn = sqlx::AnyConnection::connect(&db.url).await.unwrap();
    let err = sqlx::query(
        "INSERT INTO client_state (flight, client, seq, version, arm, status, step, at) \
         VALUES ('layout', $1, 1, 1, 'control', 'running', 0, $2)",
    )
    .bind(client(1))
    .bind(T0)
    .execute(&mut conn)
    .await
    .expect_err("an insert without the window of days is refused");
    assert!(err.to_string().contains("seen_day"), "{err}");
    conn.close().await.unwrap();
    store.close().await;
    db.cleanup().await;
}
