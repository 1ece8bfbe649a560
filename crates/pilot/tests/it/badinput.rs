//! Bad input: each gives a clear message and leaves the machine as it was.

use crate::support::*;
use ed25519_dalek::SigningKey;
use serde_json::{json, Value};
use testpilot_flight::index::{Envelope, IndexPayload, Trust};
use testpilot_flight::Timestamp;
use testpilot_pilot::sync::{sync, TowerSource};
use testpilot_pilot::{Error, Faults, Journal};

#[test]
fn a_corrupt_journal_is_refused_and_left_untouched() {
    let rig = Rig::new();
    let path = Journal::path_in(&rig.profile);
    let garbage =
        b"this is not a database, just some text that happens to be here........".repeat(20);
    std::fs::write(&path, &garbage).unwrap();
    let err = rig.pilot_with(Faults::default()).err().unwrap();
    let msg = err.to_string();
    assert!(
        msg.contains("journal.sqlite") && msg.contains("not a Test Pilot journal"),
        "{msg}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), garbage);
}

#[test]
fn a_foreign_database_is_refused_and_left_untouched() {
    let rig = Rig::new();
    let path = Journal::path_in(&rig.profile);
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE users (name TEXT); INSERT INTO users VALUES ('ann');")
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let msg = rig.pilot_with(Faults::default()).err().unwrap().to_string();
    assert!(msg.contains("another application"), "{msg}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn a_journal_from_a_newer_pilot_is_refused() {
    let rig = Rig::new();
    drop(rig.pilot());
    {
        let c = rusqlite::Connection::open(Journal::path_in(&rig.profile)).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
    }
    let msg = rig.pilot_with(Faults::default()).err().unwrap().to_string();
    assert!(msg.contains("newer pilot (journal version 99"), "{msg}");
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn payload(serial: u64, flights: Vec<Value>) -> IndexPayload {
    IndexPayload {
        serial,
        generated_at: T0,
        expires_at: Timestamp(T0.0 + 7 * 86_400_000),
        flights,
        next_key: None,
    }
}

fn write_index(rig: &Rig, text: &str) -> TowerSource {
    let p = rig.scratch("index.json");
    std::fs::write(&p, text).unwrap();
    TowerSource::File(p)
}

fn notes(p: &testpilot_pilot::Pilot) -> String {
    p.journal
        .timeline("")
        .unwrap()
        .into_iter()
        .map(|t| t.what)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn index_signatures_serials_and_expiry() {
    let rig = Rig::new();
    let k = key(1);
    let vk = k.verifying_key();
    let trust = Trust::Pinned(&vk);
    let mut p = rig.pilot();
    let f = flight(
        "f",
        json!([{"action": "feature", "id": "x", "value": {}}, {"action": "wait", "for": "30d"}]),
    );

    // A good index.
    let good = Envelope::sign(&payload(5, vec![f.clone()]), &k).to_text();
    let tower = write_index(&rig, &good);
    sync(&mut p, &tower, &trust).unwrap();
    p.tick().unwrap();
    assert_eq!(status(&p, "f"), "running");
    let snapshot = rig.snapshot();

    // Signed by another key: refused, the flight goes on.
    let other = Envelope::sign(&payload(6, vec![]), &key(2)).to_text();
    let e = sync(&mut p, &write_index(&rig, &other), &trust).unwrap_err();
    assert!(e.to_string().contains("which is not pinned"), "{e}");
    // Tampered payload.
    let mut env: Value =
        serde_json::from_str(&Envelope::sign(&payload(6, vec![]), &k).to_text()).unwrap();
    env["payload"] = json!(env["payload"]
        .as_str()
        .unwrap()
        .replace("\"serial\":6", "\"serial\":7"));
    let e = sync(&mut p, &write_index(&rig, &env.to_string()), &trust).unwrap_err();
    assert!(e.to_string().contains("does not verify"), "{e}");
    // Unsigned while a key is pinned.
    let e = sync(
        &mut p,
        &write_index(&rig, &payload(8, vec![]).to_text()),
        &trust,
    )
    .unwrap_err();
    assert!(e.to_string().contains("not signed"), "{e}");
    // Rolled back.
    let old = Envelope::sign(&payload(4, vec![]), &k).to_text();
    let e = sync(&mut p, &write_index(&rig, &old), &trust).unwrap_err();
    assert!(e.to_string().contains("rollback"), "{e}");
    // Expired.
    let mut exp = payload(9, vec![]);
    exp.expires_at = Timestamp(T0.0 - 1);
    let e = sync(
        &mut p,
        &write_index(&rig, &Envelope::sign(&exp, &k).to_text()),
        &trust,
    )
    .unwrap_err();
    assert!(e.to_string().contains("expired"), "{e}");
    // Not JSON.
    let e = sync(&mut p, &write_index(&rig, "<html>"), &trust).unwrap_err();
    assert!(e.to_string().contains("not JSON"), "{e}");

    p.tick().unwrap();
    assert_eq!(
        status(&p, "f"),
        "running",
        "a refused index changes nothing"
    );
    assert_eq!(rig.snapshot(), snapshot);
    let n = notes(&p);
    for needle in [
        "refused the index",
        "which is not pinned",
        "does not verify",
        "rollback",
        "expired",
        "keeping the last good one (serial 5)",
    ] {
        assert!(
            n.contains(needle),
            "missing `{needle}` in the pilot's log:\n{n}"
        );
    }
    assert_eq!(p.journal.meta("last_serial").unwrap().as_deref(), Some("5"));
}

#[test]
fn an_unreachable_tower_is_noted_once_and_changes_nothing() {
    let rig = Rig::new();
    rig.net.set(|r| {
        Err(Error::Net {
            msg: format!("{}: connection refused", r.url),
            retryable: true,
        })
    });
    let mut p = rig.pilot();
    let tower = TowerSource::parse("http://127.0.0.1:9/").unwrap();
    for _ in 0..3 {
        let e = sync(&mut p, &tower, &Trust::InsecureUnsigned).unwrap_err();
        assert!(e.to_string().contains("connection refused"));
    }
    let n = notes(&p);
    assert_eq!(
        n.matches("cannot get the index from http://127.0.0.1:9/control/index.json")
            .count(),
        1,
        "{n}"
    );
    let missing = TowerSource::File(rig.scratch("nope.json"));
    let e = sync(&mut p, &missing, &Trust::InsecureUnsigned).unwrap_err();
    assert!(e.to_string().contains("nope.json"), "{e}");
}

#[test]
fn an_invalid_flight_in_the_index_is_skipped_with_its_problems() {
    let rig = Rig::new();
    let mut p = rig.pilot();
    let bad = json!({"studyname": "bad", "author": "a", "description": "d", "flightplan": [{"action": "wiat"}]});
    let good = flight("good", json!([{"action": "log", "text": "hi"}]));
    p.apply_index(&[bad, good], 1).unwrap();
    p.tick().unwrap();
    assert_eq!(status(&p, "good"), "completed");
    assert!(p.journal.flight("bad").unwrap().is_none());
    let n = notes(&p);
    assert!(
        n.contains("`bad`") && n.contains("flightplan[0].action"),
        "{n}"
    );
}

/// Installs `package` with `sha`, expecting the flight to fail with `needle` in its reason and
/// the machine unchanged (and nothing written next to the profile).
fn check_bad_package(rig: &Rig, url: String, sha: &str, needle: &str) {
    let before = rig.snapshot();
    let mut p = rig.pilot();
    let name = format!("pkg{}", p.journal.flights().unwrap().len());
    let plan = json!([{"action": "feature", "id": "x", "value": {"v": 1}}, {"action": "addon", "do": "install", "id": "bad@x", "url": url, "sha256": sha, "permission": "none"}]);
    p.apply_index(&[flight(&name, plan)], 1).unwrap();
    drive(rig, &mut p, Say::Ok, &[]).unwrap();
    assert_eq!(status(&p, &name), "failed", "{}", timeline_text(&p, &name));
    let reason = p.journal.flight(&name).unwrap().unwrap().reason.unwrap();
    assert!(reason.contains(needle), "{reason}");
    assert!(timeline_text(&p, &name).contains(needle));
    assert_eq!(rig.snapshot(), before, "{reason}");
    assert!(
        !rig.dir.path().join("x").exists()
            && !rig.profile.join("x").exists()
            && !rig.profile.join("addons/x").exists()
    );
}

#[test]
fn a_package_with_the_wrong_sha256_is_not_installed() {
    let rig = Rig::new();
    let pkg = rig.scratch("p.zip");
    zip_package(&pkg, &[("main.js", "x")]);
    check_bad_package(
        &rig,
        format!("file://{}", pkg.display()),
        &"0".repeat(64),
        "has sha256",
    );
}

#[test]
fn archive_entries_that_escape_are_refused() {
    let rig = Rig::new();
    let cases: Vec<(String, String, &str)> = {
        let mut v = Vec::new();
        let z1 = rig.scratch("dotdot.zip");
        v.push((
            z1.display().to_string(),
            zip_package(&z1, &[("ok.txt", "1"), ("../x", "escaped")]),
            "escape the add-on folder",
        ));
        let z2 = rig.scratch("abs.zip");
        v.push((
            z2.display().to_string(),
            zip_package(&z2, &[("/tmp/x", "escaped")]),
            "escape the add-on folder",
        ));
        let z3 = rig.scratch("link.zip");
        v.push((
            z3.display().to_string(),
            zip_with_symlink(&z3),
            "symbolic link",
        ));
        let t1 = rig.scratch("dotdot.tar.gz");
        v.push((
            t1.display().to_string(),
            tar_package(&t1, &[("ok.txt", "1", 'f'), ("../x", "escaped", 'f')]),
            "escape the add-on folder",
        ));
        let t2 = rig.scratch("abs.tar.gz");
        v.push((
            t2.display().to_string(),
            tar_package(&t2, &[("/x", "escaped", 'f')]),
            "escape the add-on folder",
        ));
        let t3 = rig.scratch("link.tar.gz");
        v.push((
            t3.display().to_string(),
            tar_package(
                &t3,
                &[
                    ("evil", "/etc/passwd", 'l'),
                    ("evil/x", "through the link", 'f'),
                ],
            ),
            "link",
        ));
        let t4 = rig.scratch("nested.tar.gz");
        v.push((
            t4.display().to_string(),
            tar_package(&t4, &[("a/../../x", "escaped", 'f')]),
            "escape the add-on folder",
        ));
        v
    };
    for (path, sha, needle) in cases {
        check_bad_package(&rig, format!("file://{path}"), &sha, needle);
    }
}

#[test]
fn a_missing_package_fails_the_flight() {
    let rig = Rig::new();
    check_bad_package(
        &rig,
        format!("file://{}", rig.scratch("absent.zip").display()),
        &"a".repeat(64),
        "is not at",
    );
}

#[test]
fn a_host_failure_fails_only_that_flight_and_cleanup_is_retried() {
    let rig = Rig::new();
    let mut p = rig.pilot();
    // features.json that is not JSON: the feature step cannot read it.
    std::fs::write(rig.profile.join("features.json"), "{ broken").unwrap();
    p.apply_index(
        &[
            flight(
                "broken",
                json!([{"action": "feature", "id": "x", "value": {}}]),
            ),
            flight("fine", json!([{"action": "log", "text": "ok"}])),
        ],
        1,
    )
    .unwrap();
    let wake = p.tick().unwrap();
    assert_eq!(status(&p, "broken"), "failed");
    assert_eq!(status(&p, "fine"), "completed");
    let reason = p.journal.flight("broken").unwrap().unwrap().reason.unwrap();
    assert!(
        reason.contains("features.json is not valid JSON"),
        "{reason}"
    );
    assert!(wake.is_some());
    assert_eq!(
        std::fs::read_to_string(rig.profile.join("features.json")).unwrap(),
        "{ broken",
        "left as it was"
    );
}
