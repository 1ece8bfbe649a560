//! Our parse-once evaluator against `jexl-eval`, the reference: the same result (numbers
//! compared by value) or both an error, over a corpus of expressions.

use serde_json::{json, Value};
use testpilot_flight::expression::{eval, transform, Context, FlightContext, TRANSFORMS};
use testpilot_flight::{Person, Timestamp};

const CORPUS: &[&str] = &[
    "1", "1 + 2 * 3", "(2 + 3) * 4", "7 // 2", "7 % 4", "2 ^ 10", "1 / 0 == 1 / 0", "'a' + 'b'",
    "'bar' in 'foobar'", "'x' in ['x', 'y']", "3 in [1, 2, 3]", "'k' in {k: 1}", "1 in 'abc'",
    "true && 'x'", "false || 0 || 'last'", "null || 5", "'' && 1", "1 == 1.0000000001",
    "'a' < 'b'", "'b' >= 'b'", "true == true", "null == null", "[1, [2]] == [1, [2]]",
    "{a: 1} == {a: 1}", "1 == '1'", "1 != 2", "'x' != 'x'", "[1, 2, 3][1]", "[1, 2][5]",
    "{a: {b: 'c'}}.a.b", "{a: 1}['a']", "{a: 1}.zz", "true ? 'y' : 'n'", "0 ? 'y' : 'n'",
    "person.channel", "person.channel == 'beta'", "person.missing", "person.missing.deeper",
    "person['os']", "flight.studyname", "flight.version", "now > 0", "now",
    "person.tags[.name == 'x']", "person.tags[.n > 1]", "person.tags[0].name", "person.tags|length",
    "person|keys|length", "person.channel|length", "'abc'|length", "5|keys",
    "person.appversion|versionCompare('115.0')", "'1.0'|versionCompare('1.0.0')",
    "'2026-04-23'|date", "'nope'|date", "1|date",
    "person.locale|regExpMatch('^(en)-(US)')", "person.locale|regExpMatch('^fr') == null",
    "'ABC'|regExpMatch('b', 'i')", "'x'|regExpMatch('(')",
    "[person.personid, 'k']|stableSample(0.5)", "['test-1']|stableSample(0.5)", "['test-4']|stableSample(0.5)",
    "'test-0'|bucketSample(0, 5, 10)", "'test'|bucketSample(8, 5, 10)", "'x'|bucketSample(0, 1, 0)",
    "'x'|stableSample('half')", "'x'|nosuch", "undefinedName", "1 + 'a'", "true + 1", "[1] < [2]",
    "person.channel == 'beta' && [person.personid, flight.studyname]|stableSample(0.25) && now < '2027-06-01'|date",
];

fn reference() -> jexl_eval::Evaluator<'static> {
    TRANSFORMS
        .iter()
        .fold(jexl_eval::Evaluator::new(), |ev, name| {
            ev.with_transform(name, move |a: &[Value]| {
                transform(name, a).map_err(anyhow::Error::msg)
            })
        })
}

/// Numbers by value: jexl-eval writes `3.0` where we write `3`.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

#[test]
fn agrees_with_jexl_eval() {
    let person = Person::new("299eed1e-be6d-457d-9e53-da7b1a03f10d")
        .with("channel", "beta")
        .with("os", "linux")
        .with("locale", "en-US")
        .with("appversion", "128.0b3")
        .with(
            "tags",
            json!([{"name": "x", "n": 1}, {"name": "y", "n": 2}]),
        );
    let flight = FlightContext {
        studyname: "study",
        version: Some(3),
    };
    let now = Timestamp(1_798_000_000_000);
    let ctx = Context {
        person: &person,
        flight: &flight,
        now,
    };
    let ref_ctx =
        json!({"person": person, "flight": {"studyname": "study", "version": 3}, "now": now.0});
    let ev = reference();
    let mut disagreements = Vec::new();
    for e in CORPUS {
        let ours = eval(e, &ctx);
        let theirs = ev.eval_in_context(e, &ref_ctx).map_err(|x| x.to_string());
        let agree = match (&ours, &theirs) {
            (Ok(a), Ok(b)) => same(a, b),
            (Err(_), Err(_)) => true,
            _ => false,
        };
        if !agree {
            disagreements.push(format!("{e}: ours {ours:?}, jexl-eval {theirs:?}"));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

/// Whole numbers hash as JavaScript writes them, so inputs with numbers bucket as in Normandy.
#[test]
fn whole_numbers_hash_like_javascript() {
    let person = Person::new("p");
    let flight = FlightContext {
        studyname: "s",
        version: None,
    };
    let ctx = Context {
        person: &person,
        flight: &flight,
        now: Timestamp(0),
    };
    assert_eq!(
        eval("[1234, 'test_namespace']", &ctx).unwrap().to_string(),
        r#"[1234,"test_namespace"]"#
    );
    // Nimbus's vector for [1234, "test_namespace"] is 2a6e18a86edc; both sides of 0.16 agree.
    let h = testpilot_flight::sampling::truncated_hash(
        &eval("[1234, 'test_namespace']", &ctx).unwrap(),
    );
    assert_eq!(h, "2a6e18a86edc");
}
