//! The host: what the application provides to flights (docs/flight-spec.md).
//!
//! Every mutating call takes a `key` that names the effect (`<studyname>.<effect id>`), and is
//! idempotent per key: the engine calls it again after a crash that came between the intent and
//! the done record, and an undo may be repeated the same way. That is what makes "exactly once"
//! hold across crashes without the host having to be transactional.
//!
//! Prompts are not here: they live in the message center, inside the journal, so that creating
//! or withdrawing one is atomic with the flight's own state.

use crate::Error;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

pub trait Host {
    /// Whether an add-on with this id is installed (by anyone).
    fn addon_present(&self, id: &str) -> Result<bool, Error>;
    /// Installs the package at `package` as add-on `id`. Whatever was installed under that id
    /// before is kept aside, so that [`Host::addon_undo_install`] can put it back.
    fn addon_install(
        &mut self,
        key: &str,
        id: &str,
        package: &Path,
        sha256: &str,
    ) -> Result<(), Error>;
    /// Reverses [`Host::addon_install`] with the same key: removes what it installed and puts
    /// back what was there before. Does nothing if the install never started.
    fn addon_undo_install(&mut self, key: &str, id: &str) -> Result<(), Error>;
    /// Hands what `from` kept aside for add-on `id` over to `to`, a later install or uninstall
    /// of the same add-on that stays in effect while `from` is undone: `to`'s undo then puts
    /// back what was there before `from`. Idempotent.
    fn addon_handover(&mut self, from: &str, to: &str, id: &str) -> Result<(), Error>;
    /// Uninstalls add-on `id`, keeping it aside for [`Host::addon_undo_uninstall`].
    fn addon_uninstall(&mut self, key: &str, id: &str) -> Result<(), Error>;
    fn addon_undo_uninstall(&mut self, key: &str, id: &str) -> Result<(), Error>;
    /// A feature's current value (`None`: not set).
    fn feature_get(&self, id: &str) -> Result<Option<Value>, Error>;
    /// Sets a feature's value, or removes it (`None`).
    fn feature_set(&mut self, id: &str, value: Option<&Value>) -> Result<(), Error>;
    /// Delivers a notification to the application, once per key.
    fn notify(
        &mut self,
        key: &str,
        topic: &str,
        subject: Option<&str>,
        data: Option<&Value>,
    ) -> Result<(), Error>;
}

/// A host that keeps everything in memory, with the same undo rules as the reference host:
/// for simulations with many clients, and for applications that embed the pilot and mirror
/// its state themselves.
#[derive(Debug, Clone, Default)]
pub struct MemoryHost {
    /// Installed add-ons: id → (owner key, sha256).
    pub addons: BTreeMap<String, (String, String)>,
    pub features: BTreeMap<String, Value>,
    /// Delivered notifications: (key, topic, subject, data).
    pub notifications: Vec<(String, String, Option<String>, Option<Value>)>,
    /// What each key kept aside: `Some(entry)` for an add-on that was there, `None` for none.
    backups: BTreeMap<String, Option<(String, String)>>,
}

impl Host for MemoryHost {
    fn addon_present(&self, id: &str) -> Result<bool, Error> {
        Ok(self.addons.contains_key(id))
    }

    fn addon_install(
        &mut self,
        key: &str,
        id: &str,
        _package: &Path,
        sha256: &str,
    ) -> Result<(), Error> {
        if self.addons.get(id).is_some_and(|(owner, _)| owner == key) {
            return Ok(());
        }
        if !self.backups.contains_key(key) {
            let before = self.addons.get(id).cloned();
            self.backups.insert(key.to_string(), before);
        }
        self.addons
            .insert(id.to_string(), (key.to_string(), sha256.to_string()));
        Ok(())
    }

    fn addon_undo_install(&mut self, key: &str, id: &str) -> Result<(), Error> {
        if let Some(before) = self.backups.remove(key) {
            match before {
                Some(entry) => self.addons.insert(id.to_string(), entry),
                None => self.addons.remove(id),
            };
        }
        Ok(())
    }

    fn addon_handover(&mut self, from: &str, to: &str, _id: &str) -> Result<(), Error> {
        if let Some(before) = self.backups.remove(from) {
            self.backups.insert(to.to_string(), before);
        }
        Ok(())
    }

    fn addon_uninstall(&mut self, key: &str, id: &str) -> Result<(), Error> {
        if !self.backups.contains_key(key) {
            let before = self.addons.get(id).cloned();
            self.backups.insert(key.to_string(), before);
        }
        self.addons.remove(id);
        Ok(())
    }

    fn addon_undo_uninstall(&mut self, key: &str, id: &str) -> Result<(), Error> {
        self.addon_undo_install(key, id)
    }

    fn feature_get(&self, id: &str) -> Result<Option<Value>, Error> {
        Ok(self.features.get(id).cloned())
    }

    fn feature_set(&mut self, id: &str, value: Option<&Value>) -> Result<(), Error> {
        match value {
            Some(v) => self.features.insert(id.to_string(), v.clone()),
            None => self.features.remove(id),
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
        if !self.notifications.iter().any(|n| n.0 == key) {
            self.notifications.push((
                key.to_string(),
                topic.to_string(),
                subject.map(str::to_string),
                data.cloned(),
            ));
        }
        Ok(())
    }
}
