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
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use testpilot_flight::event::{is_topic, EventBatch};
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

/// The most events one client may store on one flight: as many as a pilot records for a
/// flight (its journal's cap), so an honest pilot never reaches it.
pub const MAX_EVENTS_PER_CLIENT: u64 = 100_000;

/// How far after the tower's clock an event's `at` may be: one day (clocks drift; a date
/// further on is a wrong clock or made up, and would stretch the daily chart).
pub const MAX_AHEAD_MS: i64 = 86_400_000;

/// One flight that was ever live: whether it takes events, and which arms and topics.
#[derive(Debug, Clone, Default)]
struct Window {
    live: bool,
    /// Events are taken until then (when it stopped being live plus its grace).
    until: Option<i64>,
    /// The arm names of every revision that was ever live.
    arms: HashSet<String>,
    /// Whether a revision that was ever live had no arms (events without an arm).
    armless: bool,
    /// The topics the streamed recordings of every revision that was ever live watch.
    topics: HashSet<String>,
}

impl Window {
    fn of(w: &EventWindow) -> Window {
        let mut out = Window {
            live: w.live,
            ..Window::default()
        };
        let mut grace = None::<u64>;
        for spec in &w.specs {
            let Ok(f) = Flight::from_json(spec) else {
                continue;
            };
            grace = grace.max(Some(grace_ms(&f)));
            out.armless |= f.arms.is_empty();
            out.arms.extend(f.arms.iter().map(|a| a.name.clone()));
            for i in streamed_instruments(&f) {
                out.topics
                    .extend(i.watch.iter().filter(|t| is_topic(t)).cloned());
            }
        }
        let grace = grace.unwrap_or(DEFAULT_GRACE_MS);
        out.until = w
            .stopped_at
            .map(|t| t.0.saturating_add(grace.min(i64::MAX as u64) as i64));
        out
    }

    fn takes(&self, now: Timestamp) -> bool {
        self.live || self.until.is_some_and(|u| now.0 <= u)
    }

