//! Durable event writing with group commit, as [`crate::ingest`] does for reports: handlers
//! hand batches to writer tasks, which store everything queued at that moment, with the
//! rollups it moves, in one transaction and answer each batch only after the commit.
//!
//! Only events on flights that take them are stored ([`Windows`]): a flight that is live,
//! or was killed or ended no longer ago than its grace (the longest `uploadEvery` of its
//! streamed recordings, one day by default), so a pilot's last batch still counts. What
//! decides that is kept in memory and reread only when the index serial has moved (every
//! change of a flight's state or live revision moves it), so a flood of batches on made-up
//! names costs no query.

use crate::error::{Error, Result};
use crate::store::{EventWindow, Ingested, Store};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use testpilot_flight::event::EventBatch;
use testpilot_flight::spec::{Directive, Entry, Flight, Instrument};
use testpilot_flight::{Clock, Diagnostics, JsonPath, Timestamp};
use tokio::sync::{mpsc, oneshot, Mutex};

/// The grace of a flight whose recordings do not say `uploadEvery`: one day.
pub const DEFAULT_GRACE_MS: u64 = 86_400_000;

/// Every `instrument` step of the flight (its plan and its arms' plans) that streams to the
/// tower (has no `upload`), in plan order.
pub fn streamed_instruments(flight: &Flight) -> Vec<&Instrument> {
    fn walk<'f>(entries: &'f [Entry], out: &mut Vec<&'f Instrument>) {
        for e in entries {
            match e {
                Entry::Directive(Directive::Instrument(i)) if i.upload.is_none() => out.push(i),
                Entry::Directive(_) => {}
                Entry::Parallel(list) => walk(list, out),
            }
        }
    }
    let mut out = Vec::new();
    walk(&flight.flightplan, &mut out);
    for arm in &flight.arms {
        if let Some(plan) = &arm.flightplan {
            walk(plan, &mut out);
        }
    }
    out
}

/// How long after it stopped being live a flight still takes events.
pub fn grace_ms(flight: &Flight) -> u64 {
    streamed_instruments(flight)
        .iter()
        .map(|i| i.upload_every.as_ref().map_or(DEFAULT_GRACE_MS, |d| d.ms))
        .max()
        .unwrap_or(DEFAULT_GRACE_MS)
}

/// One flight that was ever live: whether it takes events.
#[derive(Debug, Clone, Copy)]
struct Window {
    live: bool,
    /// Events are taken until then (when it stopped being live plus its grace).
    until: Option<i64>,
}

impl Window {
    fn of(w: &EventWindow) -> Window {
        let grace = Flight::from_json(&w.spec)
            .map(|f| grace_ms(&f))
            .unwrap_or(DEFAULT_GRACE_MS);
        Window {
            live: w.live,
            until: w
                .stopped_at
                .map(|t| t.0.saturating_add(grace.min(i64::MAX as u64) as i64)),
        }
    }

    fn takes(&self, now: Timestamp) -> bool {
        self.live || self.until.is_some_and(|u| now.0 <= u)
    }
}

/// Windows by flight name, and the index serial they were read at (`None`: not read yet).
type Known = (Option<u64>, Arc<HashMap<String, Window>>);

/// The flights that were ever live and their windows, by the index serial they were read at.
pub struct Windows {
    known: RwLock<Known>,
    reload: Mutex<()>,
}

impl Windows {
    fn new() -> Windows {
        Windows {
            known: RwLock::new((None, Arc::new(HashMap::new()))),
            reload: Mutex::new(()),
        }
    }

    fn snapshot(&self) -> Known {
        let g = self.known.read().unwrap_or_else(|e| e.into_inner());
        (g.0, g.1.clone())
    }

    /// The windows as of `index_serial` (read again if the serial moved since).
    async fn current(
        &self,
        store: &Store,
        index_serial: u64,
    ) -> Result<Arc<HashMap<String, Window>>> {
        let (at, known) = self.snapshot();
        if at.is_some_and(|s| s >= index_serial) {
            return Ok(known);
        }
        let _one = self.reload.lock().await;
        let (at, mut known) = self.snapshot();
        if at.is_none_or(|s| s < index_serial) {
            let read = store.event_windows().await?;
            known = Arc::new(
                read.iter()
                    .map(|(k, w)| (k.clone(), Window::of(w)))
                    .collect(),
            );
            *self.known.write().unwrap_or_else(|e| e.into_inner()) =
                (Some(index_serial), known.clone());
        }
        Ok(known)
    }
}

