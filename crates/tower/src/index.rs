//! The signed index (`docs/index.md`), built from the store and kept in memory: a request is
//! answered from the last built document (body, ETag) without touching the database. It is
//! signed with the key the database names as current, and announces the proposed successor
//! as `nextKey` during a rotation (`docs/keys.md`).
//!
//! Invariants:
//! - The document is rebuilt when the stored serial changes (this tower's own changes,
//!   NOTIFY from other towers, or polling) and when its validity window rolls over — never
//!   per request.
//! - The bytes depend only on the stored state and the window, not on which tower built
//!   them: `generatedAt` is the later of the last change and the start of the current
//!   refresh window, and Ed25519 signatures are deterministic. So towers on one database
//!   serve identical bytes and identical ETags.
//! - A document never replaces one with a higher serial.
//! - Every rise of the serial served is announced once, from [`IndexCache::refresh`] (the one
//!   place that learns of changes), to the push stream's subscribers (docs/api.md,
//!   "Push: GET /control/stream").

use crate::error::{Error, Result};
use crate::keys::KeyRing;
use crate::store::{IndexState, Store};
use axum::body::Bytes;
use axum::http::HeaderValue;
use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};
use std::sync::{Arc, RwLock};
use testpilot_flight::index::{Envelope, IndexPayload};
use testpilot_flight::Timestamp;

/// How long an index stays valid and how often it is re-signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexTiming {
    /// `expiresAt - generatedAt`. Pilots keep the last good index when the tower cannot be
    /// reached; after this long they stop trusting it.
    pub ttl_ms: i64,
    /// The index is re-signed (new `generatedAt`/`expiresAt`, same serial) at the start of
    /// every window this long, so that it never gets near expiry while the tower runs.
    pub refresh_ms: i64,
    /// `Cache-Control: max-age` for the index, in seconds.
    pub max_age_s: u32,
}

impl Default for IndexTiming {
    fn default() -> Self {
        IndexTiming {
            ttl_ms: 7 * 86_400_000,
            refresh_ms: 86_400_000,
            max_age_s: 60,
        }
    }
}

/// One built index, ready to serve.
#[derive(Debug, Clone)]
pub struct IndexDoc {
    pub serial: u64,
    pub generated_at: Timestamp,
    pub expires_at: Timestamp,
    /// The envelope's JSON text.
    pub body: Bytes,
    /// A strong ETag: `"` + the first 32 hex digits of SHA-256 over the body + `"`.
    pub etag: String,
    pub flights: usize,
    /// The key that signed it.
    pub signed_by: VerifyingKey,
    /// Ready-made headers, so that serving costs no formatting.
    pub etag_header: HeaderValue,
    pub cache_control: HeaderValue,
}

/// The start of the refresh window that holds `now`.
fn window_start(now: Timestamp, refresh_ms: i64) -> Timestamp {
    Timestamp(now.0 - now.0.rem_euclid(refresh_ms.max(1)))
}

/// Signs the stored state as it is at `now`, with the current key: its seed from the
/// database, or from `ring` when it is kept outside.
pub fn build(
    state: &IndexState,
    ring: &KeyRing,
    timing: IndexTiming,
    now: Timestamp,
) -> Result<IndexDoc> {
    let current = &state.keys.current;
    let key = match &current.secret {
        Some(k) => k,
        None => ring.get(&current.key_id()).ok_or_else(|| {
            Error::Config(format!(
                "the current signing key {} is kept outside the database and this tower was not given it (--signing-key-file); it keeps serving the last index it signed",
                current.key_id()
            ))
        })?,
    };
    let generated_at = state.changed_at.max(window_start(now, timing.refresh_ms));
    let payload = IndexPayload {
        serial: state.serial,
        generated_at,
        expires_at: Timestamp(generated_at.0 + timing.ttl_ms),
        flights: state.flights.clone(),
        next_key: state.keys.next.as_ref().map(|k| k.public),
    };
    let body = Envelope::sign(&payload, key).to_text();
    let etag = format!(
        "\"{}\"",
        &hex::encode(Sha256::digest(body.as_bytes()))[..32]
    );
    Ok(IndexDoc {
        serial: payload.serial,
        generated_at,
        expires_at: payload.expires_at,
        body: Bytes::from(body),
        etag_header: HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\"")),
        etag,
        flights: state.flights.len(),
        signed_by: key.verifying_key(),
        cache_control: HeaderValue::from_str(&format!("public, max-age={}", timing.max_age_s))
            .unwrap_or(HeaderValue::from_static("no-cache")),
    })
}

/// The index in memory, shared by the request handlers.
pub struct IndexCache {
    current: RwLock<Arc<IndexDoc>>,
    /// Seeds kept outside the database.
    ring: KeyRing,
    timing: IndexTiming,
    /// Serializes rebuilds so that a slow one cannot overwrite a newer one.
    rebuild: tokio::sync::Mutex<()>,
    /// The serial being served, for the push stream: a watch keeps only the latest value, so
    /// a subscriber that falls behind sees one change, never a queue.
    serial: tokio::sync::watch::Sender<u64>,
}

