//! The signed index that the tower serves and pilots read (`docs/index.md`; keys and
//! rotation in `docs/keys.md`).
//!
//! `{"payload": "<JSON text>", "signature": "<base64 Ed25519 over the payload's UTF-8 bytes>",
//! "keyId": "<hex>"}`. The payload is kept as text so that the signature covers exactly the
//! bytes that were signed; it is parsed only after it verifies.
//!
//! Key rotation: a payload may name a successor key (`nextKey`). Being inside the payload, it
//! is signed by the current key, so a pilot that accepts the index can pin the successor too
//! ([`Accepted::pins`]); an index signed by the successor alone is then accepted.

use crate::diagnostic::JsonPath;
use crate::reader::Reader;
use crate::time::{parse_dateish, Timestamp};
use crate::Error;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
/// The public key type pilots pin (re-exported so that users of this module need not name
/// the signature crate).
pub use ed25519_dalek::VerifyingKey;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// What the index says: every live and killed flight, as the tower stores them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IndexPayload {
    /// Only grows; pilots refuse an index whose serial is below the last one they accepted.
    pub serial: u64,
    #[serde(rename = "generatedAt", serialize_with = "rfc3339")]
    pub generated_at: Timestamp,
    #[serde(rename = "expiresAt", serialize_with = "rfc3339")]
    pub expires_at: Timestamp,
    /// Flight specs, each validated by the pilot on its own so that one bad flight does not
    /// hide the others.
    pub flights: Vec<Value>,
    /// The successor of the key that signs this index, announced during a rotation.
    #[serde(
        rename = "nextKey",
        serialize_with = "next_key_b64",
        skip_serializing_if = "Option::is_none"
    )]
    pub next_key: Option<VerifyingKey>,
}

fn next_key_b64<S: Serializer>(k: &Option<VerifyingKey>, s: S) -> Result<S::Ok, S::Error> {
    match k {
        Some(k) => s.serialize_str(&public_key_to_base64(k)),
        None => s.serialize_none(),
    }
}

fn rfc3339<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339())
}

impl IndexPayload {
    /// The compact JSON text that is signed.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a payload object.
    pub fn from_json(v: &Value) -> Result<IndexPayload, Error> {
        let mut r = Reader::default();
        let root = JsonPath::root();
        let parsed = (|| {
            let o = r.object(
                v,
                &root,
                "an index payload",
                &["serial", "generatedAt", "expiresAt", "flights", "nextKey"],
            )?;
            let serial = r
                .required(&o, "serial", "")
                .and_then(|x| r.integer(x, &root.key("serial"), 0));
            let date = |key: &str, r: &mut Reader| {
                r.required(&o, key, "")
                    .and_then(|x| match parse_dateish(x) {
                        Ok(d) => Some(d.at),
                        Err(e) => {
                            r.error(&root.key(key), e);
                            None
                        }
                    })
            };
            let generated_at = date("generatedAt", &mut r);
            let expires_at = date("expiresAt", &mut r);
            let flights = r
                .required(&o, "flights", "")
                .and_then(|x| r.array(x, &root.key("flights")).cloned());
            let next_key = match o.map.get("nextKey") {
                None | Some(Value::Null) => Some(None),
                Some(Value::String(t)) => match parse_public_key(t) {
                    Ok(k) => Some(Some(k)),
                    Err(e) => {
                        r.error(&root.key("nextKey"), e.to_string());
                        None
                    }
                },
                Some(_) => {
                    r.error(
                        &root.key("nextKey"),
                        "must be a public key: standard base64 of its 32 bytes",
                    );
                    None
                }
            };
            Some(IndexPayload {
                serial: serial?,
                generated_at: generated_at?,
                expires_at: expires_at?,
                flights: flights?,
                next_key: next_key?,
            })
        })();
        match parsed {
            Some(p) if r.diags.is_empty() => Ok(p),
            _ => Err(Error::Invalid(r.diags)),
        }
    }
}

/// The signed envelope, as served at `/control/index.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub payload: String,
    pub signature: String,
    #[serde(rename = "keyId")]
    pub key_id: String,
}

/// The key id of a public key: the first 8 bytes of SHA-256 over its 32 raw bytes, in
/// lowercase hex (16 digits).
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

/// A public key as written everywhere: standard base64 of its 32 raw bytes.
pub fn public_key_to_base64(key: &VerifyingKey) -> String {
    B64.encode(key.as_bytes())
}

/// Reads a public key written as standard base64 of its 32 raw bytes.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, Error> {
    let bytes = B64
        .decode(text.trim())
        .map_err(|e| Error::BadKey(format!("not standard base64: {e}")))?;
    let arr: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
        Error::BadKey(format!(
            "an Ed25519 public key is 32 bytes, this is {}",
            b.len()
        ))
    })?;
    VerifyingKey::from_bytes(&arr).map_err(|e| Error::BadKey(e.to_string()))
}

