//! Reading features in an embedded pilot (docs/embedding.md).
//!
//! Run: `cargo bench -p testpilot-pilot --bench embed` (or `scripts/bench-embed.sh`).
//!
//! - `embed/feature-hit`: `EmbeddedPilot::feature` of a feature a flight set (goal < 1 µs).
//! - `embed/feature-miss`: the same for a feature no flight sets.
//! - `openfeature/bool-field`: `client.get_bool_value("search.bar.on")` through OpenFeature
//!   and the `TestPilotProvider`, awaited on a current-thread runtime, for comparison.
//!
//! The pilot runs its agent meanwhile (against a signed index in a file), as in an
//! application: its rounds rebuild the snapshot the reads take.

#[path = "../tests/fixture/embed_index.rs"]
mod fixture;

use criterion::{criterion_group, criterion_main, Criterion};
use fixture::{flight, wait_until, FileIndex};
use open_feature::OpenFeature;
use serde_json::json;
use std::hint::black_box;
use std::sync::Arc;
use testpilot_pilot::embed::openfeature::TestPilotProvider;
use testpilot_pilot::EmbeddedPilot;

fn bench(c: &mut Criterion) {
    let index = FileIndex::new();
    let flights = (0..20)
        .map(|i| {
            flight(
                &format!("flight-{i}"),
                json!([
                    {"action": "feature", "id": if i == 0 { "search.bar".to_string() } else { format!("feature.{i}") },
                     "value": {"on": true, "color": "red", "size": i}},
                    {"action": "wait", "for": "30d"}
                ]),
            )
        })
        .collect();
    index.publish(1, flights);
    let pilot = Arc::new(EmbeddedPilot::open(index.config("p"), None).unwrap());
    pilot.start().unwrap();
    wait_until("the 20 features are on", || pilot.features().len() == 20);

    let mut g = c.benchmark_group("embed");
    g.bench_function("feature-hit", |b| {
        b.iter(|| black_box(pilot.feature(black_box("search.bar"))))
    });
    g.bench_function("feature-miss", |b| {
        b.iter(|| black_box(pilot.feature(black_box("dark.mode"))))
    });
    g.finish();

    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let client = rt.block_on(async {
        let mut api = OpenFeature::singleton_mut().await;
        api.set_provider(TestPilotProvider::new(pilot.clone()))
            .await;
        api.create_client()
    });
    assert!(rt
        .block_on(client.get_bool_value("search.bar.on", None, None))
        .unwrap());
    let mut g = c.benchmark_group("openfeature");
    g.bench_function("bool-field", |b| {
        b.iter(|| {
            black_box(
                rt.block_on(client.get_bool_value(black_box("search.bar.on"), None, None))
                    .unwrap(),
            )
        })
    });
    g.finish();
    pilot.stop().unwrap();
}

criterion_group!(benches, bench);
criterion_main!(benches);
