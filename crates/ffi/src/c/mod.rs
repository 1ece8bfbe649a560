//! The C ABI (docs/embedding.md, "C"): `libtestpilot` with `include/testpilot.h`, generated
//! from this module by cbindgen (`cbindgen.toml`; `tests/header.rs` checks it is current).
//!
//! Each function wraps one method of `testpilot_pilot::EmbeddedPilot`. The rules:
//! - every function starts with `tp_`; a pilot is an opaque handle ([`TpPilot`]);
//! - strings are UTF-8, NUL-terminated; structured values are JSON text;
//! - a string handed out (`char **out`) belongs to the caller until `tp_string_free`;
//! - calls return 0 ([`TP_OK`]) or a negative code ([`codes`]), with the message from
//!   `tp_last_error()` (per thread);
//! - no panic crosses the boundary; a closed handle, NULL or text that is not UTF-8 is an
//!   error, never undefined behavior.

mod boundary;
pub mod codes;
pub mod handles;
mod host;

pub use codes::*;
pub use handles::TpPilot;
pub use host::{TpHost, TpHostAddonFn};

use boundary::{call, clear_out, give, opt_str, req_str, Failure, MAX_ARG_BYTES};
use host::CHost;
use serde_json::{json, Value};
use std::ffi::{c_char, c_int};
use testpilot_pilot::embed::MAX_CONFIG_BYTES;
use testpilot_pilot::{EmbeddedPilot, Host};

/// Opens the profile a JSON configuration names and gives its handle in `*out`:
/// `{"profile": DIR, "tower": URL or file:// URL, "publicKey": BASE64, "person": {...},
/// "poll": DURATION}` (docs/embedding.md). The profile's lock is held until `tp_pilot_close`:
/// a profile another pilot holds gives `TP_ERR_LOCKED`. Without a host, features are written
/// to `features.json` in the profile and add-ons unpacked there.
///
/// # Safety
/// `config_json` is NULL or a NUL-terminated string; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tp_pilot_open(
    config_json: *const c_char,
    out: *mut *mut TpPilot,
) -> c_int {
    call("tp_pilot_open", || {
        // SAFETY: the caller's pointers, as documented.
        unsafe { open(config_json, None, out) }
    })
}

/// As `tp_pilot_open`, with the application's host: features, notifications and add-ons go
/// through its callbacks (see `TpHost`). The callbacks are copied; `user_data` must stay valid
/// until `tp_pilot_close` returns.
///
/// # Safety
/// As `tp_pilot_open`; `host` is NULL or points to a `TpHost` whose callbacks are safe to call
/// from another thread with its `user_data`.
#[no_mangle]
pub unsafe extern "C" fn tp_pilot_open_with_host(
    config_json: *const c_char,
    host: *const TpHost,
    out: *mut *mut TpPilot,
) -> c_int {
    call("tp_pilot_open_with_host", || {
        if host.is_null() {
            return Err(Failure::invalid(
                "host is NULL: give a TpHost, or call tp_pilot_open for the reference host",
            ));
        }
        // SAFETY: checked non-NULL; the caller promises it is a TpHost.
        let host = CHost::new(unsafe { &*host })?;
        // SAFETY: the caller's pointers, as documented.
        unsafe { open(config_json, Some(host), out) }
    })
}

unsafe fn open(
    config_json: *const c_char,
    host: Option<CHost>,
    out: *mut *mut TpPilot,
) -> Result<(), Failure> {
    if out.is_null() {
        return Err(Failure::invalid(
            "out is NULL: give the address of a `TpPilot *` to receive the handle",
        ));
    }
    // SAFETY: checked non-NULL; writable as the caller promises.
    unsafe { *out = std::ptr::null_mut() };
    // SAFETY: the caller's string.
    let text = unsafe { req_str(config_json, "config_json", MAX_CONFIG_BYTES) }?;
    let held = host.as_ref().map(CHost::features);
    let pilot = EmbeddedPilot::open_json(&text, host.map(|h| Box::new(h) as Box<dyn Host + Send>))?;
    if let Some(held) = held {
        // What flights left set on the last run is what the application holds now: the
        // value a new flight finds there and restores when it ends.
        let mut held = held.lock().unwrap_or_else(|e| e.into_inner());
        for (id, f) in pilot.features() {
            held.insert(id, f.value);
        }
    }
    // SAFETY: as above.
    unsafe { *out = handles::insert(pilot) };
    Ok(())
}