/// The refusal of a batch with events on flights that do not take them: one problem per
/// such event, nothing stored.
fn refusal(batch: &EventBatch, windows: &HashMap<String, Window>, now: Timestamp) -> Option<Error> {
    let mut problems = Diagnostics::default();
    let mut names: Vec<&str> = Vec::new();
    let path = JsonPath::root().key("events");
    for (i, e) in batch.events.iter().enumerate() {
        let why = match windows.get(&e.flight) {
            Some(w) if w.takes(now) => continue,
            Some(_) => format!(
                "`{}` was killed or ended longer ago than its grace (the longest `uploadEvery` of its recordings, one day by default); it takes no more events",
                e.flight
            ),
            None => format!(
                "`{}` is not live on this tower (unknown, or never approved); events are taken only for live flights",
                e.flight
            ),
        };
        problems.push(&path.index(i).key("flight"), why);
        if !names.contains(&e.flight.as_str()) {
            names.push(&e.flight);
        }
    }
    if names.is_empty() {
        return None;
    }
    let listed: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    Some(Error::Invalid {
        message: format!(
            "no event of this batch was stored: it has events on flights that take none: {}",
            listed.join(", ")
        ),
        problems,
    })
}

struct Job {
    batch: EventBatch,
    done: oneshot::Sender<Result<Ingested, String>>,
}

/// The event writers' queue. Cheap to clone.
#[derive(Clone)]
pub struct EventIngest {
    tx: mpsc::Sender<Job>,
    store: Store,
    clock: Arc<dyn Clock>,
    windows: Arc<Windows>,
}

impl EventIngest {
    /// Starts `writers` writer tasks (on the current tokio runtime), each storing at most
    /// `max_group` events per transaction. They stop once every clone is dropped.
    pub fn start(
        store: Store,
        clock: Arc<dyn Clock>,
        writers: usize,
        max_group: usize,
    ) -> EventIngest {
        let (tx, rx) = mpsc::channel::<Job>(4096);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..writers.max(1) {
            let (store, clock, rx) = (store.clone(), clock.clone(), rx.clone());
            tokio::spawn(async move {
                loop {
                    let jobs = {
                        let mut rx = rx.lock().await;
                        let Some(first) = rx.recv().await else { break };
                        let mut n = first.batch.events.len();
                        let mut jobs = vec![first];
                        while n < max_group {
                            match rx.try_recv() {
                                Ok(j) => {
                                    n += j.batch.events.len();
                                    jobs.push(j);
                                }
                                Err(_) => break,
                            }
                        }
                        jobs
                    };
                    let batches: Vec<&EventBatch> = jobs.iter().map(|j| &j.batch).collect();
                    match store.insert_events(&batches, clock.now()).await {
                        Ok(results) => {
                            for (job, r) in jobs.into_iter().zip(results) {
                                let _ = job.done.send(Ok(r));
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, batches = jobs.len(), "storing events failed");
                            for job in jobs {
                                let _ = job.done.send(Err(e.to_string()));
                            }
                        }
                    }
                }
            });
        }
        EventIngest {
            tx,
            store,
            clock,
            windows: Arc::new(Windows::new()),
        }
    }

    /// Stores a batch; returns once it is committed. `index_serial` is the serial of the
    /// index this tower serves now. A batch with any event on a flight that takes none is
    /// refused whole ([`Error::Invalid`], naming each such event by its path).
    pub async fn submit(&self, batch: EventBatch, index_serial: u64) -> Result<Ingested> {
        let windows = self.windows.current(&self.store, index_serial).await?;
        if let Some(e) = refusal(&batch, &windows, self.clock.now()) {
            return Err(e);
        }
        if batch.events.is_empty() {
            return Ok(Ingested::default());
        }
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Job { batch, done })
            .await
            .map_err(|_| Error::Internal("the event writer has stopped".into()))?;
        match wait.await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(Error::Internal(format!("storing events: {e}"))),
            Err(_) => Err(Error::Internal("the event writer has stopped".into())),
        }
    }
}
