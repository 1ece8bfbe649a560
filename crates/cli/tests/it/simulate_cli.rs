//! `testpilot simulate`: the example flights over a virtual fleet, a signed index from a
//! tower's export, and population files with mistakes.

use crate::support::*;
use serde_json::{json, Value};
use testpilot_flight::index::{Envelope, IndexPayload};
use testpilot_flight::Timestamp;

fn example_files() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(examples())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn simulate(extra: &[&str]) -> Value {
    let files = example_files();
    let mut args: Vec<&str> = vec!["simulate"];
    args.extend(files.iter().map(String::as_str));
    args.extend([
        "--clients",
        "20000",
        "--json",
        "--start",
        "2026-12-01",
        "--runs",
        "300",
    ]);
    args.extend(extra);
    tp_json(&args)
}

#[test]
fn the_examples_over_twenty_thousand_clients() {
    let r = simulate(&[]);
    assert_eq!(r["clients"], 20000);
    let flights = r["flights"].as_array().unwrap();
    assert_eq!(flights.len(), example_files().len());
    for f in flights {
        // The bucketing agrees with the specs.
        assert!(f["p"].as_f64().unwrap() > 0.001, "{f}");
        assert!(f["armsP"].as_f64().unwrap() > 0.001, "{f}");
        let (e, s, n) = (
            f["eligible"].as_u64().unwrap(),
            f["sampled"].as_u64().unwrap(),
            f["enrolled"].as_u64().unwrap(),
        );
        assert!(e >= s && s >= n, "{f}");
    }
    let newtab = flights
        .iter()
        .find(|f| f["studyname"] == "newtab-layout-2")
        .unwrap();
    assert_eq!(newtab["expectedShare"], 0.1);
    assert_eq!(newtab["arms"].as_array().unwrap().len(), 2);
    let killed = flights
        .iter()
        .find(|f| f["studyname"] == "autoplay-block-3")
        .unwrap();
    assert_eq!(killed["enrolled"], 0);
    assert!(killed["eligible"].as_u64().unwrap() > 10_000);
    assert_eq!(r["engine"]["runs"], 300);
    assert_eq!(r["engine"]["estimated"], true);
    assert_eq!(r["engine"]["leftovers"], 0);
    for key in [
        "indexPerSecond",
        "reportsPerSecond",
        "eventsPerSecond",
        "bytesPerSecond",
    ] {
        assert!(r["load"][key].is_number(), "{key}: {}", r["load"]);
        assert!(r["load"]["peak"][key].as_f64().unwrap() >= r["load"][key].as_f64().unwrap());
    }
    // 20,000 clients polling every 15 minutes, nearly all of them arrived.
    let index = r["load"]["peak"]["indexPerSecond"].as_f64().unwrap();
    assert!(index > 15.0 && index <= 20000.0 / 900.0 + 1.0, "{index}");
    assert!(!r["overlaps"].as_array().unwrap().is_empty());
    // The same seed, the same report.
    assert_eq!(r, simulate(&[]));
}

