//! Durable report writing with group commit: handlers hand batches to writer tasks, which
//! store everything queued at that moment in one transaction and answer each batch only
//! once the commit is durable. Many small batches thus cost one fsync, and a 2xx always
//! means durable. On SQLite the writer goes on with the next group while the last one's
//! commit is being synced (`store/syncer.rs`).
//!
//! Only reports on revisions that were ever live on this tower, in arms those revisions
//! have, are taken ([`EverLive`]), checked from memory: nobody can make up progress for a
//! name, a version or an arm the tower never served.

use crate::error::{Error, Result};
use crate::store::{Ingested, Store};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use testpilot_flight::report::ReportBatch;
use testpilot_flight::spec::Flight;
use testpilot_flight::{Clock, Diagnostics, JsonPath};
use tokio::sync::{mpsc, oneshot, Mutex};

/// What one revision that was ever live allows: its arm names (`None`: its spec could not
/// be read, so arms are not checked rather than every pilot of it refused).
type Arms = Option<HashSet<String>>;
/// Flight → version → arms, for every revision that was ever live.
type Served = HashMap<String, HashMap<u64, Arms>>;

/// The revisions that were ever live, kept in memory. A revision goes live only in a
/// transaction that bumps the index serial, so they are reloaded (one query) only when a
/// report names something they do not hold *and* the index has moved since they were
/// loaded: a flood of reports on made-up names costs no database work.
pub struct EverLive {
    /// The index serial they were read at (`None`: not read yet), and what they allow.
    served: RwLock<(Option<u64>, Arc<Served>)>,
    reload: Mutex<()>,
}

impl EverLive {
    fn new() -> EverLive {
        EverLive {
            served: RwLock::new((None, Arc::new(HashMap::new()))),
            reload: Mutex::new(()),
        }
    }

    fn snapshot(&self) -> (Option<u64>, Arc<Served>) {
        let g = self.served.read().unwrap_or_else(|e| e.into_inner());
        (g.0, g.1.clone())
    }

    /// The problems of `batch`'s reports with what was ever live (none: it may be stored),
    /// given the serial of the index this tower serves now.
    async fn refusal(
        &self,
        store: &Store,
        batch: &ReportBatch,
        index_serial: u64,
    ) -> Result<Option<Error>> {
        let (at, served) = self.snapshot();
        let refused = refusal(batch, &served);
        if refused.is_none() || at.is_some_and(|s| s >= index_serial) {
            return Ok(refused);
        }
        let _one = self.reload.lock().await;
        let (at, mut served) = self.snapshot();
        if at.is_none_or(|s| s < index_serial) {
            // Read after the serial we compare with, so nothing that went live up to that
            // serial is missed.
            let mut read: Served = HashMap::new();
            for (name, version, spec) in store.ever_live_revisions().await? {
                let arms = Flight::from_json(&spec)
                    .ok()
                    .map(|f| f.arms.into_iter().map(|a| a.name).collect());
                read.entry(name).or_default().insert(version, arms);
            }
            served = Arc::new(read);
            *self.served.write().unwrap_or_else(|e| e.into_inner()) =
                (Some(index_serial), served.clone());
        }
        Ok(refusal(batch, &served))
    }
}

/// The refusal of a batch with reports on what was never live — a flight, a version of it,
/// or an arm of that version — with one problem per such report; the whole batch is
/// refused (nothing stored). A report without an arm passes the arm check (a pilot reports
/// `ineligible` and `unsampled` with none).
fn refusal(batch: &ReportBatch, served: &Served) -> Option<Error> {
    let mut problems = Diagnostics::default();
    let mut never: Vec<&str> = Vec::new();
    // Paths are made only for a problem: a batch in order allocates none.
    let path = |i: usize, field: &str| JsonPath::root().key("reports").index(i).key(field);
    for (i, r) in batch.reports.iter().enumerate() {
        let Some(versions) = served.get(&r.flight) else {
            problems.push(
                &path(i, "flight"),
                format!(
                    "`{}` was never live on this tower; it takes reports only on flights it has served in its index",
                    r.flight
                ),
            );
            if !never.contains(&r.flight.as_str()) {
                never.push(&r.flight);
            }
            continue;
        };
        let Some(arms) = versions.get(&r.version) else {
            let mut live: Vec<u64> = versions.keys().copied().collect();
            live.sort_unstable();
            let live: Vec<String> = live.iter().map(u64::to_string).collect();
            problems.push(
                &path(i, "version"),
                format!(
                    "version {} of `{}` was never live on this tower (versions served: {})",
                    r.version,
                    r.flight,
                    live.join(", ")
                ),
            );
            continue;
        };
        if let (Some(arm), Some(arms)) = (&r.arm, arms) {
            if !arms.contains(arm) {
                let why = if arms.is_empty() {
                    format!(
                        "version {} of `{}` has no arms: `arm` must be null, not `{arm}`",
                        r.version, r.flight
                    )
                } else {
                    format!(
                        "`{arm}` is not an arm of version {} of `{}`",
                        r.version, r.flight
                    )
                };
                problems.push(&path(i, "arm"), why);
            }
        }
    }
    if problems.is_empty() {
        return None;
    }
    let message = if never.is_empty() {
        let n = problems.len();
        format!(
            "no report of this batch was stored: {n} {} a version or an arm this tower never served",
            if n == 1 { "report names" } else { "reports name" }
        )
    } else {
        never.sort_unstable();
        let listed: Vec<String> = never.iter().map(|n| format!("`{n}`")).collect();
        format!(
            "no report of this batch was stored: it has reports on flights that were never live on this tower: {}",
            listed.join(", ")
        )
    };
    Some(Error::Invalid { message, problems })
}

