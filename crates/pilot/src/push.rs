//! Push: a thread that listens to the tower's `GET /control/stream` (docs/api.md, "Push: GET
//! /control/stream") and wakes the agent to fetch the index as soon as the tower says its
//! serial rose, so a kill reaches the machine in seconds rather than at the next poll.
//!
//! Invariants:
//! - The stream is only a wake-up. Nothing in it is applied: the agent then fetches and
//!   verifies the signed index as at any poll ([`crate::agent::Signals::sync_now`]). A serial
//!   is only compared, to skip what the pilot already holds.
//! - Everything is bounded: a line of at most [`MAX_LINE`] bytes, an event's data as much;
//!   at most one wake-up a second; reconnects back off from 1 s to 60 s with jitter.
//! - A tower without the stream (404 or 501), or something in front of it that answers
//!   another type than `text/event-stream` (a cache, a CDN), means polling only; the stream is
//!   tried again once every poll interval.
//! - The thread never touches the profile, and ends within a fraction of a second of the
//!   agent stopping or the [`PushListener`] being dropped. What it has to say for the flight
//!   log (connected, fell back) waits in [`PushListener::news`], once per change, not on
//!   every reconnect.

use crate::agent::Signals;
use crate::sync::TowerSource;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest line (and event data) taken from the stream.
pub const MAX_LINE: usize = 4096;
/// Without a byte for this long, the stream is taken as dead and reopened: a bit above the
/// tower's heartbeat (15 s), twice.
pub const READ_TIMEOUT: Duration = Duration::from_secs(40);
/// How often the thread looks whether it should stop.
const STOP_CHECK: Duration = Duration::from_millis(100);
/// At most one wake-up per this long, whatever the stream says.
const MIN_WAKE_SPACING: Duration = Duration::from_secs(1);
/// The longest wait between reconnects after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The stream of a tower: `<base>/control/stream`, beside its reports (and its index, unless
/// the index is a file on a static host); none for a `file://` tower.
pub fn stream_url(tower: &TowerSource) -> Option<String> {
    match tower {
        TowerSource::Http { reports, .. } => Some(format!(
            "{}/control/stream",
            reports.strip_suffix("/api/v1/reports").unwrap_or(reports)
        )),
        TowerSource::File(_) => None,
    }
}

/// What the listener thread and the agent share.
#[derive(Default)]
struct Shared {
    /// The serial of the index the pilot holds (0: none).
    held: AtomicU64,
    /// Set when the [`PushListener`] is dropped.
    quit: AtomicBool,
    /// Lines for the flight log.
    news: Mutex<Vec<String>>,
}

/// A running listener; dropping it ends the thread.
pub struct PushListener {
    shared: Arc<Shared>,
}

impl PushListener {
    /// Tells the listener the serial of the index the pilot now holds.
    pub fn held(&self, serial: u64) {
        self.shared.held.fetch_max(serial, Ordering::SeqCst);
    }

