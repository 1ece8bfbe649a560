//! Clocks: the system clock for the agent, a manual clock for tests and simulations.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use testpilot_flight::{Clock, Timestamp};

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Timestamp(ms)
    }
}

/// Virtual time: moves only when told to. Clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(at: Timestamp) -> Self {
        ManualClock(Arc::new(AtomicI64::new(at.0)))
    }
    pub fn set(&self, at: Timestamp) {
        self.0.store(at.0, Ordering::SeqCst);
    }
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

/// The wall clock sped up `scale` times from `origin` (ms since the epoch): for demos and
/// end-to-end tests of the real agent over flights that wait for days.
#[derive(Debug, Clone, Copy)]
pub struct ScaledClock {
    pub origin: Timestamp,
    pub scale: f64,
}

impl Clock for ScaledClock {
    fn now(&self) -> Timestamp {
        let real = SystemClock.now().0;
        Timestamp(self.origin.0 + ((real - self.origin.0) as f64 * self.scale) as i64)
    }
}
