//! Add-on packages: checking and unpacking `.zip` and `.tar.gz` archives (any other file is
//! installed as it is). Nothing may land outside the target folder: entries with `..`, absolute
//! paths, and links of any kind are refused before anything is kept.

use crate::error::bytes;
use crate::net::{Answer, Net, Request};
use crate::Error;
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

/// How far a package may unpack: a guard against archive bombs that counts what is actually
/// written, never what an archive declares (a zip's central directory can say 1 byte for an entry
/// that inflates to a gigabyte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes all files together may unpack to.
    pub total: u64,
    /// Most entries (files, folders, and tar's own header entries) an archive may hold.
    pub entries: u64,
    /// Most bytes one file may unpack to.
    pub file: u64,
}

impl Limits {
    /// The limits every add-on package is held to.
    pub const DEFAULT: Limits = Limits {
        total: 1 << 30,
        entries: 10_000,
        file: 512 << 20,
    };
}

/// Most bytes of a tar header entry (a GNU long name or link, a pax extension) that the tar
/// reader keeps in memory. Real ones are a few hundred bytes.
const MAX_TAR_HEADER_ENTRY: u64 = 64 << 10;

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

/// Most bytes of a downloaded add-on package.
pub const MAX_PACKAGE: u64 = 256 << 20;

/// Downloads the add-on package at `url` to the file `dest`, checked before it lands there: the
/// body streams into `<dest>.part` beside it (never whole into memory) while it is hashed, an
/// answer that declares or sends more than [`MAX_PACKAGE`] is cut off and refused, and only a
/// whole body whose SHA-256 is `sha256` is moved to `dest`. On any error no file is left.
///
/// Errors: [`Error::Net`] when no good answer came (retryable for network errors, 5xx and
/// 429; not for a package over the limit), [`Error::Package`] for a package that is not the
/// one the flight names.
pub fn fetch(net: &dyn Net, url: &str, sha256: &str, dest: &Path) -> Result<(), Error> {
    fetch_within(net, url, sha256, dest, MAX_PACKAGE)
}

/// [`fetch`] with another limit than [`MAX_PACKAGE`].
pub fn fetch_within(
    net: &dyn Net,
    url: &str,
    sha256: &str,
    dest: &Path,
    max: u64,
) -> Result<(), Error> {
    let part = dest.with_extension("part");
    let made_dir = dest.parent().filter(|d| !d.exists());
    let r = fetch_part(net, url, sha256, &part, max)
        .and_then(|()| fs::rename(&part, dest).map_err(Error::io("cannot move into place", dest)));
    if r.is_err() {
        let _ = fs::remove_file(&part);
        if let Some(dir) = made_dir {
            // Made for this download, and empty again unless another one is under way.
            let _ = fs::remove_dir(dir);
        }
    }
    r
}

fn fetch_part(net: &dyn Net, url: &str, sha256: &str, part: &Path, max: u64) -> Result<(), Error> {
    if let Some(dir) = part.parent() {
        fs::create_dir_all(dir).map_err(Error::io("cannot create", dir))?;
    }
    let file = fs::File::create(part).map_err(Error::io("cannot write", part))?;
    let req = Request {
        method: "GET".into(),
        url: url.into(),
        headers: vec![],
        body: None,
        answer: Answer::Whole {
            what: "add-on package",
            max,
        },
    };
    let mut sink = HashingFile {
        file,
        hash: Sha256::new(),
        path: part,
        url,
        answer: req.answer,
        written: 0,
        failed: None,
    };
    let resp = match net.send_to(&req, &mut sink) {
        Ok(r) => r,
        // The file's own error says more than "the transfer stopped".
        Err(e) => return Err(sink.failed.take().unwrap_or(e)),
    };
    if !(200..300).contains(&resp.status) {
        return Err(Error::Net {
            msg: format!("{url} answered {}", resp.status),
            retryable: resp.status >= 500 || resp.status == 429,
        });
    }
    sink.file
        .sync_all()
        .map_err(Error::io("cannot write", part))?;
    let actual = hex::encode(sink.hash.finalize());
    if !actual.eq_ignore_ascii_case(sha256) {
        return Err(Error::Package(format!(
            "the package from {url} has sha256 {actual}, but the flight says {sha256}; nothing was installed"
        )));
    }
    Ok(())
}

