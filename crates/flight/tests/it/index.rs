//! The signed index envelope: what the tower signs, the pilot accepts.

use ed25519_dalek::SigningKey;
use serde_json::json;
use testpilot_flight::index::*;
use testpilot_flight::{Error, Timestamp};

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn payload(serial: u64) -> IndexPayload {
    IndexPayload {
        serial,
        generated_at: Timestamp(1_000),
        expires_at: Timestamp(10_000),
        flights: vec![json!({"studyname": "x"})],
    }
}

#[test]
fn signed_index_round_trips() {
    let k = key(7);
    let env = Envelope::sign(&payload(3), &k);
    let text = env.to_text();
    let pk = parse_public_key(&public_key_to_base64(&k.verifying_key())).unwrap();
    let got = accept(&text, &Trust::Pinned(&pk), Some(3), Timestamp(5_000)).unwrap();
    assert_eq!(got, payload(3));
    assert_eq!(env.key_id.len(), 16);
}

#[test]
fn refuses_what_it_must() {
    let k = key(7);
    let pk = k.verifying_key();
    let now = Timestamp(5_000);
    let text = Envelope::sign(&payload(3), &k).to_text();

    // Another key.
    let other = key(8).verifying_key();
    assert!(matches!(
        accept(&text, &Trust::Pinned(&other), None, now),
        Err(Error::KeyMismatch { .. })
    ));
    // A tampered payload under the right key id.
    let mut env = Envelope::sign(&payload(3), &k);
    env.payload = env.payload.replace("\"serial\":3", "\"serial\":4");
    assert!(matches!(
        accept(&env.to_text(), &Trust::Pinned(&pk), None, now),
        Err(Error::BadSignature)
    ));
    // Rollback.
    assert!(matches!(
        accept(&text, &Trust::Pinned(&pk), Some(4), now),
        Err(Error::RolledBack { serial: 3, last: 4 })
    ));
    // Expired.
    assert!(matches!(
        accept(&text, &Trust::Pinned(&pk), None, Timestamp(10_000)),
        Err(Error::Expired { .. })
    ));
    // Unsigned.
    let bare = serde_json::to_string(&payload(3)).unwrap();
    assert!(matches!(
        accept(&bare, &Trust::Pinned(&pk), None, now),
        Err(Error::Unsigned)
    ));
    assert_eq!(
        accept(&bare, &Trust::InsecureUnsigned, None, now).unwrap(),
        payload(3)
    );
    // Not JSON at all.
    assert!(matches!(
        accept("<html>", &Trust::Pinned(&pk), None, now),
        Err(Error::Json(_))
    ));
    // Bad keys.
    assert!(parse_public_key("not base64!").is_err());
    assert!(parse_public_key("AAAA").is_err());
}