impl IndexCache {
    /// Builds the first document from the store.
    pub async fn load(
        store: &Store,
        ring: KeyRing,
        timing: IndexTiming,
        now: Timestamp,
    ) -> Result<IndexCache> {
        let doc = build(&store.index_state().await?, &ring, timing, now)?;
        Ok(IndexCache {
            serial: tokio::sync::watch::Sender::new(doc.serial),
            current: RwLock::new(Arc::new(doc)),
            ring,
            timing,
            rebuild: tokio::sync::Mutex::new(()),
        })
    }

    /// The document to serve.
    pub fn current(&self) -> Arc<IndexDoc> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn timing(&self) -> IndexTiming {
        self.timing
    }

    /// The seeds this tower holds outside the database.
    pub fn ring(&self) -> &KeyRing {
        &self.ring
    }

    /// The serial being served now and at every rise (not on a re-signing of the same
    /// serial when the validity window rolls over).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.serial.subscribe()
    }

    /// The key that signed the document being served.
    pub fn public_key(&self) -> VerifyingKey {
        self.current().signed_by
    }

    /// Whether the document is out of date: the stored serial moved or the window rolled.
    pub fn is_stale(&self, stored_serial: u64, now: Timestamp) -> bool {
        let cur = self.current();
        stored_serial > cur.serial || window_start(now, self.timing.refresh_ms) > cur.generated_at
    }

    /// Rebuilds from the store and swaps the new document in, unless a newer one is there.
    /// Returns the document being served afterwards.
    pub async fn refresh(&self, store: &Store, now: Timestamp) -> Result<Arc<IndexDoc>> {
        let _guard = self.rebuild.lock().await;
        let doc = build(&store.index_state().await?, &self.ring, self.timing, now)?;
        let mut cur = self.current.write().unwrap_or_else(|e| e.into_inner());
        if (doc.serial, doc.generated_at) >= (cur.serial, cur.generated_at) && doc.etag != cur.etag
        {
            tracing::info!(serial = doc.serial, flights = doc.flights, "index rebuilt");
            *cur = Arc::new(doc);
        }
        let served = cur.clone();
        drop(cur);
        self.serial.send_if_modified(|s| {
            let rose = served.serial > *s;
            if rose {
                *s = served.serial;
            }
            rose
        });
        Ok(served)
    }
}

/// Writes the signed index as `DIR/control/index.json` (the path it has on a tower, so a
/// static host or CDN rooted at DIR serves it at the same URL), atomically. Returns the
/// document written.
pub async fn export(
    store: &Store,
    ring: &KeyRing,
    timing: IndexTiming,
    now: Timestamp,
    dir: &std::path::Path,
) -> Result<IndexDoc> {
    let doc = build(&store.index_state().await?, ring, timing, now)?;
    let control = dir.join("control");
    std::fs::create_dir_all(&control)?;
    let tmp = control.join(".index.json.tmp");
    std::fs::write(&tmp, &doc.body)?;
    std::fs::rename(&tmp, control.join("index.json"))?;
    Ok(doc)
}

/// Whether an `If-None-Match` header value matches `etag` (weak comparison, as RFC 9110
/// asks for `If-None-Match`; `*` matches anything).
pub fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    let bare = etag.trim_start_matches("W/");
    if_none_match
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == bare)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match() {
        assert!(etag_matches("\"abc\"", "\"abc\""));
        assert!(etag_matches("W/\"abc\"", "\"abc\""));
        assert!(etag_matches("\"x\", \"abc\"", "\"abc\""));
        assert!(etag_matches("*", "\"abc\""));
        assert!(!etag_matches("\"abd\"", "\"abc\""));
        assert!(!etag_matches("", "\"abc\""));
    }

    fn state(secret_in_db: bool) -> IndexState {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        IndexState {
            serial: 3,
            changed_at: Timestamp(1_000),
            flights: vec![],
            keys: crate::store::KeyState {
                current: crate::store::StoredKey {
                    public: key.verifying_key(),
                    secret: secret_in_db.then_some(key),
                    proposed_by: None,
                },
                next: None,
            },
        }
    }

    #[test]
    fn same_state_same_bytes_within_a_window() {
        let state = state(true);
        let ring = KeyRing::default();
        let t = IndexTiming::default();
        let a = build(&state, &ring, t, Timestamp(5_000)).unwrap();
        let b = build(&state, &ring, t, Timestamp(80_000_000)).unwrap();
        assert_eq!(a.body, b.body);
        let c = build(&state, &ring, t, Timestamp(90_000_000)).unwrap();
        assert_ne!(a.etag, c.etag);
        assert_eq!(c.generated_at, Timestamp(86_400_000));
        assert_eq!(c.expires_at, Timestamp(86_400_000 + t.ttl_ms));
    }

    #[test]
    fn a_key_kept_outside_is_taken_from_the_ring() {
        let outside = state(false);
        let t = IndexTiming::default();
        let e = build(&outside, &KeyRing::default(), t, Timestamp(0)).unwrap_err();
        assert!(e.to_string().contains("--signing-key-file"), "{e}");
        let ring = KeyRing::new(vec![ed25519_dalek::SigningKey::from_bytes(&[7; 32])]);
        let doc = build(&outside, &ring, t, Timestamp(0)).unwrap();
        let inside = build(&state(true), &KeyRing::default(), t, Timestamp(0)).unwrap();
        assert_eq!(doc.body, inside.body, "the same key signs the same bytes");
    }
}