/// A file being downloaded, hashed as it is written, that takes no more than its answer's
/// bound whatever the [`Net`] does.
struct HashingFile<'a> {
    file: fs::File,
    hash: Sha256,
    path: &'a Path,
    url: &'a str,
    answer: Answer,
    written: u64,
    /// Why the last write failed.
    failed: Option<Error>,
}

impl Write for HashingFile<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let after = self.written + buf.len() as u64;
        if let Err(e) = self.answer.check(self.url, after) {
            self.failed = Some(e);
            return Err(std::io::Error::other("over the limit"));
        }
        let n = self.file.write(buf).inspect_err(|e| {
            self.failed = Some(Error::io("cannot write", self.path)(std::io::Error::new(
                e.kind(),
                e.to_string(),
            )));
        })?;
        self.hash.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
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

/// Unpacks `package` into the folder `dest` (which must not exist yet), within
/// [`Limits::DEFAULT`]. On any error `dest` is removed again, so a bad package leaves nothing
/// behind.
pub fn unpack(package: &Path, dest: &Path, file_name: &str) -> Result<(), Error> {
    unpack_with(package, dest, file_name, &Limits::DEFAULT)
}

/// [`unpack`] within the given limits.
pub fn unpack_with(
    package: &Path,
    dest: &Path,
    file_name: &str,
    limits: &Limits,
) -> Result<(), Error> {
    let mut budget = Budget {
        package,
        limits,
        written: 0,
        entries: 0,
    };
    let r = unpack_inner(package, dest, file_name, &mut budget);
    if r.is_err() {
        let _ = fs::remove_dir_all(dest);
    }
    r
}

/// What an unpack has used of its [`Limits`] so far.
struct Budget<'a> {
    package: &'a Path,
    limits: &'a Limits,
    /// Bytes actually written into files.
    written: u64,
    entries: u64,
}

impl Budget<'_> {
    fn refuse(&self, what: String) -> Error {
        Error::Package(format!(
            "the package {} {what}; nothing was installed",
            self.package.display()
        ))
    }

    /// Counts one more entry, refusing the package past the limit.
    fn entry(&mut self) -> Result<(), Error> {
        self.entries += 1;
        if self.entries > self.limits.entries {
            return Err(self.refuse(format!(
                "has more than {} entries (the limit for an add-on package)",
                self.limits.entries
            )));
        }
        Ok(())
    }

    /// Copies one file's content from `from` into `to`, counting the bytes as they are written:
    /// the copy stops before the first byte that would pass the limit for one file or for the
    /// whole package.
    fn copy(
        &mut self,
        from: &mut dyn Read,
        to: &mut dyn Write,
        name: &str,
        target: &Path,
    ) -> Result<(), Error> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut file = 0u64;
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(self.refuse(format!("cannot be read at its entry `{name}`: {e}")))
                }
            };
            file += n as u64;
            if file > self.limits.file {
                return Err(self.refuse(format!(
                    "has an entry `{name}` that unpacks to more than {} (the limit for one file)",
                    bytes(self.limits.file)
                )));
            }
            if self.written + n as u64 > self.limits.total {
                return Err(self.refuse(format!(
                    "unpacks to more than {} (the limit for an add-on package)",
                    bytes(self.limits.total)
                )));
            }
            to.write_all(&buf[..n])
                .map_err(Error::io("cannot unpack into", target))?;
            self.written += n as u64;
        }
    }
}

