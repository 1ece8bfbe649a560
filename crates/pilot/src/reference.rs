//! The reference host, used by the standalone agent. Everything lives in the profile:
//!
//! - add-ons under `<profile>/addons/<id>/`, and nothing else there: the host's own records
//!   live apart in `<profile>/addon-host/`, so that no add-on id can name them (ids
//!   `registry.json` or `.backup` once overwrote them). There, `registry.json` says who
//!   installed each add-on, `backup/<key>/` keeps what an install replaced or an uninstall
//!   removed until the flight's undo puts it back, and `staging/<key>/` holds a package being
//!   unpacked;
//! - features in `<profile>/features.json` (an object of id → value);
//! - notifications appended to `<profile>/notifications.jsonl`, one JSON object a line with
//!   its `id`, for the application to read.
//!
//! Each step that changes a file is a fault point, and every operation is idempotent per key,
//! so the crash tests can stop it anywhere.

use crate::host::Host;
use crate::package;
use crate::{Error, Faults};
use serde_json::{json, Map, Value};
use std::fs;
use std::path::{Path, PathBuf};

pub struct ReferenceHost {
    profile: PathBuf,
    faults: Faults,
}

/// What `.backup/<key>/entry.json` records: the registry entry of what was there before
/// (`null`: nothing was).
const ENTRY: &str = "entry.json";
const CONTENT: &str = "content";

impl ReferenceHost {
    pub fn new(profile: &Path, faults: Faults) -> ReferenceHost {
        ReferenceHost {
            profile: profile.to_path_buf(),
            faults,
        }
    }

    pub fn addons_dir(&self) -> PathBuf {
        self.profile.join("addons")
    }
    /// The host's own records about add-ons, apart from the add-on folders.
    fn records_dir(&self) -> PathBuf {
        self.profile.join("addon-host")
    }
    fn registry_path(&self) -> PathBuf {
        self.records_dir().join("registry.json")
    }
    fn staging_dir(&self, key: &str) -> PathBuf {
        self.records_dir().join("staging").join(key)
    }
    fn features_path(&self) -> PathBuf {
        self.profile.join("features.json")
    }
    pub fn notifications_path(&self) -> PathBuf {
        self.profile.join("notifications.jsonl")
    }
    fn backup_dir(&self, key: &str) -> PathBuf {
        self.records_dir().join("backup").join(key)
    }
    fn addon_dir(&self, id: &str) -> PathBuf {
        self.addons_dir().join(id)
    }

    /// The installed add-ons: id → `{owner, sha256, ...}`.
    pub fn registry(&self) -> Result<Map<String, Value>, Error> {
        self.migrate()?;
        read_object(&self.registry_path())
    }

    fn write_registry(&self, reg: &Map<String, Value>) -> Result<(), Error> {
        self.faults.point("registry.json")?;
        if reg.is_empty() {
            remove_file(&self.registry_path())?;
            self.remove_empty_dirs();
            return Ok(());
        }
        write_atomic(&self.registry_path(), &Value::Object(reg.clone()))
    }

    /// The features: id → value.
    pub fn features(&self) -> Result<Map<String, Value>, Error> {
        read_object(&self.features_path())
    }

    /// Moves what is installed under `id` aside into the key's backup (once).
    fn keep_aside(&self, key: &str, id: &str) -> Result<(), Error> {
        let backup = self.backup_dir(key);
        if !backup.join(ENTRY).exists() {
            self.faults.point("backup entry")?;
            fs::create_dir_all(&backup).map_err(Error::io("cannot create", &backup))?;
            let reg = self.registry()?;
            let before = if self.addon_dir(id).exists() {
                reg.get(id).cloned().unwrap_or(json!({"owner": null}))
            } else {
                Value::Null
            };
            write_atomic(&backup.join(ENTRY), &before)?;
        }
        let before = read_json(&backup.join(ENTRY))?;
        if !before.is_null() && !backup.join(CONTENT).exists() && self.addon_dir(id).exists() {
            self.faults.point("backup move")?;
            rename(&self.addon_dir(id), &backup.join(CONTENT))?;
        }
        Ok(())
    }

