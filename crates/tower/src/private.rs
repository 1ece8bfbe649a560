//! Private files: the tower's data directory is `0700` and every file in it `0600`, because
//! it holds the database (tokens, and by default the index signing key) and `local-token`.
//!
//! What the tower creates, it creates private from the first byte (no window in which another
//! local user can open it). What already exists with looser permissions is not changed behind
//! the operator's back: it is named in a warning with the command that fixes it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

/// Creates `dir` (and missing parents) with mode `0700`, and warns when it already exists
/// with a looser mode.
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)?;
    warn_if_loose(dir);
    Ok(())
}

/// Creates `path` empty with mode `0600` unless it exists (then warns when it is looser).
pub fn touch(path: &Path) -> std::io::Result<()> {
    match options().create_new(true).write(true).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            warn_if_loose(path);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Writes `text` to a new file `path` created with mode `0600` (it never exists with a looser
/// mode, not even for an instant), replacing an older file atomically.
pub fn write_new(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f: File = options().create_new(true).write(true).open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn options() -> OpenOptions {
    let mut o = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o
}

/// When `path` (a directory or a file) can be read or written by other users: a sentence
/// naming it, its mode, and the command that fixes it.
pub fn looseness(path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).ok()?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 == 0 {
            return None;
        }
        let want = if meta.is_dir() { "700" } else { "600" };
        let who = if mode & 0o007 != 0 {
            "every local user"
        } else {
            "its group"
        };
        Some(format!(
            "{} has mode {mode:03o}: {who} can reach it; run `chmod {want} {}`",
            path.display(),
            path.display()
        ))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Logs [`looseness`] as a warning.
pub fn warn_if_loose(path: &Path) {
    if let Some(w) = looseness(path) {
        tracing::warn!("{w}");
    }
}

/// The SQLite file a `sqlite://PATH[?…]` URL names, if it is a file.
pub fn sqlite_path(url: &str) -> Option<&Path> {
    let rest = url
        .strip_prefix("sqlite://")
        .or(url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or("");
    (!path.is_empty() && path != ":memory:").then(|| Path::new(path))
}

/// Before SQLite opens a database file: creates it `0600` if it does not exist, so that the
/// file and the `-wal` and `-shm` files SQLite makes next to it (SQLite gives them the
/// database file's mode) are private. Warns about an existing file, or its `-wal`/`-shm`,
/// that is looser, and about a looser directory.
pub fn prepare_sqlite(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            create_dir(dir)?;
        } else {
            warn_if_loose(dir);
        }
    }
    touch(path)?;
    for suffix in ["-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        warn_if_loose(Path::new(&p));
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn creates_private_and_names_looser() {
        let base = crate::testing::temp_dir("testpilot-private");
        let dir = base.join("data");
        create_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let file = dir.join("tower.db");
        touch(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        assert_eq!(looseness(&file), None);
        write_new(&dir.join("local-token"), "x\n").unwrap();
        assert_eq!(mode(&dir.join("local-token")), 0o600);

        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let w = looseness(&file).unwrap();
        assert!(
            w.contains("mode 644") && w.contains(&format!("chmod 600 {}", file.display())),
            "{w}"
        );
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        let w = looseness(&dir).unwrap();
        assert!(
            w.contains("its group") && w.contains(&format!("chmod 700 {}", dir.display())),
            "{w}"
        );
        // An existing file is not changed, only named.
        touch(&file).unwrap();
        assert_eq!(mode(&file), 0o644);
        let _ = std::fs::remove_dir_all(base);
    }

    #[test]
    fn sqlite_urls() {
        assert_eq!(
            sqlite_path("sqlite:///tmp/x/tower.db?mode=rwc"),
            Some(Path::new("/tmp/x/tower.db"))
        );
        assert_eq!(sqlite_path("sqlite://rel.db"), Some(Path::new("rel.db")));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://x"), None);
    }
}
