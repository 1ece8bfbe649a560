//! Bucketing, bit for bit the same as Mozilla Nimbus (`sampling.rs`) and Normandy (`Sampling`).
//!
//! A person's place is the first 12 hex digits (48 bits) of SHA-256 over the compact JSON
//! text of some input. Ranges are compared as 12-digit lowercase hex strings, exactly as the
//! peers do, so a person lands in the same bucket here as there.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// `2^48 − 1`: the largest 12-hex-digit hash.
const HASH_MAX: f64 = 281_474_976_710_655.0;

/// A 12-digit lowercase hex hash.
pub type Bucket = String;

/// The first 12 hex characters of SHA-256 over the compact JSON text of `x` (a string keeps
/// its quotes; non-ASCII is not escaped).
pub fn truncated_hash<T: Serialize + ?Sized>(x: &T) -> Bucket {
    // Serializing plain data to a string cannot fail; fall back to "null" rather than panic.
    let text = serde_json::to_string(x).unwrap_or_else(|_| "null".into());
    let digest = Sha256::digest(text.as_bytes());
    hex::encode(&digest[..6])
}

/// `floor(f × (2^48 − 1))` as 12 lowercase hex digits; `f` is clamped into `[0, 1]`.
pub fn fraction_to_key(f: f64) -> Bucket {
    let f = if f.is_nan() { 0.0 } else { f.clamp(0.0, 1.0) };
    let n = (f * HASH_MAX).floor() as u64;
    format!("{n:012x}")
}

/// Whether the hash `h` lies in `[ge, lt)`.
pub fn in_range(h: &str, ge: f64, lt: f64) -> bool {
    fraction_to_key(ge).as_str() <= h && h < fraction_to_key(lt).as_str()
}

/// The bucket of a person for a `randomDeploy` key: `truncated_hash(["<personid>", "<keyname>"])`.
pub fn deploy_bucket(personid: &str, keyname: &str) -> Bucket {
    truncated_hash(&[personid, keyname])
}

/// Normandy's `stableSample(input, rate)`.
pub fn stable_sample<T: Serialize + ?Sized>(x: &T, rate: f64) -> bool {
    truncated_hash(x) < fraction_to_key(rate)
}

/// Normandy's `bucketSample(input, start, count, total)`. `total` must be positive.
pub fn bucket_sample<T: Serialize + ?Sized>(x: &T, start: u64, count: u64, total: u64) -> bool {
    if total == 0 {
        return false;
    }
    let h = truncated_hash(x);
    let in_bucket = |lo: u64, hi: u64| {
        fraction_to_key(lo as f64 / total as f64) <= h && h < fraction_to_key(hi as f64 / total as f64)
    };
    let ws = start % total;
    let end = ws.saturating_add(count);
    if end > total {
        in_bucket(0, end % total) || in_bucket(ws, total)
    } else {
        in_bucket(ws, end)
    }
}

/// Nimbus's `ratio_sample`: the first index `i` with `h ≤ key(cumsum_i / total)`, else the last.
/// Returns `None` only for an empty or all-zero list of ratios.
pub fn ratio_sample<T: Serialize + ?Sized>(x: &T, ratios: &[u64]) -> Option<usize> {
    let total: u64 = ratios.iter().sum();
    if ratios.is_empty() || total == 0 {
        return None;
    }
    let h = truncated_hash(x);
    let mut cumulative = 0u64;
    for (i, r) in ratios.iter().enumerate() {
        cumulative += r;
        if h <= fraction_to_key(cumulative as f64 / total as f64) {
            return Some(i);
        }
    }
    Some(ratios.len() - 1)
}

/// The arm index of a person in a flight: Nimbus's branch choice.
pub fn choose_arm(personid: &str, studyname: &str, ratios: &[u64]) -> Option<usize> {
    ratio_sample(&format!("experimentmanager-{personid}-{studyname}-branch"), ratios)
}
