//! Checkpoints of SQLite's write-ahead log, off the report writer's path.
//!
//! A commit appends the pages it changed to the `-wal` file; a checkpoint copies them back
//! into the database file. By default the connection that commits runs one every 1,000
//! pages, inside its commit: with reports keyed by scattered client ids, that was about a
//! third of the report writer's commit time, and the writer is what limits small batches.
//! Here a thread of its own, on a connection of its own, checkpoints shortly after report
//! commits (at most every [`PAUSE`]), while the writer goes on. Nothing about durability
//! changes: each commit is still on disk (the `-wal` fsynced) before it is answered.
//!
//! The log must also be started again from its beginning now and then: SQLite looks a page
//! up in it through one hash table per 4,096 frames, so a long log slows every read, and it
//! restarts only when a writer begins after every frame was copied — which a checkpoint
//! running while the writer appends never achieves. So the writer keeps a checkpoint of its
//! own, once the log reaches 10,000 pages ([`RESTART`]): this thread has by then copied
//! nearly every frame, the writer copies the rest and its next transaction starts the log
//! over. (Making
//! that last copy here, during the writers' turn, paused the writer as long and cost more
//! fsyncs: fewer requests a second in the ingest benchmark.)
//!
//! A checkpoint that does not catch up with the log does not sync the database file, so
//! the pages it copies pile up in the kernel's cache until the writer's own checkpoint,
//! whose `fsync` then wrote a second's worth of them while every request waited — in the
//! ingest benchmark, p99 45–82 ms and some runs 190–250 ms, against 36–49 ms with this. So after each checkpoint this
//! thread asks the kernel to start writing those pages (`sync_file_range`, Linux; it waits
//! for nothing and promises nothing — durability still comes from SQLite's own syncs), and
//! the writer's `fsync` finds little left to write.

use crate::error::Result;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The shortest time between two checkpoints: pages written again meanwhile are copied (and
/// written to the disk) once. 100 ms rather than 50: fewer pages to the disk a second
/// (BENCHMARKS.md, report ingest).
const PAUSE: Duration = Duration::from_millis(100);

/// The writers' `wal_autocheckpoint` (`store/mod.rs`): pages in the log after which a
/// commit checkpoints, so that the log restarts (about 40 MiB with 4 KiB pages).
pub(super) const RESTART: &str = "PRAGMA wal_autocheckpoint = 10000";

/// The checkpointing thread. It stops when the store closes ([`Checkpointer::stop`]) or is
/// dropped.
#[derive(Debug)]
pub(super) struct Checkpointer {
    poke: Mutex<Option<mpsc::Sender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Checkpointer {
    /// Starts the thread on a connection of its own to the database at `path`, opened with
    /// `pragmas`.
    pub(super) fn start(path: &Path, pragmas: &[&str]) -> Result<Checkpointer> {
        let conn = super::sqlite_writer::open(path, pragmas)?;
        let db = kept_open(path)?;
        let (poke, wait) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || run(conn, db, wait))?;
        Ok(Checkpointer {
            poke: Mutex::new(Some(poke)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Says that a commit added to the log.
    pub(super) fn poke(&self) {
        if let Some(p) = self.poke.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let _ = p.send(());
        }
    }

    /// Stops the thread after the checkpoint in progress and waits for it (blocking).
    pub(super) fn stop(&self) {
        self.poke.lock().unwrap_or_else(|e| e.into_inner()).take();
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl Drop for Checkpointer {
    /// Tells the thread to stop without waiting for it (a drop may be on an async thread).
    fn drop(&mut self) {
        self.poke.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// A read-only descriptor of the database file at `path`, for the writeback hint, which
/// this process never closes.
///
/// Closing any descriptor of a file drops every POSIX lock the process holds on it,
/// SQLite's included (sqlite.org/howtocorrupt.html, 2.2): were the descriptor closed with the
/// store, the connections still open in the process — another store's on the same file, or
/// this one's until its pools have closed — would hold no lock, and another process could
/// take the database for its own, checkpoint it and delete its log and shared memory under
/// them; they would then read a stale index of the log ("database disk image is
/// malformed"). So one descriptor per database file (by device and inode) is opened once,
/// kept for the life of the process and shared by every store opened on that file.
#[cfg(unix)]
fn kept_open(path: &Path) -> std::io::Result<Arc<std::fs::File>> {
    use std::os::unix::fs::MetadataExt;
    /// A file's device and inode.
    type Key = (u64, u64);
    /// Each descriptor opened, by its file; never removed.
    static KEPT: Mutex<Vec<(Key, Arc<std::fs::File>)>> = Mutex::new(Vec::new());
    let mut kept = KEPT.lock().unwrap_or_else(|e| e.into_inner());
    let meta = std::fs::metadata(path)?;
    let key = (meta.dev(), meta.ino());
    if let Some((_, f)) = kept.iter().find(|(k, _)| *k == key) {
        return Ok(f.clone());
    }
    let f = Arc::new(std::fs::File::open(path)?);
    // Keyed by what was opened (the file could have been replaced in between).
    let key = f.metadata().map_or(key, |m| (m.dev(), m.ino()));
    kept.push((key, f.clone()));
    Ok(f)
}

/// Elsewhere closing a descriptor drops no other's lock.
#[cfg(not(unix))]
fn kept_open(path: &Path) -> std::io::Result<Arc<std::fs::File>> {
    Ok(Arc::new(std::fs::File::open(path)?))
}

fn checkpoint(conn: &rusqlite::Connection) {
    // PASSIVE: copies what no reader still needs, waits for no one, blocks no one.
    let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    });
    match done {
        Ok((busy, log, copied)) => {
            tracing::trace!(busy, log, copied, "checkpointed the SQLite log")
        }
        Err(e) => {
            tracing::warn!(error = %e, "checkpointing the SQLite log failed; the writer's own checkpoints take over")
        }
    }
}

/// Starts writing the pages a checkpoint copied to the disk, without waiting for them.
#[cfg(target_os = "linux")]
fn start_writeback(db: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain system call on a descriptor this thread owns; no memory is passed.
    let r = unsafe { libc::sync_file_range(db.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_db: &std::fs::File) -> std::io::Result<()> {
    Ok(())
}

fn run(conn: rusqlite::Connection, db: Arc<std::fs::File>, wait: mpsc::Receiver<()>) {
    // Whether a commit came since the last checkpoint began.
    let mut pending = false;
    // Whether starting the writes was refused (said once).
    let mut refused = false;
    loop {
        if !pending && wait.recv().is_err() {
            return;
        }
        while wait.try_recv().is_ok() {}
        pending = false;
        let until = Instant::now() + PAUSE;
        checkpoint(&conn);
        if let Err(e) = start_writeback(&db) {
            if !refused {
                refused = true;
                tracing::warn!(error = %e, "the file system refuses to start writing checkpointed pages early; the writer's checkpoints will write them, holding up reports meanwhile");
            }
        }
        // The pause, noting commits, and stopping at once when the store closes.
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match wait.recv_timeout(left) {
                Ok(()) => pending = true,
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hint is taken on the read-only descriptor the thread holds.
    #[test]
    fn writeback_starts_on_a_read_only_descriptor() {
        let path = std::env::temp_dir().join(format!("tp-writeback-{}", std::process::id()));
        std::fs::write(&path, vec![7u8; 1 << 16]).unwrap();
        let db = std::fs::File::open(&path).unwrap();
        let started = start_writeback(&db);
        std::fs::remove_file(&path).unwrap();
        started.expect("writeback started");
    }
}
