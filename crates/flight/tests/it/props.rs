//! Properties of validation and bucketing over many inputs.

use proptest::prelude::*;
use serde_json::{json, Value};
use testpilot_flight::enrollment::explain;
use testpilot_flight::sampling::{deploy_bucket, in_range};
use testpilot_flight::{Flight, Person, Timestamp};

/// Keys that appear in flights, so that random objects reach deep into the validator.
const KEYS: &[&str] = &[
    "studyname",
    "author",
    "description",
    "flightplan",
    "action",
    "filter",
    "arms",
    "name",
    "ratio",
    "randomDeploy",
    "ge",
    "lt",
    "until",
    "for",
    "url",
    "data",
    "variables",
    "text",
    "wait",
    "ping",
    "addon",
    "do",
    "id",
    "sha256",
    "channels",
    "oses",
    "expression",
    "versions",
    "endBy",
    "fuse",
];

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        "[a-z{}. :/-]{0,12}".prop_map(Value::String),
        prop::sample::select(KEYS).prop_map(|k| json!(k)),
        Just(json!("{{os}}")),
        Just(json!("2026-04-23")),
        Just(json!("1h30m")),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(KEYS).prop_map(String::from),
                inner,
                0..8
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Expressions that are deep, long or both: nested brackets, long operator and transform
/// chains, long strings, and any mix of them (most are past the limits, some just inside).
fn arb_expression() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        Just("1".to_string()),
        Just("person.os".to_string()),
        "'[a-z \\n\u{1b}é]{0,12}'",
        (0usize..12_000).prop_map(|n| format!("'{}'", "x".repeat(n))),
    ];
    atom.prop_recursive(4, 32, 3, |inner| {
        prop_oneof![
            (inner.clone(), prop::sample::select(OPERATORS), 0usize..300)
                .prop_map(|(e, op, k)| format!("{e}{}", format!(" {op} 1").repeat(k))),
            (inner.clone(), 0usize..40).prop_map(|(e, k)| format!(
                "{}{e}{}",
                "(".repeat(k),
                ")".repeat(k)
            )),
            (inner.clone(), 0usize..40).prop_map(|(e, k)| format!(
                "{}{e}{}",
                "[".repeat(k),
                "]".repeat(k)
            )),
            (inner.clone(), 0usize..300).prop_map(|(e, k)| format!("{e}{}", "|length".repeat(k))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} ? {b} : ({a})")),
            (inner.clone(), inner)
                .prop_map(|(a, b)| format!("[person.tags[.n == ({a})], {{k: {b}}}]")),
        ]
    })
}

const OPERATORS: &[&str] = &[
    "+", "-", "*", "/", "//", "%", "^", "==", "!=", "<", ">=", "in", "&&", "||",
];

/// Deterministic, well-spread person ids (SplitMix64 over the index, as UUID text).
fn person_id(i: u64) -> String {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut next = || {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut x = z;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    };
    uuid::Uuid::from_u64_pair(next(), next()).to_string()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_json_never_panics(v in arb_json()) {
        let _ = Flight::from_json(&v);
        let _ = Person::from_json(&v);
        let _ = testpilot_flight::report::ReportBatch::from_json(&v, 100);
        let _ = testpilot_flight::index::IndexPayload::from_json(&v);
    }

    #[test]
    fn flight_shaped_json_never_panics(
        plan in prop::collection::vec(arb_json(), 0..5),
        filter in arb_json(),
        arms in arb_json(),
    ) {
        let v = json!({"studyname": "p", "author": "a", "description": "d", "flightplan": plan, "filter": filter, "arms": arms});
        let _ = Flight::from_json(&v);
    }

    /// Regression: deep or long expressions overflowed the stack (a 20,000-term `1+…+1`
    /// aborted the tower). Validation, checking and evaluation of any of them return, on a
    /// thread with a small stack.
    #[test]
    fn deep_and_long_expressions_never_panic(text in arb_expression()) {
        let flight = json!({"studyname": "p", "author": "a", "description": "d",
            "filter": {"expression": text.clone()}, "flightplan": [{"action": "log", "text": "x"}]});
        let run = std::thread::Builder::new().stack_size(256 * 1024).spawn(move || {
            let _ = Flight::from_json(&flight);
            let person = Person::new("p").with("os", "linux").with("tags", json!([{"n": 1}]));
            let _ = crate::expression::eval_for(&person, &text);
        }).unwrap();
        prop_assert!(run.join().is_ok());
    }

    #[test]
    fn raising_lt_never_drops_anyone(ge in 0.0f64..0.5, lt in 0.5f64..0.9, more in 0.0f64..0.1, id in "[ -~]{1,40}") {
        let h = deploy_bucket(&id, "k");
        if in_range(&h, ge, lt) {
            prop_assert!(in_range(&h, ge, lt + more));
        }
    }

    #[test]
    fn disjoint_ranges_never_share_a_person(a in 0.0f64..1.0, b in 0.0f64..1.0, c in 0.0f64..1.0, id in "\\PC{1,40}") {
        let mut cuts = [a, b, c];
        cuts.sort_by(f64::total_cmp);
        let h = deploy_bucket(&id, "shared-key");
        prop_assert!(!(in_range(&h, cuts[0], cuts[1]) && in_range(&h, cuts[1], cuts[2])));
    }
}