    /// Puts back what [`ReferenceHost::keep_aside`] kept, and forgets the backup.
    fn put_back(&self, key: &str, id: &str) -> Result<(), Error> {
        let backup = self.backup_dir(key);
        if !backup.exists() {
            return Ok(());
        }
        let before = if backup.join(ENTRY).exists() {
            read_json(&backup.join(ENTRY))?
        } else {
            Value::Null
        };
        if backup.join(CONTENT).exists() {
            if self.addon_dir(id).exists() {
                // Left by an earlier step that handed its backup over to this one.
                self.faults.point("restore clear")?;
                fs::remove_dir_all(self.addon_dir(id))
                    .map_err(Error::io("cannot remove", self.addon_dir(id)))?;
            }
            self.faults.point("restore move")?;
            rename(&backup.join(CONTENT), &self.addon_dir(id))?;
        }
        if !before.is_null() {
            let mut reg = self.registry()?;
            if before.get("owner").is_some_and(|o| !o.is_null()) && reg.get(id) != Some(&before) {
                reg.insert(id.to_string(), before);
                self.write_registry(&reg)?;
            }
        }
        self.faults.point("backup remove")?;
        fs::remove_dir_all(&backup).map_err(Error::io("cannot remove", &backup))?;
        self.remove_empty_dirs();
        Ok(())
    }

    /// Removes the folders that nothing is left in, so that a profile whose flights are all
    /// undone looks as it did before.
    fn remove_empty_dirs(&self) {
        let records = self.records_dir();
        remove_empty_dir(&records.join("backup"));
        remove_empty_dir(&records.join("staging"));
        remove_empty_dir(&records);
        remove_empty_dir(&self.addons_dir());
    }

    /// Moves the records of a profile from before they lived apart: `addons/registry.json`,
    /// `addons/.backup/<key>/` and `addons/.tmp-<key>/`. Add-ons are folders and ids may not
    /// start with a dot ([`addon_id_problem`]), so these names can only be such records. Each
    /// move is a rename, and a repeated call finds nothing left to move, so a crash half-way
    /// is harmless.
    fn migrate(&self) -> Result<(), Error> {
        let old = self.addons_dir();
        let (old_registry, old_backups) = (old.join("registry.json"), old.join(".backup"));
        // The old registry goes last, so while either is there the migration is not done.
        if !old_registry.is_file() && !old_backups.is_dir() {
            return Ok(());
        }
        // A half-unpacked package: the install that left it unpacks again on retry.
        for entry in fs::read_dir(&old).map_err(Error::io("cannot read", &old))? {
            let entry = entry.map_err(Error::io("cannot read", &old))?;
            if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                let path = entry.path();
                fs::remove_dir_all(&path).map_err(Error::io("cannot remove", &path))?;
            }
        }
        if old_backups.is_dir() {
            let listing =
                fs::read_dir(&old_backups).map_err(Error::io("cannot read", &old_backups))?;
            for entry in listing {
                let entry = entry.map_err(Error::io("cannot read", &old_backups))?;
                let key = entry.file_name().to_string_lossy().into_owned();
                if !self.backup_dir(&key).exists() {
                    rename(&entry.path(), &self.backup_dir(&key))?;
                }
            }
            fs::remove_dir(&old_backups).map_err(Error::io("cannot remove", &old_backups))?;
        }
        if old_registry.is_file() {
            if self.registry_path().exists() {
                // Written by an older pilot after a newer one moved the records: the newer
                // records stand, the old file is kept beside them for a person to look at.
                rename(&old_registry, &self.records_dir().join("registry.old.json"))?;
            } else {
                rename(&old_registry, &self.registry_path())?;
            }
        }
        Ok(())
    }

    /// Whether the key's backup still has to be put back: it records what was there (nothing,
    /// or content not yet moved back). After a put-back that stopped half-way (content back in
    /// place, backup folder not yet removed) this is false, so the restored add-on stays.
    fn restore_pending(&self, key: &str) -> Result<bool, Error> {
        let backup = self.backup_dir(key);
        if !backup.join(ENTRY).exists() {
            return Ok(false);
        }
        Ok(read_json(&backup.join(ENTRY))?.is_null() || backup.join(CONTENT).exists())
    }

    fn owner_is(&self, id: &str, key: &str) -> Result<bool, Error> {
        Ok(self
            .registry()?
            .get(id)
            .and_then(|e| e.get("owner"))
            .and_then(Value::as_str)
            == Some(key))
    }
}

