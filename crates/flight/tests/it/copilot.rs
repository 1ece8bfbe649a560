//! Copilot documents as data: every good document and every example expands to a flight that
//! validates, byte for byte the flight in `tests/data/copilot/expanded/`; every bad document
//! is refused with exactly the diagnostics in its `.expected` file; the schema agrees.
//!
//! To accept new output after a deliberate change: `UPDATE_EXPECT=1 cargo test -p
//! testpilot-flight copilot`, then read the diff.

use crate::{data_dir, examples_dir, json_files, read_json};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use testpilot_flight::copilot::{expand_json, is_copilot, Copilot};
use testpilot_flight::schema::copilot_schema;
use testpilot_flight::Flight;

fn copilot_dir() -> PathBuf {
    data_dir().join("copilot")
}

/// The good documents and the examples, each with the name of its expansion snapshot.
fn good_documents() -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for f in json_files(&copilot_dir().join("good")) {
        let name = file_stem(&f);
        out.push((f, name));
    }
    for f in json_files(&examples_dir().join("copilot")) {
        let name = format!("example-{}", file_stem(&f));
        out.push((f, name));
    }
    out
}

fn file_stem(p: &Path) -> String {
    p.file_stem().unwrap().to_string_lossy().into_owned()
}

/// The text an expansion is compared as: pretty JSON in the flight's field order and a
/// newline, as `testpilot copilot expand` prints it.
fn expansion_text(v: &Value) -> String {
    let study = Copilot::from_json(v).unwrap_or_else(|d| panic!("should be a valid copilot:\n{d}"));
    serde_json::to_string_pretty(&study.expand()).unwrap() + "\n"
}

/// Compares `got` with the file, or rewrites the file under `UPDATE_EXPECT`.
fn check_snapshot(path: &Path, got: &str, failures: &mut Vec<String>) {
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(path, got).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    if got != expected {
        failures.push(format!(
            "== {}\n-- expected:\n{expected}-- got:\n{got}",
            path.display()
        ));
    }
}

