//! One client through the real pilot engine in virtual time: an in-memory journal and host, a
//! manual clock, and the behaviour model playing the person (answers, events, crashes,
//! offline periods) until every flight has ended or the simulated days are over.

use crate::flights::{Listener, SimFlight};
use crate::load::{LoadModel, INDEX_TTL_MS};
use crate::population::Behaviour;
use crate::rng::{Rng, Stream};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use testpilot_flight::index::IndexPayload;
use testpilot_flight::report::Status;
use testpilot_flight::{Clock, Timestamp};
use testpilot_pilot::engine::PilotConfig;
use testpilot_pilot::host::{Host, MemoryHost};
use testpilot_pilot::net::{Net, Request, Response};
use testpilot_pilot::stream;
use testpilot_pilot::sync::TowerSource;
use testpilot_pilot::{Error, Journal, ManualClock, Pilot};

/// A client that keeps the engine busy longer than this is stopped and counted as stuck.
const MAX_STEPS: u32 = 20_000;

/// The held index is renewed from the last poll this long before it expires.
const REFRESH_BEFORE_MS: i64 = 86_400_000;

/// What the simulation needs to run clients.
pub struct World<'a> {
    pub flights: &'a [SimFlight],
    pub behaviour: &'a Behaviour,
    pub seed: u64,
    pub start: Timestamp,
    pub end: Timestamp,
    pub load: &'a LoadModel,
    /// Flights killed during the run, and when (by flight index).
    pub kills: &'a [(usize, Timestamp)],
    /// Where downloaded packages would go; the stand-in package lives here.
    pub scratch: PathBuf,
}

/// How one flight ended on one client.
#[derive(Debug, Clone, PartialEq)]
pub struct FlightEnd {
    pub flight: usize,
    /// The final status, `running` when still running at the end, or `notstarted`.
    pub status: String,
    pub ended_at: Option<Timestamp>,
}

/// What happened on one client.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientRun {
    pub ends: Vec<FlightEnd>,
    /// Report batches: (sent at, reports, bytes).
    pub reports: Vec<(Timestamp, u32, usize)>,
    /// Event uploads to the tower: (at, events, bytes).
    pub events: Vec<(Timestamp, u32, usize)>,
    /// Requests to other hosts (pings, uploads elsewhere).
    pub other_requests: u64,
    pub crashes: u32,
    pub offline_periods: u32,
    /// Every flight ended, yet the machine was not as before (an effect left behind).
    pub leftovers: bool,
    /// The engine and `enrollment::decide` disagreed about enrolling.
    pub disagreements: u32,
    pub stuck: bool,
}

/// The machine the application keeps: it outlives a crash of the pilot.
#[derive(Clone, Default)]
struct SharedHost(Arc<Mutex<MemoryHost>>);

impl SharedHost {
    fn with<T>(&self, f: impl FnOnce(&mut MemoryHost) -> T) -> T {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }
}

impl Host for SharedHost {
    fn addon_present(&self, id: &str) -> Result<bool, Error> {
        self.with(|h| h.addon_present(id))
    }
    fn addon_install(
        &mut self,
        key: &str,
        id: &str,
        package: &std::path::Path,
        sha256: &str,
    ) -> Result<(), Error> {
        self.with(|h| h.addon_install(key, id, package, sha256))
    }
    fn addon_undo_install(&mut self, key: &str, id: &str) -> Result<(), Error> {
        self.with(|h| h.addon_undo_install(key, id))
    }
    fn addon_handover(&mut self, from: &str, to: &str, id: &str) -> Result<(), Error> {
        self.with(|h| h.addon_handover(from, to, id))
    }
    fn addon_uninstall(&mut self, key: &str, id: &str) -> Result<(), Error> {
        self.with(|h| h.addon_uninstall(key, id))
    }
    fn addon_undo_uninstall(&mut self, key: &str, id: &str) -> Result<(), Error> {
        self.with(|h| h.addon_undo_uninstall(key, id))
    }
    fn feature_get(&self, id: &str) -> Result<Option<Value>, Error> {
        self.with(|h| h.feature_get(id))
    }
    fn feature_set(&mut self, id: &str, value: Option<&Value>) -> Result<(), Error> {
        self.with(|h| h.feature_set(id, value))
    }
    fn notify(
        &mut self,
        key: &str,
        topic: &str,
        subject: Option<&str>,
        data: Option<&Value>,
    ) -> Result<(), Error> {
        self.with(|h| h.notify(key, topic, subject, data))
    }
}

