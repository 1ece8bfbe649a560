//! `testpilot flight validate|explain|schema` as a user runs them.

use crate::support::{root, scratch, tp};
use serde_json::Value;
use std::path::Path;

fn json_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            p.strip_prefix(root())
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    v.sort();
    v
}

#[test]
fn validate_accepts_every_example() {
    let files = json_files(Path::new("examples"));
    assert!(files.len() >= 6);
    let mut args = vec!["flight", "validate"];
    args.extend(files.iter().map(String::as_str));
    let out = tp(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn validate_prints_one_line_per_problem_and_exits_1() {
    let bad = "crates/flight/tests/data/bad/times.json";
    let good = "examples/welcome-tour.json";
    let out = tp(&["flight", "validate", good, bad]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    let expected =
        std::fs::read_to_string(root().join("crates/flight/tests/data/bad/times.expected"))
            .unwrap();
    let want: String = expected.lines().map(|l| format!("{bad}: {l}\n")).collect();
    assert_eq!(text, want);

    // Not JSON at all: the line and column are named, and nothing else is printed.
    let dir = scratch("flight-cli");
    let broken = dir.join("broken.json");
    std::fs::write(&broken, "{\n  \"studyname\": \"x\",\n  oops\n}").unwrap();
    let out = tp(&["flight", "validate", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("broken.json: $: not valid JSON at line 3, column 3"),
        "{text}"
    );
    // A key given twice is refused where it is given again, not silently overwritten (the
    // second `sample` would ship the flight to everyone).
    let text = std::fs::read_to_string(root().join(good)).unwrap();
    let twice = text.replacen('{', "{\n  \"sample\": 0.05,\n  \"sample\": 1,", 1);
    std::fs::write(&broken, twice).unwrap();
    let out = tp(&["flight", "validate", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("broken.json: $: not valid JSON at line 3, column")
            && text.contains("the key `sample` appears twice in one object"),
        "{text}"
    );
    let out = tp(&[
        "flight",
        "validate",
        dir.join("missing.json").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("cannot read the file"));
}

/// Regression: `flight validate` on a flight whose expression is `1+1+…+1` with 20,000 terms
/// aborted with a stack overflow (SIGABRT). Now it exits 1 with one clear line.
#[test]
fn validate_refuses_a_huge_expression_with_one_line() {
    let dir = std::env::temp_dir().join(format!("tp-flight-huge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("huge.json");
    let flight = serde_json::json!({
        "studyname": "huge", "author": "a", "description": "d",
        "filter": {"expression": format!("1{}", "+1".repeat(19_999))},
        "flightplan": [{"action": "log", "text": "x"}]
    });
    std::fs::write(&file, flight.to_string()).unwrap();
    let out = tp(&["flight", "validate", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text,
        format!(
            "{}: filter.expression: the expression is 39999 bytes long; the limit is 8192 bytes\n",
            file.display()
        )
    );
}

/// `explain --json` agrees with the independently computed bucketing vectors
/// (docs/flight-spec.md, "Bucketing").
#[test]
fn explain_json_agrees_with_vectors() {
    let dir = scratch("explain");
    for case_file in json_files(Path::new("crates/flight/tests/data/explain")) {
        let case: Value =
            serde_json::from_str(&std::fs::read_to_string(root().join(&case_file)).unwrap())
                .unwrap();
        let flight = dir.join("flight.json");
        std::fs::write(&flight, case["flight"].to_string()).unwrap();
        let now = match &case["now"] {
            Value::String(s) => s.clone(),
            n => n.to_string(),
        };
        // A handful of people per case keeps the test quick; the library test covers all.
        for p in case["people"].as_array().unwrap().iter().take(6) {
            let person = dir.join("person.json");
            std::fs::write(&person, p["person"].to_string()).unwrap();
            let out = tp(&[
                "flight",
                "explain",
                flight.to_str().unwrap(),
                "--person",
                person.to_str().unwrap(),
                "--now",
                &now,
                "--json",
            ]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let got: Value = serde_json::from_slice(&out.stdout).unwrap();
            for key in [
                "studyname",
                "eligible",
                "sampled",
                "enrolled",
                "arm",
                "bucket",
                "reasons",
            ] {
                assert!(got.get(key).is_some(), "explain --json lacks `{key}`");
            }
            for (k, want) in p["expect"].as_object().unwrap() {
                assert_eq!(&got[k], want, "{case_file}: {k}");
            }
        }
    }
}

#[test]
fn explain_says_why_in_words() {
    let out = tp(&[
        "flight",
        "explain",
        "examples/beta-linux-rollout.json",
        "--person",
        "examples/people/bob.json",
        "--now",
        "2026-12-01",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("channel `release` is not in [beta]"),
        "{text}"
    );
    assert!(text.contains("enrolled   no"), "{text}");
    // A bad person file is refused with the field named.
    let dir = scratch("explain-bad");
    std::fs::write(dir.join("p.json"), r#"{"os": 3}"#).unwrap();
    let out = tp(&[
        "flight",
        "explain",
        "examples/beta-linux-rollout.json",
        "--person",
        dir.join("p.json").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("missing field `personid`") && err.contains("os: expected a string"),
        "{err}"
    );
}

#[test]
fn schema_is_json_schema() {
    let out = tp(&["flight", "schema"]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert_eq!(v["title"], "Test Pilot flight");
}
