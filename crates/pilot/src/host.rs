//! The host: what the application provides to flights (DESIGN §7).
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