fn unpack_inner(
    package: &Path,
    dest: &Path,
    file_name: &str,
    budget: &mut Budget,
) -> Result<(), Error> {
    fs::create_dir_all(dest).map_err(Error::io("cannot create", dest))?;
    let mut magic = [0u8; 4];
    let n = fs::File::open(package)
        .and_then(|mut f| f.read(&mut magic))
        .map_err(Error::io("cannot read the package", package))?;
    if n >= 4 && (magic == *b"PK\x03\x04" || magic == *b"PK\x05\x06") {
        unzip(package, dest, budget)
    } else if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        untar_gz(package, dest, budget)
    } else {
        let name = safe_relative(file_name, package)?;
        let name = if name.as_os_str().is_empty() {
            PathBuf::from("package")
        } else {
            name
        };
        let shown = name.to_string_lossy().into_owned();
        let target = dest.join(name.file_name().unwrap_or(name.as_os_str()));
        let mut from =
            fs::File::open(package).map_err(Error::io("cannot read the package", package))?;
        let mut out = fs::File::create(&target).map_err(Error::io("cannot write", &target))?;
        budget.entry()?;
        budget.copy(&mut from, &mut out, &shown, &target)
    }
}

fn unzip(package: &Path, dest: &Path, budget: &mut Budget) -> Result<(), Error> {
    let bad = |e: zip::result::ZipError| {
        Error::Package(format!(
            "the package {} is not a readable zip archive: {e}; nothing was installed",
            package.display()
        ))
    };
    let f = fs::File::open(package).map_err(Error::io("cannot read the package", package))?;
    let mut z = zip::ZipArchive::new(f).map_err(bad)?;
    if z.len() as u64 > budget.limits.entries {
        return Err(budget.refuse(format!(
            "has {} entries, more than {} (the limit for an add-on package)",
            z.len(),
            budget.limits.entries
        )));
    }
    // Check every entry before writing anything. The declared sizes are only a first,
    // cheap refusal: what counts is what is written (`Budget::copy`).
    let mut declared = 0u64;
    for i in 0..z.len() {
        let e = z.by_index_raw(i).map_err(bad)?;
        safe_relative(e.name(), package)?;
        if e.is_symlink() || e.unix_mode().is_some_and(|m| m & 0o170000 == 0o120000) {
            return Err(Error::Package(format!("the package {} has a symbolic link `{}`; links are not allowed in add-on packages, nothing was installed", package.display(), e.name())));
        }
        declared = declared.saturating_add(e.size());
    }
    if declared > budget.limits.total {
        return Err(budget.refuse(format!(
            "says it unpacks to {declared} bytes, more than {} (the limit for an add-on package)",
            bytes(budget.limits.total)
        )));
    }
    for i in 0..z.len() {
        let mut e = z.by_index(i).map_err(bad)?;
        budget.entry()?;
        let name = e.name().to_string();
        let rel = safe_relative(&name, package)?;
        let target = dest.join(&rel);
        if e.is_dir() {
            fs::create_dir_all(&target).map_err(Error::io("cannot create", &target))?;
            continue;
        }
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(Error::io("cannot create", parent))?;
        }
        let mut out = fs::File::create(&target).map_err(Error::io("cannot write", &target))?;
        budget.copy(&mut e, &mut out, &name, &target)?;
    }
    Ok(())
}

