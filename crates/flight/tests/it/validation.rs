//! Validation cases as data: every good flight builds and round-trips; every bad flight is
//! refused with exactly the diagnostics in its `.expected` file.
//!
//! To accept new output after a deliberate change: `UPDATE_EXPECT=1 cargo test -p testpilot-flight`,
//! then read the diff.

use crate::{data_dir, examples_dir, json_files, read_json};
use testpilot_flight::Flight;

fn check_good(path: &std::path::Path) {
    let v = read_json(path);
    let flight = Flight::from_json(&v)
        .unwrap_or_else(|d| panic!("{} should be valid:\n{d}", path.display()));
    // What the model serializes is itself valid and means the same.
    let again = Flight::from_json(&flight.to_json())
        .unwrap_or_else(|d| panic!("{} does not round-trip:\n{d}", path.display()));
    assert_eq!(flight, again, "{}", path.display());
}

#[test]
fn good_flights_are_valid() {
    let files = json_files(&data_dir().join("good"));
    assert!(files.len() >= 2);
    files.iter().for_each(|f| check_good(f));
}

#[test]
fn examples_are_valid() {
    let files = json_files(&examples_dir());
    assert!(
        files.len() >= 6,
        "the examples folder should hold at least six flights"
    );
    files.iter().for_each(|f| check_good(f));
}

#[test]
fn bad_flights_are_refused_with_paths() {
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let files = json_files(&data_dir().join("bad"));
    assert!(files.len() >= 10);
    let mut failures = Vec::new();
    for f in files {
        let v = read_json(&f);
        let got = match Flight::from_json(&v) {
            Ok(_) => "(valid)\n".to_string(),
            Err(d) => d
                .iter()
                .map(|d| format!("{}: {}\n", d.path, d.message))
                .collect(),
        };
        let expected_path = f.with_extension("expected");
        if update {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if got != expected {
            failures.push(format!(
                "== {}\n-- expected:\n{expected}-- got:\n{got}",
                f.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Arbitrary JSON must never panic the validator (see also `props`). These are the shapes
/// most likely to trip a hand-written reader.
#[test]
fn hostile_shapes_do_not_panic() {
    let deep = "[".repeat(5000) + &"]".repeat(5000);
    let deep: serde_json::Value = serde_json::from_str(&format!(
        "{{\"studyname\":\"x\",\"flightplan\":{}}}",
        &deep[..200]
    ))
    .unwrap_or_default();
    for v in [
        serde_json::json!(null),
        serde_json::json!({"flightplan": [[[[[[[[[[[[[[[[[[[[{"action": "log", "text": "x"}]]]]]]]]]]]]]]]]]]]]}),
        serde_json::json!({"studyname": "\u{0}", "author": "\u{202e}", "description": "x", "flightplan": [{"action": "log", "text": "{{{{}}}}"}]}),
        serde_json::json!({"randomDeploy": {"ge": 1e308, "lt": -1e308}}),
        serde_json::json!({"arms": [{"name": "a", "ratio": 18446744073709551615u64}, {"name": "b", "ratio": 18446744073709551615u64}]}),
        deep,
    ] {
        let _ = Flight::from_json(&v);
    }
}

/// Regression: a 20,000-term `1+1+…+1` expression (40 KB) overflowed the stack of whoever
/// validated it (the tower's worker, `testpilot flight validate`). It is one diagnostic at
/// `filter.expression` that says the limit.
#[test]
fn a_huge_expression_is_one_diagnostic_saying_the_limit() {
    let expression = format!("1{}", "+1".repeat(19_999));
    let v = serde_json::json!({
        "studyname": "huge", "author": "a", "description": "d",
        "filter": {"expression": expression},
        "flightplan": [{"action": "log", "text": "x"}]
    });
    let d = Flight::from_json(&v).unwrap_err();
    let d: Vec<_> = d.iter().collect();
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].path.as_str(), "filter.expression");
    assert_eq!(
        d[0].message,
        "the expression is 39999 bytes long; the limit is 8192 bytes"
    );
}

/// Regression: add-on ids `registry.json` and `registry.json.tmp` were accepted and then
/// overwrote the reference host's registry (undo stuck forever). Real-world ids still pass;
/// ids that are not one safe folder name, or that name the host's own files, never do.
#[test]
fn addon_ids_are_safe_folder_names() {
    use testpilot_flight::spec::addon_id_problem;
    for ok in [
        "helper@example.com",
        "name@example.com",
        "{6b1e4b2a-1f4e-4a43-9a0c-2d4b5c6d7e8f}",
        "uBlock0@raymondhill.net",
        "jid1-MnnxcxisBPnSXQ@jetpack",
        "a+b_c-d.e",
        "registry",
        "registry.jsonx",
        "console",
        "com10",
    ] {
        assert_eq!(addon_id_problem(ok), None, "{ok:?} should be accepted");
    }
    let long = "x".repeat(201);
    for bad in [
        "",
        ".",
        "..",
        ".backup",
        "a/b",
        "a\\b",
        "a\0b",
        "a\nb",
        "a\u{1b}[2J",
        long.as_str(),
        "registry.json",
        "Registry.JSON",
        "registry.json.tmp",
        "nul",
        "COM1",
        "lpt9.txt",
        "trailing.",
        "a b",
        "a..b",
        "é@example.com",
    ] {
        let problem = addon_id_problem(bad);
        assert!(problem.is_some(), "{bad:?} should be refused");
        assert!(!problem.unwrap().contains('\n'));
    }
    assert_eq!(addon_id_problem(&"x".repeat(200)), None);
}

/// Regression: validation echoed values raw, so a value holding a newline or a terminal
/// escape code broke "one line per problem: PATH: message" (and cleared an approver's
/// screen). Echoed values are quoted as JSON strings, and no message holds a control
/// character, whatever the input (see also `bad/escapes.json`).
#[test]
fn echoed_values_are_quoted_so_each_problem_is_one_line() {
    let v = read_json(&data_dir().join("bad/escapes.json"));
    let d = Flight::from_json(&v).unwrap_err();
    assert!(d.len() >= 10, "{d}");
    let text = d.to_string();
    assert_eq!(text.lines().count(), d.len(), "{text}");
    for diag in d.iter() {
        let line = format!("{}: {}", diag.path, diag.message);
        assert!(!line.chars().any(char::is_control), "{line:?}");
    }
    assert!(
        text.contains(r#"filter.oses[0]: unknown OS "evil\nfake.path: all is fine\u001b[2J": use"#),
        "{text}"
    );
}
