//! Pruning raw reports and events older than the retention (`store/prune.rs`): old rows go,
//! recent ones stay, and progress and results count the same before and after.

use crate::both;
use crate::events::{client, recorded};
use crate::support::*;
use std::time::Duration;
use testpilot_flight::event::{Event, EventBatch};
use testpilot_flight::report::{Report, ReportBatch, Status};
use testpilot_flight::Timestamp;
use testpilot_tower::store::Engine;

const DAY: i64 = 86_400_000;

/// `clients` clients on flight `bar`: every 10 days over a year each sends a report (moving
/// through the steps and arms) and a few events.
async fn a_year_of(t: &Tower, clients: u64) {
    let store = &t.state.store;
    let mut seq = std::collections::HashMap::new();
    for day in (0..365).step_by(10) {
        let at = Timestamp(T0 + day * DAY);
        let mut reports = Vec::new();
        let mut events = Vec::new();
        for i in 1..=clients {
            let arm = if i % 2 == 0 { "control" } else { "new-bar" };
            let n = seq.entry(i).or_insert(0u64);
            *n += 1;
            let status = if day >= 300 && i % 3 == 0 {
                Status::Completed
            } else {
                Status::Running
            };
            reports.push(ReportBatch {
                client: client(i),
                reports: vec![Report {
                    seq: *n,
                    flight: "bar".into(),
                    version: 1,
                    arm: Some(arm.into()),
                    status,
                    step: (day / 100) as u64,
                    at,
                    detail: (i == 1).then(|| serde_json::json!({"day": day})),
                }],
            });
            events.push(EventBatch {
                client: client(i),
                events: (0..(i % 4))
                    .map(|k| Event {
                        seq: (day as u64) * 10 + k + 1,
                        flight: "bar".into(),
                        version: 1,
                        arm: Some(arm.into()),
                        topic: if k % 2 == 0 { "search" } else { "open" }.into(),
                        subject: None,
                        value: Some(k as f64),
                        at: Timestamp(at.0 + k as i64 * 60_000),
                    })
                    .collect(),
            });
        }
        let reports: Vec<&ReportBatch> = reports.iter().collect();
        store.insert_reports(&reports, at).await.unwrap();
        let events: Vec<&EventBatch> = events.iter().filter(|b| !b.events.is_empty()).collect();
        store.insert_events(&events, at).await.unwrap();
    }
}

both!(old_reports_and_events_go_and_counts_stay);
async fn old_reports_and_events_go_and_counts_stay(engine: Engine) {
    let t = Tower::with(engine, crate::events::unlimited()).await;
    t.make_live(recorded("bar")).await;
    a_year_of(&t, 30).await;
    let store = &t.state.store;
    let now = Timestamp(T0 + 365 * DAY);
    t.clock.set(now);
    let results = t.get("/api/v1/flights/bar/results", &t.author).await.json;
    let progress = store.progress("bar").await.unwrap();
    let rollups = store.rollups("bar").await.unwrap();
    let (reports, events) = (
        store.report_count().await.unwrap(),
        store.event_count(None).await.unwrap(),
    );

    // Keep 90 days: raw rows from day 275 on (the cut is at a day boundary).
    let pruned = store
        .prune(now, Duration::from_secs(90 * 86_400))
        .await
        .unwrap();
    let cutoff = now.0 - 90 * DAY;
    let kept_days = (0..365)
        .step_by(10)
        .filter(|d| T0 + d * DAY >= cutoff)
        .count() as u64;
    assert_eq!(pruned.reports, reports - 30 * kept_days);
    assert_eq!(store.report_count().await.unwrap(), 30 * kept_days);
    assert!(pruned.events > 0);
    assert_eq!(
        store.event_count(None).await.unwrap(),
        events - pruned.events
    );
    // The newest raw rows are all there, the oldest gone.
    assert!(store.has_report(&client(1), 37).await.unwrap());
    assert!(!store.has_report(&client(1), 1).await.unwrap());

    // Results and who is where are unchanged; they never read raw rows.
    assert_eq!(store.rollups("bar").await.unwrap(), rollups);
    let after = t.get("/api/v1/flights/bar/results", &t.author).await.json;
    assert_eq!(after, results);
    let p = store.progress("bar").await.unwrap();
    assert_eq!(
        (p.clients, &p.by_status, &p.by_step, &p.by_arm, &p.breakdown),
        (
            progress.clients,
            &progress.by_status,
            &progress.by_step,
            &progress.by_arm,
            &progress.breakdown
        )
    );

    // Nothing more to prune the same day; a new report still moves a client on.
    let again = store
        .prune(now, Duration::from_secs(90 * 86_400))
        .await
        .unwrap();
    assert_eq!((again.reports, again.events), (0, 0));
    t.finish().await;
}