/// Why `id` cannot name a folder under `<profile>/addons/`, if it cannot: a second line of
/// defence behind flight validation, so that no id reaches outside its own folder, hides as
/// a dot-file, or breaks a file name.
// Deliberately looser than validation's `testpilot_flight::spec::addon_id_problem` (the policy
// every published flight passes: a safe character set, no reserved or device names): this
// host keeps its records outside `addons/`, so here only what could escape its folder,
// hide as a dot-file or break a file name is refused. Every id validation accepts passes.
fn addon_id_problem(id: &str) -> Option<&'static str> {
    if id.is_empty() {
        Some("it is empty")
    } else if id.len() > 200 {
        Some("it is longer than 200 bytes")
    } else if id.starts_with('.') {
        Some("it starts with a dot")
    } else if id
        .chars()
        .any(|c| matches!(c, '/' | '\\' | ':') || c.is_control())
    {
        Some("it holds a slash, a backslash, a colon or a control character")
    } else {
        None
    }
}

/// Refuses an add-on id that cannot be a folder name under `addons/`.
fn check_id(id: &str) -> Result<(), Error> {
    match addon_id_problem(id) {
        Some(why) => Err(Error::Package(format!(
            "the add-on id {id:?} cannot be used: {why}; nothing was changed"
        ))),
        None => Ok(()),
    }
}

impl Host for ReferenceHost {
    fn addon_present(&self, id: &str) -> Result<bool, Error> {
        if addon_id_problem(id).is_some() {
            // Nothing can be installed under it; installing it says why.
            return Ok(false);
        }
        self.migrate()?;
        Ok(self.addon_dir(id).exists())
    }

