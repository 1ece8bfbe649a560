//! Crash injection. Every journal write and every effect on the machine first passes a fault
//! point; a test arms the counter to make the pilot stop at point `n` exactly as if the process
//! died there, then restarts it on the same profile.

use crate::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Shared by the journal, the engine and the reference host of one pilot. Disarmed by default.
#[derive(Debug, Clone, Default)]
pub struct Faults(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    /// Fault points passed so far.
    passed: AtomicU64,
    /// Crash when `passed` reaches this (0: never).
    crash_at: AtomicU64,
}

impl Faults {
    /// Crash at the `n`th fault point from now (1-based).
    pub fn crash_after(n: u64) -> Faults {
        let f = Faults::default();
        f.0.crash_at.store(n, Ordering::SeqCst);
        f
    }

    /// How many fault points have been passed.
    pub fn passed(&self) -> u64 {
        self.0.passed.load(Ordering::SeqCst)
    }

    /// A fault point: returns a simulated crash when the counter says so. Once crashed, every
    /// later point crashes too, as nothing runs after a real crash.
    pub fn point(&self, what: &str) -> Result<(), Error> {
        let n = self.0.passed.fetch_add(1, Ordering::SeqCst) + 1;
        let at = self.0.crash_at.load(Ordering::SeqCst);
        if at != 0 && n >= at {
            return Err(Error::Crash {
                point: n,
                what: what.to_string(),
            });
        }
        Ok(())
    }
}
