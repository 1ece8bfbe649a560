//! Handles: a `TpPilot *` is a number, never an address. The pilots live in a registry under
//! numbers that are never reused, so a handle used after `tp_pilot_close` (or one never
//! opened) is an error the caller can read, not a dangling pointer.

use super::boundary::Failure;
use super::codes::{TP_ERR_CLOSED_HANDLE, TP_ERR_INVALID_ARGUMENT};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Duration;
use testpilot_pilot::{EmbeddedPilot, Error};

/// An open profile (opaque: the handle `tp_pilot_open` gives, for the other calls).
pub struct TpPilot {
    _opaque: [u8; 0],
}

static NEXT: AtomicUsize = AtomicUsize::new(1);
static PILOTS: LazyLock<Mutex<HashMap<usize, Arc<EmbeddedPilot>>>> =
    LazyLock::new(Default::default);

fn pilots() -> MutexGuard<'static, HashMap<usize, Arc<EmbeddedPilot>>> {
    PILOTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Registers a pilot and gives its handle.
pub fn insert(pilot: EmbeddedPilot) -> *mut TpPilot {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    pilots().insert(id, Arc::new(pilot));
    id as *mut TpPilot
}

/// The pilot behind a handle. Also for Rust code that shares a handle with C (and this
/// crate's tests).
pub fn get(handle: *const TpPilot) -> Result<Arc<EmbeddedPilot>, Failure> {
    if handle.is_null() {
        return Err(Failure::new(
            TP_ERR_INVALID_ARGUMENT,
            "the pilot handle is NULL: open one with tp_pilot_open",
        ));
    }
    pilots().get(&(handle as usize)).cloned().ok_or_else(|| {
        Failure::new(
            TP_ERR_CLOSED_HANDLE,
            "the pilot handle is closed (tp_pilot_close) or was never opened",
        )
    })
}

/// Takes a pilot out of the registry (the handle is dead from here on), stops its agent and
/// drops it, which releases the profile. When a host callback blocks the agent past the stop
/// timeout, a thread of its own keeps the profile locked until the agent has really ended,
/// so that no second pilot opens it while the first still writes.
pub fn close(handle: *mut TpPilot) -> Result<(), Failure> {
    if handle.is_null() {
        return Ok(());
    }
    let pilot = pilots().remove(&(handle as usize)).ok_or_else(|| {
        Failure::new(
            TP_ERR_CLOSED_HANDLE,
            "the pilot handle is closed already (or was never opened)",
        )
    })?;
    match pilot.stop() {
        Err(e @ Error::Host(_)) if pilot.running() => {
            let _ = std::thread::Builder::new()
                .name("testpilot-close".into())
                .spawn(move || {
                    while pilot.running() {
                        let _ = pilot.stop();
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    drop(pilot);
                });
            Err(e.into())
        }
        // The agent stopped (with or without an error of its own): the pilot goes now.
        _ => Ok(()),
    }
}
