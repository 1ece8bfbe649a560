//! The long-running agent: one per profile (a lock refuses a second), syncing with the tower
//! every `poll`, advancing flights as they come due, and stopping cleanly when asked.

use crate::clock::SystemClock;
use crate::journal::{prune, Retention};
use crate::net::{HttpNet, Net};
use crate::reference::ReferenceHost;
use crate::stream::{upload_events, upload_events_retrying};
use crate::sync::{sync, upload_reports};
use crate::{engine::PilotConfig, Error, Faults, Host, Pilot};
use serde_json::Value;
use std::fs::File;
use std::future::Future;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use testpilot_flight::index::{parse_public_key, Trust};
use testpilot_flight::{Clock, Timestamp};

pub use crate::sync::TowerSource;

/// How the agent runs (the options of `testpilot pilot run`).
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The profile folder: journal, add-ons, features, notifications.
    pub profile: PathBuf,
    /// `http(s)://...` or `file://PATH` (see [`TowerSource::parse`]).
    pub tower: String,
    /// The tower's Ed25519 public key, standard base64 of its 32 bytes.
    pub public_key: Option<String>,
    /// Development only: accept unsigned indexes.
    pub insecure_unsigned: bool,
    /// The person context (`personid` is generated and kept when absent).
    pub person: Option<Value>,
    /// How often to ask the tower for the index.
    pub poll: Duration,
    /// Sync once, advance flights once, upload reports, and return.
    pub once: bool,
    /// Development only: run the pilot's clock this many times faster than the wall clock,
    /// from the moment the profile first ran with it (kept in the journal, so that virtual
    /// time keeps going forward across restarts). 1.0 is real time.
    pub time_scale: f64,
    /// What the journal keeps (`--retention`): pruned at start and every hour of the
    /// pilot's clock (`journal::prune`).
    pub retention: Retention,
}

impl AgentConfig {
    pub fn new(profile: impl Into<PathBuf>, tower: impl Into<String>) -> AgentConfig {
        AgentConfig {
            profile: profile.into(),
            tower: tower.into(),
            public_key: None,
            insecure_unsigned: false,
            person: None,
            poll: Duration::from_secs(15 * 60),
            once: false,
            time_scale: 1.0,
            retention: Retention::default(),
        }
    }
}

/// The profile's lock: held while an agent (or a command cleaning up in its place) works on
/// the profile. Released when dropped, also when the process dies.
pub struct ProfileLock {
    _file: File,
}

impl ProfileLock {
    pub fn path(profile: &Path) -> PathBuf {
        profile.join("agent.lock")
    }

    /// Takes the lock, or says who holds it.
    pub fn acquire(profile: &Path) -> Result<ProfileLock, Error> {
        crate::journal::create_private_dir(profile)?;
        let path = ProfileLock::path(profile);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(Error::io("cannot open the lock file", &path))?;
        use std::os::unix::io::AsRawFd;
        // SAFETY: flock on a file descriptor we own; no memory is shared.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "another process".to_string(),
                pid => format!("pid {pid}"),
            };
            return Err(Error::Locked {
                profile: profile.to_path_buf(),
                holder,
            });
        }
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}", std::process::id());
        let _ = file.flush();
        Ok(ProfileLock { _file: file })
    }
}

/// What other threads tell a running agent: stop, or fetch the index now (the push stream
/// heard a new serial, or an embedding application asked). The agent's thread sleeps on it.
#[derive(Default)]
pub struct Signals {
    stop: Arc<AtomicBool>,
    sync_now: AtomicBool,
    lock: Mutex<()>,
    cv: Condvar,
}

impl Signals {
    /// Asks the agent to stop after the journal write under way.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _g = self.lock.lock();
        self.cv.notify_all();
    }
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
    /// Wakes the agent to fetch the index at once, whatever its poll interval. Only a wake-up:
    /// what it then applies is the signed index it fetches and checks.
    pub fn sync_now(&self) {
        self.sync_now.store(true, Ordering::SeqCst);
        let _g = self.lock.lock();
        self.cv.notify_all();
    }
    /// Wakes the agent for a round (answers, events, opt-outs written to the journal).
    pub fn wake(&self) {
        let _g = self.lock.lock();
        self.cv.notify_all();
    }
    fn take_sync_now(&self) -> bool {
        self.sync_now.swap(false, Ordering::SeqCst)
    }
    /// The flag [`Pilot::tick`] checks between flights.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }
    fn sleep(&self, d: Duration) {
        let g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if !self.stopped() && !self.sync_now.load(Ordering::SeqCst) {
            let _ = self.cv.wait_timeout(g, d);
        }
    }
}

