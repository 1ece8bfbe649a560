//! Side by side, in one process: our `decide` against Unleash's engine (`unleash-yggdrasil`)
//! on the same work, and the ratio between them (goal: at most 1.0).
//!
//! The work: 1,000 flights, each with an OS filter, a 25 % sample keyed by its name and two
//! 50/50 arms, decided for one person. In Unleash terms: 1,000 toggles, each with one
//! `flexibleRollout` strategy (rollout 25, default stickiness, groupId = the toggle's name),
//! an `os IN [linux, windows]` constraint and two strategy variants of weight 500, asked
//! with `get_variant`.
//!
//! Run: `cargo bench -p testpilot-flight --bench decide_vs_yggdrasil`

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use serde_json::json;
use std::time::{Duration, Instant};
use testpilot_flight::enrollment::decide;
use testpilot_flight::{Flight, Person, Timestamp};
use unleash_yggdrasil::{Context, EngineState, UpdateMessage};

const FLIGHTS: usize = 1000;
const PERSON: &str = "299eed1e-be6d-457d-9e53-da7b1a03f10d";

fn name(i: usize) -> String {
    format!("flight-{i}")
}

fn flights() -> Vec<Flight> {
    (0..FLIGHTS)
        .map(|i| {
            Flight::from_json(&json!({
                "studyname": name(i), "author": "a", "description": "d",
                "filter": {"oses": ["linux", "windows"]},
                "randomDeploy": {"ge": 0.0, "lt": 0.25},
                "arms": [{"name": "control", "ratio": 1}, {"name": "treatment", "ratio": 1}],
                "flightplan": [{"action": "log", "text": "x"}]
            }))
            .expect("a valid flight")
        })
        .collect()
}

fn engine() -> EngineState {
    let variant = |n: &str| json!({"name": n, "weight": 500, "weightType": "variable", "stickiness": "default"});
    let features: Vec<_> = (0..FLIGHTS)
        .map(|i| {
            json!({
                "name": name(i), "enabled": true,
                "strategies": [{
                    "name": "flexibleRollout",
                    "parameters": {"rollout": "25", "stickiness": "default", "groupId": name(i)},
                    "constraints": [{"contextName": "os", "operator": "IN", "values": ["linux", "windows"]}],
                    "variants": [variant("control"), variant("treatment")]
                }]
            })
        })
        .collect();
    let message: UpdateMessage =
        serde_json::from_value(json!({"version": 2, "features": features}))
            .expect("a valid Unleash state");
    let engine = EngineState::default();
    if let Some(warnings) = engine.take_state(message) {
        panic!("yggdrasil did not compile the toggles: {warnings:?}");
    }
    engine
}

/// Median time of `f` over a few hundred rounds (each round is all 1,000 decisions).
fn median(mut f: impl FnMut() -> usize) -> Duration {
    let mut times: Vec<Duration> = (0..300)
        .map(|_| {
            let t = Instant::now();
            black_box(f());
            t.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn bench(c: &mut Criterion) {
    let fs = flights();
    let person = Person::new(PERSON).with("os", "linux");
    let now = Timestamp(1_798_000_000_000);
    let ygg = engine();
    let names: Vec<String> = (0..FLIGHTS).map(name).collect();
    let context: Context = serde_json::from_value(json!({
        "userId": PERSON, "properties": {"os": "linux"}
    }))
    .expect("a valid Unleash context");

    let ours = || {
        fs.iter()
            .filter(|f| decide(black_box(f), &person, now).enrolled)
            .count()
    };
    let theirs = || {
        names
            .iter()
            .filter(|n| ygg.get_variant(black_box(n), &context, &None).enabled)
            .count()
    };
    // Both samples take about a quarter (the person is fixed, so the counts differ).
    assert!(ours() > FLIGHTS / 10 && theirs() > FLIGHTS / 10);

    let mut group = c.benchmark_group("1000 flights, one person");
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("testpilot-flight decide", |b| b.iter(ours));
    group.bench_function("unleash-yggdrasil get_variant", |b| b.iter(theirs));
    group.finish();

    // Interleaved rounds, so that both sides see the same machine noise.
    for _ in 0..3 {
        let (a, b) = (median(ours), median(theirs));
        println!(
            "decide {:.3} ms, yggdrasil get_variant {:.3} ms: ratio {:.2} (goal: at most 1.0)",
            a.as_secs_f64() * 1e3,
            b.as_secs_f64() * 1e3,
            a.as_secs_f64() / b.as_secs_f64()
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
