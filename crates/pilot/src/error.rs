use std::path::PathBuf;

/// Everything that can go wrong in the pilot. Messages name what and where, so that they can
/// be shown to the person as they are.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The journal could not be opened or read: it is corrupt, foreign or too new.
    #[error("the journal {path}: {msg}")]
    Journal { path: PathBuf, msg: String },
    #[error("journal: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A crash injected by [`crate::Faults`]: the pilot stops as if the process had died here.
    #[error("simulated crash at fault point {point} ({what})")]
    Crash { point: u64, what: String },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("another pilot agent is already running for the profile {profile} ({holder}); stop it first, or use another profile")]
    Locked { profile: PathBuf, holder: String },
    #[error("{0}")]
    Index(#[from] testpilot_flight::Error),
    /// A network request failed; `retryable` says whether trying again may help.
    #[error("{msg}")]
    Net { msg: String, retryable: bool },
    /// A bad add-on package: wrong checksum, unsafe entries, unreadable archive.
    #[error("{0}")]
    Package(String),
    /// The application's host failed, panicked or did not return (embedding).
    #[error("{0}")]
    Host(String),
    /// A request of the person that cannot be carried out (unknown prompt id, ...).
    #[error("{0}")]
    Usage(String),
}

impl Error {
    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { what, path, source }
    }

    /// Whether the pilot itself cannot go on (the journal failed, or an injected crash), as
    /// opposed to a failure under one flight.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Error::Crash { .. } | Error::Sqlite(_) | Error::Journal { .. }
        )
    }

    /// Whether this is an injected crash (tests stop the pilot there and restart it).
    pub fn is_crash(&self) -> bool {
        matches!(self, Error::Crash { .. })
    }
}

/// A size as a person reads it: `8 MiB`, `64 KiB`, or `1234 bytes`.
pub(crate) fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 && n % (1 << 30) == 0 => format!("{} GiB", n >> 30),
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}
