//! The journal's format is versioned and frozen: an old journal must still load, and the
//! current schema may only change together with JOURNAL_VERSION and a new migration.

use crate::support::*;
use serde_json::json;
use testpilot_flight::Timestamp;
use testpilot_pilot::{Faults, Journal, JOURNAL_VERSION};

fn data(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

#[test]
fn a_version_1_journal_upgrades_and_its_flight_runs_on() {
    let rig = Rig::new();
    {
        let c = rusqlite::Connection::open(Journal::path_in(&rig.profile)).unwrap();
        c.execute_batch(&std::fs::read_to_string(data("journal-v1.sql")).unwrap())
            .unwrap();
    }
    rig.set_features(json!({"frozen.f": {"on": true}}));
    let mut p = rig.pilot();
    let v: i64 = p
        .journal
        .conn()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, JOURNAL_VERSION);
    assert_eq!(
        p.journal.meta("client").unwrap().as_deref(),
        Some("0f8fad5b-d9cb-469f-a165-70867728950e")
    );
    assert!(
        p.journal.open_requests().unwrap().is_empty(),
        "the v2 table exists"
    );
    // Version 5: events carry a value; recorders and recordings exist (and are empty).
    let id = p
        .journal
        .record_event("thaw", None, Some(1.5), rig.now())
        .unwrap();
    let e = p.journal.events_after(id - 1, "thaw").unwrap();
    assert_eq!(e[0].value, Some(1.5));
    assert!(p.journal.recorders().unwrap().is_empty());
    assert_eq!(p.journal.recorded_count("frozen").unwrap(), 0);
    assert!(p
        .journal
        .record_event("thaw", None, Some(f64::NAN), rig.now())
        .unwrap_err()
        .to_string()
        .contains("finite number"));
    // Only what the tower's events endpoint takes is recorded: one bad event would have its
    // whole batch refused.
    let mut refused = |topic: &str, subject: Option<&str>| {
        p.journal
            .record_event(topic, subject, None, rig.now())
            .unwrap_err()
            .to_string()
    };
    let long = "x".repeat(257);
    assert!(refused("thaw", Some(&long)).contains("257 bytes, more than 256"));
    assert!(refused("thaw", Some("a\0b")).contains("NUL"));
    for topic in ["", &"t".repeat(257), "thaw\0"] {
        assert!(
            refused(topic, None).contains("is not an event topic"),
            "{topic:?}"
        );
    }
    // An `observe` step may wait for any topic; only recordings keep to the event form.
    assert!(p
        .journal
        .record_event("Page Opened", None, None, rig.now())
        .is_ok());
    let at_most = "x".repeat(256);
    assert!(p
        .journal
        .record_event("thaw", Some(&at_most), None, rig.now())
        .is_ok());
    rig.clock.set(Timestamp(1_780_000_000_000 + 86_400_000));
    drive(&rig, &mut p, Say::Ok, &[]).unwrap();
    assert_eq!(status(&p, "frozen"), "completed");
    assert!(timeline_text(&p, "frozen").contains("thawed"));
    assert_eq!(rig.features(), json!({}), "the v1 effect is undone");
}

/// The journal's tables and indexes as a fixture holds them, with its version.
fn schema_text(j: &Journal) -> String {
    let mut st = j
        .conn()
        .prepare(
            "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY type, name",
        )
        .unwrap();
    let rows: Vec<String> = st
        .query_map([], |r| {
            Ok(format!(
                "{} {}: {}",
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?
            ))
        })
        .unwrap()
        .map(|r| r.unwrap().split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    format!(
        "-- journal version {JOURNAL_VERSION}\n{}\n",
        rows.join("\n")
    )
}

fn pragma(j: &Journal, name: &str) -> i64 {
    j.conn()
        .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
        .unwrap()
}

#[test]
fn the_current_schema_is_frozen() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), Faults::default()).unwrap();
    let actual = schema_text(&j);
    let path = data(&format!("schema-v{JOURNAL_VERSION}.txt"));
    if std::env::var_os("TESTPILOT_BLESS").is_some() {
        std::fs::write(&path, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        actual, expected,
        "the journal schema changed: that needs a new JOURNAL_VERSION and migration (never edit a shipped one); then rerun with TESTPILOT_BLESS=1 to write the new schema to {}",
        path.display()
    );
}

/// In-memory journals are copies of one template: each has the file journal's schema,
/// version and application id, and each is its own database.
#[test]
fn in_memory_journals_have_the_schema_and_are_separate() {
    let dir = tempfile::tempdir().unwrap();
    let file = Journal::open(dir.path(), Faults::default()).unwrap();
    let mut a = Journal::in_memory(Faults::default()).unwrap();
    let mut b = Journal::in_memory(Faults::default()).unwrap();
    for j in [&a, &b] {
        assert_eq!(schema_text(j), schema_text(&file));
        assert_eq!(pragma(j, "user_version"), JOURNAL_VERSION);
        assert_eq!(pragma(j, "application_id"), pragma(&file, "application_id"));
    }
    a.set_meta("who", "a").unwrap();
    let at = Timestamp(1_780_000_000_000);
    assert_eq!(a.record_event("t", None, None, at).unwrap(), 1);
    assert_eq!(b.meta("who").unwrap(), None, "b does not see a's write");
    assert_eq!(b.record_event("t", None, None, at).unwrap(), 1);
    b.set_meta("who", "b").unwrap();
    assert_eq!(a.meta("who").unwrap().as_deref(), Some("a"));
    // Dropped journals serve the next ones, emptied: ids start again at 1, the
    // `AUTOINCREMENT` counters too.
    a.conn()
        .execute_batch(
            "INSERT INTO recordings (flight, version, topic, at) VALUES ('f', 1, 't', 0);",
        )
        .unwrap();
    drop(a);
    drop(b);
    for _ in 0..3 {
        let mut c = Journal::in_memory(Faults::default()).unwrap();
        assert_eq!(schema_text(&c), schema_text(&file));
        assert_eq!(pragma(&c, "user_version"), JOURNAL_VERSION);
        assert_eq!(c.meta("who").unwrap(), None);
        assert_eq!(c.last_event_id().unwrap(), 0);
        let rows: i64 = c
            .conn()
            .query_row(
                "SELECT (SELECT count(*) FROM recordings) + (SELECT count(*) FROM sqlite_sequence)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(rows, 0);
        assert_eq!(c.record_event("t", None, None, at).unwrap(), 1);
        c.set_meta("who", "c").unwrap();
    }
}

/// The fault points of an in-memory journal fire like a file journal's, so a simulated
/// crash stops the write before anything of it lands.
#[test]
fn an_in_memory_journal_keeps_its_fault_points() {
    let faults = Faults::crash_after(2);
    let mut j = Journal::in_memory(faults.clone()).unwrap();
    assert_eq!(faults.passed(), 0, "opening passes no fault point");
    j.set_meta("who", "x").unwrap();
    assert!(j.set_meta("who", "y").is_err());
    assert_eq!(j.meta("who").unwrap().as_deref(), Some("x"));
}