#[test]
fn text_chart_and_a_kill() {
    let dir = scratch("simulate-text");
    let svg = dir.join("chart.svg");
    let files = example_files();
    let mut args: Vec<&str> = vec!["simulate"];
    args.extend(files.iter().map(String::as_str));
    args.extend([
        "--clients",
        "3000",
        "--runs",
        "100",
        "--start",
        "2026-12-01",
        "--kill",
        "welcome-tour-1@2h",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    let out = tp(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for want in [
        "newtab-layout-2",
        "arms chi-square p",
        "tower load, polling every 900s",
        "enrolment  |",
        "outcomes (estimated)",
        "killed",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    // Not a terminal: no progress bar on standard error.
    assert!(!stderr(&out).contains("targeting"), "{}", stderr(&out));
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn copilot_documents_run_as_the_flights_they_expand_to() {
    let doc = examples().join("copilot").join("search-bar-2027.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&doc).unwrap()).unwrap();
    let r = tp_json(&[
        "simulate",
        doc.to_str().unwrap(),
        "--clients",
        "3000",
        "--runs",
        "100",
        "--start",
        "2026-12-01",
        "--json",
    ]);
    let f = &r["flights"][0];
    assert_eq!(f["studyname"], v["studyname"]);
    assert_eq!(
        f["arms"].as_array().unwrap().len(),
        v["arms"].as_array().unwrap().len()
    );
    assert!(
        f["p"].as_f64().unwrap() > 0.001 && f["armsP"].as_f64().unwrap() > 0.001,
        "{f}"
    );
}

#[test]
fn a_signed_index_is_verified_first() {
    let dir = scratch("simulate-index");
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let public = testpilot_flight::index::public_key_to_base64(&key.verifying_key());
    let flights: Vec<Value> = example_files()
        .iter()
        .map(|f| serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap())
        .collect();
    let payload = IndexPayload {
        serial: 3,
        generated_at: Timestamp(1_796_083_200_000),
        expires_at: Timestamp(1_796_083_200_000 + 7 * 86_400_000),
        flights,
        next_key: None,
    };
    let file = dir.join("index.json");
    std::fs::write(&file, Envelope::sign(&payload, &key).to_text()).unwrap();
    let url = format!("file://{}", file.display());
    let base = [
        "simulate",
        "--tower",
        url.as_str(),
        "--clients",
        "2000",
        "--runs",
        "50",
        "--start",
        "2026-12-02",
        "--json",
    ];
    let mut args = base.to_vec();
    args.extend(["--public-key", public.as_str()]);
    let r = tp_json(&args);
    assert_eq!(
        r["flights"].as_array().unwrap().len(),
        payload.flights.len()
    );

    let other = testpilot_flight::index::public_key_to_base64(
        &ed25519_dalek::SigningKey::from_bytes(&[8; 32]).verifying_key(),
    );
    let mut args = base.to_vec();
    args.extend(["--public-key", other.as_str()]);
    let out = tp(&args);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("the index was refused"),
        "{}",
        stderr(&out)
    );
    // A bad population is said beside a refused index, not hidden by it.
    let pop = dir.join("pop.json");
    std::fs::write(&pop, "{\"os\": {\"linux\": 0.5, \"linux\": 0.5}}").unwrap();
    args.extend(["--population", pop.to_str().unwrap()]);
    let out = tp(&args);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("the index was refused") && err.contains("`linux` appears twice"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_population_with_mistakes_is_refused_with_paths() {
    let dir = scratch("simulate-population");
    let pop = dir.join("pop.json");
    std::fs::write(&pop, json!({"os": {"windows": 0.7, "linux": 0.2}, "chanel": {"release": 1}, "behaviour": {"answers": {"ok": "yes"}}}).to_string()).unwrap();
    let flight = examples().join("welcome-tour.json");
    let out = tp(&[
        "simulate",
        flight.to_str().unwrap(),
        "--population",
        pop.to_str().unwrap(),
        "--clients",
        "10",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    let name = pop.display().to_string();
    for want in [
        format!("{name}: os: the shares add up to 0.900000, not 1"),
        format!("{name}: chanel: unknown field `chanel` (did you mean `channel`?)"),
        format!("{name}: behaviour.answers.ok: expected a number, found a string"),
    ] {
        assert!(err.contains(&want), "missing {want:?} in\n{err}");
    }
    // The population's problems and every flight file's are said in one run.
    let broken = dir.join("broken.json");
    std::fs::write(&broken, "{\"studyname\": ").unwrap();
    let nameless = dir.join("nameless.json");
    std::fs::write(&nameless, "{\"description\": \"x\"}").unwrap();
    let out = tp(&[
        "simulate",
        broken.to_str().unwrap(),
        nameless.to_str().unwrap(),
        flight.to_str().unwrap(),
        flight.to_str().unwrap(),
        "--population",
        pop.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    for want in [
        format!("{name}: chanel: unknown field"),
        format!("{}: $: not valid JSON", broken.display()),
        format!("{}: $: missing field `studyname`", nameless.display()),
        format!(
            "{}: flight `welcome-tour-1` is given twice",
            flight.display()
        ),
    ] {
        assert!(err.contains(&want), "missing {want:?} in\n{err}");
    }
    std::fs::write(&pop, "{\"os\": {\"linux\": 0.5, \"linux\": 0.5}}").unwrap();
    let out = tp(&[
        "simulate",
        flight.to_str().unwrap(),
        "--population",
        pop.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("the key `linux` appears twice in one object"),
        "{}",
        stderr(&out)
    );
    std::fs::write(&pop, "{\"os\": ").unwrap();
    let out = tp(&[
        "simulate",
        flight.to_str().unwrap(),
        "--population",
        pop.to_str().unwrap(),
    ]);
    assert!(
        stderr(&out).contains(&format!("{name}: $: not JSON")),
        "{}",
        stderr(&out)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn impossible_runs_are_refused_before_they_start() {
    let flight = examples().join("welcome-tour.json");
    let flight = flight.to_str().unwrap();
    // More clients than a run takes: refused by the argument parser, at once.
    let out = tp(&["simulate", flight, "--clients", "18446744073709551615"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--clients"), "{}", stderr(&out));
    // A chart into a folder that does not exist: said before the run, not after it.
    let started = std::time::Instant::now();
    let out = tp(&[
        "simulate",
        flight,
        "--clients",
        "100000000",
        "--plot",
        "/nonexistent-testpilot-folder/p.svg",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--plot /nonexistent-testpilot-folder/p.svg: the folder /nonexistent-testpilot-folder does not exist"),
        "{}",
        stderr(&out)
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

/// `testpilot simulate … | head -1`: once the reader has gone, the command stops quietly
/// with SIGPIPE's status (141) — no "Broken pipe" error and no panic — for text and --json.
#[test]
fn a_reader_that_goes_away_ends_the_command_quietly() {
    let flight = examples().join("welcome-tour.json");
    for json in [false, true] {
        let mut cmd = command();
        cmd.args([
            "simulate",
            flight.to_str().unwrap(),
            "--clients",
            "2000",
            "--runs",
            "0",
        ]);
        if json {
            cmd.arg("--json");
        }
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(141), "json {json}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "json {json}: {err}"
        );
    }
}

#[test]
fn a_chart_into_a_folder_is_refused_before_the_run() {
    let dir = scratch("simulate-plot-folder");
    let flight = examples().join("welcome-tour.json");
    let out = tp(&[
        "simulate",
        flight.to_str().unwrap(),
        "--plot",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("that is a folder"),
        "{}",
        stderr(&out)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