/// Where a batch's outcome goes.
type Done = oneshot::Sender<Result<Ingested, String>>;

struct Job {
    batch: ReportBatch,
    done: Done,
}

/// The writers' queue. Cheap to clone.
#[derive(Clone)]
pub struct Ingest {
    tx: mpsc::Sender<Job>,
    store: Store,
    ever_live: Arc<EverLive>,
}

/// How the writers group work.
#[derive(Debug, Clone, Copy)]
pub struct IngestConfig {
    /// Writer tasks. SQLite has one writer anyway; PostgreSQL gains from a few.
    pub writers: usize,
    /// At most this many reports go into one transaction.
    pub max_group: usize,
}

/// Takes from the queue what is waiting now, up to `max_group` reports (at least one job);
/// `None` once the queue is closed and empty.
fn group(first: Option<Job>, rx: &mut mpsc::Receiver<Job>, max_group: usize) -> Option<Vec<Job>> {
    let first = first?;
    let mut n = first.batch.reports.len();
    let mut jobs = vec![first];
    while n < max_group {
        match rx.try_recv() {
            Ok(j) => {
                n += j.batch.reports.len();
                jobs.push(j);
            }
            Err(_) => break,
        }
    }
    Some(jobs)
}

/// Answers every job of a group (by its `done`) with its outcome.
fn answer(dones: Vec<Done>, stored: Result<Vec<Ingested>>) {
    match stored {
        Ok(results) => {
            for (done, r) in dones.into_iter().zip(results) {
                let _ = done.send(Ok(r));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, batches = dones.len(), "storing reports failed");
            for done in dones {
                let _ = done.send(Err(e.to_string()));
            }
        }
    }
}

/// A group's batches, and where each one's outcome goes.
fn split(jobs: Vec<Job>) -> (Vec<ReportBatch>, Vec<Done>) {
    jobs.into_iter().map(|j| (j.batch, j.done)).unzip()
}

impl Ingest {
    /// Starts the writers: on a SQLite file one thread of its own, which goes from group to
    /// group without waiting for anything but the queue and the database, and answers each
    /// group once it is durable; otherwise `config.writers` tasks on the current tokio
    /// runtime. They stop once every [`Ingest`] clone is dropped and the queue is drained.
    pub fn start(store: Store, clock: Arc<dyn Clock>, config: IngestConfig) -> Ingest {
        let (tx, rx) = mpsc::channel::<Job>(4096);
        let ever_live = Arc::new(EverLive::new());
        let keep = store.clone();
        if store.has_blocking_report_writer() {
            let mut rx = rx;
            let spawned = std::thread::Builder::new()
                .name("report-writer".into())
                .spawn(move || {
                    while let Some(jobs) = group(rx.blocking_recv(), &mut rx, config.max_group) {
                        let (batches, dones) = split(jobs);
                        let refs: Vec<&ReportBatch> = batches.iter().collect();
                        // A panic (a bug) loses this group's answers (each batch gets "the
                        // report writer has stopped", and its pilot sends it again), not the
                        // writer.
                        let stored = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            store.insert_reports_blocking(&refs, clock.now(), move |stored| {
                                answer(dones, stored)
                            })
                        }));
                        if stored.is_err() {
                            tracing::error!("the report writer panicked storing a group");
                        }
                    }
                });
            if let Err(e) = spawned {
                // Every batch is then answered 500 ("the report writer has stopped").
                tracing::error!(error = %e, "cannot start the report writer");
            }
        } else {
            let rx = Arc::new(Mutex::new(rx));
            for _ in 0..config.writers.max(1) {
                let (store, clock, rx) = (store.clone(), clock.clone(), rx.clone());
                tokio::spawn(async move {
                    loop {
                        let jobs = {
                            let mut rx = rx.lock().await;
                            let first = rx.recv().await;
                            match group(first, &mut rx, config.max_group) {
                                Some(jobs) => jobs,
                                None => break,
                            }
                        };
                        let (batches, dones) = split(jobs);
                        let refs: Vec<&ReportBatch> = batches.iter().collect();
                        let stored = store.insert_reports(&refs, clock.now()).await;
                        answer(dones, stored);
                    }
                });
            }
        }
        Ingest {
            tx,
            store: keep,
            ever_live,
        }
    }

    /// Stores a batch; returns once it is committed. `index_serial` is the serial of the
    /// index this tower serves now. A batch with any report on a flight, version or arm that
    /// was never live is refused whole ([`Error::Invalid`], naming each such report): a pilot keeps
    /// the reports of a refused batch and sends them again, so a flight that went live on
    /// another tower a moment ago is taken on the next try, and nothing is dropped.
    pub async fn submit(&self, batch: ReportBatch, index_serial: u64) -> Result<Ingested> {
        if let Some(refused) = self
            .ever_live
            .refusal(&self.store, &batch, index_serial)
            .await?
        {
            return Err(refused);
        }
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Job { batch, done })
            .await
            .map_err(|_| Error::Internal("the report writer has stopped".into()))?;
        match wait.await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(Error::Internal(format!("storing reports: {e}"))),
            Err(_) => Err(Error::Internal("the report writer has stopped".into())),
        }
    }
}