impl Envelope {
    /// Signs a payload.
    pub fn sign(payload: &IndexPayload, key: &SigningKey) -> Envelope {
        let text = payload.to_text();
        let signature = key.sign(text.as_bytes());
        Envelope {
            payload: text,
            signature: B64.encode(signature.to_bytes()),
            key_id: key_id(&key.verifying_key()),
        }
    }

    /// The envelope's JSON text, as served.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Checks the signature with `key` and returns the payload it covers.
    pub fn verify(&self, key: &VerifyingKey) -> Result<IndexPayload, Error> {
        self.verify_any(std::slice::from_ref(key)).map(|(p, _)| p)
    }

    /// Checks the signature with the pinned key its `keyId` names, and returns the payload
    /// and that key. A `keyId` that names none of `keys` is refused before any work.
    pub fn verify_any(&self, keys: &[VerifyingKey]) -> Result<(IndexPayload, VerifyingKey), Error> {
        let Some(key) = keys
            .iter()
            .find(|k| self.key_id.eq_ignore_ascii_case(&key_id(k)))
        else {
            let expected: Vec<String> = keys.iter().map(key_id).collect();
            return Err(Error::KeyMismatch {
                expected: expected.join(", "),
                found: self
                    .key_id
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(64)
                    .collect(),
            });
        };
        let sig = B64
            .decode(self.signature.trim())
            .map_err(|_| Error::BadSignature)?;
        let sig: [u8; 64] = sig.try_into().map_err(|_| Error::BadSignature)?;
        key.verify(self.payload.as_bytes(), &Signature::from_bytes(&sig))
            .map_err(|_| Error::BadSignature)?;
        let v: Value = serde_json::from_str(&self.payload)
            .map_err(|e| Error::Json(format!("the signed payload is not JSON: {e}")))?;
        Ok((IndexPayload::from_json(&v)?, *key))
    }
}

/// How a pilot decides to trust an index.
pub enum Trust<'a> {
    /// Verify with this pinned key.
    Pinned(&'a VerifyingKey),
    /// Verify with whichever of these pinned keys the envelope's `keyId` names (a key and
    /// its announced successor during a rotation).
    PinnedSet(&'a [VerifyingKey]),
    /// Development only: accept unsigned payloads too (and envelopes without checking them).
    InsecureUnsigned,
}

/// An accepted index: its payload and the pinned key that signed it (none when unsigned
/// indexes are trusted).
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub payload: IndexPayload,
    pub signed_by: Option<VerifyingKey>,
}

impl Accepted {
    /// The keys a pilot pins after accepting this index: the key that signed it and the
    /// successor it announces. A key that neither signed nor was announced is dropped, so a
    /// retired key stops being trusted once its successor has signed.
    pub fn pins(&self) -> Vec<VerifyingKey> {
        let mut keys: Vec<VerifyingKey> = self.signed_by.into_iter().collect();
        if let (Some(next), true) = (self.payload.next_key, self.signed_by.is_some()) {
            if !keys.contains(&next) {
                keys.push(next);
            }
        }
        keys
    }
}

/// Accepts an index document only as `docs/index.md` says: the signature verifies with a
/// pinned key, `serial` is not below `last_serial`, and it has not expired at `now`.
pub fn accept(
    text: &str,
    trust: &Trust,
    last_serial: Option<u64>,
    now: Timestamp,
) -> Result<IndexPayload, Error> {
    accept_signed(text, trust, last_serial, now).map(|a| a.payload)
}

/// [`accept`], also saying which pinned key signed the index.
pub fn accept_signed(
    text: &str,
    trust: &Trust,
    last_serial: Option<u64>,
    now: Timestamp,
) -> Result<Accepted, Error> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| Error::Json(format!("the index is not JSON: {e}")))?;
    let is_envelope = v.get("payload").is_some() && v.get("signature").is_some();
    let pinned = match trust {
        Trust::Pinned(key) => Some(std::slice::from_ref(*key)),
        Trust::PinnedSet(keys) => Some(*keys),
        Trust::InsecureUnsigned => None,
    };
    let (payload, signed_by) = match (pinned, is_envelope) {
        (Some(keys), true) => {
            let env: Envelope = serde_json::from_value(v)
                .map_err(|e| Error::Json(format!("the index envelope is malformed: {e}")))?;
            let (p, k) = env.verify_any(keys)?;
            (p, Some(k))
        }
        (Some(_), false) => return Err(Error::Unsigned),
        (None, true) => {
            let payload = v
                .get("payload")
                .and_then(Value::as_str)
                .ok_or_else(|| Error::Json("`payload` must be a string".into()))?;
            let pv: Value = serde_json::from_str(payload)
                .map_err(|e| Error::Json(format!("the payload is not JSON: {e}")))?;
            (IndexPayload::from_json(&pv)?, None)
        }
        (None, false) => (IndexPayload::from_json(&v)?, None),
    };
    if let Some(last) = last_serial {
        if payload.serial < last {
            return Err(Error::RolledBack {
                serial: payload.serial,
                last,
            });
        }
    }
    if payload.expires_at <= now {
        return Err(Error::Expired {
            expires_at: payload.expires_at,
        });
    }
    Ok(Accepted { payload, signed_by })
}
