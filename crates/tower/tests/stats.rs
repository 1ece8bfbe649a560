//! The results statistics (`results::compute`) held to numbers scipy computes from the
//! per-client counts themselves (`tests/data/stats-vectors.json`, written by
//! `scripts/stats-vectors.py`; `scripts/test` regenerates it with scipy and fails if it moved).
//! The tower sees only the rollups (n, clients with an event, Σx, Σx²): agreement to 1e-6
//! says the rollups carry everything and the formulas are the textbook ones.

use serde_json::Value;
use testpilot_tower::results::compute::{self, Sample};
use testpilot_tower::results::{Difference, Mean, Share};

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/stats-vectors.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn sample(v: &Value) -> Sample {
    let r = &v["rollup"];
    let n = |k: &str| r[k].as_u64().unwrap();
    Sample {
        n: n("n"),
        with_event: n("withEvent"),
        sum: n("sum"),
        sum_sq: n("sumSq"),
    }
}

fn same(what: &str, got: Option<f64>, want: &Value) {
    match (got, want.as_f64()) {
        (None, None) => {}
        (Some(g), Some(w)) => assert!((g - w).abs() <= 1e-6, "{what}: {g} != scipy's {w}"),
        (g, _) => panic!("{what}: {g:?} != scipy's {want}"),
    }
}

fn mean(what: &str, m: &Mean, want: &Value) {
    same(&format!("{what}.mean"), m.mean, &want["mean"]);
    same(&format!("{what}.low"), m.low, &want["low"]);
    same(&format!("{what}.high"), m.high, &want["high"]);
}

fn share(what: &str, s: &Share, want: &Value) {
    same(&format!("{what}.value"), s.value, &want["value"]);
    same(&format!("{what}.low"), s.low, &want["low"]);
    same(&format!("{what}.high"), s.high, &want["high"]);
}

fn diff(what: &str, d: &Difference, want: &Value) {
    same(&format!("{what}.diff"), d.diff, &want["diff"]);
    same(&format!("{what}.low"), d.low, &want["low"]);
    same(&format!("{what}.high"), d.high, &want["high"]);
    same(&format!("{what}.p"), d.p, &want["p"]);
}

#[test]
fn results_agree_with_scipy() {
    let doc = vectors();
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let arms = c["arms"].as_array().unwrap();
        let control = sample(&arms[0]);
        for (i, a) in arms.iter().enumerate() {
            let s = sample(a);
            let what = format!("{name}, arm {i}");
            let r = compute::arm_results("x", &s, (i > 0).then_some(&control));
            mean(&format!("{what} perClient"), &r.per_client, &a["perClient"]);
            share(&format!("{what} share"), &r.share, &a["share"]);
            if let Some(vs) = &r.vs_control {
                let want = &a["vsControl"];
                diff(
                    &format!("{what} vsControl.perClient"),
                    &vs.per_client,
                    &want["perClient"],
                );
                diff(
                    &format!("{what} vsControl.share"),
                    &vs.share,
                    &want["share"],
                );
            }
        }
    }
}

fn case(name: &str) -> (Sample, Sample) {
    let doc = vectors();
    let c = doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()
        .clone();
    (sample(&c["arms"][0]), sample(&c["arms"][1]))
}

#[test]
fn a_known_effect_is_significant_and_no_effect_is_not() {
    let (c, a) = case("effect, 2,000 clients an arm");
    let w = compute::welch(&a, &c);
    assert!(w.p.unwrap() < 0.001 && w.low.unwrap() > 0.0, "{w:?}");
    let s = compute::two_proportions(&a, &c);
    assert!(s.p.unwrap() < 0.001 && s.low.unwrap() > 0.0, "{s:?}");

    let (c, a) = case("no effect, 50,000 clients an arm");
    let w = compute::welch(&a, &c);
    assert!(
        w.p.unwrap() > 0.05 && w.low.unwrap() < 0.0 && w.high.unwrap() > 0.0,
        "{w:?}"
    );
    let s = compute::two_proportions(&a, &c);
    assert!(
        s.p.unwrap() > 0.05 && s.low.unwrap() < 0.0 && s.high.unwrap() > 0.0,
        "{s:?}"
    );
}