/// The network as the simulated machine sees it: every request answered 200, except while
/// the machine is offline (no answer: the pilot retries with backoff).
struct SimNet {
    clock: ManualClock,
    offline: AtomicBool,
    other: AtomicU64,
    tower_events: Mutex<Vec<(Timestamp, u32, usize)>>,
}

/// Where a tower takes streamed events.
const EVENTS_PATH: &str = "/api/v1/events";

/// The tower the simulated pilots stream events to (only [`SimNet`] answers it).
const SIM_TOWER: &str = "https://tower.simulated.invalid";

impl Net for SimNet {
    fn send(&self, req: &Request) -> Result<Response, Error> {
        if self.offline.load(Ordering::Relaxed) {
            return Err(Error::Net {
                msg: format!("{} {}: offline (simulated)", req.method, req.url),
                retryable: true,
            });
        }
        if req.url.contains(EVENTS_PATH) {
            let body = req.body.as_deref().unwrap_or_default();
            let n = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v.get("events").and_then(Value::as_array).map(Vec::len))
                .unwrap_or(0);
            if let Ok(mut e) = self.tower_events.lock() {
                e.push((self.clock.now(), n as u32, body.len()));
            }
        } else {
            self.other.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Response {
            status: 200,
            ..Response::default()
        })
    }
}

/// A prompt the person will answer: when, and what.
struct Pending {
    at: Timestamp,
    answer: &'static str,
}

