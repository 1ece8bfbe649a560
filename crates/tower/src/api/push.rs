//! Push: `GET /control/stream` (docs/api.md, "Push: GET /control/stream"). A Server-Sent
//! Events stream that tells pilots the index changed, so they fetch it at once instead of at
//! their next poll. It carries no flights, only the serial: `event: index` with
//! `data: {"serial": n}` on connect and at every rise, and a comment line as heartbeat.
//!
//! Invariants:
//! - The serial comes from one place, [`crate::index::IndexCache::subscribe`], fed by every
//!   way the tower learns of changes (its own, NOTIFY, polling). No second detector.
//! - A stream buffers nothing: it holds a watch of the latest serial, so a client that does
//!   not read gets, when it reads again, the serial as it is then (coalesced); hyper's write
//!   buffer is bounded, and the connection's idle limit (`connections`) closes it after
//!   `idle_timeout` without a byte moving.
//! - Bounded: at most `per_address` streams per client address (429 beyond) and `total` in
//!   all (503), both with `Retry-After`, in the API's error shape.
//! - Every stream ends when the tower shuts down ([`Push::close`]), so shutdown does not wait
//!   on them.

use super::{peer, ApiError, AppState};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How many streams a tower holds, and how often it sends a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushLimits {
    /// Open streams from one client address (a pilot needs one; a NAT shares an address).
    pub per_address: usize,
    /// Open streams in all. Each is also a connection: `ConnectionLimits::total` and the
    /// process's open-file limit must allow as many.
    pub total: usize,
    /// A comment line is sent after this long without an event. Keep it under the
    /// connections' `idle_timeout`, or idle streams are cut.
    pub heartbeat: Duration,
}

impl Default for PushLimits {
    fn default() -> Self {
        PushLimits {
            per_address: 8,
            total: 20_000,
            heartbeat: Duration::from_secs(15),
        }
    }
}

/// The open streams: their counts, and the signal that ends them all.
#[derive(Debug)]
pub struct Push {
    limits: PushLimits,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
    closing: watch::Sender<bool>,
}

/// Why a stream was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Full {
    Address,
    Total,
}

/// One open stream; dropping it (the stream ended or its client left) frees its place.
#[derive(Debug)]
struct StreamSlot {
    push: Arc<Push>,
    ip: IpAddr,
}

impl Push {
    pub fn new(limits: PushLimits) -> Arc<Push> {
        Arc::new(Push {
            limits,
            open: Mutex::default(),
            closing: watch::Sender::new(false),
        })
    }

    pub fn limits(&self) -> PushLimits {
        self.limits
    }

    /// Streams open now.
    pub fn open_streams(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).0
    }

    /// Ends every stream, open or opened later (the tower is shutting down).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<StreamSlot, Full> {
        let mut guard = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let (total, per) = &mut *guard;
        let mine = per.get(&ip).copied().unwrap_or(0);
        if mine >= self.limits.per_address {
            return Err(Full::Address);
        }
        if *total >= self.limits.total {
            return Err(Full::Total);
        }
        per.insert(ip, mine + 1);
        *total += 1;
        Ok(StreamSlot {
            push: self.clone(),
            ip,
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut guard = self.push.open.lock().unwrap_or_else(|e| e.into_inner());
        let (total, per) = &mut *guard;
        *total = total.saturating_sub(1);
        if let Some(n) = per.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per.remove(&self.ip);
            }
        }
    }
}

impl Full {
    fn answer(self, limits: PushLimits) -> ApiError {
        let mut e = match self {
            Full::Address => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "this address already holds {} push streams (/control/stream), the most one address may; close one or retry later",
                    limits.per_address
                ),
            ),
            Full::Total => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "this tower holds as many push streams (/control/stream) as it may; retry later, and poll /control/index.json meanwhile",
            ),
        };
        e.retry_after = Some(match self {
            Full::Address => 30,
            Full::Total => 60,
        });
        e
    }
}

/// The event for `serial`.
fn index_event(serial: u64) -> Event {
    Event::default()
        .event("index")
        .data(format!("{{\"serial\": {serial}}}"))
}