/// Starts the agent on a thread of its own: it fetches the index at once, then every `poll`,
/// and runs flights as they come due. Starting twice, or after `tp_pilot_stop`, is
/// `TP_ERR_USAGE`.
#[no_mangle]
pub extern "C" fn tp_pilot_start(pilot: *mut TpPilot) -> c_int {
    call("tp_pilot_start", || Ok(handles::get(pilot)?.start()?))
}

/// A feature's value, read from memory (no I/O): `*out` is JSON
/// `{"value": {...}, "studyname": "...", "version": N, "arm": "..." or null}`, or JSON `null`
/// when no flight sets the feature. Free it with `tp_string_free`.
///
/// # Safety
/// `id` is NULL or a NUL-terminated string; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tp_pilot_feature(
    pilot: *mut TpPilot,
    id: *const c_char,
    out: *mut *mut c_char,
) -> c_int {
    call("tp_pilot_feature", || {
        // SAFETY: the caller's pointers, as documented.
        unsafe { clear_out(out, "out") }?;
        let p = handles::get(pilot)?;
        // SAFETY: as above.
        let id = unsafe { req_str(id, "id", MAX_ARG_BYTES) }?;
        let v = match p.feature(&id) {
            Some(f) => {
                json!({"value": f.value, "studyname": f.studyname, "version": f.version, "arm": f.arm})
            }
            None => Value::Null,
        };
        // SAFETY: checked by clear_out.
        unsafe { give(out, v.to_string()) }
    })
}

/// Feeds an event: `observe` steps waiting for `topic` (and `subject`, which may be NULL) go
/// on, and recordings watching it record it.
///
/// # Safety
/// `topic` and `subject` are NULL or NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn tp_pilot_observe(
    pilot: *mut TpPilot,
    topic: *const c_char,
    subject: *const c_char,
) -> c_int {
    call("tp_pilot_observe", || {
        // SAFETY: the caller's pointers, as documented.
        unsafe { observe(pilot, topic, subject, None) }
    })
}

/// As `tp_pilot_observe`, with a number (finite) recorded with the event.
///
/// # Safety
/// As `tp_pilot_observe`.
#[no_mangle]
pub unsafe extern "C" fn tp_pilot_observe_value(
    pilot: *mut TpPilot,
    topic: *const c_char,
    subject: *const c_char,
    value: f64,
) -> c_int {
    call("tp_pilot_observe_value", || {
        // SAFETY: the caller's pointers, as documented.
        unsafe { observe(pilot, topic, subject, Some(value)) }
    })
}

unsafe fn observe(
    pilot: *mut TpPilot,
    topic: *const c_char,
    subject: *const c_char,
    value: Option<f64>,
) -> Result<(), Failure> {
    let p = handles::get(pilot)?;
    // SAFETY: the caller's strings.
    let topic = unsafe { req_str(topic, "topic", MAX_ARG_BYTES) }?;
    // SAFETY: as above.
    let subject = unsafe { opt_str(subject, "subject", MAX_ARG_BYTES) }?;
    p.observe(&topic, subject.as_deref(), value)?;
    Ok(())
}

/// The flight log: `*out` is the JSON of `testpilot log --json` (a list of flights with their
/// timelines). Free it with `tp_string_free`.
///
/// # Safety
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tp_pilot_log(pilot: *mut TpPilot, out: *mut *mut c_char) -> c_int {
    call("tp_pilot_log", || {
        // SAFETY: the caller's pointer, as documented.
        unsafe { clear_out(out, "out") }?;
        let log = handles::get(pilot)?.log()?;
        // SAFETY: checked by clear_out.
        unsafe { give(out, Value::Array(log).to_string()) }
    })
}

