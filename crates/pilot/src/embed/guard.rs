//! The application's host, guarded: a callback that panics becomes an error of the step that
//! called it (which fails that flight and undoes it), never a crash of the application.
//!
//! A callback that blocks holds the agent's thread: the journal stays consistent (the intent
//! is written before the call), and [`super::EmbeddedPilot::stop`] gives up waiting after its
//! timeout with an error that says so.

use crate::{Error, Host};
use serde_json::Value;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

pub(super) struct GuardedHost {
    inner: Box<dyn Host + Send>,
}

impl GuardedHost {
    pub(super) fn new(inner: Box<dyn Host + Send>) -> GuardedHost {
        GuardedHost { inner }
    }
}

/// Runs one callback, turning a panic into [`Error::Host`].
fn guard<T>(what: &str, f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            Err(Error::Host(format!(
                "the application's {what} panicked: {msg}"
            )))
        }
    }
}

impl Host for GuardedHost {
    fn addon_present(&self, id: &str) -> Result<bool, Error> {
        guard("addon_present", || self.inner.addon_present(id))
    }
    fn addon_install(
        &mut self,
        key: &str,
        id: &str,
        package: &Path,
        sha256: &str,
    ) -> Result<(), Error> {
        guard("addon_install", || {
            self.inner.addon_install(key, id, package, sha256)
        })
    }
    fn addon_undo_install(&mut self, key: &str, id: &str) -> Result<(), Error> {
        guard("addon_undo_install", || {
            self.inner.addon_undo_install(key, id)
        })
    }
    fn addon_handover(&mut self, from: &str, to: &str, id: &str) -> Result<(), Error> {
        guard("addon_handover", || self.inner.addon_handover(from, to, id))
    }
    fn addon_uninstall(&mut self, key: &str, id: &str) -> Result<(), Error> {
        guard("addon_uninstall", || self.inner.addon_uninstall(key, id))
    }
    fn addon_undo_uninstall(&mut self, key: &str, id: &str) -> Result<(), Error> {
        guard("addon_undo_uninstall", || {
            self.inner.addon_undo_uninstall(key, id)
        })
    }
    fn feature_get(&self, id: &str) -> Result<Option<Value>, Error> {
        guard("feature_get", || self.inner.feature_get(id))
    }
    fn feature_set(&mut self, id: &str, value: Option<&Value>) -> Result<(), Error> {
        guard("feature_set", || self.inner.feature_set(id, value))
    }
    fn notify(
        &mut self,
        key: &str,
        topic: &str,
        subject: Option<&str>,
        data: Option<&Value>,
    ) -> Result<(), Error> {
        guard("notify", || self.inner.notify(key, topic, subject, data))
    }
}
