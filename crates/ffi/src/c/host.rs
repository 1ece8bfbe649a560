//! The application's host as C callbacks (docs/embedding.md, "Host callbacks"): a
//! `testpilot_pilot::Host` that calls the functions of a [`TpHost`].

use super::boundary::Failure;
use serde_json::Value;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CString};
use std::path::Path;
use std::sync::{Arc, Mutex};
use testpilot_pilot::{Error, Host};

/// A callback that takes the host's `user_data` and NUL-terminated UTF-8 arguments and returns
/// 0 on success, anything else on failure (the flight's step then fails and is undone).
pub type TpHostAddonFn = Option<
    unsafe extern "C" fn(user_data: *mut c_void, key: *const c_char, id: *const c_char) -> c_int,
>;

/// The application's side of the pilot, as callbacks. Every callback is called on the agent's
/// thread (or, for `tp_pilot_optout` before `tp_pilot_start`, on the caller's), one at a time,
/// with `user_data` as given. Strings passed in are valid only during the call.
///
/// Return 0 on success and anything else on failure: the step of the flight that called it
/// fails, the flight ends and what it did is undone. A callback that blocks holds the agent:
/// `tp_pilot_stop` gives up after its timeout with `TP_ERR_HOST`.
///
/// The add-on callbacks come all together or not at all: with all of them NULL the
/// application takes no add-ons, and a flight that installs or uninstalls one fails with a
/// message that says so.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TpHost {
    /// Handed back to every callback as is.
    pub user_data: *mut c_void,
    /// Sets feature `id` to `value_json` (a JSON object), or removes it when `value_json` is
    /// NULL (undo of a feature that had no value before). Required.
    pub feature_set: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            id: *const c_char,
            value_json: *const c_char,
        ) -> c_int,
    >,
    /// Delivers a notification to the application; called once per `key`. `subject` and
    /// `data_json` may be NULL. NULL: notifications are dropped (and count as delivered).
    pub notify: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            key: *const c_char,
            topic: *const c_char,
            subject: *const c_char,
            data_json: *const c_char,
        ) -> c_int,
    >,
    /// Sets `*present` to 1 when add-on `id` is installed (by anyone), else 0.
    pub addon_present: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            id: *const c_char,
            present: *mut c_int,
        ) -> c_int,
    >,
    /// Installs the package file at `package_path` (its SHA-256 checked already) as add-on
    /// `id`, keeping what was installed under that id aside for `addon_undo_install` with the
    /// same `key`.
    pub addon_install: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            key: *const c_char,
            id: *const c_char,
            package_path: *const c_char,
            sha256: *const c_char,
        ) -> c_int,
    >,
    /// Reverses `addon_install` with the same key: removes what it installed and puts back
    /// what was there before. Does nothing when the install never happened.
    pub addon_undo_install: TpHostAddonFn,
    /// Uninstalls add-on `id`, keeping it aside for `addon_undo_uninstall` with the same key.
    pub addon_uninstall: TpHostAddonFn,
    /// Puts back what `addon_uninstall` with the same key removed.
    pub addon_undo_uninstall: TpHostAddonFn,
    /// Hands what key `from` kept aside for add-on `id` over to key `to` (a later change of
    /// the same add-on that stays while `from` is undone).
    pub addon_handover: Option<
        unsafe extern "C" fn(
            user_data: *mut c_void,
            from: *const c_char,
            to: *const c_char,
            id: *const c_char,
        ) -> c_int,
    >,
}

/// The [`TpHost`] a pilot calls, with the feature values it set, so that a flight learns the
/// value a feature had before it (as `MemoryHost` keeps them).
pub struct CHost {
    host: TpHost,
    features: Arc<Mutex<HashMap<String, Value>>>,
}

// SAFETY: the application hands its callbacks and `user_data` to the pilot, which calls them
// from the agent's thread, one at a time; docs/embedding.md tells the application so.
unsafe impl Send for CHost {}

impl CHost {
    /// Checks the callbacks: `feature_set` is required; add-on callbacks all or none.
    pub fn new(host: &TpHost) -> Result<CHost, Failure> {
        if host.feature_set.is_none() {
            return Err(Failure::invalid(
                "host.feature_set is NULL: the pilot needs it to set and undo features",
            ));
        }
        let addons = [
            ("addon_present", host.addon_present.is_some()),
            ("addon_install", host.addon_install.is_some()),
            ("addon_undo_install", host.addon_undo_install.is_some()),
            ("addon_uninstall", host.addon_uninstall.is_some()),
            ("addon_undo_uninstall", host.addon_undo_uninstall.is_some()),
            ("addon_handover", host.addon_handover.is_some()),
        ];
        let given: Vec<&str> = addons.iter().filter(|a| a.1).map(|a| a.0).collect();
        if !given.is_empty() && given.len() < addons.len() {
            let missing: Vec<&str> = addons.iter().filter(|a| !a.1).map(|a| a.0).collect();
            return Err(Failure::invalid(format!(
                "host: the add-on callbacks come all together or not at all; {} given, {} NULL",
                given.join(", "),
                missing.join(", ")
            )));
        }
        Ok(CHost {
            host: *host,
            features: Arc::default(),
        })
    }

    /// The feature values the host holds, shared (the opener seeds them with the values
    /// flights left in effect).
    pub fn features(&self) -> Arc<Mutex<HashMap<String, Value>>> {
        self.features.clone()
    }

    fn no_addons(&self, what: &str, id: &str) -> Error {
        Error::Host(format!(
            "cannot {what} add-on `{id}`: this application takes no add-ons (its host gives no add-on callbacks)"
        ))
    }
}

