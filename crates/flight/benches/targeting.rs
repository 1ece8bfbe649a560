//! Targeting + bucketing + arm choice for 1,000 flights for one person (goal: under 1 ms).
//!
//! Run: `cargo bench -p testpilot-flight --bench targeting`

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use serde_json::json;
use testpilot_flight::enrollment::{decide, explain};
use testpilot_flight::{Flight, Person, Timestamp};

/// 1,000 flights shaped like a real index: every one filters on channel/OS/locale, a third
/// on versions, every tenth has a JEXL expression, most sample, half have arms.
fn flights(expression_every: usize) -> Vec<Flight> {
    (0..1000)
        .map(|i| {
            let mut f = json!({
                "studyname": format!("flight-{i}"), "author": "a", "description": "d",
                "filter": {"channels": ["beta", "release"], "oses": ["linux", "win"], "locales": ["en", "de-AT"]},
                "flightplan": [{"action": "log", "text": "x"}]
            });
            if i % 3 == 0 {
                f["filter"]["versions"] = json!(">=120, <140");
            }
            if i % expression_every == 0 {
                f["filter"]["expression"] = json!("person.channel == 'beta' && [person.personid, flight.studyname]|stableSample(0.5) && now < '2027-06-01'|date");
            }
            if i % 5 != 0 {
                f["randomDeploy"] = json!({"ge": 0.0, "lt": 0.05 + (i % 90) as f64 / 100.0});
            }
            if i % 2 == 0 {
                f["arms"] = json!([{"name": "control", "ratio": 1}, {"name": "treatment", "ratio": 1}]);
            }
            Flight::from_json(&f).expect("valid")
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let person = Person::new("299eed1e-be6d-457d-9e53-da7b1a03f10d")
        .with("os", "Linux")
        .with("channel", "beta")
        .with("locale", "en-US")
        .with("appversion", "128.0b3");
    let now = Timestamp(1_798_000_000_000);
    for (label, every) in [
        ("1000 flights, 10% with expressions", 10),
        ("1000 flights, all with expressions", 1),
    ] {
        let fs = flights(every);
        // What the pilot runs on every sync.
        c.bench_function(&format!("decide: {label}"), |b| {
            b.iter(|| {
                fs.iter()
                    .filter(|f| decide(black_box(f), &person, now).enrolled)
                    .count()
            })
        });
        // What `testpilot flight explain` runs: every criterion, with sentences.
        c.bench_function(&format!("explain: {label}"), |b| {
            b.iter(|| {
                fs.iter()
                    .filter(|f| explain(black_box(f), &person, now).enrolled)
                    .count()
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