/// The flights running on this machine: `*out` is a JSON list of
/// `{"studyname", "version", "arm", "step", "statusLine", "startedAt"}`.
///
/// # Safety
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tp_pilot_flights(pilot: *mut TpPilot, out: *mut *mut c_char) -> c_int {
    call("tp_pilot_flights", || {
        // SAFETY: the caller's pointer, as documented.
        unsafe { clear_out(out, "out") }?;
        let flights = handles::get(pilot)?.active_flights()?;
        // SAFETY: checked by clear_out.
        unsafe { give(out, Value::Array(flights).to_string()) }
    })
}

/// The prompts waiting for the person: `*out` is the JSON of `testpilot later list --json`
/// (each with the `id` to answer it by).
///
/// # Safety
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tp_pilot_prompts(pilot: *mut TpPilot, out: *mut *mut c_char) -> c_int {
    call("tp_pilot_prompts", || {
        // SAFETY: the caller's pointer, as documented.
        unsafe { clear_out(out, "out") }?;
        let prompts = handles::get(pilot)?.prompts()?;
        // SAFETY: checked by clear_out.
        unsafe { give(out, Value::Array(prompts).to_string()) }
    })
}

/// Answers prompt `id`: `answer` is `"ok"`, `"no"` or `"later"`.
///
/// # Safety
/// `answer` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn tp_pilot_answer(
    pilot: *mut TpPilot,
    id: i64,
    answer: *const c_char,
) -> c_int {
    call("tp_pilot_answer", || {
        let p = handles::get(pilot)?;
        // SAFETY: the caller's string.
        let answer = unsafe { req_str(answer, "answer", MAX_ARG_BYTES) }?;
        Ok(p.answer(id, &answer)?)
    })
}

/// Leaves flight `flight` (NULL: every flight, and no new ones start), undoing what it did.
/// `*out` (when `out` is not NULL) is the JSON list of the flights ended. With the agent
/// running this waits for it to finish the cleanup (up to a minute).
///
/// # Safety
/// `flight` is NULL or a NUL-terminated string; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn tp_pilot_optout(
    pilot: *mut TpPilot,
    flight: *const c_char,
    out: *mut *mut c_char,
) -> c_int {
    call("tp_pilot_optout", || {
        if !out.is_null() {
            // SAFETY: the caller's pointer, as documented.
            unsafe { clear_out(out, "out") }?;
        }
        let p = handles::get(pilot)?;
        // SAFETY: the caller's string.
        let flight = unsafe { opt_str(flight, "flight", MAX_ARG_BYTES) }?;
        let ended = p.optout(flight.as_deref())?;
        if out.is_null() {
            return Ok(());
        }
        // SAFETY: checked by clear_out.
        unsafe { give(out, json!(ended).to_string()) }
    })
}

/// Stops the agent after the journal write under way; flights go on at the next start.
/// `TP_ERR_HOST` when a host callback blocks the agent past the timeout (10 s), or when the
/// agent had stopped on an error of its own (the message says which). Stopping a pilot that
/// is not running does nothing.
#[no_mangle]
pub extern "C" fn tp_pilot_stop(pilot: *mut TpPilot) -> c_int {
    call("tp_pilot_stop", || Ok(handles::get(pilot)?.stop()?))
}

/// Stops the agent (as `tp_pilot_stop`), releases the profile and ends the handle: any later
/// use of it gives `TP_ERR_CLOSED_HANDLE`. NULL does nothing. When a host callback blocks the
/// agent, the handle ends at once and the profile is released when the callback returns;
/// `tp_last_error()` says so.
#[no_mangle]
pub extern "C" fn tp_pilot_close(pilot: *mut TpPilot) {
    call("tp_pilot_close", || handles::close(pilot));
}

/// The message of the last failed call on this thread ("" when none failed). Valid until the
/// next failing call on this thread; do not free it.
#[no_mangle]
pub extern "C" fn tp_last_error() -> *const c_char {
    boundary::last_error_ptr()
}

/// Frees a string a `tp_` call handed out. NULL does nothing; a pointer that is not one of
/// them (or one freed already) is left alone and noted in `tp_last_error()`.
#[no_mangle]
pub extern "C" fn tp_string_free(s: *mut c_char) {
    call("tp_string_free", || {
        if s.is_null() || boundary::free(s) {
            Ok(())
        } else {
            Err(Failure::invalid(
                "the string was not handed out by a tp_ call, or was freed already",
            ))
        }
    });
}