    /// What the listener has to say in the flight log since the last call.
    pub fn news(&self) -> Vec<String> {
        std::mem::take(&mut *self.shared.news.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Drop for PushListener {
    fn drop(&mut self) {
        self.shared.quit.store(true, Ordering::SeqCst);
    }
}

/// Starts listening to `tower`'s stream, for an http(s) tower (none for a file). `held` is
/// the serial the pilot holds; `poll` how often the agent polls (the stream is retried that
/// often when the tower has none).
pub fn start(
    tower: &TowerSource,
    signals: Arc<Signals>,
    held: u64,
    poll: Duration,
) -> Option<PushListener> {
    let url = stream_url(tower)?;
    let shared = Arc::new(Shared::default());
    shared.held.store(held, Ordering::SeqCst);
    let listener = Listener {
        url,
        shared: shared.clone(),
        signals,
        poll,
        said: None,
        last_wake: None,
        pending: false,
    };
    let spawned = std::thread::Builder::new()
        .name("testpilot-push".into())
        .spawn(move || listener.run());
    if let Err(e) = spawned {
        tracing::warn!("cannot start the push listener ({e}); polling only");
        return None;
    }
    Some(PushListener { shared })
}

/// What the flight log last heard about the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Said {
    Listening,
    NoStream,
}

/// How one connection ended.
#[derive(Debug)]
enum Ended {
    Stopped,
    /// The tower (or what is in front of it) has no stream: poll only.
    NoStream(String),
    /// Anything else: reconnect after a backoff. `true` when the stream had worked (an event
    /// came), so the backoff starts over; a tower that answers and hangs up at once does
    /// not reset it.
    Failed(String, bool),
}

struct Listener {
    url: String,
    shared: Arc<Shared>,
    signals: Arc<Signals>,
    poll: Duration,
    said: Option<Said>,
    last_wake: Option<Instant>,
    /// A wake-up held back by [`MIN_WAKE_SPACING`].
    pending: bool,
}

impl Listener {
    fn stopping(&self) -> bool {
        self.signals.stopped() || self.shared.quit.load(Ordering::SeqCst)
    }

    fn say(&mut self, said: Said, line: String) {
        if self.said != Some(said) {
            self.said = Some(said);
            tracing::info!("{line}");
            self.shared
                .news
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(line);
        }
    }

    fn run(mut self) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::warn!("cannot start the push listener's runtime ({e}); polling only");
                return;
            }
        };
        let client = match reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("testpilot-pilot/", env!("CARGO_PKG_VERSION")))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("cannot set up HTTP for the push listener ({e}); polling only");
                return;
            }
        };
        let mut failures = 0u32;
        loop {
            let ended = rt.block_on(self.listen(&client));
            let wait = match ended {
                Ended::Stopped => return,
                Ended::NoStream(why) => {
                    failures = 0;
                    let every = self.poll.max(Duration::from_secs(60));
                    self.say(
                        Said::NoStream,
                        format!(
                            "no push stream at {}: {why}; the index is fetched every {} s (the poll interval), and the stream tried again as often",
                            self.url,
                            self.poll.as_secs()
                        ),
                    );
                    every
                }
                Ended::Failed(why, was_open) => {
                    failures = if was_open { 1 } else { failures + 1 };
                    let wait = backoff(failures);
                    tracing::debug!(
                        "push stream {}: {why}; reconnecting in {} ms",
                        self.url,
                        wait.as_millis()
                    );
                    wait
                }
            };
            if !self.sleep(wait) {
                return;
            }
        }
    }

    /// Sleeps `d` unless asked to stop; `false` when asked.
    fn sleep(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if self.stopping() {
                return false;
            }
            std::thread::sleep(STOP_CHECK.min(until.saturating_duration_since(Instant::now())));
        }
        !self.stopping()
    }

    /// Runs `f` until it ends or the agent stops (`None`), firing held-back wake-ups.
    async fn until_stopped<T>(&mut self, f: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::pin!(f);
        let mut tick = tokio::time::interval(STOP_CHECK);
        loop {
            tokio::select! {
                out = &mut f => return Some(out),
                _ = tick.tick() => {
                    if self.stopping() {
                        return None;
                    }
                    if self.pending {
                        self.wake();
                    }
                }
            }
        }
    }

    /// Wakes the agent, at most once per [`MIN_WAKE_SPACING`] (later ones are held back).
    fn wake(&mut self) {
        let now = Instant::now();
        if self
            .last_wake
            .is_some_and(|t| now.duration_since(t) < MIN_WAKE_SPACING)
        {
            self.pending = true;
            return;
        }
        self.pending = false;
        self.last_wake = Some(now);
        self.signals.sync_now();
    }

    /// One connection: open it, then read events until it ends.
    async fn listen(&mut self, client: &reqwest::Client) -> Ended {
        let request = client
            .get(&self.url)
            .header("accept", "text/event-stream")
            .send();
        let mut resp = match self.until_stopped(request).await {
            None => return Ended::Stopped,
            Some(Err(e)) => return Ended::Failed(describe(&e), false),
            Some(Ok(r)) => r,
        };
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND
            || status == reqwest::StatusCode::NOT_IMPLEMENTED
        {
            return Ended::NoStream(format!("the tower answered {status}"));
        }
        if !status.is_success() {
            return Ended::Failed(format!("the tower answered {status}"), false);
        }
        let kind = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if !kind.trim_start().starts_with("text/event-stream") {
            return Ended::NoStream(format!(
                "the answer is `{}`, not text/event-stream (a cache or CDN in front of the tower?)",
                kind.chars().take(60).collect::<String>()
            ));
        }
        self.say(
            Said::Listening,
            format!(
                "listening for index changes at {}: a change is fetched at once",
                self.url
            ),
        );
        let mut events = Events::default();
        // The highest serial heard on this connection: each rise wakes the agent once.
        let mut heard: Option<u64> = None;
        loop {
            let chunk = match self.until_stopped(resp.chunk()).await {
                None => return Ended::Stopped,
                Some(Err(e)) => return Ended::Failed(describe(&e), heard.is_some()),
                Some(Ok(None)) => {
                    return Ended::Failed("the tower closed the stream".into(), heard.is_some())
                }
                Some(Ok(Some(c))) => c,
            };
            let serials = match events.feed(&chunk) {
                Ok(s) => s,
                Err(e) => return Ended::Failed(e, heard.is_some()),
            };
            for serial in serials {
                let held = self.shared.held.load(Ordering::SeqCst);
                if serial > held && heard.is_none_or(|h| serial > h) {
                    tracing::debug!(serial, held, "push: the index changed");
                    self.wake();
                }
                heard = Some(heard.map_or(serial, |h| h.max(serial)));
            }
        }
    }
}

/// The wait before reconnect number `failures` (1, 2, ...): 1 s doubling to 60 s, each
/// between 75 % and 125 % of that (capped at 60 s), so pilots cut off together (a tower
/// restarting) do not come back all at once.
fn backoff(failures: u32) -> Duration {
    let base = Duration::from_secs(1 << failures.saturating_sub(1).min(6)).min(MAX_BACKOFF);
    let jitter = 0.75 + 0.5 * unit_random();
    base.mul_f64(jitter).min(MAX_BACKOFF)
}