    /// Why the event's arm is not one of the flight's, if it is not.
    fn wrong_arm(&self, flight: &str, arm: Option<&str>) -> Option<String> {
        match arm {
            None if self.armless => None,
            None => Some(format!(
                "`{flight}` has arms: `arm` must name the arm the pilot chose"
            )),
            Some(a) if self.arms.contains(a) => None,
            Some(a) if self.arms.is_empty() => Some(format!(
                "`{flight}` has no arms: `arm` must be null, not `{a}`"
            )),
            Some(a) => Some(format!("`{a}` is not an arm of `{flight}`")),
        }
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

/// The refusal of a batch with events the tower does not take, with one problem per such
/// event, nothing stored: events on flights that take none, on arms or topics that are not
/// the flight's, or dated more than [`MAX_AHEAD_MS`] after `now`.
fn refusal(batch: &EventBatch, windows: &HashMap<String, Window>, now: Timestamp) -> Option<Error> {
    let mut problems = Diagnostics::default();
    let mut names: Vec<&str> = Vec::new();
    let path = JsonPath::root().key("events");
    for (i, e) in batch.events.iter().enumerate() {
        let at = path.index(i);
        if e.at.0 > now.0.saturating_add(MAX_AHEAD_MS) {
            problems.push(
                &at.key("at"),
                format!(
                    "{} is more than a day after the tower's clock ({}); send when it happened",
                    e.at.to_rfc3339(),
                    now.to_rfc3339()
                ),
            );
        }
        let w = match windows.get(&e.flight) {
            Some(w) if w.takes(now) => w,
            Some(_) => {
                problems.push(&at.key("flight"), format!(
                    "`{}` was killed or ended longer ago than its grace (the longest `uploadEvery` of its recordings, one day by default); it takes no more events",
                    e.flight
                ));
                if !names.contains(&e.flight.as_str()) {
                    names.push(&e.flight);
                }
                continue;
            }
            None => {
                problems.push(&at.key("flight"), format!(
                    "`{}` is not live on this tower (unknown, or never approved); events are taken only for live flights",
                    e.flight
                ));
                if !names.contains(&e.flight.as_str()) {
                    names.push(&e.flight);
                }
                continue;
            }
        };
        if let Some(why) = w.wrong_arm(&e.flight, e.arm.as_deref()) {
            problems.push(&at.key("arm"), why);
        }
        if !w.topics.contains(&e.topic) {
            problems.push(
                &at.key("topic"),
                format!(
                    "`{}` is not a topic that a streamed recording of `{}` watches",
                    e.topic, e.flight
                ),
            );
        }
    }
    if problems.is_empty() {
        return None;
    }
    let message = if names.is_empty() {
        format!(
            "no event of this batch was stored: {} problems with its events",
            problems.len()
        )
    } else {
        let listed: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
        format!(
            "no event of this batch was stored: it has events on flights that take none: {}",
            listed.join(", ")
        )
    };
    Some(Error::Invalid { message, problems })
}

/// The refusal of a batch that would take its client over [`MAX_EVENTS_PER_CLIENT`] events
/// on a flight (`counts`: what the client has stored per flight), naming the first event
/// over the cap.
fn over_cap(batch: &EventBatch, counts: &HashMap<String, u64>, cap: u64) -> Option<Error> {
    let mut seen: HashMap<&str, u64> = HashMap::new();
    for (i, e) in batch.events.iter().enumerate() {
        let n = seen
            .entry(&e.flight)
            .or_insert_with(|| counts.get(&e.flight).copied().unwrap_or(0));
        *n += 1;
        if *n > cap {
            let mut problems = Diagnostics::default();
            problems.push(
                &JsonPath::root().key("events").index(i),
                format!(
                    "this client has stored {cap} events on `{}`, the most one client may; no more are taken",
                    e.flight
                ),
            );
            return Some(Error::Invalid {
                message: format!(
                    "no event of this batch was stored: it would take client {} over {cap} events on `{}`",
                    batch.client, e.flight
                ),
                problems,
            });
        }
    }
    None
}

/// Stores a group of batches in one transaction; when that fails and there was more than
/// one, stores each batch alone, so that a batch the database refuses fails alone and the
/// others in its group are still stored. One answer per batch, in order.
pub async fn store_group(
    store: &Store,
    batches: &[&EventBatch],
    now: Timestamp,
) -> Vec<Result<Ingested, String>> {
    let e = match store.insert_events(batches, now).await {
        Ok(results) => return results.into_iter().map(Ok).collect(),
        Err(e) => e,
    };
    if batches.len() == 1 {
        tracing::error!(error = %e, "storing events failed");
        return vec![Err(e.to_string())];
    }
    tracing::warn!(error = %e, batches = batches.len(), "storing a group of event batches failed; storing each alone");
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        out.push(match store.insert_events(&[*b], now).await {
            Ok(mut r) => Ok(r.pop().unwrap_or_default()),
            Err(e) => {
                tracing::error!(error = %e, client = %b.client, "storing an event batch failed");
                Err(e.to_string())
            }
        });
    }
    out
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
    /// The most events one client may store on one flight.
    client_cap: u64,
}

impl EventIngest {
    /// Starts `writers` writer tasks (on the current tokio runtime), each storing at most
    /// `max_group` events per transaction, and taking at most `client_cap` events per client
    /// and flight. They stop once every clone is dropped.
    pub fn start(
        store: Store,
        clock: Arc<dyn Clock>,
        writers: usize,
        max_group: usize,
        client_cap: u64,
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
                    let results = store_group(&store, &batches, clock.now()).await;
                    for (job, r) in jobs.into_iter().zip(results) {
                        let _ = job.done.send(r);
                    }
                }
            });
        }
        EventIngest {
            tx,
            store,
            clock,
            windows: Arc::new(Windows::new()),
            client_cap,
        }
    }

    /// Stores a batch; returns once it is committed. `index_serial` is the serial of the
    /// index this tower serves now. A batch with any event the tower does not take (see
    /// [`refusal`]), or that would take its client over the per-flight cap, is refused
    /// whole ([`Error::Invalid`], naming each such event by its path).
    pub async fn submit(&self, batch: EventBatch, index_serial: u64) -> Result<Ingested> {
        let windows = self.windows.current(&self.store, index_serial).await?;
        if let Some(e) = refusal(&batch, &windows, self.clock.now()) {
            return Err(e);
        }
        if batch.events.is_empty() {
            return Ok(Ingested::default());
        }
        let mut flights: Vec<&str> = batch.events.iter().map(|e| e.flight.as_str()).collect();
        flights.sort_unstable();
        flights.dedup();
        let counts = self
            .store
            .client_event_counts(&batch.client, &flights)
            .await?;
        if let Some(e) = over_cap(&batch, &counts, self.client_cap) {
            return Err(e);
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
