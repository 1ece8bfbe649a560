//! Durable report writing with group commit: handlers hand batches to writer tasks, which
//! store everything queued at that moment in one transaction and answer each batch only
//! after the commit. Many small batches thus cost one fsync, and a 2xx always means durable.

use crate::error::{Error, Result};
use crate::store::{Ingested, Store};
use std::sync::Arc;
use testpilot_flight::report::ReportBatch;
use testpilot_flight::Clock;
use tokio::sync::{mpsc, oneshot, Mutex};

struct Job {
    batch: ReportBatch,
    done: oneshot::Sender<Result<Ingested, String>>,
}

/// The writers' queue. Cheap to clone.
#[derive(Clone)]
pub struct Ingest {
    tx: mpsc::Sender<Job>,
}

/// How the writers group work.
#[derive(Debug, Clone, Copy)]
pub struct IngestConfig {
    /// Writer tasks. SQLite has one writer anyway; PostgreSQL gains from a few.
    pub writers: usize,
    /// At most this many reports go into one transaction.
    pub max_group: usize,
}

impl Ingest {
    /// Starts the writer tasks (on the current tokio runtime). They stop once every
    /// [`Ingest`] clone is dropped and the queue is drained.
    pub fn start(store: Store, clock: Arc<dyn Clock>, config: IngestConfig) -> Ingest {
        let (tx, rx) = mpsc::channel::<Job>(4096);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..config.writers.max(1) {
            let (store, clock, rx) = (store.clone(), clock.clone(), rx.clone());
            tokio::spawn(async move {
                loop {
                    let jobs = {
                        let mut rx = rx.lock().await;
                        let Some(first) = rx.recv().await else { break };
                        let mut n = first.batch.reports.len();
                        let mut jobs = vec![first];
                        while n < config.max_group {
                            match rx.try_recv() {
                                Ok(j) => {
                                    n += j.batch.reports.len();
                                    jobs.push(j);
                                }
                                Err(_) => break,
                            }
                        }
                        jobs
                    };
                    let batches: Vec<&ReportBatch> = jobs.iter().map(|j| &j.batch).collect();
                    match store.insert_reports(&batches, clock.now()).await {
                        Ok(results) => {
                            for (job, r) in jobs.into_iter().zip(results) {
                                let _ = job.done.send(Ok(r));
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, batches = jobs.len(), "storing reports failed");
                            for job in jobs {
                                let _ = job.done.send(Err(e.to_string()));
                            }
                        }
                    }
                }
            });
        }
        Ingest { tx }
    }

    /// Stores a batch; returns once it is committed.
    pub async fn submit(&self, batch: ReportBatch) -> Result<Ingested> {
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