    fn addon_install(
        &mut self,
        key: &str,
        id: &str,
        pkg: &Path,
        sha256: &str,
    ) -> Result<(), Error> {
        check_id(id)?;
        self.migrate()?;
        let target = self.addon_dir(id);
        if self.owner_is(id, key)? && target.exists() {
            return Ok(());
        }
        self.keep_aside(key, id)?;
        // The registry names the owner before the files land, so that a half-done install is
        // recognisably ours on retry and on undo.
        let mut reg = self.registry()?;
        if !self.owner_is(id, key)? {
            reg.insert(id.to_string(), json!({"owner": key, "sha256": sha256}));
            self.write_registry(&reg)?;
        }
        let tmp = self.staging_dir(key);
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(Error::io("cannot remove", &tmp))?;
        }
        let file_name = pkg
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.faults.point("unpack")?;
        if let Err(e) = package::unpack(pkg, &tmp, &file_name) {
            // Leave the machine as it was: forget the registry claim, put back what was there.
            self.addon_undo_install(key, id)?;
            return Err(e);
        }
        if target.exists() {
            // Ours, from an install that stopped half-way.
            self.faults.point("remove partial")?;
            fs::remove_dir_all(&target).map_err(Error::io("cannot remove", &target))?;
        }
        self.faults.point("install move")?;
        rename(&tmp, &target)
    }

    fn addon_undo_install(&mut self, key: &str, id: &str) -> Result<(), Error> {
        if addon_id_problem(id).is_some() {
            // Its install was refused before it changed anything.
            return Ok(());
        }
        self.migrate()?;
        let tmp = self.staging_dir(key);
        if tmp.exists() {
            self.faults.point("remove tmp")?;
            fs::remove_dir_all(&tmp).map_err(Error::io("cannot remove", &tmp))?;
        }
        // When this install began (its backup exists) and nothing later is in effect on the
        // add-on (the engine hands over otherwise), what is installed now is this install's, or
        // left by an earlier one that handed its backup over: it goes.
        if self.owner_is(id, key)? || self.restore_pending(key)? {
            let target = self.addon_dir(id);
            if target.exists() {
                self.faults.point("uninstall ours")?;
                fs::remove_dir_all(&target).map_err(Error::io("cannot remove", &target))?;
            }
            let mut reg = self.registry()?;
            if reg.remove(id).is_some() {
                self.write_registry(&reg)?;
            }
        }
        self.put_back(key, id)
    }

    fn addon_handover(&mut self, from: &str, to: &str, _id: &str) -> Result<(), Error> {
        self.migrate()?;
        let src = self.backup_dir(from);
        if !src.exists() {
            return Ok(());
        }
        let dst = self.backup_dir(to);
        if dst.exists() {
            self.faults.point("handover remove")?;
            fs::remove_dir_all(&dst).map_err(Error::io("cannot remove", &dst))?;
        }
        self.faults.point("handover move")?;
        rename(&src, &dst)
    }

    fn addon_uninstall(&mut self, key: &str, id: &str) -> Result<(), Error> {
        check_id(id)?;
        self.migrate()?;
        self.keep_aside(key, id)?;
        let mut reg = self.registry()?;
        if reg.remove(id).is_some() && !self.addon_dir(id).exists() {
            self.write_registry(&reg)?;
        }
        Ok(())
    }

    fn addon_undo_uninstall(&mut self, key: &str, id: &str) -> Result<(), Error> {
        if addon_id_problem(id).is_some() {
            // Its uninstall was refused before it changed anything.
            return Ok(());
        }
        self.migrate()?;
        self.put_back(key, id)
    }

    fn feature_get(&self, id: &str) -> Result<Option<Value>, Error> {
        Ok(self.features()?.get(id).cloned())
    }

    fn feature_set(&mut self, id: &str, value: Option<&Value>) -> Result<(), Error> {
        let mut f = self.features()?;
        let changed = match value {
            Some(v) => f.insert(id.to_string(), v.clone()).as_ref() != Some(v),
            None => f.remove(id).is_some(),
        };
        if !changed {
            return Ok(());
        }
        self.faults.point("features.json")?;
        if f.is_empty() {
            remove_file(&self.features_path())
        } else {
            write_atomic(&self.features_path(), &Value::Object(f))
        }
    }

    fn notify(
        &mut self,
        key: &str,
        topic: &str,
        subject: Option<&str>,
        data: Option<&Value>,
    ) -> Result<(), Error> {
        let path = self.notifications_path();
        let existing = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::io("cannot read", &path)(e)),
        };
        let already = existing
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|v| v.get("id").and_then(Value::as_str) == Some(key));
        if already {
            return Ok(());
        }
        self.faults.point("notify")?;
        let line = json!({"id": key, "topic": topic, "subject": subject, "data": data});
        use std::io::Write;
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(Error::io("cannot open", &path))?;
        // One write of a whole line, so a reader never sees half of one.
        let mut text = line.to_string();
        text.push('\n');
        f.write_all(text.as_bytes())
            .map_err(Error::io("cannot write", &path))?;
        f.sync_data().map_err(Error::io("cannot write", &path))
    }
}

fn read_json(path: &Path) -> Result<Value, Error> {
    match fs::read_to_string(path) {
        Ok(t) => serde_json::from_str(&t)
            .map_err(|e| Error::Package(format!("{} is not valid JSON: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Value::Null),
        Err(e) => Err(Error::io("cannot read", path)(e)),
    }
}

fn read_object(path: &Path) -> Result<Map<String, Value>, Error> {
    match read_json(path)? {
        Value::Null => Ok(Map::new()),
        Value::Object(m) => Ok(m),
        _ => Err(Error::Package(format!(
            "{} should hold a JSON object",
            path.display()
        ))),
    }
}

/// Writes a file so that readers see the old or the new content, never half of one.
pub(crate) fn write_atomic(path: &Path, v: &Value) -> Result<(), Error> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(Error::io("cannot create", parent))?;
    }
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    {
        use std::io::Write;
        let mut f = fs::File::create(&tmp).map_err(Error::io("cannot write", &tmp))?;
        f.write_all(text.as_bytes())
            .map_err(Error::io("cannot write", &tmp))?;
        f.sync_all().map_err(Error::io("cannot write", &tmp))?;
    }
    rename(&tmp, path)
}

fn rename(from: &Path, to: &Path) -> Result<(), Error> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).map_err(Error::io("cannot create", parent))?;
    }
    fs::rename(from, to).map_err(Error::io("cannot move into place", to))
}

fn remove_file(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("cannot remove", path)(e)),
    }
}

fn remove_empty_dir(path: &Path) {
    let _ = fs::remove_dir(path);
}