/// How often the agent looks at the journal for answers, observed events and opt-outs that
/// other processes wrote.
const LOCAL_POLL: Duration = Duration::from_millis(250);

/// Runs the agent until `shutdown` resolves (or, with `once`, after one round). The current
/// journal write always finishes: the engine stops between writes.
pub async fn run_agent(
    config: AgentConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let lock = ProfileLock::acquire(&config.profile)?;
    let stop = Arc::new(Signals::default());
    let stop2 = stop.clone();
    // A thread of its own, outside any runtime: the engine blocks (SQLite, the host, HTTP on
    // its own small runtime), and this works the same under `up`'s runtime or the CLI's.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("testpilot-agent".into())
        .spawn(move || {
            let host = ReferenceHost::new(&config.profile, Faults::default());
            let _ = tx.send(agent_loop(config, Box::new(host), &stop2, &mut |_| {}));
        })
        .map_err(|e| Error::Usage(format!("cannot start the agent's thread: {e}")))?;
    let mut rx = rx;
    let result = tokio::select! {
        r = &mut rx => r,
        _ = shutdown => {
            stop.stop();
            rx.await
        }
    };
    drop(lock);
    result.map_err(|_| Error::Usage("the agent's thread stopped abnormally".into()))?
}

/// The agent's loop, on the caller's thread, until `stop` is signalled (or one round with
/// `once`): sync every `poll` (at once on [`Signals::sync_now`]), advance flights, upload
/// reports and events. `after_round` sees the pilot after every round (the embedding keeps
/// its feature snapshot current with it). The caller holds the profile's lock.
pub fn agent_loop(
    config: AgentConfig,
    host: Box<dyn Host + Send>,
    stop: &Arc<Signals>,
    after_round: &mut dyn FnMut(&Pilot),
) -> Result<(), Error> {
    let tower = TowerSource::parse(&config.tower)?;
    let key = match (&config.public_key, config.insecure_unsigned) {
        (Some(k), _) => Some(parse_public_key(k)?),
        (None, true) => None,
        (None, false) => {
            return Err(Error::Usage(
                "give the tower's public key with --public-key KEY (`testpilot tower pubkey` prints it), or --insecure-unsigned for development".into(),
            ))
        }
    };
    let trust = match &key {
        Some(k) => Trust::Pinned(k),
        None => Trust::InsecureUnsigned,
    };
    let net: Arc<dyn Net> = Arc::new(HttpNet::new(Duration::from_secs(30))?);
    let clock: Arc<dyn Clock> = if config.time_scale != 1.0 && config.time_scale > 0.0 {
        // The origin is kept in the journal, so virtual time never goes back on a restart.
        let mut j = crate::Journal::open(&config.profile, Faults::default())?;
        let origin = j.meta_or_init("clock_origin", || SystemClock.now().0.to_string())?;
        let origin = Timestamp(origin.parse().unwrap_or(0));
        tracing::warn!(
            "the pilot's clock runs {}x faster than real time",
            config.time_scale
        );
        Arc::new(crate::clock::ScaledClock {
            origin,
            scale: config.time_scale,
        })
    } else {
        Arc::new(SystemClock)
    };
    let faults = Faults::default();
    let pc = PilotConfig {
        profile: config.profile.clone(),
        person: config.person.clone(),
    };
    let mut pilot = Pilot::open(pc, host, net, clock.clone(), faults)?;
    pilot.set_interrupt(stop.stop_flag());
    let now = clock.now();
    if let Some(k) = &key {
        crate::pins::pin_given(&mut pilot.journal, k, now)?;
    }
    let mode = if key.is_none() {
        " — INSECURE: unsigned indexes are accepted (--insecure-unsigned); never use this outside development"
    } else {
        ""
    };
    if key.is_none() {
        tracing::warn!(
            "the pilot accepts UNSIGNED indexes (--insecure-unsigned): development only"
        );
    }
    pilot.journal.note(
        "",
        now,
        "agent",
        &format!(
            "agent started (pid {}) for {}{mode}",
            std::process::id(),
            tower.describe()
        ),
        None,
    )?;

    // Push (docs/api.md, "Push: GET /control/stream"): an http(s) tower's stream wakes the
    // loop as soon as the index changes. Dropped (and its thread ended) when the loop ends.
    let push = if config.once {
        None
    } else {
        let held = pilot
            .journal
            .meta("last_serial")?
            .and_then(|s| s.parse().ok());
        crate::push::start(&tower, stop.clone(), held.unwrap_or(0), config.poll)
    };
    let mut next_sync = now;
    let mut sync_failures = 0u32;
    let mut next_upload = now;
    let mut next_prune = now;
    let mut upload_failures = 0u32;
    // With `once`: why the index was refused, to fail with once the round is done.
    let mut refused: Option<String> = None;
    loop {
        if stop.stopped() {
            break;
        }
        let now = clock.now();
        if stop.take_sync_now() {
            next_sync = now;
        }
        if now >= next_sync {
            match sync(&mut pilot, &tower, &trust) {
                Ok(synced) => {
                    if let (Some(p), crate::sync::Synced::Accepted { serial, .. }) = (&push, synced)
                    {
                        p.held(serial);
                    }
                    sync_failures = 0;
                    next_sync = Timestamp(now.0 + config.poll.as_millis() as i64);
                }
                Err(e) if e.is_fatal() => return Err(e),
                Err(e) => {
                    sync_failures += 1;
                    // 2 s, 4 s, 8 s, ... up to the poll interval: quick while a tower that
                    // starts alongside (`testpilot up`) comes up, gentle when it is down.
                    let backoff = (1_000i64 << sync_failures.min(16))
                        .min(config.poll.as_millis() as i64)
                        .max(1_000);
                    tracing::warn!("sync failed: {e}; next try in {} s", backoff / 1000);
                    next_sync = Timestamp(now.0 + backoff);
                    if config.once {
                        match e {
                            // Finish the round (flights, reports), then fail.
                            Error::Index(e) => refused = Some(e.to_string()),
                            // The error may quote a tower's answer: controls shown, not obeyed.
                            e => eprintln!("warning: {}", visible(&e.to_string())),
                        }
                    }
                }
            }
        }
        for line in push.as_ref().map(|p| p.news()).unwrap_or_default() {
            pilot.journal.note("", clock.now(), "push", &line, None)?;
        }
        if stop.stopped() {
            break;
        }
        let wake = pilot.tick()?;
        let now = clock.now();
        if now >= next_prune {
            prune::on_schedule(&mut pilot.journal, now, &config.retention)?;
            next_prune = Timestamp(now.0 + prune::PRUNE_EVERY.as_millis() as i64);
        }
        if now >= next_upload && pilot.journal.outbox_pending()? > 0 {
            match upload_reports(&mut pilot, &tower) {
                Ok(_) => upload_failures = 0,
                Err(e) if e.error.is_fatal() => return Err(e.error),
                Err(e) => {
                    upload_failures += 1;
                    tracing::warn!("report upload failed: {e}");
                    // The tower's Retry-After, when longer than our own backoff.
                    let backoff = (5_000i64 << upload_failures.min(10)).min(3_600_000);
                    let wait = backoff.max(e.retry_after_ms.unwrap_or(0));
                    next_upload = Timestamp(now.0.saturating_add(wait));
                }
            }
        }
        // Recorded events go out on their own schedule (`uploadEvery`, the window's end, and
        // backoff after a failure), kept per recorder in the journal.
        let streamed = if config.once {
            upload_events_retrying(&mut pilot, &tower)
        } else {
            upload_events(&mut pilot, &tower)
        };
        match streamed {
            Ok(_) => {}
            Err(e) if e.is_fatal() => return Err(e),
            Err(e) => tracing::warn!("event upload failed: {e}"),
        }
        after_round(&pilot);
        if config.once {
            break;
        }
        let mut until = now.0 + LOCAL_POLL.as_millis() as i64;
        until = until.min(next_sync.0);
        if let Some(w) = wake {
            until = until.min(w.0);
        }
        let ms = (until - clock.now().0).clamp(0, LOCAL_POLL.as_millis() as i64);
        stop.sleep(Duration::from_millis(ms as u64));
    }
    let now = clock.now();
    pilot
        .journal
        .note("", now, "agent", "agent stopped", None)?;
    if config.once {
        once_verdict(&pilot, &tower, refused, now)?;
    }
    Ok(())
}

/// After a `--once` round: an error when the index was refused (bad signature, rollback,
/// expired), or when the one the pilot holds has expired, so that scripts notice.
fn once_verdict(
    pilot: &Pilot,
    tower: &TowerSource,
    refused: Option<String>,
    now: Timestamp,
) -> Result<(), Error> {
    if let Some(why) = refused {
        return Err(Error::Usage(format!(
            "refused the index from {}: {why}; nothing in it was applied (`testpilot log` shows what the pilot did)",
            tower.describe()
        )));
    }
    if let Some(at) = pilot.index_expires_at()?.filter(|at| now >= *at) {
        return Err(Error::Usage(format!(
            "the index from {} expired at {at} and no newer one could be fetched: running flights were ended and undone",
            tower.describe()
        )));
    }
    Ok(())
}

/// `s` with control characters written as escapes (`\u{1b}`), for a terminal.
fn visible(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}
