//! Pinned keys (`docs/keys.md`): a pilot follows a key rotation the index announces, refuses
//! keys nobody pinned, and recovers from a forged index with a huge serial when an operator
//! re-pins it; the profile and journal are private.

use crate::support::*;
use ed25519_dalek::SigningKey;
use serde_json::{json, Value};
use testpilot_flight::index::{key_id, Envelope, IndexPayload, Trust, VerifyingKey};
use testpilot_flight::Timestamp;
use testpilot_pilot::pins::pin_given;
use testpilot_pilot::sync::{sync, Synced, TowerSource};
use testpilot_pilot::Pilot;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn index(serial: u64, flights: Vec<Value>, next: Option<VerifyingKey>, by: &SigningKey) -> String {
    let p = IndexPayload {
        serial,
        generated_at: T0,
        expires_at: Timestamp(T0.0 + 7 * 86_400_000),
        flights,
        next_key: next,
    };
    Envelope::sign(&p, by).to_text()
}

fn offer(rig: &Rig, text: &str) -> TowerSource {
    let p = rig.scratch("index.json");
    std::fs::write(&p, text).unwrap();
    TowerSource::File(p)
}

fn pinned(p: &Pilot) -> Vec<String> {
    p.journal.pinned_keys().unwrap()
}

fn b64(k: &SigningKey) -> String {
    testpilot_flight::index::public_key_to_base64(&k.verifying_key())
}

fn own_log(p: &Pilot) -> String {
    p.journal
        .timeline("")
        .unwrap()
        .into_iter()
        .map(|t| t.what)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_pilot_follows_a_rotation_and_refuses_unpinned_keys() {
    let rig = Rig::new();
    let (k1, k2, stranger) = (key(1), key(2), key(3));
    let given = k1.verifying_key();
    let trust = Trust::Pinned(&given);
    let mut p = rig.pilot();
    pin_given(&mut p.journal, &given, rig.now()).unwrap();
    assert_eq!(pinned(&p), [b64(&k1)]);

    // k1 announces k2: both pinned, and kept across a restart.
    let f = flight("f", json!([{"action": "log", "text": "hi"}]));
    sync(
        &mut p,
        &offer(
            &rig,
            &index(5, vec![f.clone()], Some(k2.verifying_key()), &k1),
        ),
        &trust,
    )
    .unwrap();
    assert_eq!(pinned(&p), [b64(&k1), b64(&k2)]);
    drop(p);
    let mut p = rig.pilot();
    pin_given(&mut p.journal, &given, rig.now()).unwrap();
    assert_eq!(
        pinned(&p),
        [b64(&k1), b64(&k2)],
        "the same flag again changes nothing"
    );

    // Signed by k2 alone: accepted; k1 is retired from the pinned set.
    let got = sync(
        &mut p,
        &offer(&rig, &index(6, vec![f.clone()], None, &k2)),
        &trust,
    )
    .unwrap();
    assert_eq!(
        got,
        Synced::Accepted {
            serial: 6,
            flights: 1
        }
    );
    assert_eq!(pinned(&p), [b64(&k2)]);
    let log = own_log(&p);
    assert!(
        log.contains(&format!("pinned key {}", key_id(&k2.verifying_key()))),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "key {} is no longer pinned",
            key_id(&k1.verifying_key())
        )),
        "{log}"
    );

    // A key nobody pinned is refused, and so is the retired k1 (even with a higher serial).
    for by in [&stranger, &k1] {
        let e = sync(&mut p, &offer(&rig, &index(50, vec![], None, by)), &trust).unwrap_err();
        assert!(e.to_string().contains("which is not pinned"), "{e}");
    }
    assert_eq!(p.journal.meta("last_serial").unwrap().as_deref(), Some("6"));
}

// A leaked key signs an index with a huge serial: every pilot accepts it, then refuses every
// real index (the rollback rule). Re-pinning with a new key given on the command line resets
// the floor, and says so in the flight log.
#[test]
fn re_pinning_recovers_from_a_forged_huge_serial() {
    let rig = Rig::new();
    let (leaked, fresh) = (key(1), key(9));
    let given = leaked.verifying_key();
    let trust = Trust::Pinned(&given);
    let mut p = rig.pilot();
    pin_given(&mut p.journal, &given, rig.now()).unwrap();
    sync(
        &mut p,
        &offer(&rig, &index(7, vec![], None, &leaked)),
        &trust,
    )
    .unwrap();

    let forged = index(999_999, vec![], None, &leaked);
    sync(&mut p, &offer(&rig, &forged), &trust).unwrap();
    let real = index(8, vec![], None, &leaked);
    let e = sync(&mut p, &offer(&rig, &real), &trust).unwrap_err();
    assert!(e.to_string().contains("rollback"), "{e}");

    // The operator rotated the tower to `fresh` and restarts the pilot with it.
    let new = fresh.verifying_key();
    drop(p);
    let mut p = rig.pilot();
    pin_given(&mut p.journal, &new, rig.now()).unwrap();
    assert_eq!(pinned(&p), [b64(&fresh)]);
    assert_eq!(p.journal.meta("last_serial").unwrap(), None);
    let log = own_log(&p);
    assert!(
        log.contains("re-pinned") && log.contains("rollback floor") && log.contains("is reset"),
        "{log}"
    );
    let trust = Trust::Pinned(&new);
    let got = sync(
        &mut p,
        &offer(&rig, &index(9, vec![], None, &fresh)),
        &trust,
    )
    .unwrap();
    assert_eq!(
        got,
        Synced::Accepted {
            serial: 9,
            flights: 0
        }
    );
    // The leaked key is no longer trusted, whatever serial it signs.
    let e = sync(&mut p, &offer(&rig, &forged), &trust).unwrap_err();
    assert!(e.to_string().contains("which is not pinned"), "{e}");
    // Restarting with the same flag keeps the floor.
    drop(p);
    let mut p = rig.pilot();
    pin_given(&mut p.journal, &new, rig.now()).unwrap();
    assert_eq!(p.journal.meta("last_serial").unwrap().as_deref(), Some("9"));
}

#[cfg(unix)]
#[test]
fn the_profile_and_journal_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("new-profile");
    let mut j = testpilot_pilot::Journal::open(&profile, Default::default()).unwrap();
    j.set_meta("x", "y").unwrap();
    assert_eq!(mode(&profile), 0o700);
    let journal = testpilot_pilot::Journal::path_in(&profile);
    assert_eq!(mode(&journal), 0o600);
    let mut wal = journal.clone().into_os_string();
    wal.push("-wal");
    assert_eq!(mode(std::path::Path::new(&wal)), 0o600);
    drop(j);

    // An existing looser journal is named, with the fix, and left as it is.
    std::fs::set_permissions(&journal, std::fs::Permissions::from_mode(0o644)).unwrap();
    let w = testpilot_pilot::journal::looseness(&journal).unwrap();
    assert!(
        w.contains(&format!("chmod 600 {}", journal.display())),
        "{w}"
    );
    testpilot_pilot::Journal::open(&profile, Default::default()).unwrap();
    assert_eq!(mode(&journal), 0o644);
}
