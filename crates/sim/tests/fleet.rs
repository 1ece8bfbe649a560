//! The simulator against the real decision functions and itself: its counts equal, person
//! for person, what `enrollment::explain` (the function behind `testpilot flight explain`)
//! says; the same seed gives the same report.

use serde_json::Value;
use std::path::{Path, PathBuf};
use testpilot_flight::{enrollment, Timestamp};
use testpilot_sim::fleet::Fleet;
use testpilot_sim::load::{Capacity, LoadModel};
use testpilot_sim::{simulate, Config, Population, SimFlight};

const START: Timestamp = Timestamp(1_796_083_200_000); // 2026-12-01

fn examples() -> Vec<Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap())
        .collect()
}

fn flights(scratch: &Path) -> Vec<SimFlight> {
    examples()
        .iter()
        .map(|v| SimFlight::new(v, &testpilot_sim::flights::stand_in_path(scratch)).unwrap())
        .collect()
}

#[test]
fn counts_equal_explain_person_for_person() {
    let scratch = std::env::temp_dir().join(format!("tp-sim-explain-{}", std::process::id()));
    let population = Population::builtin();
    let flights = flights(&scratch);
    let clients = 10_000;
    let end = Timestamp(START.0 + 86_400_000);
    let model = LoadModel::new(START, end, 900_000, 1000.0);
    let fleet = Fleet {
        population: &population,
        flights: &flights,
        clients,
        seed: 42,
        start: START,
        end,
        bins: 24,
        cancel: None,
        load: &model,
        kills: &[],
    };
    let tally = fleet.run(2, &|_| {});
    let mut enrolled_clients = Vec::new();
    for (i, f) in flights.iter().enumerate() {
        let (mut eligible, mut sampled, mut enrolled) = (0, 0, 0);
        let mut arms = vec![0u64; f.flight.arms.len()];
        for c in 0..clients {
            let person = population.person(42, c);
            let e = enrollment::explain(&f.flight, &person, START);
            let d = enrollment::decide(&f.flight, &person, START);
            assert_eq!(
                (d.eligible, d.sampled, d.enrolled),
                (e.eligible, e.sampled, e.enrolled)
            );
            eligible += e.eligible as u64;
            sampled += (e.eligible && e.sampled) as u64;
            if e.enrolled {
                enrolled += 1;
                enrolled_clients.push(c as u32);
                let arm = e
                    .arm
                    .as_deref()
                    .map(|a| f.flight.arms.iter().position(|x| x.name == a).unwrap());
                if let Some(a) = arm {
                    arms[a] += 1;
                }
            }
        }
        let t = &tally.flights[i];
        let name = f.name();
        assert_eq!(t.eligible, eligible, "{name} eligible");
        assert_eq!(t.sampled, sampled, "{name} sampled");
        assert_eq!(t.enrolled, enrolled, "{name} enrolled");
        assert_eq!(t.arms, arms, "{name} arms");
    }
    enrolled_clients.sort_unstable();
    enrolled_clients.dedup();
    assert_eq!(tally.enrolled_clients, enrolled_clients);
    // The examples reach real people: most flights enrol someone.
    assert!(tally.flights.iter().filter(|t| t.enrolled > 0).count() >= 5);
}

fn config(seed: u64, scratch: &Path) -> Config {
    Config {
        population: Population::builtin(),
        flights: flights(scratch),
        clients: 3_000,
        days: 30.0,
        seed,
        start: START,
        runs: Some(200),
        poll_ms: 900_000,
        kills: vec![(3, Timestamp(START.0 + 2 * 86_400_000))],
        index_bytes: 8000,
        capacity: Capacity::default(),
        threads: 2,
        scratch: scratch.to_path_buf(),
        cancel: None,
    }
}

