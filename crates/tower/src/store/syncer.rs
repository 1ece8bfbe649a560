//! Making the report writer's commits durable, off its path.
//!
//! The report writer commits with `synchronous = NORMAL`: SQLite appends the group's pages
//! to the `-wal` file but does not wait for the disk. Before any batch of the group is
//! answered, this thread `fdatasync`s the `-wal` file, so a 2xx still means the reports are
//! on disk, exactly as with `synchronous = FULL`; meanwhile the writer already runs the
//! next group. One sync covers every commit made before it began, so under load each sync
//! answers several groups. (fsync flushes the file, not a descriptor: syncing our own
//! descriptor of the `-wal` file makes what SQLite wrote through its own durable.)
//!
//! What a crash can do: lose commits not yet synced — none of them was answered, and a
//! pilot resends unanswered reports, which are then stored (or, if they did reach the disk,
//! counted as duplicates: `(client, seq)` makes a resend a no-op). SQLite's log stays
//! consistent in either case (its frames carry checksums), as it does for any
//! `synchronous = NORMAL` database. Readers may see a report a moment before it is
//! durable.
//!
//! Should a sync ever fail, the disk may have dropped pages the kernel then forgets about,
//! so no later sync can vouch for them: the batches waiting are refused (500) and the writer
//! stores nothing more until the tower is restarted.

use std::fs::File;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The answer to "is it on disk": `Err` says why not.
pub(super) type Synced = Result<(), String>;

/// What to do once a commit is on disk (or cannot be said to be).
type Then = Box<dyn FnOnce(Synced) + Send>;

/// The syncing thread. It stops when the store closes ([`Syncer::stop`]) or is dropped,
/// after answering every commit handed to it.
#[derive(Debug)]
pub(super) struct Syncer {
    commits: Mutex<Option<mpsc::Sender<Then>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Why a sync failed, once one has.
    failed: Arc<Mutex<Option<String>>>,
}

impl Syncer {
    /// Starts the thread for the log of the SQLite database at `db`, the path SQLite
    /// resolved (its log must exist: the writer's connection has it open).
    pub(super) fn start(db: &Path) -> std::io::Result<Syncer> {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        let wal = File::open(Path::new(&wal))?;
        // The log may have just been made (a clean stop removes it): its name in the folder
        // must be on disk too before any commit in it counts as durable.
        if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        let failed = Arc::new(Mutex::new(None));
        let (commits, wait) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("sqlite-sync".into())
            .spawn({
                let failed = failed.clone();
                move || run(wal, wait, failed)
            })?;
        Ok(Syncer {
            commits: Mutex::new(Some(commits)),
            thread: Mutex::new(Some(thread)),
            failed,
        })
    }

    /// Why a sync failed, if one has: then nothing more may be written.
    pub(super) fn failed(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Hands over a commit just made: `then` runs (on this syncer's thread) once it is on
    /// disk.
    pub(super) fn after_commit(&self, then: Then) {
        let commits = self.commits.lock().unwrap_or_else(|e| e.into_inner());
        let unsent = match commits.as_ref() {
            // The thread stops only once this sender is gone; until then it runs each.
            Some(c) => c.send(then).err().map(|e| e.0),
            None => Some(then),
        };
        drop(commits);
        if let Some(then) = unsent {
            then(Err("the database is closed".into()));
        }
    }

    /// Stops the thread once it has answered every commit handed over, and waits for it
    /// (blocking).
    pub(super) fn stop(&self) {
        self.commits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl Drop for Syncer {
    /// Tells the thread to stop without waiting for it (a drop may be on an async thread).
    fn drop(&mut self) {
        self.commits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
}

fn run(wal: File, commits: mpsc::Receiver<Then>, failed: Arc<Mutex<Option<String>>>) {
    while let Ok(first) = commits.recv() {
        let mut waiting = vec![first];
        waiting.extend(commits.try_iter());
        let before = failed.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let answer = match before {
            Some(e) => Err(e),
            None => wal.sync_data().map_err(|e| {
                let e = format!(
                    "the disk did not confirm writing the report log ({e}); no report is stored until the tower is restarted"
                );
                tracing::error!("{e}");
                *failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.clone());
                e
            }),
        };
        for then in waiting {
            then(answer.clone());
        }
    }
}
