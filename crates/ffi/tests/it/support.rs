//! What the C ABI's tests share: signed index files, a configuration, C strings, and the
//! extern "C" calls with their error message.

use ed25519_dalek::SigningKey;
use serde_json::{json, Value};
use std::ffi::{c_char, c_int, CStr, CString};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use testpilot::c::*;
use testpilot_flight::index::{public_key_to_base64, Envelope, IndexPayload};
use testpilot_flight::Timestamp;

/// A flight spec with the given plan.
pub fn flight(name: &str, plan: Value) -> Value {
    json!({"studyname": name, "author": "t@example.com", "description": "a test flight", "version": 1, "flightplan": plan})
}

/// Writes an index with `flights`, signed, to `path`; returns the public key (base64).
pub fn write_index(path: &Path, flights: Vec<Value>) -> String {
    let key = SigningKey::from_bytes(&[7; 32]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let p = IndexPayload {
        serial: 1,
        generated_at: Timestamp(now),
        expires_at: Timestamp(now + 86_400_000),
        flights,
        next_key: None,
    };
    std::fs::write(path, Envelope::sign(&p, &key).to_text()).unwrap();
    public_key_to_base64(&key.verifying_key())
}

/// A profile folder and a signed index with `flights` in a temporary folder.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub index: PathBuf,
    pub key: String,
}

impl Setup {
    pub fn new(flights: Vec<Value>) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join("index.json");
        let key = write_index(&index, flights);
        Setup { dir, index, key }
    }

    pub fn profile(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The configuration for profile `name` (polling every second).
    pub fn config(&self, name: &str) -> CString {
        let c = json!({
            "profile": self.profile(name), "tower": format!("file://{}", self.index.display()),
            "publicKey": self.key, "person": {"channel": "release"}, "poll": "1s",
        });
        CString::new(c.to_string()).unwrap()
    }
}

pub fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// This thread's last error message.
pub fn last_error() -> String {
    // SAFETY: tp_last_error gives a valid NUL-terminated string.
    unsafe { CStr::from_ptr(tp_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// Opens a profile; the code and the handle.
pub fn open(config: &CStr) -> (c_int, *mut TpPilot) {
    let mut p = std::ptr::null_mut();
    // SAFETY: a valid string and out-pointer.
    let rc = unsafe { tp_pilot_open(config.as_ptr(), &mut p) };
    (rc, p)
}

/// Calls a `char **out` function and takes the string it gives (freed here).
pub fn out_string(f: impl FnOnce(*mut *mut c_char) -> c_int) -> Result<String, (c_int, String)> {
    let mut out: *mut c_char = std::ptr::null_mut();
    let rc = f(&mut out);
    if rc != TP_OK {
        assert!(out.is_null(), "a failed call leaves *out NULL");
        return Err((rc, last_error()));
    }
    // SAFETY: a string the call handed out.
    let s = unsafe { CStr::from_ptr(out) }.to_str().unwrap().to_string();
    tp_string_free(out);
    Ok(s)
}

pub fn feature(p: *mut TpPilot, id: &str) -> Value {
    let id = c(id);
    // SAFETY: valid strings and out-pointer.
    let s = out_string(|out| unsafe { tp_pilot_feature(p, id.as_ptr(), out) }).unwrap();
    serde_json::from_str(&s).unwrap()
}

pub fn log(p: *mut TpPilot) -> Value {
    // SAFETY: a valid out-pointer.
    let s = out_string(|out| unsafe { tp_pilot_log(p, out) }).unwrap();
    serde_json::from_str(&s).unwrap()
}

/// The log entry of flight `name`.
pub fn flight_log(p: *mut TpPilot, name: &str) -> Value {
    log(p)
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["studyname"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Waits up to 30 s for `cond`; panics with `what` (and the last value seen) otherwise.
pub fn wait_for<T: std::fmt::Debug>(
    what: &str,
    mut probe: impl FnMut() -> T,
    cond: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = probe();
        if cond(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "waited 30 s for {what}; last: {v:?}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}
