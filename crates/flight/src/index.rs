//! The signed index that the tower serves and pilots read (docs/index.md).
//!
//! `{"payload": "<JSON text>", "signature": "<base64 Ed25519 over the payload's UTF-8 bytes>",
//! "keyId": "<hex>"}`. The payload is kept as text so that the signature covers exactly the
//! bytes that were signed; it is parsed only after it verifies.

use crate::diagnostic::JsonPath;
use crate::reader::Reader;
use crate::time::{parse_dateish, Timestamp};
use crate::Error;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
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
                &["serial", "generatedAt", "expiresAt", "flights"],
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
            Some(IndexPayload {
                serial: serial?,
                generated_at: generated_at?,
                expires_at: expires_at?,
                flights: flights?,
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

/// The key id of a public key: the first 8 bytes of SHA-256 over its 32 raw bytes, in hex.
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
        let expected = key_id(key);
        if !self.key_id.eq_ignore_ascii_case(&expected) {
            return Err(Error::KeyMismatch {
                expected,
                found: self.key_id.clone(),
            });
        }
        let sig = B64
            .decode(self.signature.trim())
            .map_err(|_| Error::BadSignature)?;
        let sig: [u8; 64] = sig.try_into().map_err(|_| Error::BadSignature)?;
        key.verify(self.payload.as_bytes(), &Signature::from_bytes(&sig))
            .map_err(|_| Error::BadSignature)?;
        let v: Value = serde_json::from_str(&self.payload)
            .map_err(|e| Error::Json(format!("the signed payload is not JSON: {e}")))?;
        IndexPayload::from_json(&v)
    }
}

/// How a pilot decides to trust an index.
pub enum Trust<'a> {
    /// Verify with this pinned key.
    Pinned(&'a VerifyingKey),
    /// Development only: accept unsigned payloads too (and envelopes without checking them).
    InsecureUnsigned,
}

/// Accepts an index document only as docs/index.md says: the signature verifies with the pinned
/// key, `serial` is not below `last_serial`, and it has not expired at `now`.
pub fn accept(
    text: &str,
    trust: &Trust,
    last_serial: Option<u64>,
    now: Timestamp,
) -> Result<IndexPayload, Error> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| Error::Json(format!("the index is not JSON: {e}")))?;
    let is_envelope = v.get("payload").is_some() && v.get("signature").is_some();
    let payload = match (trust, is_envelope) {
        (Trust::Pinned(key), true) => {
            let env: Envelope = serde_json::from_value(v)
                .map_err(|e| Error::Json(format!("the index envelope is malformed: {e}")))?;
            env.verify(key)?
        }
        (Trust::Pinned(_), false) => return Err(Error::Unsigned),
        (Trust::InsecureUnsigned, true) => {
            let payload = v
                .get("payload")
                .and_then(Value::as_str)
                .ok_or_else(|| Error::Json("`payload` must be a string".into()))?;
            let pv: Value = serde_json::from_str(payload)
                .map_err(|e| Error::Json(format!("the payload is not JSON: {e}")))?;
            IndexPayload::from_json(&pv)?
        }
        (Trust::InsecureUnsigned, false) => IndexPayload::from_json(&v)?,
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
    Ok(payload)
}
