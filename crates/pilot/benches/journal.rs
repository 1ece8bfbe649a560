//! Journal throughput and crash recovery.
//!
//! Run: `cargo bench -p testpilot-pilot --bench journal`
//!
//! - `journal/write`: one journal write (a transaction with `synchronous = FULL`, as every
//!   write of the pilot): writes per second = 1 / time.
//! - `journal/flight-cycle`: a one-effect flight's whole life: enrolled, feature set (intent,
//!   host call, done), at its wait, opted out, undone, cleaned up.
//! - `recover/100-flights`: open a profile whose 100 running flights each stopped between an
//!   effect's intent and its done record, and move them all on (the effect performed again,
//!   the step resolved, each flight back at its wait).
//! - `in-memory/open`: a new in-memory journal (`Journal::in_memory`, one per virtual client
//!   of `testpilot simulate`).
//! - `in-memory/client`: what a simulated client does: a new in-memory journal and pilot
//!   (memory host), a flight with a feature and a prompt enrolled, its wait played out in
//!   virtual time to the end, undone and cleaned up.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use testpilot_flight::Timestamp;
use testpilot_pilot::engine::PilotConfig;
use testpilot_pilot::host::MemoryHost;
use testpilot_pilot::net::Offline;
use testpilot_pilot::{Faults, Journal, ManualClock, Pilot, ReferenceHost};

const T0: Timestamp = Timestamp(1_780_000_000_000);

fn pilot(profile: &Path) -> Pilot {
    let host = ReferenceHost::new(profile, Faults::default());
    let config = PilotConfig {
        profile: profile.to_path_buf(),
        person: Some(json!({"personid": "bench", "os": "linux"})),
    };
    Pilot::open(
        config,
        Box::new(host),
        Arc::new(Offline),
        Arc::new(ManualClock::new(T0)),
        Faults::default(),
    )
    .unwrap()
}

/// A profile with 100 flights, each stopped half-way through setting a feature.
fn crashed_profile(dir: &Path) {
    let flights: Vec<_> = (0..100)
        .map(|i| {
            json!({"studyname": format!("f{i:03}"), "author": "a", "description": "d", "version": 1, "flightplan": [
                {"action": "log", "text": "hello"},
                {"action": "feature", "id": format!("feat.{i}"), "value": {"on": true}},
                {"action": "wait", "for": "7d"}
            ]})
        })
        .collect();
    let mut p = pilot(dir);
    p.apply_index(&flights, 1).unwrap();
    p.tick().unwrap();
    drop(p);
    // Back to "intent written, effect maybe done, step not resolved" for every flight.
    let c = rusqlite::Connection::open(Journal::path_in(dir)).unwrap();
    c.execute_batch(
        "UPDATE effects SET phase = 'intent', done_at = NULL WHERE kind = 'feature';
         UPDATE nodes SET state = json_remove(state, '$.res', '$.why') WHERE path = '1';
         UPDATE flights SET step = 1;
         DELETE FROM nodes WHERE path = '2';",
    )
    .unwrap();
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), Faults::default()).unwrap();
    let mut g = c.benchmark_group("journal");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    g.bench_function("write", |b| {
        b.iter(|| {
            j.note("bench", T0, "log", "a line in the flight log", None)
                .unwrap()
        })
    });
    drop(j);

    let dir2 = tempfile::tempdir().unwrap();
    let mut p = pilot(dir2.path());
    let mut n = 0u64;
    g.bench_function("flight-cycle", |b| {
        b.iter(|| {
            n += 1;
            let name = format!("e{n}");
            let plan = json!([{"action": "feature", "id": "bench.f", "value": {"n": n}}, {"action": "wait", "for": "1d"}]);
            p.apply_index(&[json!({"studyname": name, "author": "a", "description": "d", "version": 1, "flightplan": plan})], n).unwrap();
            p.tick().unwrap();
            p.optout(Some(&name)).unwrap();
        })
    });
    g.finish();

    let template = tempfile::tempdir().unwrap();
    crashed_profile(template.path());
    let mut g = c.benchmark_group("recover");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function("100-flights", |b| {
        b.iter_batched(
            || {
                let d = tempfile::tempdir().unwrap();
                for f in ["journal.sqlite", "features.json"] {
                    let _ = std::fs::copy(template.path().join(f), d.path().join(f));
                }
                d
            },
            |d| {
                let mut p = pilot(d.path());
                let wake = p.tick().unwrap();
                assert_eq!(wake, Some(Timestamp(T0.0 + 7 * 86_400_000)));
                assert_eq!(p.running().unwrap().len(), 100);
                d
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

/// One simulated client's life on a fresh in-memory journal.
fn memory_client(n: u64) {
    let clock = ManualClock::new(T0);
    let config = PilotConfig {
        profile: std::env::temp_dir(),
        person: Some(json!({"personid": format!("sim-{n}"), "os": "linux"})),
    };
    let mut p = Pilot::with_journal(
        Journal::in_memory(Faults::default()).unwrap(),
        config,
        Box::new(MemoryHost::default()),
        Arc::new(Offline),
        Arc::new(clock.clone()),
    )
    .unwrap();
    let plan = json!([
        {"action": "log", "text": "hello"},
        {"action": "feature", "id": "bench.f", "value": {"on": true}},
        {"action": "notify", "topic": "bench.topic"},
        {"action": "wait", "for": "7d"},
        {"action": "log", "text": "done"}
    ]);
    p.apply_index(&[json!({"studyname": "f", "author": "a", "description": "d", "version": 1, "flightplan": plan})], 1).unwrap();
    for day in 0..9 {
        clock.set(Timestamp(T0.0 + day * 86_400_000));
        p.tick().unwrap();
    }
    assert!(p.running().unwrap().is_empty());
}

fn in_memory(c: &mut Criterion) {
    let mut g = c.benchmark_group("in-memory");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    g.bench_function("open", |b| {
        b.iter(|| Journal::in_memory(Faults::default()).unwrap())
    });
    let mut n = 0;
    g.bench_function("client", |b| {
        b.iter(|| {
            n += 1;
            memory_client(n)
        })
    });
    g.finish();
}

criterion_group!(pilot_benches, benches, in_memory);
criterion_main!(pilot_benches);
