//! The profile's privacy: its folder `0700`, the journal `0600`, and a warning naming what
//! other users can reach with the command that fixes it.

use crate::Error;
use std::path::Path;

/// Creates a profile folder (and missing parents) with mode `0700`; warns when it exists
/// with a looser one.
pub fn create_private_dir(dir: &Path) -> Result<(), Error> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
        .map_err(Error::io("cannot create the profile folder", dir))?;
    warn_if_loose(dir);
    Ok(())
}

/// When other users can reach `path`: a sentence naming it and the command that fixes it.
pub fn looseness(path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).ok()?;
        let mode = meta.permissions().mode() & 0o777;
        let want = if meta.is_dir() { "700" } else { "600" };
        (mode & 0o077 != 0).then(|| {
            format!(
                "{} has mode {mode:03o}: other users can reach it; run `chmod {want} {}`",
                path.display(),
                path.display()
            )
        })
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

pub(super) fn warn_if_loose(path: &Path) {
    if let Some(w) = looseness(path) {
        tracing::warn!("{w}");
    }
}
