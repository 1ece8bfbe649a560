//! The pilot inside an application (docs/embedding.md): open a profile with an
//! [`EmbedConfig`], [`EmbeddedPilot::start`] the agent on its own thread, and from any thread
//! read features, feed events, answer prompts, read the flight log, opt out and stop.
//!
//! This is the one implementation behind every binding: the C ABI (`crates/ffi`), the Python
//! package and the OpenFeature provider all call these methods.
//!
//! - The profile's lock is taken at [`EmbeddedPilot::open`] and held until the pilot is
//!   dropped: a second process (or a second `open` in this one) gets [`Error::Locked`].
//! - The application's effects go through its [`Host`] (the [`ReferenceHost`] over files in
//!   the profile when it gives none), guarded so that a panic fails the flight's step only.
//! - Features are read from a snapshot rebuilt after every round of the agent
//!   ([`features::features_in_effect`]); everything else reads and writes the journal through
//!   a connection of the embedding's own, as the command line does beside a running agent.

mod config;
pub mod features;
mod guard;
#[cfg(feature = "openfeature")]
pub mod openfeature;

pub use config::{EmbedConfig, MAX_CONFIG_BYTES};
pub use features::FeatureValue;

use crate::agent::{agent_loop, AgentConfig, ProfileLock, Signals};
use crate::clock::SystemClock;
use crate::engine::PilotConfig;
use crate::net::Offline;
use crate::{flightlog, Error, Faults, Host, Journal, Pilot, ReferenceHost};
use guard::GuardedHost;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};
use testpilot_flight::Clock;

/// How long [`EmbeddedPilot::stop`] waits for the agent's thread (a host callback may block),
/// unless [`EmbeddedPilot::set_stop_timeout`] says otherwise.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`EmbeddedPilot::optout`] waits for a running agent to undo what it must.
pub const OPTOUT_TIMEOUT: Duration = Duration::from_secs(60);

type Snapshot = Arc<RwLock<HashMap<String, FeatureValue>>>;

enum State {
    /// Opened; the host waits for [`EmbeddedPilot::start`].
    Ready(Box<dyn Host + Send>),
    Running {
        signals: Arc<Signals>,
        done: mpsc::Receiver<Result<(), Error>>,
    },
    /// The agent's thread ended on its own with this error; [`EmbeddedPilot::stop`] returns it.
    Failed(Error),
    /// Stopped (the host went with the agent's thread).
    Stopped,
}

impl State {
    /// Notes an agent that has ended on its own since last looked at, so that its error is
    /// kept for [`EmbeddedPilot::stop`] and nobody waits on it.
    fn settle(&mut self) {
        if let State::Running { done, .. } = self {
            let ended = match done.try_recv() {
                Ok(r) => r,
                Err(mpsc::TryRecvError::Empty) => return,
                Err(mpsc::TryRecvError::Disconnected) => {
                    Err(Error::Host("the agent's thread ended abnormally".into()))
                }
            };
            *self = match ended {
                Ok(()) => State::Stopped,
                Err(e) => State::Failed(e),
            };
        }
    }
}

/// A pilot embedded in an application. `Send + Sync`: share it in an `Arc`.
pub struct EmbeddedPilot {
    config: EmbedConfig,
    journal: Mutex<Journal>,
    features: Snapshot,
    state: Mutex<State>,
    stop_timeout_ms: AtomicU64,
    /// Shared with the agent's thread: a thread that outlives `stop` (a host callback that
    /// does not return) keeps the profile locked until it ends.
    profile_lock: Arc<ProfileLock>,
}