impl World<'_> {
    /// The serial of the index a poll at `polled` gets: one more for every kill by then.
    fn serial(&self, polled: Timestamp) -> u64 {
        1 + self.kills.iter().filter(|(_, at)| *at <= polled).count() as u64
    }

    fn payload(&self, enrolled: &[usize], polled: Timestamp) -> IndexPayload {
        let killed = |i: usize| self.kills.iter().any(|(k, at)| *k == i && *at <= polled);
        let flights = enrolled
            .iter()
            .map(|&i| {
                let mut v = self.flights[i].spec.clone();
                if killed(i) {
                    v["kill"] = Value::Bool(true);
                }
                v
            })
            .collect();
        IndexPayload {
            serial: self.serial(polled),
            generated_at: polled,
            expires_at: Timestamp(polled.0 + INDEX_TTL_MS),
            flights,
            next_key: None,
        }
    }

    /// Runs client `client`, who enrols in `enrolled` (flight indexes) and first polls at
    /// `arrival`, through the pilot.
    pub fn run(
        &self,
        client: u64,
        person: Value,
        arrival: Timestamp,
        enrolled: &[usize],
    ) -> Result<ClientRun, Error> {
        let mut out = ClientRun::default();
        if arrival >= self.end {
            out.ends = enrolled
                .iter()
                .map(|&f| FlightEnd {
                    flight: f,
                    status: "notstarted".into(),
                    ended_at: None,
                })
                .collect();
            return Ok(out);
        }
        let b = self.behaviour;
        let mut rng = Rng::new(self.seed, client, Stream::Behaviour);
        let clock = ManualClock::new(arrival);
        let host = SharedHost::default();
        let net = Arc::new(SimNet {
            clock: clock.clone(),
            offline: AtomicBool::new(false),
            other: AtomicU64::new(0),
            tower_events: Mutex::new(Vec::new()),
        });
        let open = |journal: Journal| {
            Pilot::with_journal(
                journal,
                PilotConfig {
                    profile: self.scratch.clone(),
                    person: Some(person.clone()),
                },
                Box::new(host.clone()),
                net.clone(),
                Arc::new(clock.clone()),
            )
        };
        let mut pilot = open(Journal::in_memory(Default::default())?)?;
        let day = 86_400_000.0;
        let next_of = |rng: &mut Rng, rate: f64, from: Timestamp| -> Timestamp {
            if rate <= 0.0 {
                Timestamp(i64::MAX)
            } else {
                Timestamp(from.0.saturating_add(rng.exp(day / rate) as i64))
            }
        };
        let mut next_crash = next_of(&mut rng, b.crash_per_day, arrival);
        let mut next_offline = next_of(&mut rng, b.offline_per_day, arrival);
        // Offline from `offline_since` until `online_at`.
        let mut offline_since: Option<Timestamp> = None;
        let mut online_at = arrival;
        let mut applied: Option<(u64, Timestamp)> = None;
        // Event streams per topic, drawn by arm-specific rates lazily.
        let mut next_event: BTreeMap<String, Timestamp> = BTreeMap::new();
        let mut answers: BTreeMap<i64, Pending> = BTreeMap::new();
        let mut now = arrival;
        let tower = TowerSource::parse(SIM_TOWER)?;
        let streaming = enrolled.iter().any(|&i| {
            self.flights[i]
                .listeners
                .iter()
                .any(|(_, l)| l.iter().any(|x| x.streams))
        });
        let mut steps = 0;
        loop {
            steps += 1;
            if steps > MAX_STEPS {
                out.stuck = true;
                break;
            }
            clock.set(now);
            if now >= online_at {
                offline_since = None;
            }
            net.offline
                .store(offline_since.is_some(), Ordering::Relaxed);
            // The index the pilot holds is the one of its last poll that reached the tower.
            let reached = offline_since.unwrap_or(now);
            let polled = Timestamp(
                arrival.0 + (reached.0 - arrival.0) / self.load.poll_ms * self.load.poll_ms,
            );
            // Writing the index at every poll would change nothing the engine sees but its
            // expiry, so it is written when new flights or kills come, or a day before the
            // one held expires (the engine wakes then).
            let (serial, expires) = (self.serial(polled), Timestamp(polled.0 + INDEX_TTL_MS));
            let stale = applied.is_none_or(|(s, exp)| {
                s != serial || (exp.0 - now.0 <= REFRESH_BEFORE_MS && expires > exp)
            });
            if stale {
                let p = self.payload(enrolled, polled);
                pilot.apply_accepted(&p)?;
                applied = Some((p.serial, p.expires_at));
            }
            let wake = pilot.tick()?;
            if streaming {
                // The pilot's own streaming: recorders that are due send their events to
                // the tower (counted by the network for the load); offline, they wait.
                let _ = stream::upload_events(&mut pilot, &tower);
            }
            // The arms and the steps under way, to know which events matter now.
            let rows = pilot.journal.flights()?;
            let running: Vec<_> = rows
                .iter()
                .filter(|r| r.status == Status::Running.as_str())
                .collect();
            if running.is_empty() && rows.iter().all(|r| r.cleaned_up || r.started_at.is_none()) {
                break;
            }
            let mut waiting: Vec<(String, bool, f64)> = Vec::new();
            for r in &running {
                let Some(i) = self.flights.iter().position(|f| f.name() == r.studyname) else {
                    continue;
                };
                let listeners: &[Listener] = self.flights[i].listeners_of(r.arm.as_deref());
                if listeners.is_empty() {
                    continue;
                }
                let under_way = pilot.steps_under_way(&r.studyname)?;
                for l in listeners {
                    if under_way.contains(&l.path) {
                        for t in &l.topics {
                            let rate = b.events.get(t).map_or(0.0, |e| e.for_arm(r.arm.as_deref()));
                            waiting.push((t.clone(), l.observe, rate));
                        }
                    }
                }
            }
            // Prompts waiting for an answer get one, some time from now.
            let asks = running.iter().any(|r| {
                self.flights
                    .iter()
                    .any(|f| f.asks && f.name() == r.studyname)
            });
            let prompts = if asks || !answers.is_empty() {
                pilot.journal.open_prompts()?
            } else {
                Vec::new()
            };
            for p in prompts {
                if !p.wait || answers.contains_key(&p.id) {
                    continue;
                }
                let from = if p.state == "later" {
                    p.answered_at.unwrap_or(now).0 + b.later_after_ms as i64
                } else {
                    now.0
                };
                let u = rng.unit();
                let answer = if u < b.answers[0] {
                    "ok"
                } else if u < b.answers[0] + b.answers[1] {
                    "no"
                } else {
                    "later"
                };
                answers.insert(
                    p.id,
                    Pending {
                        at: Timestamp(from + rng.exp(b.answer_after_ms) as i64),
                        answer,
                    },
                );
            }
            // What comes next.
            let mut next = wake.unwrap_or(Timestamp(i64::MAX));
            for (topic, observe, rate) in &waiting {
                let at = *next_event
                    .entry(topic.clone())
                    .or_insert_with(|| next_of(&mut rng, *rate, now));
                if *observe {
                    next = next.min(at);
                }
            }
            next = next.min(
                answers
                    .values()
                    .map(|p| p.at)
                    .min()
                    .unwrap_or(Timestamp(i64::MAX)),
            );
            next = next.min(next_crash).min(next_offline);
            if offline_since.is_some() {
                next = next.min(online_at);
            }
            for (i, at) in self.kills {
                if enrolled.contains(i) && *at > now {
                    next = next.min(self.load.next_poll(arrival, *at));
                }
            }
            // The next poll refreshes the index before the one held expires.
            if let Some((_, exp)) = applied {
                let refresh = Timestamp(exp.0 - REFRESH_BEFORE_MS);
                next = next.min(if refresh > now {
                    refresh
                } else {
                    Timestamp(exp.0)
                });
            }
            if next >= self.end {
                break;
            }
            let next = next.max(Timestamp(now.0 + 1));
            // Events up to then happen, for the topics that are listened to now.
            for (topic, _, rate) in &waiting {
                while let Some(at) = next_event.get(topic).copied().filter(|at| *at <= next) {
                    pilot.journal.record_event(topic, None, None, at)?;
                    next_event.insert(topic.clone(), next_of(&mut rng, *rate, at));
                }
            }
            now = next;
            clock.set(now);
            let due: Vec<i64> = answers
                .iter()
                .filter(|(_, p)| p.at <= now)
                .map(|(id, _)| *id)
                .collect();
            for id in due {
                if let Some(p) = answers.remove(&id) {
                    match pilot.journal.answer_prompt(id, p.answer, now) {
                        Ok(_) | Err(Error::Usage(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            if now >= next_crash {
                // The application dies and starts again: the pilot reopens its journal.
                out.crashes += 1;
                let journal =
                    std::mem::replace(&mut pilot.journal, Journal::in_memory(Default::default())?);
                drop(pilot);
                pilot = open(journal)?;
                next_crash = next_of(&mut rng, b.crash_per_day, now);
            }
            if now >= next_offline {
                out.offline_periods += 1;
                offline_since = Some(now);
                online_at = Timestamp(now.0 + rng.exp(b.offline_for_ms) as i64);
                next_offline = next_of(&mut rng, b.offline_per_day, online_at);
            }
        }
        out.other_requests = net.other.load(Ordering::Relaxed);
        self.finish(&pilot, &host, arrival, enrolled, &net, &mut out)?;
        Ok(out)
    }

    fn finish(
        &self,
        pilot: &Pilot,
        host: &SharedHost,
        arrival: Timestamp,
        enrolled: &[usize],
        net: &SimNet,
        out: &mut ClientRun,
    ) -> Result<(), Error> {
        let rows = pilot.journal.flights()?;
        let mut all_ended = true;
        for &f in enrolled {
            let name = self.flights[f].name();
            let row = rows.iter().find(|r| r.studyname == name);
            let (status, ended_at) = match row {
                Some(r) if r.started_at.is_some() => (r.status.clone(), r.ended_at),
                Some(r) => {
                    out.disagreements += 1;
                    (r.status.clone(), None)
                }
                None => ("notstarted".to_string(), None),
            };
            all_ended &= status != Status::Running.as_str();
            out.ends.push(FlightEnd {
                flight: f,
                status,
                ended_at,
            });
        }
        if all_ended {
            let h = host.with(|h| (h.addons.is_empty(), h.features.is_empty()));
            out.leftovers = !(h.0 && h.1);
        }
        // Reports go out at the client's next poll; a poll takes everything waiting.
        let mut batches: BTreeMap<i64, (u32, usize)> = BTreeMap::new();
        for (_, r) in pilot.journal.outbox(1_000_000)? {
            let at = r
                .get("at")
                .and_then(|v| testpilot_flight::parse_dateish(v).ok())
                .map_or(arrival, |d| d.at);
            let sent = self.load.next_poll(arrival, at);
            let e = batches.entry(sent.0).or_default();
            e.0 += 1;
            e.1 += r.to_string().len();
        }
        out.reports = batches
            .into_iter()
            .map(|(at, (n, b))| (Timestamp(at), n, b))
            .collect();
        if let Ok(e) = net.tower_events.lock() {
            out.events = e.clone();
        }
        Ok(())
    }
}
