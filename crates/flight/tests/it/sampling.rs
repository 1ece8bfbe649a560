//! The public Nimbus and Normandy bucketing vectors, bit for bit.

use crate::{data_dir, read_json};
use serde_json::Value;
use testpilot_flight::sampling::*;
use testpilot_flight::targeting::{eval_expression, FlightContext};
use testpilot_flight::{Person, Timestamp};

fn cases(section: &str) -> Vec<Value> {
    read_json(&data_dir().join("sampling.json"))[section]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn truncated_hash_vectors() {
    for c in cases("truncated_hash") {
        assert_eq!(
            truncated_hash(&c["input"]),
            c["hash"].as_str().unwrap(),
            "{c}"
        );
    }
}

#[test]
fn stable_sample_vectors() {
    for c in cases("stable_sample") {
        let got = stable_sample(&c["input"], c["rate"].as_f64().unwrap());
        assert_eq!(got, c["expected"].as_bool().unwrap(), "{c}");
    }
}

#[test]
fn bucket_sample_vectors() {
    for c in cases("bucket_sample") {
        let n = |k: &str| c[k].as_u64().unwrap();
        let got = bucket_sample(&c["input"], n("start"), n("count"), n("total"));
        assert_eq!(got, c["expected"].as_bool().unwrap(), "{c}");
    }
}

#[test]
fn ratio_sample_vectors() {
    for c in cases("ratio_sample") {
        let ratios: Vec<u64> = c["ratios"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_u64().unwrap())
            .collect();
        let got = ratio_sample(&c["input"], &ratios);
        assert_eq!(got, Some(c["expected"].as_u64().unwrap() as usize), "{c}");
    }
    assert_eq!(ratio_sample("test", &[]), None);
    assert_eq!(ratio_sample("test", &[0, 0]), None);
}

#[test]
fn fraction_to_key_vectors() {
    for c in cases("fraction_to_key") {
        assert_eq!(
            fraction_to_key(c["fraction"].as_f64().unwrap()),
            c["key"].as_str().unwrap(),
            "{c}"
        );
    }
}

/// The same vectors through the JEXL transforms, as Normandy's filter expressions use them.
#[test]
fn expression_transforms_agree_with_vectors() {
    let person = Person::new("p");
    let flight = FlightContext {
        studyname: "s",
        version: None,
    };
    let eval = |e: &str| eval_expression(e, &flight, &person, Timestamp(0)).unwrap();
    assert_eq!(eval(r#"["test-1"]|stableSample(0.5)"#), Value::Bool(true));
    assert_eq!(eval(r#"["test-4"]|stableSample(0.5)"#), Value::Bool(false));
    assert_eq!(
        eval(r#""test-0"|bucketSample(0, 5, 10)"#),
        Value::Bool(true)
    );
    assert_eq!(
        eval(r#""test-1"|bucketSample(0, 5, 10)"#),
        Value::Bool(false)
    );
    // Wrapping ranges: [8, 13) of 10 is [0.8, 1) ∪ [0, 0.3).
    for i in 0..50 {
        let x = format!("w-{i}");
        let wrapped = bucket_sample(&x, 8, 5, 10);
        let split = bucket_sample(&x, 8, 2, 10) || bucket_sample(&x, 0, 3, 10);
        assert_eq!(wrapped, split, "{x}");
    }
}

/// The arm choice hashes `experimentmanager-<personid>-<studyname>-branch`, as Nimbus does.
#[test]
fn arm_choice_is_nimbus_branch_choice() {
    for id in [
        "299eed1e-be6d-457d-9e53-da7b1a03f10d",
        "542213c0-9aef-47eb-bc6b-3b8529736ba2",
        "ünïcødé",
        // The hot paths hash these piece by piece: text that JSON escapes must hash the same.
        "quote\"back\\slash",
        "new\nline\u{1b}[2J\u{7f}",
    ] {
        let direct = ratio_sample(&format!("experimentmanager-{id}-my-study-branch"), &[3, 1]);
        assert_eq!(choose_arm(id, "my-study", &[3, 1]), direct);
        assert_eq!(deploy_hash48(id, "k\"ey"), hash48(&[id, "k\"ey"]), "{id:?}");
    }
}