fn flight(v: Value) -> Flight {
    Flight::from_json(&v).unwrap()
}

#[test]
fn enrolled_share_matches_range_over_100k_people() {
    let f = flight(json!({
        "studyname": "share", "author": "a", "description": "d",
        "randomDeploy": {"ge": 0.2, "lt": 0.5},
        "arms": [{"name": "a", "ratio": 1}, {"name": "b", "ratio": 2}, {"name": "c", "ratio": 5}],
        "flightplan": [{"action": "log", "text": "x"}]
    }));
    let n = 100_000u64;
    let (mut enrolled, mut arms) = (0u64, [0u64; 3]);
    for i in 0..n {
        let e = explain(&f, &Person::new(&person_id(i)), Timestamp(0));
        enrolled += e.enrolled as u64;
        match e.arm.as_deref() {
            Some("a") => arms[0] += 1,
            Some("b") => arms[1] += 1,
            _ => arms[2] += 1,
        }
    }
    let share = enrolled as f64 / n as f64;
    assert!(
        (share - 0.3).abs() < 0.01,
        "enrolled share {share}, expected 0.3 ± 0.01"
    );
    for (count, expected) in arms.iter().zip([1.0 / 8.0, 2.0 / 8.0, 5.0 / 8.0]) {
        let s = *count as f64 / n as f64;
        assert!(
            (s - expected).abs() < 0.01,
            "arm share {s}, expected {expected} ± 0.01"
        );
    }
}

#[test]
fn raising_lt_keeps_everyone_over_100k_people() {
    let at = |lt: f64| {
        flight(
            json!({"studyname": "grow", "author": "a", "description": "d",
            "randomDeploy": {"ge": 0, "lt": lt}, "flightplan": [{"action": "log", "text": "x"}]}),
        )
    };
    let (small, large) = (at(0.05), at(0.2));
    for i in 0..100_000 {
        let p = Person::new(&person_id(i));
        if explain(&small, &p, Timestamp(0)).enrolled {
            assert!(
                explain(&large, &p, Timestamp(0)).enrolled,
                "{} dropped",
                p.personid()
            );
        }
    }
}

#[test]
fn flights_sharing_a_keyname_with_disjoint_ranges_never_share_a_person() {
    let mk = |name: &str, ge: f64, lt: f64| {
        flight(json!({"studyname": name, "author": "a", "description": "d",
            "randomDeploy": {"keyname": "pool", "ge": ge, "lt": lt}, "flightplan": [{"action": "log", "text": "x"}]}))
    };
    let (one, two) = (mk("one", 0.0, 0.5), mk("two", 0.5, 1.0));
    let mut both_ever = 0;
    let mut either = 0;
    for i in 0..50_000 {
        let p = Person::new(&person_id(i));
        let (a, b) = (
            explain(&one, &p, Timestamp(0)).enrolled,
            explain(&two, &p, Timestamp(0)).enrolled,
        );
        both_ever += (a && b) as u32;
        either += (a || b) as u32;
    }
    assert_eq!(both_ever, 0);
    assert_eq!(either, 50_000, "the two halves cover everyone");
}
