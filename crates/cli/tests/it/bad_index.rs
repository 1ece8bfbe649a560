//! Bad indexes are refused by every pilot (docs/index.md, docs/keys.md): pilots that hold a
//! good signed index with a running flight are offered a tampered, rolled-back, expired,
//! wrong-key and truncated one in turn. Each refuses it, keeps its flight running (the feature
//! stays set, nothing of the bad index starts) and says so in its flight log. Runs the real
//! `testpilot pilot run --once --public-key ...` on each profile.
//!
//! The long run (RELIABILITY.md, `scripts/prove-bad-index.sh`) sets `TP_BAD_INDEX_PILOTS`
//! (pilots, default 3).

use crate::support::{command, now_ms, run, scratch, stderr, stdout, tp};
use ed25519_dalek::SigningKey;
use serde_json::{json, Value};
use std::path::Path;
use testpilot_flight::index::{public_key_to_base64, Envelope, IndexPayload};
use testpilot_flight::Timestamp;

const DAY: i64 = 86_400_000;

fn payload(serial: u64, expires_at: i64, flights: Vec<Value>) -> IndexPayload {
    IndexPayload {
        serial,
        generated_at: Timestamp(now_ms() - DAY),
        expires_at: Timestamp(expires_at),
        flights,
        next_key: None,
    }
}

/// The flight the good index runs: sets a feature and waits a week.
fn kept(description: &str) -> Value {
    json!({"studyname": "kept", "author": "t@example.com", "description": description, "version": 1,
           "flightplan": [{"action": "feature", "id": "kept.on", "value": {"on": true}}, {"action": "wait", "for": "7d"}]})
}

/// What a bad index would start if it were taken.
fn intruder() -> Value {
    json!({"studyname": "intruder", "author": "t@example.com", "description": "must not run", "version": 1,
           "flightplan": [{"action": "feature", "id": "intruder.on", "value": {"on": true}}]})
}

/// The bad indexes, by name, with the words of the refusal each must get: each would stop
/// `kept` (a new version of it) and start `intruder` if a pilot took it.
fn bad_indexes(key: &SigningKey, good_serial: u64) -> Vec<(&'static str, &'static str, String)> {
    let later = now_ms() + 7 * DAY;
    let evil = vec![kept("evil flight"), intruder()];
    let signed = |p: &IndexPayload, k: &SigningKey| Envelope::sign(p, k).to_text();
    let next = good_serial + 1;
    // A byte of a flight changed after signing (the JSON stays valid).
    let good_next = signed(
        &payload(next, later, vec![kept("good flight"), intruder()]),
        key,
    );
    let tampered = good_next.replacen("good flight", "evil flight", 1);
    assert_ne!(tampered, good_next);
    let wrong = SigningKey::from_bytes(&[99; 32]);
    vec![
        ("tampered", "signature does not verify", tampered),
        (
            "rolled back",
            "(a rollback)",
            signed(&payload(good_serial - 1, later, evil.clone()), key),
        ),
        (
            "expired",
            "the index expired at",
            signed(&payload(next, now_ms() - 60_000, evil.clone()), key),
        ),
        (
            "wrong key",
            "which is not pinned",
            signed(&payload(next, later, evil.clone()), &wrong),
        ),
        (
            "truncated",
            "the index is not JSON",
            good_next[..good_next.len() / 2].to_string(),
        ),
    ]
}

/// One round of the agent on `profile` with the index at `index`: whether it exited 0, and
/// what it said.
fn once(profile: &Path, index: &Path, public: &str) -> (bool, String) {
    let out = run(command()
        .args([
            "pilot",
            "run",
            "--once",
            "--public-key",
            public,
            "--profile",
        ])
        .arg(profile)
        .arg("--tower")
        .arg(format!("file://{}", index.display())));
    (out.status.success(), stderr(&out))
}