// The bindings share one pilot between threads (docs/embedding.md).
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<EmbeddedPilot>();
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl EmbeddedPilot {
    /// Opens the profile (creating it, private to this user), takes its lock, and reads the
    /// features the last run left in effect. `host`: the application's effects; `None` for the
    /// reference host (add-ons and `features.json` in the profile).
    pub fn open(
        config: EmbedConfig,
        host: Option<Box<dyn Host + Send>>,
    ) -> Result<EmbeddedPilot, Error> {
        let lock = ProfileLock::acquire(&config.profile)?;
        let journal = Journal::open(&config.profile, Faults::default())?;
        let snapshot = features::features_in_effect(&journal)?;
        let host = host
            .unwrap_or_else(|| Box::new(ReferenceHost::new(&config.profile, Faults::default())));
        Ok(EmbeddedPilot {
            config,
            journal: Mutex::new(journal),
            features: Arc::new(RwLock::new(snapshot)),
            state: Mutex::new(State::Ready(Box::new(GuardedHost::new(host)))),
            stop_timeout_ms: AtomicU64::new(STOP_TIMEOUT.as_millis() as u64),
            profile_lock: Arc::new(lock),
        })
    }

    /// Opens with the JSON configuration of [`EmbedConfig::from_json`].
    pub fn open_json(
        config_json: &str,
        host: Option<Box<dyn Host + Send>>,
    ) -> Result<EmbeddedPilot, Error> {
        EmbeddedPilot::open(EmbedConfig::from_json(config_json)?, host)
    }

    pub fn config(&self) -> &EmbedConfig {
        &self.config
    }

    /// How long [`EmbeddedPilot::stop`] (and dropping the pilot) waits for the agent's thread
    /// before giving up with an error; [`STOP_TIMEOUT`] unless set.
    pub fn set_stop_timeout(&self, timeout: Duration) {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.stop_timeout_ms.store(ms, Ordering::Relaxed);
    }

    fn stop_timeout(&self) -> Duration {
        Duration::from_millis(self.stop_timeout_ms.load(Ordering::Relaxed))
    }

    /// Starts the agent on a thread of its own: it syncs at once, then every `poll` (and as
    /// soon as the tower's stream says the index moved), and runs flights as they come due.
    pub fn start(&self) -> Result<(), Error> {
        let mut state = lock(&self.state);
        let host = match std::mem::replace(&mut *state, State::Stopped) {
            State::Ready(host) => host,
            running @ State::Running { .. } => {
                *state = running;
                return Err(Error::Usage("the pilot is already started".into()));
            }
            State::Stopped | State::Failed(_) => {
                return Err(Error::Usage(
                    "the pilot was stopped: open the profile again to start it anew".into(),
                ))
            }
        };
        let agent = AgentConfig {
            profile: self.config.profile.clone(),
            tower: self.config.tower.clone(),
            public_key: self.config.public_key.clone(),
            insecure_unsigned: self.config.insecure_unsigned,
            person: self.config.person.clone(),
            poll: self.config.poll,
            once: false,
            time_scale: 1.0,
            retention: Default::default(),
        };
        let signals = Arc::new(Signals::default());
        let (tx, done) = mpsc::channel();
        let snapshot = self.features.clone();
        let sig = signals.clone();
        let profile_lock = self.profile_lock.clone();
        std::thread::Builder::new()
            .name("testpilot-agent".into())
            .spawn(move || {
                let _profile_lock = profile_lock;
                let mut refresh = |p: &Pilot| {
                    if let Ok(now) = features::features_in_effect(&p.journal) {
                        let mut s = snapshot.write().unwrap_or_else(|e| e.into_inner());
                        if *s != now {
                            *s = now;
                        }
                    }
                };
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    agent_loop(agent, host, &sig, &mut refresh)
                }))
                .unwrap_or_else(|_| Err(Error::Host("the agent's thread panicked".into())));
                if let Err(e) = &r {
                    tracing::error!("the embedded pilot's agent stopped: {e}");
                }
                let _ = tx.send(r);
            })
            .map_err(|e| Error::Usage(format!("cannot start the agent's thread: {e}")))?;
        *state = State::Running { signals, done };
        Ok(())
    }

    /// Whether the agent runs (started, not stopped, not failed).
    pub fn running(&self) -> bool {
        let mut state = lock(&self.state);
        state.settle();
        matches!(&*state, State::Running { .. })
    }

    /// A feature's value and the flight and arm that set it; `None` when no flight sets it.
    pub fn feature(&self, id: &str) -> Option<FeatureValue> {
        self.features
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// Every feature flights have set.
    pub fn features(&self) -> HashMap<String, FeatureValue> {
        self.features
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The flights running on this machine: `[{"studyname", "version", "arm", "step",
    /// "statusLine", "startedAt"}]`.
    pub fn active_flights(&self) -> Result<Vec<Value>, Error> {
        let j = lock(&self.journal);
        Ok(j.flights()?
            .into_iter()
            .filter(|f| f.status == "running")
            .map(|f| {
                json!({
                    "studyname": f.studyname, "version": f.version, "arm": f.arm, "step": f.step,
                    "statusLine": f.status_line, "startedAt": f.started_at.map(|t| t.to_rfc3339()),
                })
            })
            .collect())
    }

    /// Feeds an event (what `testpilot pilot observe` does): `observe` steps waiting for the
    /// topic go on, and recordings watching it record it. Returns the event's id.
    pub fn observe(
        &self,
        topic: &str,
        subject: Option<&str>,
        value: Option<f64>,
    ) -> Result<i64, Error> {
        if value.is_some_and(|v| !v.is_finite()) {
            return Err(Error::Usage(
                "an event's value must be a finite number".into(),
            ));
        }
        let id = lock(&self.journal).record_event(topic, subject, value, SystemClock.now())?;
        self.wake();
        Ok(id)
    }

    /// The prompts waiting for the person (the JSON of `testpilot later list --json`).
    pub fn prompts(&self) -> Result<Vec<Value>, Error> {
        flightlog::pending_prompts(&lock(&self.journal))
    }

    /// Answers a prompt: `"ok"`, `"no"` or `"later"`.
    pub fn answer(&self, id: i64, answer: &str) -> Result<(), Error> {
        if !matches!(answer, "ok" | "no" | "later") {
            return Err(Error::Usage(format!(
                "{answer:?} is not an answer: give \"ok\", \"no\" or \"later\""
            )));
        }
        lock(&self.journal).answer_prompt(id, answer, SystemClock.now())?;
        self.wake();
        Ok(())
    }

    /// The flight log (the JSON of `testpilot log --json`).
    pub fn log(&self) -> Result<Vec<Value>, Error> {
        flightlog::flights(&lock(&self.journal), None)
    }

    /// Leaves a flight (or, with `None`, every flight, and starts no new ones), undoing what it
    /// did. Returns the flights ended. With the agent running, it is asked and this waits for
    /// it (up to [`OPTOUT_TIMEOUT`]); before `start`, the cleanup runs here with the host.
    pub fn optout(&self, flight: Option<&str>) -> Result<Vec<String>, Error> {
        if let Some(f) = flight {
            let j = lock(&self.journal);
            match j.flight(f)? {
                None => {
                    return Err(Error::Usage(format!(
                        "this profile knows no flight named `{f}`"
                    )))
                }
                Some(row) if row.status != "running" => return Ok(Vec::new()),
                Some(_) => {}
            }
        }
        let mut state = lock(&self.state);
        state.settle();
        match &mut *state {
            State::Running { signals, .. } => {
                let signals = signals.clone();
                drop(state);
                let before: Vec<String> = self.running_names()?;
                let req = lock(&self.journal).add_request("optout", flight, SystemClock.now())?;
                signals.wake();
                let deadline = Instant::now() + OPTOUT_TIMEOUT;
                while !lock(&self.journal).request_done(req)? {
                    if !self.running() {
                        return Err(Error::Usage(
                            "the agent stopped before it ended the flight(s); they are ended at the next start".into(),
                        ));
                    }
                    if Instant::now() > deadline {
                        return Err(Error::Usage(
                            "the agent was asked to end the flight(s) and has not finished yet; the flight log shows when it has".into(),
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let after = self.running_names()?;
                Ok(before.into_iter().filter(|f| !after.contains(f)).collect())
            }
            State::Ready(_) => {
                let State::Ready(host) = std::mem::replace(&mut *state, State::Stopped) else {
                    unreachable!("matched Ready above")
                };
                let pc = PilotConfig {
                    profile: self.config.profile.clone(),
                    person: self.config.person.clone(),
                };
                let mut pilot = Pilot::open(
                    pc,
                    host,
                    Arc::new(Offline),
                    Arc::new(SystemClock),
                    Faults::default(),
                )?;
                let ended = pilot.optout(flight);
                if let Ok(now) = features::features_in_effect(&pilot.journal) {
                    *self.features.write().unwrap_or_else(|e| e.into_inner()) = now;
                }
                *state = State::Ready(pilot.into_host());
                ended
            }
            State::Stopped | State::Failed(_) => Err(Error::Usage(
                "the pilot was stopped: open the profile again to opt out".into(),
            )),
        }
    }

    fn running_names(&self) -> Result<Vec<String>, Error> {
        Ok(lock(&self.journal)
            .flights()?
            .into_iter()
            .filter(|f| f.status == "running")
            .map(|f| f.studyname)
            .collect())
    }

    /// Asks the agent to fetch the index now (it also does on its own when the tower's stream
    /// says the index moved).
    pub fn sync_now(&self) {
        if let Some(signals) = self.signals() {
            signals.sync_now();
        }
    }

    fn wake(&self) {
        if let Some(signals) = self.signals() {
            signals.wake();
        }
    }

    /// The running agent's signals. Never waits on the state: while `stop` holds it (up to its
    /// timeout, behind a blocked host callback) there is no agent to wake, and `observe` or
    /// `answer` must not block the application for it; what they wrote is in the journal.
    fn signals(&self) -> Option<Arc<Signals>> {
        match self.state.try_lock() {
            Ok(state) => match &*state {
                State::Running { signals, .. } => Some(signals.clone()),
                _ => None,
            },
            Err(std::sync::TryLockError::Poisoned(e)) => match &*e.into_inner() {
                State::Running { signals, .. } => Some(signals.clone()),
                _ => None,
            },
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Stops the agent after the journal write under way, waiting up to [`STOP_TIMEOUT`] (or
    /// [`EmbeddedPilot::set_stop_timeout`]). Returns the error the agent stopped with, if it
    /// failed. Flights stay as they are: they go on at the next start. Stopping a pilot that
    /// is not running does nothing. After a timeout the agent still stops once the host's
    /// callback returns, and the profile stays locked until it has; `stop` may be called again.
    pub fn stop(&self) -> Result<(), Error> {
        let mut state = lock(&self.state);
        if let State::Failed(_) = &*state {
            let State::Failed(e) = std::mem::replace(&mut *state, State::Stopped) else {
                unreachable!("matched Failed above")
            };
            return Err(e);
        }
        let State::Running { signals, done } = &*state else {
            return Ok(());
        };
        signals.stop();
        let timeout = self.stop_timeout();
        let r = match done.recv_timeout(timeout) {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(Error::Host(format!(
                    "the agent did not stop within {:.1} s: a host callback has not returned; it stops once the callback returns",
                    timeout.as_secs_f64()
                )))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err(Error::Host("the agent's thread ended abnormally".into()))
            }
        };
        *state = State::Stopped;
        r
    }
}

impl Drop for EmbeddedPilot {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