fn untar_gz(package: &Path, dest: &Path, budget: &mut Budget) -> Result<(), Error> {
    let bad = |e: std::io::Error| {
        Error::Package(format!(
            "the package {} is not a readable .tar.gz archive: {e}; nothing was installed",
            package.display()
        ))
    };
    let open = || -> Result<_, Error> {
        let f = fs::File::open(package).map_err(Error::io("cannot read the package", package))?;
        Ok(tar::Archive::new(flate2::read::GzDecoder::new(f)))
    };
    // First pass, raw (the tar reader merges nothing), before anything is written: count the
    // entries, refuse header entries that the tar reader would otherwise read whole into
    // memory, and refuse sizes past the limits (a tar entry's size delimits its data, so this
    // also bounds how much this pass inflates just to skip over the data).
    let mut ar = open()?;
    let mut count = 0u64;
    let mut declared = 0u64;
    for entry in ar.entries().map_err(bad)?.raw(true) {
        let e = entry.map_err(bad)?;
        count += 1;
        if count > budget.limits.entries {
            return Err(budget.refuse(format!(
                "has more than {} entries (the limit for an add-on package)",
                budget.limits.entries
            )));
        }
        let kind = e.header().entry_type();
        let header_entry = kind.is_gnu_longname()
            || kind.is_gnu_longlink()
            || kind.is_pax_local_extensions()
            || kind.is_pax_global_extensions();
        if header_entry && e.size() > MAX_TAR_HEADER_ENTRY {
            return Err(budget.refuse(format!(
                "has a tar header entry of {} bytes, more than {} (a long name or extension)",
                e.size(),
                bytes(MAX_TAR_HEADER_ENTRY)
            )));
        }
        if !header_entry {
            declared = declared.saturating_add(e.size());
            if e.size() > budget.limits.file || declared > budget.limits.total {
                return Err(budget.refuse(format!(
                    "says it unpacks to more than {} in all or {} for one file (the limits for an add-on package)",
                    bytes(budget.limits.total),
                    bytes(budget.limits.file)
                )));
            }
        }
    }
    let mut ar = open()?;
    for entry in ar.entries().map_err(bad)? {
        let mut e = entry.map_err(bad)?;
        budget.entry()?;
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let rel = safe_relative(&name, package)?;
        let kind = e.header().entry_type();
        let target = dest.join(&rel);
        if kind.is_dir() {
            fs::create_dir_all(&target).map_err(Error::io("cannot create", &target))?;
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).map_err(Error::io("cannot create", parent))?;
            }
            let mut out = fs::File::create(&target).map_err(Error::io("cannot write", &target))?;
            budget.copy(&mut e, &mut out, &name, &target)?;
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
    use std::io::Cursor;

    const SMALL: Limits = Limits {
        total: 1 << 20,
        entries: 20,
        file: 1 << 20,
    };

    /// A zip of `entries` whose sizes are then rewritten to `declared` in both the local headers
    /// and the central directory, as a hostile author would.
    fn lying_zip(entries: &[(&str, usize)], declared: u32) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, len) in entries {
            w.start_file(*name, opts).unwrap();
            w.write_all(&vec![0u8; *len]).unwrap();
        }
        let mut b = w.finish().unwrap().into_inner();
        let u16_at = |b: &[u8], i: usize| u16::from_le_bytes([b[i], b[i + 1]]) as usize;
        let u32_at =
            |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap()) as usize;
        let eocd = b.len() - 22;
        assert_eq!(&b[eocd..eocd + 4], b"PK\x05\x06");
        let (count, mut cd) = (u16_at(&b, eocd + 10), u32_at(&b, eocd + 16));
        for _ in 0..count {
            assert_eq!(&b[cd..cd + 4], b"PK\x01\x02");
            let local = u32_at(&b, cd + 42);
            b[cd + 24..cd + 28].copy_from_slice(&declared.to_le_bytes());
            b[local + 22..local + 26].copy_from_slice(&declared.to_le_bytes());
            cd += 46 + u16_at(&b, cd + 28) + u16_at(&b, cd + 30) + u16_at(&b, cd + 32);
        }
        b
    }

    fn tar_gz(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut t = tar::Builder::new(Vec::new());
        build(&mut t);
        let raw = t.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&raw).unwrap();
        gz.finish().unwrap()
    }

    fn file(t: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        t.append_data(&mut h, name, data).unwrap();
    }

    /// Unpacks `archive` within `limits` into a fresh folder; the error, and whether the folder
    /// is still there.
    fn refused(archive: &[u8], limits: &Limits) -> (String, bool) {
        let dir = tempfile::tempdir().unwrap();
        let pkg = dir.path().join("pkg");
        fs::write(&pkg, archive).unwrap();
        let dest = dir.path().join("out");
        let e = unpack_with(&pkg, &dest, "pkg", limits)
            .unwrap_err()
            .to_string();
        (e, dest.exists())
    }

    /// Regression: three entries declaring 1 byte each unpacked to 1.26 GB, because the guard
    /// summed the declared sizes. The bytes written count, across entries.
    #[test]
    fn a_zip_whose_central_directory_lies_about_sizes_is_cut_at_the_total() {
        let zip = lying_zip(&[("a", 600 << 10), ("b", 600 << 10), ("c", 600 << 10)], 1);
        assert!(zip.len() < 64 << 10, "a bomb: {} bytes", zip.len());
        let limits = Limits {
            file: 1 << 30,
            ..SMALL
        };
        let (e, left) = refused(&zip, &limits);
        assert!(e.contains("unpacks to more than 1 MiB (the limit for an add-on package); nothing was installed"), "{e}");
        assert!(!left, "a partial add-on was left behind");
    }

    #[test]
    fn a_zip_entry_that_inflates_past_the_file_limit_is_refused() {
        let zip = lying_zip(&[("big.bin", 3 << 20)], 1);
        let limits = Limits {
            total: 1 << 30,
            ..SMALL
        };
        let (e, left) = refused(&zip, &limits);
        assert!(
            e.contains(
                "has an entry `big.bin` that unpacks to more than 1 MiB (the limit for one file)"
            ),
            "{e}"
        );
        assert!(!left);
    }

    #[test]
    fn copying_stops_at_the_limit_without_writing_past_it() {
        let dir = tempfile::tempdir().unwrap();
        let package = dir.path().join("endless");
        let mut budget = Budget {
            package: &package,
            limits: &SMALL,
            written: 0,
            entries: 0,
        };
        let mut out = Vec::new();
        let e = budget
            .copy(&mut std::io::repeat(7), &mut out, "x", &package)
            .unwrap_err();
        assert!(e.to_string().contains("more than 1 MiB"), "{e}");
        assert!(out.len() as u64 <= SMALL.file, "wrote {} bytes", out.len());
    }

    #[test]
    fn a_tar_gz_with_more_entries_than_the_limit_is_refused_before_writing() {
        let n = Limits::DEFAULT.entries + 1;
        let tgz = tar_gz(|t| {
            for i in 0..n {
                file(t, &format!("f{i}"), b"");
            }
        });
        let (e, left) = refused(&tgz, &Limits::DEFAULT);
        assert!(e.contains("has more than 10000 entries (the limit for an add-on package); nothing was installed"), "{e}");
        assert!(!left);
    }

    #[test]
    fn a_tar_gz_deflate_bomb_is_refused_before_writing() {
        let tgz = tar_gz(|t| file(t, "zeros", &vec![0u8; 16 << 20]));
        assert!(tgz.len() < 64 << 10, "a bomb: {} bytes", tgz.len());
        let (e, left) = refused(&tgz, &SMALL);
        assert!(
            e.contains("more than 1 MiB in all or 1 MiB for one file"),
            "{e}"
        );
        assert!(!left);
    }

    #[test]
    fn a_tar_gz_long_name_entry_is_not_read_into_memory() {
        let tgz = tar_gz(|t| {
            let mut h = tar::Header::new_gnu();
            h.set_size(1 << 20);
            h.set_entry_type(tar::EntryType::GNULongName);
            t.append_data(&mut h, "././@LongLink", &vec![b'a'; 1 << 20][..])
                .unwrap();
            file(t, "x", b"1");
        });
        let (e, left) = refused(&tgz, &Limits::DEFAULT);
        assert!(
            e.contains("has a tar header entry of 1048576 bytes, more than 64 KiB"),
            "{e}"
        );
        assert!(!left);
    }

    #[test]
    fn packages_within_the_limits_unpack() {
        let dir = tempfile::tempdir().unwrap();
        let pkg = dir.path().join("ok.tgz");
        fs::write(&pkg, tar_gz(|t| file(t, "a/b.txt", b"hello"))).unwrap();
        unpack_with(&pkg, &dir.path().join("out"), "ok.tgz", &SMALL).unwrap();
        assert_eq!(fs::read(dir.path().join("out/a/b.txt")).unwrap(), b"hello");
    }

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