/// A number in [0, 1) that differs between calls and processes (for jitter only).
fn unit_random() -> f64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

fn describe(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

/// A Server-Sent Events reader that keeps only what it needs: the `index` events' serials.
/// Lines end in LF, CRLF or CR; a line (and an event's data) longer than [`MAX_LINE`] is an
/// error, so a stream without line ends cannot grow memory.
#[derive(Debug, Default)]
pub struct Events {
    line: Vec<u8>,
    /// The last byte was a CR (a LF right after it ends nothing more).
    after_cr: bool,
    event: String,
    data: String,
}

impl Events {
    /// Takes the next bytes of the stream; the serials of the `index` events they complete.
    /// Events of other types and data that is not `{"serial": n}` are ignored.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<u64>, String> {
        let mut out = Vec::new();
        for &b in bytes {
            let after_cr = std::mem::replace(&mut self.after_cr, b == b'\r');
            if b == b'\n' && after_cr {
                continue;
            }
            if b == b'\n' || b == b'\r' {
                let line = std::mem::take(&mut self.line);
                if let Some(serial) = self.line_done(&line)? {
                    out.push(serial);
                }
                continue;
            }
            if self.line.len() >= MAX_LINE {
                return Err(format!(
                    "a line of the stream is longer than {MAX_LINE} bytes"
                ));
            }
            self.line.push(b);
        }
        Ok(out)
    }

    fn line_done(&mut self, line: &[u8]) -> Result<Option<u64>, String> {
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            let data = std::mem::take(&mut self.data);
            return Ok((event == "index").then(|| serial_of(&data)).flatten());
        }
        let line = String::from_utf8_lossy(line);
        if line.starts_with(':') {
            return Ok(None); // a comment: the heartbeat
        }
        let (field, value) = line.split_once(':').unwrap_or((&line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.event = value.to_string(),
            "data" => {
                if self.data.len() + value.len() + 1 > MAX_LINE {
                    return Err(format!(
                        "an event's data on the stream is longer than {MAX_LINE} bytes"
                    ));
                }
                if !self.data.is_empty() {
                    self.data.push('\n');
                }
                self.data.push_str(value);
            }
            _ => {}
        }
        Ok(None)
    }
}

/// `n` of `{"serial": n}` (an object: serde would take `[n]` for a struct too).
fn serial_of(data: &str) -> Option<u64> {
    serde_json::from_str::<serde_json::Value>(data)
        .ok()?
        .as_object()?
        .get("serial")?
        .as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_beside_the_reports() {
        let url = |s: &str| stream_url(&TowerSource::parse(s).unwrap());
        assert_eq!(
            url("http://127.0.0.1:8470").as_deref(),
            Some("http://127.0.0.1:8470/control/stream")
        );
        assert_eq!(
            url("https://t.example.com/tp/").as_deref(),
            Some("https://t.example.com/tp/control/stream")
        );
        assert_eq!(
            url("https://cdn.example.com/exports/index.json").as_deref(),
            Some("https://cdn.example.com/control/stream")
        );
        assert_eq!(url("file:///srv/index.json"), None);
    }

    #[test]
    fn index_events_in_any_cut_and_line_end() {
        let text = ": heartbeat\n\nevent: index\ndata: {\"serial\": 7}\n\nevent: other\ndata: {\"serial\": 9}\n\r\nevent:index\r\ndata:{\"serial\":8}\r\rdata: {\"serial\": 10}\n\n";
        for cut in 1..text.len() {
            let mut e = Events::default();
            let mut got = e.feed(&text.as_bytes()[..cut]).unwrap();
            got.extend(e.feed(&text.as_bytes()[cut..]).unwrap());
            assert_eq!(got, vec![7, 8], "cut at {cut}");
        }
    }

    #[test]
    fn what_is_not_a_serial_is_ignored_and_long_lines_refused() {
        let mut e = Events::default();
        let got = e
            .feed(b"event: index\ndata: {\"serial\": -1}\n\nevent: index\ndata: [1]\n\n")
            .unwrap();
        assert!(got.is_empty());
        let err = Events::default().feed(&[b'x'; MAX_LINE + 1]).unwrap_err();
        assert!(err.contains("longer than 4096 bytes"), "{err}");
        let mut e = Events::default();
        let line = format!("data: {}\n", "y".repeat(3000));
        e.feed(line.as_bytes()).unwrap();
        assert!(
            e.feed(line.as_bytes()).is_err(),
            "data across lines is capped too"
        );
    }

    #[test]
    fn backoff_grows_to_a_minute_with_jitter() {
        for _ in 0..50 {
            let first = backoff(1);
            assert!(first >= Duration::from_millis(750) && first <= Duration::from_millis(1250));
            assert!(backoff(30) <= MAX_BACKOFF && backoff(30) >= Duration::from_secs(45));
        }
        let a: Vec<_> = (0..10).map(|_| backoff(3)).collect();
        assert!(a.iter().any(|d| *d != a[0]), "jittered: {a:?}");
    }
}