/// What one stream holds between events: two watches and its place.
struct Open {
    serial: watch::Receiver<u64>,
    closing: watch::Receiver<bool>,
    first: bool,
    _slot: StreamSlot,
}

/// The next event of a stream: the current serial at once, then each rise; `None` when the
/// tower shuts down.
async fn next(mut o: Open) -> Option<(Result<Event, Infallible>, Open)> {
    if *o.closing.borrow() {
        return None;
    }
    if !o.first {
        tokio::select! {
            biased;
            _ = o.closing.changed() => return None,
            changed = o.serial.changed() => changed.ok()?,
        }
    }
    o.first = false;
    let serial = *o.serial.borrow_and_update();
    Some((Ok(index_event(serial)), o))
}

/// Tells a pilot when the index changes, so it fetches the signed index at once.
#[utoipa::path(get, path = "/control/stream", tag = "client",
    responses(
        (status = 200, content_type = "text/event-stream",
         description = "Server-Sent Events: `event: index` with `data: {\"serial\": n}` on connect and at every change of the index; a comment line (`: heartbeat`) every 15 s without one. No flights: a client that hears a new serial fetches `/control/index.json`."),
        (status = 429, body = super::ErrorBody, description = "This address holds as many streams as it may (8 by default); `Retry-After` set"),
        (status = 503, body = super::ErrorBody, description = "The tower holds as many streams as it may; `Retry-After` set"),
    ))]
pub(super) async fn stream(State(s): State<AppState>, req: Request) -> Response {
    let limits = s.push.limits();
    let slot = match s.push.admit(peer(&s, &req)) {
        Ok(slot) => slot,
        Err(full) => return full.answer(limits).into_response(),
    };
    let open = Open {
        serial: s.index.subscribe(),
        closing: s.push.closing.subscribe(),
        first: true,
        _slot: slot,
    };
    let events = futures_util::stream::unfold(open, next);
    let mut res = Sse::new(events)
        .keep_alive(
            KeepAlive::new()
                .interval(limits.heartbeat)
                .text("heartbeat"),
        )
        .into_response();
    // A reverse proxy (nginx) must pass each event on at once, not buffer the answer.
    res.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event as it goes on the wire.
    async fn wire(e: Result<Event, Infallible>) -> String {
        let res = Sse::new(futures_util::stream::iter([e])).into_response();
        let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[test]
    fn streams_are_counted_per_address_and_in_all() {
        let push = Push::new(PushLimits {
            per_address: 2,
            total: 3,
            heartbeat: Duration::from_secs(15),
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = push.admit(a).unwrap();
        let _a2 = push.admit(a).unwrap();
        assert_eq!(push.admit(a).unwrap_err(), Full::Address);
        let _b1 = push.admit(b).unwrap();
        assert_eq!(push.admit(b).unwrap_err(), Full::Total);
        assert_eq!(push.open_streams(), 3);
        drop(a1);
        assert!(push.admit(b).is_ok(), "a freed place");
    }

    #[tokio::test]
    async fn the_event_is_the_contract() {
        assert_eq!(
            wire(Ok(index_event(42))).await,
            "event: index\ndata: {\"serial\": 42}\n\n"
        );
    }

    #[tokio::test]
    async fn a_slow_reader_sees_only_the_latest_serial() {
        let push = Push::new(PushLimits::default());
        let (tx, rx) = watch::channel(1u64);
        let open = Open {
            serial: rx,
            closing: push.closing.subscribe(),
            first: true,
            _slot: push.admit("10.0.0.1".parse().unwrap()).unwrap(),
        };
        let (first, open) = next(open).await.unwrap();
        assert_eq!(wire(first).await, "event: index\ndata: {\"serial\": 1}\n\n");
        for n in 2..=1000 {
            tx.send_replace(n);
        }
        let (second, open) = next(open).await.unwrap();
        assert_eq!(
            wire(second).await,
            "event: index\ndata: {\"serial\": 1000}\n\n"
        );
        push.close();
        assert!(next(open).await.is_none(), "ends on shutdown");
        assert_eq!(push.open_streams(), 0, "its place is freed");
    }
}
