//! `testpilot copilot new|validate|expand|schema` as a user runs them.

use crate::support::{root, scratch, stdout, tp};
use serde_json::Value;

const BAD: &str = "crates/flight/tests/data/copilot/bad/arms.json";
const GOOD: &str = "examples/copilot/search-bar-2027.json";

#[test]
fn validate_prints_one_line_per_problem_and_exits_1() {
    let out = tp(&[
        "copilot",
        "validate",
        GOOD,
        "examples/copilot/page-visits.json",
    ]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(out.stdout.is_empty());

    let out = tp(&["copilot", "validate", GOOD, BAD]);
    assert_eq!(out.status.code(), Some(1));
    let expected = std::fs::read_to_string(root().join(BAD.replace(".json", ".expected"))).unwrap();
    let want: String = expected.lines().map(|l| format!("{BAD}: {l}\n")).collect();
    assert_eq!(stdout(&out), want);
}

#[test]
fn validate_json_lists_every_file() {
    let out = tp(&["copilot", "validate", "--json", GOOD, BAD]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["file"], GOOD);
    assert_eq!(v[0]["valid"], true);
    assert_eq!(v[0]["problems"], serde_json::json!([]));
    assert_eq!(v[1]["valid"], false);
    assert_eq!(v[1]["problems"][0]["path"], "arms[0]");
    assert!(v[1]["problems"][0]["message"]
        .as_str()
        .unwrap()
        .starts_with("missing field `features`"));
}

#[test]
fn unreadable_and_oversized_files_are_one_line_each() {
    let dir = scratch("copilot-cli-files");
    let broken = dir.join("broken.json");
    std::fs::write(&broken, "{\n  \"copilot\": 1,\n  oops\n}").unwrap();
    let huge = dir.join("huge.json");
    std::fs::write(&huge, format!("\"{}\"", "x".repeat(2 << 20))).unwrap();
    let out = tp(&[
        "copilot",
        "validate",
        broken.to_str().unwrap(),
        huge.to_str().unwrap(),
        dir.join("missing.json").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].contains("broken.json: $: not valid JSON at line 3, column 3"));
    assert!(lines[1].contains("huge.json: $: the file is larger than 1024 KiB"));
    assert!(lines[2].contains("missing.json: $: cannot read the file"));
}

/// `copilot expand` prints exactly the snapshot the flight crate holds, and `flight
/// validate` accepts what it prints.
#[test]
fn expand_prints_the_snapshot_and_flight_validate_accepts_it() {
    for (file, snapshot) in [
        (GOOD, "example-search-bar-2027"),
        ("examples/copilot/page-visits.json", "example-page-visits"),
    ] {
        let out = tp(&["copilot", "expand", file]);
        assert!(out.status.success(), "{}", stdout(&out));
        let want = std::fs::read_to_string(root().join(format!(
            "crates/flight/tests/data/copilot/expanded/{snapshot}.json"
        )))
        .unwrap();
        assert_eq!(stdout(&out), want, "{file}");
        let dir = scratch("copilot-cli-expand");
        let flight = dir.join(format!("{snapshot}.json"));
        std::fs::write(&flight, &out.stdout).unwrap();
        let out = tp(&["flight", "validate", flight.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stdout(&out));
    }
    let out = tp(&["copilot", "expand", BAD]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).starts_with(&format!("{BAD}: arms[0]: missing field `features`")));
}

#[test]
fn new_writes_a_starting_point_that_validates_and_never_overwrites() {
    let dir = scratch("copilot-cli-new");
    let out = tp(&[
        "copilot",
        "new",
        "my-study",
        "--out",
        dir.join("s.json").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains("testpilot copilot validate"));
    let file = dir.join("s.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(doc["studyname"], "my-study");
    let out = tp(&["copilot", "validate", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stdout(&out));
    let out = tp(&["copilot", "expand", file.to_str().unwrap()]);
    assert!(out.status.success());

    // Written again: refused, and the file is as it was.
    std::fs::write(&file, "mine").unwrap();
    let out = tp(&[
        "copilot",
        "new",
        "my-study",
        "--out",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "mine");

    // A name that cannot be a studyname: refused with the rule, nothing written.
    let out = tp(&[
        "copilot",
        "new",
        "My Study",
        "--out",
        dir.join("x.json").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a valid studyname"));
    assert!(!dir.join("x.json").exists());
}

#[test]
fn new_writes_name_copilot_json_by_default() {
    let dir = scratch("copilot-cli-default");
    let out = crate::support::run(crate::support::command().current_dir(&dir).args([
        "copilot",
        "new",
        "default-name",
    ]));
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(dir.join("default-name.copilot.json").is_file());
}

#[test]
fn schema_is_json_and_names_the_format() {
    let out = tp(&["copilot", "schema"]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["title"], "Test Pilot copilot study");
    assert_eq!(v["properties"]["copilot"]["const"], 1);
}

/// `flight push` of a copilot document, to a real tower over HTTP: validated locally (a bad
/// one is refused with its lines, nothing sent), then expanded and stored by the tower with
/// its source, which `flight status --json` shows.
#[tokio::test]
async fn flight_push_takes_a_copilot_document() {
    use crate::support::{as_holder, make_token, tp_env, Engine, TestDb, Tower};
    let db = TestDb::new(Engine::Sqlite).await.unwrap();
    let data = scratch("copilot-cli-push");
    let alice = make_token(&db.url, "author", "alice");
    let tower = Tower::serve(&db.url, &data, &[]);
    let env = as_holder(&tower, &alice);

    let out = tp_env(&["flight", "push", BAD], &env);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).starts_with(&format!("{BAD}: arms[0]: missing field `features`")));

    let out = tp_env(&["flight", "push", GOOD], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout(&out).contains("search-bar-2027: revision 1 pushed as a draft (created)"),
        "{}",
        stdout(&out)
    );
    let out = tp_env(&["flight", "status", "search-bar-2027", "--json"], &env);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rev = &v["flight"]["revisions"][0];
    let source: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join(GOOD)).unwrap()).unwrap();
    assert_eq!(rev["copilot"], source);
    assert_eq!(rev["spec"]["fuse"], "26d");
    let out = tp_env(&["flight", "push", GOOD], &env);
    assert!(stdout(&out).contains("unchanged"), "{}", stdout(&out));
    tower.kill();
    db.cleanup().await;
}