both!(a_long_retention_prunes_nothing);
async fn a_long_retention_prunes_nothing(engine: Engine) {
    let t = Tower::with(engine, crate::events::unlimited()).await;
    t.make_live(recorded("bar")).await;
    a_year_of(&t, 5).await;
    let store = &t.state.store;
    let reports = store.report_count().await.unwrap();
    let pruned = store
        .prune(
            Timestamp(T0 + 365 * DAY),
            testpilot_tower::store::DEFAULT_RETENTION,
        )
        .await
        .unwrap();
    assert_eq!((pruned.reports, pruned.events), (0, 0));
    assert_eq!(store.report_count().await.unwrap(), reports);
    t.finish().await;
}

both!(batches_delete_more_than_one_batch);
async fn batches_delete_more_than_one_batch(engine: Engine) {
    let t = Tower::with(engine, crate::events::unlimited()).await;
    let store = &t.state.store;
    // More reports on one day than one delete statement takes.
    let n = testpilot_tower::store::PRUNE_BATCH as u64 + 500;
    let batches: Vec<ReportBatch> = (1..=n)
        .map(|i| ReportBatch {
            client: client(i),
            reports: vec![Report {
                seq: 1,
                flight: "bar".into(),
                version: 1,
                arm: None,
                status: Status::Running,
                step: 0,
                at: Timestamp(T0),
                detail: None,
            }],
        })
        .collect();
    for chunk in batches.chunks(1000) {
        let refs: Vec<&ReportBatch> = chunk.iter().collect();
        store.insert_reports(&refs, Timestamp(T0)).await.unwrap();
    }
    let before = store.progress("bar").await.unwrap();
    let pruned = store
        .prune(Timestamp(T0 + 30 * DAY), Duration::from_secs(86_400))
        .await
        .unwrap();
    assert_eq!(pruned.reports, n);
    assert_eq!(store.report_count().await.unwrap(), 0);
    assert_eq!(store.progress("bar").await.unwrap().clients, before.clients);
    t.finish().await;
}

/// On PostgreSQL without autovacuum, ingest's updates in place (`client_state`, the rollups)
/// leave old row versions that only a `VACUUM` frees, as do the prune's own deletes: the
/// prune runs one on each of those tables, so a tower's database stays bounded there too
/// (RELIABILITY.md, "Pruning"; `progress_day_seen` was once pruned but never vacuumed).
#[tokio::test]
async fn tables_updated_in_place_are_vacuumed_when_autovacuum_is_off() {
    use sqlx::{Connection, Row};
    let t = Tower::with(Engine::Postgres, crate::events::unlimited()).await;
    t.make_live(recorded("bar")).await;
    a_year_of(&t, 5).await;
    let store = &t.state.store;
    let mut conn = sqlx::AnyConnection::connect(store.url()).await.unwrap();
    let autovacuum: String = sqlx::query("SELECT current_setting('autovacuum')")
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .get(0);
    let vacuums = |table: &'static str| {
        format!(
            "SELECT CAST(vacuum_count AS BIGINT) FROM pg_stat_user_tables \
             WHERE schemaname = current_schema() AND relname = '{table}'"
        )
    };
    // The first three are updated in place; `progress_day_seen` lost its old days' rows.
    let tables = [
        "client_state",
        "progress_states",
        "event_clients",
        "progress_day_seen",
    ];
    let mut before = Vec::new();
    for table in tables {
        let n: i64 = sqlx::query(&vacuums(table))
            .fetch_one(&mut conn)
            .await
            .unwrap()
            .get(0);
        before.push(n);
    }
    store
        .prune(Timestamp(T0 + 365 * DAY), Duration::from_secs(90 * 86_400))
        .await
        .unwrap();
    for (table, before) in tables.into_iter().zip(before) {
        let after: i64 = sqlx::query(&vacuums(table))
            .fetch_one(&mut conn)
            .await
            .unwrap()
            .get(0);
        if autovacuum == "off" {
            assert_eq!(after, before + 1, "{table} is vacuumed once by the prune");
        } else {
            // The server's autovacuum looks after them; the prune leaves them be.
            assert!(after <= before + 1, "{table}");
        }
    }
    t.finish().await;
}