#[test]
fn expansions_match_their_snapshots_byte_for_byte() {
    let docs = good_documents();
    assert!(docs.len() >= 5, "good documents and at least two examples");
    let mut failures = Vec::new();
    for (f, name) in &docs {
        let v = read_json(f);
        assert!(is_copilot(&v), "{}", f.display());
        let text = expansion_text(&v);
        // Deterministic: the same document gives the same bytes, however often.
        assert_eq!(text, expansion_text(&v), "{}", f.display());
        let snapshot = copilot_dir().join("expanded").join(format!("{name}.json"));
        check_snapshot(&snapshot, &text, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_expansion_is_a_valid_flight_that_round_trips() {
    for (f, _) in good_documents() {
        let v = read_json(&f);
        let flight = Copilot::from_json(&v).unwrap().expand();
        let valid = Flight::from_json(&flight.to_json())
            .unwrap_or_else(|d| panic!("{}: the expansion is not valid:\n{d}", f.display()));
        assert_eq!(valid, flight, "{}", f.display());
        let (_, checked) = expand_json(&v).unwrap();
        assert_eq!(checked, flight);
        // The study itself serializes back to a document that means the same.
        let study = Copilot::from_json(&v).unwrap();
        assert_eq!(Copilot::from_json(&study.to_json()).unwrap(), study);
    }
}

#[test]
fn bad_documents_are_refused_with_paths() {
    let files = json_files(&copilot_dir().join("bad"));
    assert!(files.len() >= 15);
    let mut failures = Vec::new();
    for f in files {
        let v = read_json(&f);
        let got = match Copilot::from_json(&v) {
            Ok(_) => "(valid)\n".to_string(),
            Err(d) => d
                .iter()
                .map(|d| format!("{}: {}\n", d.path, d.message))
                .collect(),
        };
        check_snapshot(&f.with_extension("expected"), &got, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The expansion's shape, said once in code as docs/copilot.md says it in words.
#[test]
fn the_expansion_is_surveys_features_instrument() {
    let v = read_json(&examples_dir().join("copilot/search-bar-2027.json"));
    let flight = Copilot::from_json(&v).unwrap().expand().to_json();
    assert_eq!(
        flight["flightplan"],
        Value::Null,
        "every arm has its own plan"
    );
    let actions = |arm: usize| -> Vec<String> {
        flight["arms"][arm]["flightplan"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["action"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(actions(0), ["external", "instrument", "external"]);
    assert_eq!(
        actions(1),
        ["external", "feature", "instrument", "external"]
    );
    let instrument = &flight["arms"][1]["flightplan"][2];
    assert_eq!(
        instrument,
        &json!({"action": "instrument", "watch": ["search-bar-used", "urlbar-search"], "for": "14d", "uploadEvery": "1d"}),
        "no `upload`: the recording streams to the tower"
    );
    // 7 days for the pre-survey, 14 recording, 1 for the last upload, 3 for the
    // post-survey, and a day's margin.
    assert_eq!(flight["fuse"], "26d");
    assert_eq!(flight["randomDeploy"], Value::Null, "no sample: everyone");

    let everything = read_json(&copilot_dir().join("good/everything.json"));
    let flight = Copilot::from_json(&everything).unwrap().expand().to_json();
    assert_eq!(
        flight["randomDeploy"],
        json!({"keyname": "everything-1", "ge": 0.0, "lt": 0.25})
    );
    // Features in id order, whatever order the document lists them in.
    let plan = &flight["arms"][1]["flightplan"];
    assert_eq!(plan[1]["id"], "ui.density");
    assert_eq!(plan[2]["id"], "ui.toolbar");
}

/// A feature map's order in the text does not change the flight.
#[test]
fn expansion_does_not_depend_on_the_order_of_features() {
    let a: Value = serde_json::from_str(r#"{"copilot": 1, "studyname": "s", "author": "a", "description": "d", "arms": [{"name": "c", "features": {}}, {"name": "t", "features": {"b": {"x": 1}, "a": {"y": 2}}}], "watch": ["t"], "duration": "1d"}"#).unwrap();
    let b: Value = serde_json::from_str(r#"{"duration": "1d", "watch": ["t"], "arms": [{"name": "c", "features": {}}, {"features": {"a": {"y": 2}, "b": {"x": 1}}, "name": "t"}], "description": "d", "author": "a", "studyname": "s", "copilot": 1}"#).unwrap();
    assert_eq!(expansion_text(&a), expansion_text(&b));
}

fn validator() -> (boon::Schemas, boon::SchemaIndex) {
    let mut schemas = boon::Schemas::new();
    let mut compiler = boon::Compiler::new();
    compiler
        .add_resource("copilot.schema.json", copilot_schema())
        .unwrap();
    let idx = compiler
        .compile("copilot.schema.json", &mut schemas)
        .unwrap();
    (schemas, idx)
}

#[test]
fn schema_accepts_every_valid_document() {
    let (schemas, idx) = validator();
    for (f, _) in good_documents() {
        let v = read_json(&f);
        if let Err(e) = schemas.validate(&v, idx) {
            panic!(
                "{}: the schema refuses a valid document: {e:#}",
                f.display()
            );
        }
    }
}

#[test]
fn schema_refuses_field_level_mistakes() {
    let (schemas, idx) = validator();
    for name in [
        "not-an-object",
        "missing",
        "version",
        "version-type",
        "unknown-fields",
        "arms",
        "arms-shapes",
        "arms-empty",
        "watch",
        "watch-empty",
        "durations",
        "sample",
        "sample-high",
        "sample-type",
        "surveys",
        "surveys-shapes",
        "surveys-not-object",
        "header",
        "arms-too-many",
        "watch-too-many",
        "surveys-too-long",
    ] {
        let v = read_json(&copilot_dir().join("bad").join(format!("{name}.json")));
        assert!(
            schemas.validate(&v, idx).is_err(),
            "the schema accepts bad/{name}.json"
        );
    }
}

/// Keys of a copilot document, so random values land where the reader looks.
const KEYS: &[&str] = &[
    "copilot",
    "studyname",
    "author",
    "description",
    "infourl",
    "filter",
    "sample",
    "arms",
    "watch",
    "duration",
    "uploadEvery",
    "surveys",
    "endBy",
];

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        "[a-z{}. :/-]{0,12}".prop_map(Value::String),
        Just(json!("{{os}}")),
        Just(json!("https://example.com/{{arm}}")),
        Just(json!("1h30m")),
        Just(json!(0.5)),
        Just(json!(1)),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(
                    &[
                        "name", "ratio", "features", "title", "text", "url", "before", "after",
                        "expires", "x.y"
                    ][..]
                )
                .prop_map(String::from),
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    /// Whatever a document's fields hold, reading it never panics, and whatever it accepts
    /// expands to a flight that validates.
    #[test]
    fn accepted_documents_always_expand_to_valid_flights(
        changes in prop::collection::vec((prop::sample::select(KEYS), arb_value()), 0..4),
        drop in prop::option::of(prop::sample::select(KEYS)),
    ) {
        let mut v = read_json(&copilot_dir().join("good/everything.json"));
        for (k, x) in changes {
            v[k] = x;
        }
        if let Some(k) = drop {
            v.as_object_mut().unwrap().remove(k);
        }
        if let Ok(study) = Copilot::from_json(&v) {
            let flight = study.expand();
            prop_assert!(Flight::from_json(&flight.to_json()).is_ok(), "{v:#}");
        }
    }
}