/// The profile's flights (`testpilot log --json`) and its whole log as text (with the pilot's
/// own notes).
fn logs(profile: &Path) -> (Value, String) {
    let p = profile.to_str().unwrap();
    let json = tp(&["log", "--profile", p, "--json"]);
    assert!(json.status.success(), "{}", stderr(&json));
    let text = tp(&["log", "--profile", p]);
    assert!(text.status.success(), "{}", stderr(&text));
    (serde_json::from_slice(&json.stdout).unwrap(), stdout(&text))
}

fn feature(profile: &Path) -> Value {
    let text = std::fs::read_to_string(profile.join("features.json")).unwrap_or_default();
    serde_json::from_str::<Value>(&text).unwrap_or(Value::Null)["kept.on"].clone()
}

#[test]
fn every_pilot_refuses_bad_indexes_and_keeps_its_flights() {
    let pilots: usize = match std::env::var("TP_BAD_INDEX_PILOTS") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("TP_BAD_INDEX_PILOTS={v}: expected a whole number")),
        Err(_) => 3,
    };
    let dir = scratch("bad-index");
    let key = SigningKey::from_bytes(&[5; 32]);
    let public = public_key_to_base64(&key.verifying_key());
    let good_serial = 10;
    let good = dir.join("good.json");
    std::fs::write(
        &good,
        Envelope::sign(
            &payload(good_serial, now_ms() + 7 * DAY, vec![kept("good flight")]),
            &key,
        )
        .to_text(),
    )
    .unwrap();
    let profiles: Vec<_> = (0..pilots).map(|i| dir.join(format!("p{i}"))).collect();
    for p in &profiles {
        let (ok, said) = once(p, &good, &public);
        assert!(ok, "{}: {said}", p.display());
        assert_eq!(feature(p), json!({"on": true}), "{}", p.display());
    }

    let mut lines = Vec::new();
    for (kind, reason, text) in bad_indexes(&key, good_serial) {
        let bad = dir.join(format!("{}.json", kind.replace(' ', "-")));
        std::fs::write(&bad, &text).unwrap();
        let (mut refused, mut running, mut said_so) = (0, 0, 0);
        let mut why = String::new();
        for p in &profiles {
            let (ok, said) = once(p, &bad, &public);
            let (flights, log) = logs(p);
            let names: Vec<&str> = flights
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|f| f["studyname"].as_str())
                .collect();
            let kept = &flights[0];
            if !ok && said.contains("refused the index") && said.contains(reason) {
                refused += 1;
                if why.is_empty() {
                    why = said.trim().to_string();
                }
            } else {
                eprintln!(
                    "{kind}, {}: not refused (exit ok: {ok}): {said}",
                    p.display()
                );
            }
            if names == ["kept"]
                && kept["status"] == "running"
                && kept["version"] == 1
                && feature(p) == json!({"on": true})
            {
                running += 1;
            } else {
                eprintln!(
                    "{kind}, {}: the flight did not keep running: {flights:#}",
                    p.display()
                );
            }
            let note = format!("refused the index from file://{}", bad.display());
            if log.contains(&format!("{note}: "))
                && log.contains(reason)
                && log.contains(&format!("keeping the last good one (serial {good_serial})"))
            {
                said_so += 1;
            } else {
                eprintln!(
                    "{kind}, {}: the flight log does not say so:\n{log}",
                    p.display()
                );
            }
        }
        lines.push(format!(
            "{kind}: {refused}/{pilots} refused, {running}/{pilots} kept their flight running, {said_so}/{pilots} flight logs say so\n    ({why})"
        ));
        assert_eq!(
            (refused, running, said_so),
            (pilots, pilots, pilots),
            "{kind}: {}",
            lines.last().unwrap()
        );
    }
    println!(
        "bad index proof, {pilots} pilot(s):\n  {}",
        lines.join("\n  ")
    );
    let _ = std::fs::remove_dir_all(&dir);
}
