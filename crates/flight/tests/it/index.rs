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
        next_key: None,
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

// keyId is the first 8 bytes of SHA-256 over the public key's 32 raw bytes, lowercase hex:
// the public key of RFC 8032's first test vector, hashed with `sha256sum`.
#[test]
fn key_id_matches_a_vector() {
    let pk = parse_public_key("11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=").unwrap();
    assert_eq!(key_id(&pk), "21fe31dfa154a261");
    let secret: [u8; 32] =
        hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .unwrap()
            .try_into()
            .unwrap();
    assert_eq!(SigningKey::from_bytes(&secret).verifying_key(), pk);
}

// Rotation: an index signed by the current key announces its successor; a pilot that accepted
// it pins both, and then accepts an index signed by the successor alone.
#[test]
fn a_pinned_set_follows_a_rotation() {
    let (old, new, stranger) = (key(1), key(2), key(3));
    let now = Timestamp(5_000);
    let mut announcing = payload(4);
    announcing.next_key = Some(new.verifying_key());
    let text = Envelope::sign(&announcing, &old).to_text();
    assert!(text.contains("nextKey"), "{text}");

    // The announcement is signed: changing it breaks the signature.
    let forged = Envelope::sign(&announcing, &old).to_text().replace(
        &public_key_to_base64(&new.verifying_key()),
        &public_key_to_base64(&stranger.verifying_key()),
    );
    assert!(matches!(
        accept(&forged, &Trust::Pinned(&old.verifying_key()), None, now),
        Err(Error::BadSignature)
    ));

    let got = accept_signed(&text, &Trust::Pinned(&old.verifying_key()), Some(3), now).unwrap();
    assert_eq!(got.payload, announcing);
    assert_eq!(got.signed_by, Some(old.verifying_key()));
    let pins = got.pins();
    assert_eq!(pins, vec![old.verifying_key(), new.verifying_key()]);

    // Signed by the successor alone: accepted with the pinned set, and the old key is dropped.
    let by_new = Envelope::sign(&payload(5), &new).to_text();
    assert!(matches!(
        accept(&by_new, &Trust::Pinned(&old.verifying_key()), Some(4), now),
        Err(Error::KeyMismatch { .. })
    ));
    let got = accept_signed(&by_new, &Trust::PinnedSet(&pins), Some(4), now).unwrap();
    assert_eq!(got.signed_by, Some(new.verifying_key()));
    assert_eq!(got.pins(), vec![new.verifying_key()]);

    // A key nobody pinned is refused, naming the pinned ones.
    let by_stranger = Envelope::sign(&payload(6), &stranger).to_text();
    let e = accept(&by_stranger, &Trust::PinnedSet(&pins), Some(4), now).unwrap_err();
    assert!(
        e.to_string().contains(&key_id(&old.verifying_key()))
            && e.to_string().contains(&key_id(&new.verifying_key())),
        "{e}"
    );
    // The rollback rule holds across keys.
    let old_serial = Envelope::sign(&payload(3), &new).to_text();
    assert!(matches!(
        accept(&old_serial, &Trust::PinnedSet(&pins), Some(4), now),
        Err(Error::RolledBack { .. })
    ));
}

#[test]
fn a_bad_next_key_is_refused_with_its_path() {
    let k = key(1);
    for bad in [json!("AAAA"), json!(7)] {
        let text = serde_json::to_string(&json!({
            "serial": 1, "generatedAt": "2026-01-01T00:00:00Z",
            "expiresAt": "2026-02-01T00:00:00Z", "flights": [], "nextKey": bad
        }))
        .unwrap();
        let env = Envelope {
            signature: {
                use ed25519_dalek::Signer;
                base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    k.sign(text.as_bytes()).to_bytes(),
                )
            },
            payload: text,
            key_id: key_id(&k.verifying_key()),
        };
        match accept(
            &env.to_text(),
            &Trust::Pinned(&k.verifying_key()),
            None,
            Timestamp(0),
        ) {
            Err(Error::Invalid(d)) => assert_eq!(d.0[0].path.to_string(), "nextKey", "{d:?}"),
            other => panic!("{other:?}"),
        }
    }
    // Unsigned payloads never pin anything.
    let mut p = payload(1);
    p.next_key = Some(key(2).verifying_key());
    let bare = serde_json::to_string(&p).unwrap();
    let got = accept_signed(&bare, &Trust::InsecureUnsigned, None, Timestamp(0)).unwrap();
    assert!(got.pins().is_empty());
}
