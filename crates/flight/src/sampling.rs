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

// Comparing two zero-padded 12-digit lowercase hex strings is the same as comparing the
// 48-bit numbers they spell, so the hot paths below work on `u64`s and never allocate. The
// string forms exist for display and for the vectors.

/// The first 48 bits of SHA-256 over the compact JSON text of `x`.
pub fn hash48<T: Serialize + ?Sized>(x: &T) -> u64 {
    let mut hasher = Sha256::new();
    // Serializing plain data cannot fail; were it to, "null" is hashed rather than panic.
    if serde_json::to_writer(&mut hasher, x).is_err() {
        hasher = Sha256::new();
        hasher.update(b"null");
    }
    first48(hasher)
}

fn first48(hasher: Sha256) -> u64 {
    let d = hasher.finalize();
    u64::from_be_bytes([0, 0, d[0], d[1], d[2], d[3], d[4], d[5]])
}

/// Feeds the JSON text of the string `s` without its quotes, as `serde_json` (and
/// JavaScript's `JSON.stringify`) write it: only `"`, `\` and control characters are escaped,
/// so text without them goes in as it is, with no copy. The hot paths below hash their
/// inputs this way, piece by piece, instead of formatting and serializing a value.
fn update_json_contents(hasher: &mut Sha256, s: &str) {
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        hasher.update(s.as_bytes());
        return;
    }
    let quoted = serde_json::Value::from(s).to_string();
    let inner = quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(&quoted);
    hasher.update(inner.as_bytes());
}

/// `floor(f × (2^48 − 1))`, with `f` clamped into `[0, 1]`.
pub fn key48(f: f64) -> u64 {
    let f = if f.is_nan() { 0.0 } else { f.clamp(0.0, 1.0) };
    (f * HASH_MAX).floor() as u64
}

/// The first 12 hex characters of SHA-256 over the compact JSON text of `x` (a string keeps
/// its quotes; non-ASCII is not escaped).
pub fn truncated_hash<T: Serialize + ?Sized>(x: &T) -> Bucket {
    format!("{:012x}", hash48(x))
}

/// `floor(f × (2^48 − 1))` as 12 lowercase hex digits; `f` is clamped into `[0, 1]`.
pub fn fraction_to_key(f: f64) -> Bucket {
    format!("{:012x}", key48(f))
}

/// Whether the hash `h` (12 hex digits) lies in `[ge, lt)`.
pub fn in_range(h: &str, ge: f64, lt: f64) -> bool {
    fraction_to_key(ge).as_str() <= h && h < fraction_to_key(lt).as_str()
}

/// Whether the 48-bit hash `h` lies in `[ge, lt)`.
pub fn in_range48(h: u64, ge: f64, lt: f64) -> bool {
    key48(ge) <= h && h < key48(lt)
}

/// The bucket of a person for a `randomDeploy` key: `truncated_hash(["<personid>", "<keyname>"])`.
pub fn deploy_bucket(personid: &str, keyname: &str) -> Bucket {
    truncated_hash(&[personid, keyname])
}

/// [`deploy_bucket`] as a number: the same bytes hashed, without building them.
pub fn deploy_hash48(personid: &str, keyname: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(b"[\"");
    update_json_contents(&mut h, personid);
    h.update(b"\",\"");
    update_json_contents(&mut h, keyname);
    h.update(b"\"]");
    first48(h)
}

/// Normandy's `stableSample(input, rate)`.
pub fn stable_sample<T: Serialize + ?Sized>(x: &T, rate: f64) -> bool {
    hash48(x) < key48(rate)
}

/// Normandy's `bucketSample(input, start, count, total)`. `total` must be positive.
pub fn bucket_sample<T: Serialize + ?Sized>(x: &T, start: u64, count: u64, total: u64) -> bool {
    if total == 0 {
        return false;
    }
    let h = hash48(x);
    let in_bucket =
        |lo: u64, hi: u64| in_range48(h, lo as f64 / total as f64, hi as f64 / total as f64);
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
    ratio_index(hash48(x), ratios.iter().copied())
}

/// The index `ratio_sample` gives for the hash `h`.
fn ratio_index(h: u64, ratios: impl Iterator<Item = u64> + Clone) -> Option<usize> {
    // u128: no sum of u64 ratios can overflow it.
    let total: u128 = ratios.clone().map(u128::from).sum();
    if total == 0 {
        return None;
    }
    let mut cumulative = 0u128;
    let mut last = 0;
    for (i, r) in ratios.enumerate() {
        cumulative += u128::from(r);
        if h <= key48(cumulative as f64 / total as f64) {
            return Some(i);
        }
        last = i;
    }
    Some(last)
}

/// The arm index of a person in a flight: Nimbus's branch choice, `ratio_sample` of
/// `"experimentmanager-<personid>-<studyname>-branch"` (hashed without building the text).
pub fn choose_arm(personid: &str, studyname: &str, ratios: &[u64]) -> Option<usize> {
    choose_arm_by(personid, studyname, ratios.iter().copied())
}

/// [`choose_arm`] over ratios read from anywhere (a flight's arms), without collecting them.
pub fn choose_arm_by(
    personid: &str,
    studyname: &str,
    ratios: impl Iterator<Item = u64> + Clone,
) -> Option<usize> {
    let mut h = Sha256::new();
    h.update(b"\"experimentmanager-");
    update_json_contents(&mut h, personid);
    h.update(b"-");
    update_json_contents(&mut h, studyname);
    h.update(b"-branch\"");
    ratio_index(first48(h), ratios)
}
