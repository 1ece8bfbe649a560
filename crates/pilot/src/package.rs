//! Add-on packages: checking and unpacking `.zip` and `.tar.gz` archives (any other file is
//! installed as it is). Nothing may land outside the target folder: entries with `..`, absolute
//! paths, and links of any kind are refused before anything is kept.

use crate::Error;
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// Most bytes a package may unpack to: a guard against archive bombs.
const MAX_UNPACKED: u64 = 1 << 30;

/// The lowercase hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> Result<String, Error> {
    let mut f = fs::File::open(path).map_err(Error::io("cannot read the package", path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(Error::io("cannot read the package", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// A relative path inside the archive, checked: only plain names, no `..`, no root, no drive.
fn safe_relative(name: &str, package: &Path) -> Result<PathBuf, Error> {
    let escape = || {
        Error::Package(format!("the package {} has an entry `{name}` that would escape the add-on folder; nothing was installed", package.display()))
    };
    if name.starts_with('/') || name.starts_with('\\') || name.contains('\\') || name.contains('\0')
    {
        return Err(escape());
    }
    let mut out = PathBuf::new();
    for c in Path::new(name).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(escape())
            }
        }
    }
    Ok(out)
}

/// Unpacks `package` into the folder `dest` (which must not exist yet). On any error `dest` is
/// removed again, so a bad package leaves nothing behind.
pub fn unpack(package: &Path, dest: &Path, file_name: &str) -> Result<(), Error> {
    let r = unpack_inner(package, dest, file_name);
    if r.is_err() {
        let _ = fs::remove_dir_all(dest);
    }
    r
}

fn unpack_inner(package: &Path, dest: &Path, file_name: &str) -> Result<(), Error> {
    fs::create_dir_all(dest).map_err(Error::io("cannot create", dest))?;
    let mut magic = [0u8; 4];
    let n = fs::File::open(package)
        .and_then(|mut f| f.read(&mut magic))
        .map_err(Error::io("cannot read the package", package))?;
    if n >= 4 && (magic == *b"PK\x03\x04" || magic == *b"PK\x05\x06") {
        unzip(package, dest)
    } else if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        untar_gz(package, dest)
    } else {
        let name = safe_relative(file_name, package)?;
        let name = if name.as_os_str().is_empty() {
            PathBuf::from("package")
        } else {
            name
        };
        let target = dest.join(name.file_name().unwrap_or(name.as_os_str()));
        fs::copy(package, &target).map_err(Error::io("cannot copy the package to", &target))?;
        Ok(())
    }
}

fn unzip(package: &Path, dest: &Path) -> Result<(), Error> {
    let bad = |e: zip::result::ZipError| {
        Error::Package(format!(
            "the package {} is not a readable zip archive: {e}; nothing was installed",
            package.display()
        ))
    };
    let f = fs::File::open(package).map_err(Error::io("cannot read the package", package))?;
    let mut z = zip::ZipArchive::new(f).map_err(bad)?;
    // Check every entry before writing anything.
    let mut total = 0u64;
    for i in 0..z.len() {
        let e = z.by_index_raw(i).map_err(bad)?;
        safe_relative(e.name(), package)?;
        if e.is_symlink() || e.unix_mode().is_some_and(|m| m & 0o170000 == 0o120000) {
            return Err(Error::Package(format!("the package {} has a symbolic link `{}`; links are not allowed in add-on packages, nothing was installed", package.display(), e.name())));
        }
        total = total.saturating_add(e.size());
    }
    if total > MAX_UNPACKED {
        return Err(Error::Package(format!(
            "the package {} would unpack to {total} bytes, more than the limit of {MAX_UNPACKED}",
            package.display()
        )));
    }
    for i in 0..z.len() {
        let mut e = z.by_index(i).map_err(bad)?;
        let rel = safe_relative(e.name(), package)?;
        let target = dest.join(&rel);
        if e.is_dir() {
            fs::create_dir_all(&target).map_err(Error::io("cannot create", &target))?;
            continue;
        }
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(Error::io("cannot create", parent))?;
        }
        let mut out = fs::File::create(&target).map_err(Error::io("cannot write", &target))?;
        std::io::copy(&mut (&mut e).take(MAX_UNPACKED), &mut out)
            .map_err(Error::io("cannot unpack into", &target))?;
    }
    Ok(())
}

fn untar_gz(package: &Path, dest: &Path) -> Result<(), Error> {
    let bad = |e: std::io::Error| {
        Error::Package(format!(
            "the package {} is not a readable .tar.gz archive: {e}; nothing was installed",
            package.display()
        ))
    };
    let f = fs::File::open(package).map_err(Error::io("cannot read the package", package))?;
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut total = 0u64;
    for entry in ar.entries().map_err(bad)? {
        let mut e = entry.map_err(bad)?;
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let rel = safe_relative(&name, package)?;
        let kind = e.header().entry_type();
        let target = dest.join(&rel);
        if kind.is_dir() {
            fs::create_dir_all(&target).map_err(Error::io("cannot create", &target))?;
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            total = total.saturating_add(e.size());
            if total > MAX_UNPACKED {
                return Err(Error::Package(format!(
                    "the package {} unpacks to more than {MAX_UNPACKED} bytes",
                    package.display()
                )));
            }
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).map_err(Error::io("cannot create", parent))?;
            }
            let mut out = fs::File::create(&target).map_err(Error::io("cannot write", &target))?;
            std::io::copy(&mut e, &mut out).map_err(Error::io("cannot unpack into", &target))?;
        } else if kind.is_symlink() || kind.is_hard_link() {
            return Err(Error::Package(format!("the package {} has a link `{name}`; links are not allowed in add-on packages, nothing was installed", package.display())));
        } else if kind.is_pax_global_extensions()
            || kind.is_pax_local_extensions()
            || kind.is_gnu_longname()
            || kind.is_gnu_longlink()
        {
            continue;
        } else {
            return Err(Error::Package(format!("the package {} has an entry `{name}` of a kind that add-on packages may not contain ({kind:?}); nothing was installed", package.display())));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_names_are_safe() {
        let p = Path::new("pkg.zip");
        for ok in ["a", "a/b.txt", "./a/b", "dir/"] {
            assert!(safe_relative(ok, p).is_ok(), "{ok}");
        }
        for bad in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "\\\\server\\x",
            "a\\..\\x",
            "a/\0b",
        ] {
            let e = safe_relative(bad, p).unwrap_err().to_string();
            assert!(e.contains("escape the add-on folder"), "{bad}: {e}");
        }
    }
}