#[test]
fn the_same_seed_gives_the_same_report() {
    let scratch = std::env::temp_dir().join(format!("tp-sim-seed-{}", std::process::id()));
    let run = |seed| {
        serde_json::to_value(simulate(&config(seed, &scratch), &|_, _, _| {}).unwrap()).unwrap()
    };
    let a = run(7);
    assert_eq!(a, run(7));
    assert_ne!(a["flights"], run(8)["flights"]);
    // The engine ran, played the person, and left no machine changed.
    assert_eq!(a["engine"]["runs"], 200);
    assert_eq!(a["engine"]["leftovers"], 0);
    assert_eq!(a["engine"]["disagreements"], 0);
    let outcomes: Vec<&Value> = a["flights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| &f["outcomes"])
        .collect();
    assert!(
        outcomes.iter().any(|o| o.get("completed").is_some()),
        "{outcomes:?}"
    );
    assert!(
        outcomes.iter().any(|o| o.get("declined").is_some()),
        "{outcomes:?}"
    );
    // Flight 3 (newtab-layout-2) was killed on day 2.
    assert_eq!(a["flights"][3]["studyname"], "newtab-layout-2");
    assert!(
        a["flights"][3]["outcomes"].get("killed").is_some(),
        "{}",
        a["flights"][3]
    );
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn machines_offline_past_the_index_expiry_end_their_flights() {
    let scratch = std::env::temp_dir().join(format!("tp-sim-offline-{}", std::process::id()));
    let mut c = config(3, &scratch);
    c.population = Population::from_json(&serde_json::json!({
        "os": {"windows": 1.0}, "locale": {"en-US": 1.0}, "appversion": {"130.0": 1.0},
        "behaviour": {"answers": {"ok": 1.0}, "answerAfter": "1h", "offlinePerDay": 0.2,
                      "offlineFor": "30d", "arrival": "1h"}
    }))
    .unwrap();
    c.flights.retain(|f| f.name() == "pdf-tools-ensure");
    c.kills.clear();
    c.clients = 300;
    c.runs = None;
    let r = simulate(&c, &|_, _, _| {}).unwrap();
    let f = &r.flights[0];
    assert_eq!(f.enrolled, 300);
    assert_eq!(f.runs, 300);
    // Two weeks of waiting: some machines go offline for good before the end of it, and
    // their pilots stop trusting the index a week later; the rest complete.
    let expired = f.outcomes.get("indexexpired").copied().unwrap_or(0);
    let completed = f.outcomes.get("completed").copied().unwrap_or(0);
    assert!(expired > 50 && completed > 50, "{:?}", f.outcomes);
    assert!(r.engine.offline_periods > 0);
    assert_eq!(r.engine.leftovers, 0);
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn a_cancelled_run_stops_with_an_error() {
    let scratch = std::env::temp_dir().join(format!("tp-sim-cancel-{}", std::process::id()));
    let mut c = config(1, &scratch);
    c.clients = 10_000_000;
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    c.cancel = Some(flag);
    let done = std::sync::atomic::AtomicU64::new(0);
    let e = testpilot_sim::simulate(&c, &|_, n, _| {
        done.fetch_max(n, std::sync::atomic::Ordering::Relaxed);
    })
    .unwrap_err();
    assert!(e.contains("stopped"), "{e}");
    // Stopped before any client was decided, not after the ten million.
    assert_eq!(done.load(std::sync::atomic::Ordering::Relaxed), 0);
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn more_clients_than_a_run_takes_are_refused_up_front() {
    let scratch = std::env::temp_dir().join(format!("tp-sim-max-{}", std::process::id()));
    let mut c = config(1, &scratch);
    c.clients = testpilot_sim::MAX_CLIENTS + 1;
    let done = std::sync::atomic::AtomicU64::new(0);
    let e = testpilot_sim::simulate(&c, &|_, n, _| {
        done.fetch_max(n, std::sync::atomic::Ordering::Relaxed);
    })
    .unwrap_err();
    assert!(e.contains("more than one run takes"), "{e}");
    assert_eq!(done.load(std::sync::atomic::Ordering::Relaxed), 0);
}

/// A client whose first poll comes after a flight's kill never starts it: the enrolment
/// timeline has nobody for that flight from the kill on, while the flight's `enrolled`
/// (decided at the launch) still counts them.
#[test]
fn the_timeline_has_no_enrolments_after_a_kill() {
    let scratch = std::env::temp_dir().join(format!("tp-sim-kill-{}", std::process::id()));
    let mut c = config(3, &scratch);
    c.runs = Some(0);
    let killed = c.kills[0].0;
    let kill_at = c.kills[0].1;
    let r = serde_json::to_value(simulate(&c, &|_, _, _| {}).unwrap()).unwrap();
    let name = c.flights[killed].name().to_string();
    let bins: Vec<u64> = r["timeline"]["enrolled"][&name]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .collect();
    let end = START.0 + (c.days * 86_400_000.0) as i64;
    let first_after =
        ((kill_at.0 - START.0) as u128 * bins.len() as u128).div_ceil((end - START.0) as u128);
    assert!(
        bins[..first_after as usize].iter().sum::<u64>() > 0,
        "{bins:?}"
    );
    assert_eq!(
        bins[first_after as usize..].iter().sum::<u64>(),
        0,
        "{bins:?}"
    );
    let enrolled = r["flights"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["studyname"] == name.as_str())
        .unwrap()["enrolled"]
        .as_u64()
        .unwrap();
    assert!(bins.iter().sum::<u64>() < enrolled, "{bins:?} {enrolled}");
    let _ = std::fs::remove_dir_all(&scratch);
}

/// With no engine runs, or a sample that misses a flight, the report says there are no
/// outcomes and why, instead of "estimated from 0" or nothing.
#[test]
fn missing_outcomes_are_explained() {
    let scratch = std::env::temp_dir().join(format!("tp-sim-none-{}", std::process::id()));
    let mut c = config(5, &scratch);
    c.runs = Some(0);
    let r = simulate(&c, &|_, _, _| {}).unwrap();
    assert!(
        r.warnings.iter().any(|w| w.contains("(--runs 0)")),
        "{:?}",
        r.warnings
    );
    assert!(
        !r.warnings.iter().any(|w| w.contains("estimated from 0")),
        "{:?}",
        r.warnings
    );
    c.runs = Some(1);
    let text = simulate(&c, &|_, _, _| {}).unwrap().text();
    assert!(text.contains("was in the engine's sample"), "{text}");
    let _ = std::fs::remove_dir_all(&scratch);
}
