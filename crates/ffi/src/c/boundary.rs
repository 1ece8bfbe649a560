//! What every C entry point shares (docs/embedding.md, "C"): no panic crosses the boundary,
//! every error becomes a negative code and this thread's message (`tp_last_error`), strings
//! come in bounded and checked, and strings go out owned by the caller until
//! `tp_string_free`.

use super::codes::*;
use std::cell::RefCell;
use std::collections::HashSet;
use std::ffi::{c_char, c_int, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{LazyLock, Mutex};
use testpilot_pilot::Error;

/// The longest text argument other than the configuration (a feature id, a topic, a subject,
/// a flight's name, an answer), scanned for its NUL before anything else is read.
pub(crate) const MAX_ARG_BYTES: usize = 64 * 1024;

/// A failed call: the code returned and the message `tp_last_error` gives.
#[derive(Debug)]
pub struct Failure {
    pub code: c_int,
    pub msg: String,
}

impl Failure {
    pub fn new(code: c_int, msg: impl Into<String>) -> Failure {
        Failure {
            code,
            msg: msg.into(),
        }
    }
    pub fn invalid(msg: impl Into<String>) -> Failure {
        Failure::new(TP_ERR_INVALID_ARGUMENT, msg)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let code = match &e {
            Error::Locked { .. } => TP_ERR_LOCKED,
            Error::Usage(_) => TP_ERR_USAGE,
            Error::Host(_) => TP_ERR_HOST,
            Error::Journal { .. } | Error::Sqlite(_) | Error::Crash { .. } => TP_ERR_JOURNAL,
            Error::Io { .. } => TP_ERR_IO,
            Error::Index(_) | Error::Net { .. } | Error::Package(_) => TP_ERR_TOWER,
        };
        Failure::new(code, e.to_string())
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Sets this thread's message (NUL bytes in it are shown as `\0`).
pub fn set_last_error(msg: &str) {
    let c = CString::new(msg.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// This thread's message; valid until the next failing call on this thread.
pub fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Runs an entry point's body: its result as a code, a panic as [`TP_ERR_INTERNAL`].
pub fn call(name: &str, body: impl FnOnce() -> Result<(), Failure>) -> c_int {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => TP_OK,
        Ok(Err(f)) => {
            set_last_error(&format!("{name}: {}", f.msg));
            f.code
        }
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            set_last_error(&format!(
                "{name}: internal error (a bug in the pilot; please report it): {msg}"
            ));
            TP_ERR_INTERNAL
        }
    }
}

/// Reads a NUL-terminated UTF-8 argument of at most `max` bytes; `None` for NULL.
///
/// # Safety
/// `ptr` is NULL or points to readable memory up to its NUL or `max + 1` bytes.
pub unsafe fn opt_str(
    ptr: *const c_char,
    name: &str,
    max: usize,
) -> Result<Option<String>, Failure> {
    if ptr.is_null() {
        return Ok(None);
    }
    let mut len = 0usize;
    // SAFETY: the caller promises the bytes up to the NUL (or max + 1) are readable.
    while unsafe { *ptr.add(len) } != 0 {
        len += 1;
        if len > max {
            return Err(Failure::invalid(format!(
                "{name} is longer than {max} bytes (or lacks its terminating NUL)"
            )));
        }
    }
    // SAFETY: `len` bytes were just read.
    let bytes = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) };
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(Some(s.to_string())),
        Err(e) => Err(Failure::invalid(format!(
            "{name} is not valid UTF-8 (byte {} is wrong)",
            e.valid_up_to()
        ))),
    }
}

/// As [`opt_str`], for an argument that must not be NULL.
///
/// # Safety
/// As [`opt_str`].
pub unsafe fn req_str(ptr: *const c_char, name: &str, max: usize) -> Result<String, Failure> {
    // SAFETY: forwarded.
    unsafe { opt_str(ptr, name, max) }?
        .ok_or_else(|| Failure::invalid(format!("{name} is NULL: give a string")))
}

/// The strings handed out and not yet freed, so that `tp_string_free` of anything else (a
/// double free, a foreign pointer) is refused instead of corrupting the heap.
static STRINGS: LazyLock<Mutex<HashSet<usize>>> = LazyLock::new(Default::default);

fn strings() -> std::sync::MutexGuard<'static, HashSet<usize>> {
    STRINGS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Checks an out-parameter and sets it to NULL, so that it holds NULL on every failure.
///
/// # Safety
/// `out` is NULL or writable.
pub unsafe fn clear_out(out: *mut *mut c_char, name: &str) -> Result<(), Failure> {
    if out.is_null() {
        return Err(Failure::invalid(format!(
            "{name} is NULL: give the address of a `char *` to receive the result"
        )));
    }
    // SAFETY: checked non-NULL; the caller promises it is writable.
    unsafe { *out = std::ptr::null_mut() };
    Ok(())
}

/// Hands `text` to the caller through `out` (checked by [`clear_out`]).
///
/// # Safety
/// `out` is writable.
pub unsafe fn give(out: *mut *mut c_char, text: String) -> Result<(), Failure> {
    let c = CString::new(text)
        .map_err(|_| Failure::new(TP_ERR_INTERNAL, "a result held a NUL byte"))?;
    let raw = c.into_raw();
    strings().insert(raw as usize);
    // SAFETY: the caller checked `out` with `clear_out`.
    unsafe { *out = raw };
    Ok(())
}

/// Frees a string handed out by [`give`]; `false` if it was not one (or was freed already).
pub fn free(s: *mut c_char) -> bool {
    if !strings().remove(&(s as usize)) {
        return false;
    }
    // SAFETY: `s` came from `CString::into_raw` in `give` and was not freed since.
    drop(unsafe { CString::from_raw(s) });
    true
}
