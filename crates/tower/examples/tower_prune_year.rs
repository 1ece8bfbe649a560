//! A year of a tower's intake, to show that pruning keeps its database bounded
//! (`scripts/prove-pruning.sh`, RELIABILITY.md "Pruning"): `--clients N` pilots each send a
//! report every three days and `--events E` events a day on one flight, stored through the
//! store's ingest; the tower's daily prune runs with `--retention DAYS` (default 90), or not at
//! all with `--no-prune`. Prints the database's size and raw rows by month.
//!
//! `cargo run -p testpilot-tower --example tower_prune_year -- [--postgres] [--no-prune]
//!  [--clients N] [--events E] [--retention DAYS]`

use std::time::Duration;
use testpilot_flight::event::{Event, EventBatch};
use testpilot_flight::report::{Report, ReportBatch, Status};
use testpilot_flight::Timestamp;
use testpilot_tower::store::{Engine, Store};
use testpilot_tower::testing::TestDb;

const DAY: i64 = 86_400_000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| args.iter().any(|a| a == name);
    let num = |name: &str, default: u64| -> Result<u64, Box<dyn std::error::Error>> {
        match args.iter().position(|a| a == name) {
            Some(i) => Ok(args
                .get(i + 1)
                .ok_or(format!("{name} needs a number"))?
                .parse()?),
            None => Ok(default),
        }
    };
    let engine = if flag("--postgres") {
        Engine::Postgres
    } else {
        Engine::Sqlite
    };
    let pruning = !flag("--no-prune");
    let (clients, per_day, keep) = (
        num("--clients", 200)?,
        num("--events", 10)?,
        num("--retention", 90)?,
    );
    let db = TestDb::new(engine).await?;
    let store = Store::open(&db.url).await?;
    println!(
        "tower on {engine:?}, {clients} clients, a report every 3 days and {per_day} events a day each, {}",
        if pruning {
            format!("pruned daily with a retention of {keep} days")
        } else {
            "never pruned".into()
        }
    );
    println!("month  database(KiB)  reports  events");
    let t0 = 1_776_902_400_000i64;
    let mut seq = 0u64;
    for day in 0..=365i64 {
        let at = Timestamp(t0 + day * DAY);
        let mut events = Vec::new();
        let mut reports = Vec::new();
        for c in 0..clients {
            let client = format!("00000000-0000-4000-8000-{c:012}");
            let arm = if c % 2 == 0 { "control" } else { "treatment" };
            if (day + c as i64) % 3 == 0 {
                reports.push(ReportBatch {
                    client: client.clone(),
                    reports: vec![Report {
                        seq: day as u64 + 1,
                        flight: "year".into(),
                        version: 1,
                        arm: Some(arm.into()),
                        status: Status::Running,
                        step: (day / 30) as u64,
                        at,
                        detail: None,
                    }],
                });
            }
            events.push(EventBatch {
                client,
                events: (0..per_day)
                    .map(|k| {
                        seq += 1;
                        Event {
                            seq,
                            flight: "year".into(),
                            version: 1,
                            arm: Some(arm.into()),
                            topic: "app.search".into(),
                            subject: None,
                            value: Some(k as f64),
                            at: Timestamp(at.0 + k as i64 * 60_000),
                        }
                    })
                    .collect(),
            });
        }
        for chunk in reports.chunks(500) {
            let refs: Vec<&ReportBatch> = chunk.iter().collect();
            store.insert_reports(&refs, at).await?;
        }
        for chunk in events.chunks(100) {
            let refs: Vec<&EventBatch> = chunk.iter().collect();
            store.insert_events(&refs, at).await?;
        }
        if pruning {
            store.prune(at, Duration::from_secs(keep * 86_400)).await?;
        }
        if day % 30 == 0 {
            println!(
                "{:>5}  {:>13}  {:>7}  {:>6}",
                day / 30,
                size(&db).await? / 1024,
                store.report_count().await?,
                store.event_count(None).await?
            );
        }
    }
    store.close().await;
    db.cleanup().await;
    Ok(())
}

/// The database's size on disk: the SQLite file and its WAL, or on PostgreSQL the tables of
/// the test's schema with their indexes and TOAST.
async fn size(db: &TestDb) -> Result<u64, Box<dyn std::error::Error>> {
    match db.engine {
        Engine::Sqlite => {
            let path = db.url.trim_start_matches("sqlite://");
            let path = path.split('?').next().unwrap_or(path);
            let file = |p: String| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
            Ok(file(path.to_string()) + file(format!("{path}-wal")))
        }
        Engine::Postgres => {
            use sqlx::{Connection, Row};
            let mut conn = sqlx::postgres::PgConnection::connect(&db.url).await?;
            let row = sqlx::query(
                "SELECT CAST(COALESCE(SUM(pg_total_relation_size(c.oid)), 0) AS BIGINT) FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind = 'r'",
            )
            .fetch_one(&mut conn)
            .await?;
            let bytes: i64 = row.try_get(0)?;
            conn.close().await?;
            Ok(bytes as u64)
        }
    }
}