/// A C string of `s` (a NUL in it, which no journaled name holds, is refused).
fn cstr(what: &str, s: &str) -> Result<CString, Error> {
    CString::new(s).map_err(|_| Error::Host(format!("the {what} holds a NUL byte: {s:?}")))
}

fn opt_ptr(s: &Option<CString>) -> *const c_char {
    s.as_ref().map_or(std::ptr::null(), |c| c.as_ptr())
}

/// The callback's answer as a result.
fn checked(rc: c_int, what: &str) -> Result<(), Error> {
    if rc == 0 {
        Ok(())
    } else {
        Err(Error::Host(format!(
            "the application's {what} callback failed (returned {rc})"
        )))
    }
}

impl Host for CHost {
    fn addon_present(&self, id: &str) -> Result<bool, Error> {
        let Some(f) = self.host.addon_present else {
            return Ok(false);
        };
        let c_id = cstr("add-on id", id)?;
        let mut present: c_int = 0;
        // SAFETY: the application's callback, with its user_data and live arguments.
        let rc = unsafe { f(self.host.user_data, c_id.as_ptr(), &mut present) };
        checked(rc, &format!("addon_present(`{id}`)"))?;
        Ok(present != 0)
    }

    fn addon_install(
        &mut self,
        key: &str,
        id: &str,
        package: &Path,
        sha256: &str,
    ) -> Result<(), Error> {
        let Some(f) = self.host.addon_install else {
            return Err(self.no_addons("install", id));
        };
        let path = package
            .to_str()
            .ok_or_else(|| Error::Host(format!("the package path {package:?} is not UTF-8")))?;
        let (k, i, p, s) = (
            cstr("key", key)?,
            cstr("add-on id", id)?,
            cstr("package path", path)?,
            cstr("sha256", sha256)?,
        );
        // SAFETY: as above.
        let rc = unsafe {
            f(
                self.host.user_data,
                k.as_ptr(),
                i.as_ptr(),
                p.as_ptr(),
                s.as_ptr(),
            )
        };
        checked(rc, &format!("addon_install(`{id}`)"))
    }

    fn addon_undo_install(&mut self, key: &str, id: &str) -> Result<(), Error> {
        // Without add-on callbacks nothing was installed: there is nothing to undo.
        let Some(f) = self.host.addon_undo_install else {
            return Ok(());
        };
        call_addon(f, self.host.user_data, key, id, "addon_undo_install")
    }

    fn addon_handover(&mut self, from: &str, to: &str, id: &str) -> Result<(), Error> {
        let Some(f) = self.host.addon_handover else {
            return Ok(());
        };
        let (a, b, i) = (cstr("key", from)?, cstr("key", to)?, cstr("add-on id", id)?);
        // SAFETY: as above.
        let rc = unsafe { f(self.host.user_data, a.as_ptr(), b.as_ptr(), i.as_ptr()) };
        checked(rc, &format!("addon_handover(`{id}`)"))
    }

    fn addon_uninstall(&mut self, key: &str, id: &str) -> Result<(), Error> {
        let f = self
            .host
            .addon_uninstall
            .ok_or_else(|| self.no_addons("uninstall", id))?;
        call_addon(f, self.host.user_data, key, id, "addon_uninstall")
    }

    fn addon_undo_uninstall(&mut self, key: &str, id: &str) -> Result<(), Error> {
        let Some(f) = self.host.addon_undo_uninstall else {
            return Ok(());
        };
        call_addon(f, self.host.user_data, key, id, "addon_undo_uninstall")
    }

    fn feature_get(&self, id: &str) -> Result<Option<Value>, Error> {
        Ok(self
            .features
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned())
    }

    fn feature_set(&mut self, id: &str, value: Option<&Value>) -> Result<(), Error> {
        let Some(f) = self.host.feature_set else {
            return Err(Error::Host("host.feature_set is NULL".into()));
        };
        let c_id = cstr("feature id", id)?;
        let json = value
            .map(|v| cstr("feature value", &v.to_string()))
            .transpose()?;
        // SAFETY: as above.
        let rc = unsafe { f(self.host.user_data, c_id.as_ptr(), opt_ptr(&json)) };
        checked(rc, &format!("feature_set(`{id}`)"))?;
        let mut held = self.features.lock().unwrap_or_else(|e| e.into_inner());
        match value {
            Some(v) => held.insert(id.to_string(), v.clone()),
            None => held.remove(id),
        };
        Ok(())
    }

    fn notify(
        &mut self,
        key: &str,
        topic: &str,
        subject: Option<&str>,
        data: Option<&Value>,
    ) -> Result<(), Error> {
        let Some(f) = self.host.notify else {
            return Ok(());
        };
        let (k, t) = (cstr("key", key)?, cstr("topic", topic)?);
        let s = subject.map(|s| cstr("subject", s)).transpose()?;
        let d = data.map(|d| cstr("data", &d.to_string())).transpose()?;
        // SAFETY: as above.
        let rc = unsafe {
            f(
                self.host.user_data,
                k.as_ptr(),
                t.as_ptr(),
                opt_ptr(&s),
                opt_ptr(&d),
            )
        };
        checked(rc, &format!("notify(`{topic}`)"))
    }
}

fn call_addon(
    f: unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char) -> c_int,
    user_data: *mut c_void,
    key: &str,
    id: &str,
    what: &str,
) -> Result<(), Error> {
    let (k, i) = (cstr("key", key)?, cstr("add-on id", id)?);
    // SAFETY: the application's callback, with its user_data and live arguments.
    let rc = unsafe { f(user_data, k.as_ptr(), i.as_ptr()) };
    checked(rc, &format!("{what}(`{id}`)"))
}
