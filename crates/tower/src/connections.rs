//! Accepting connections: HTTP/1 over TCP with time and count limits, so that slow or
//! numerous clients cannot hold the tower (a "slowloris" sends a header line now and then
//! and never finishes; hundreds of them used to starve it).
//!
//! - A request's head must arrive within `header_timeout`, counted from when the tower
//!   starts waiting for it: on a new connection, or once the previous answer is sent (so it
//!   also bounds how long a keep-alive connection may sit idle between requests).
//! - Its body must arrive whole within `body_timeout` of the head (408 otherwise).
//! - A connection on which no byte moves for `idle_timeout` while the tower waits on the
//!   client (reading a body, or writing an answer the client does not read) is closed.
//!   Time the tower spends working on a request does not count.
//! - At most `per_address` connections from one IP address and `total` in all; beyond
//!   that a new connection gets a prebuilt 503 in the API's error shape and is closed
//!   at once, before anything is read or parsed.
//!
//! The index (`GET /control/index.json`) is still answered from memory ahead of routing.

use crate::api::Served;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::response::Response;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};

/// How long clients may take and how many connections they may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// For a request's head (also the keep-alive idle time between requests).
    pub header_timeout: Duration,
    /// For a request's whole body, from the end of its head.
    pub body_timeout: Duration,
    /// With no byte moving while the tower waits on the client.
    pub idle_timeout: Duration,
    /// Open connections from one IP address.
    pub per_address: usize,
    /// Open connections in all.
    pub total: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            // Pilots behind one NAT share an address; each request lasts milliseconds.
            per_address: 128,
            // Well under the usual 1024 open files of a process, which the database shares.
            total: 768,
        }
    }
}

/// Serves `served` on `listener` until `shutdown` resolves, then stops accepting and waits
/// for the connections open at that moment to finish their requests.
pub async fn serve(
    listener: TcpListener,
    served: Served,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let open = Arc::new(Open::default());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        let Some(slot) = Open::admit(&open, peer.ip(), &limits) else {
            refuse(&tcp, peer.ip());
            continue;
        };
        // Answers are written whole; do not let Nagle hold back their last segment.
        let _ = tcp.set_nodelay(true);
        let io = TokioIo::new(Watched::new(tcp, limits.idle_timeout));
        let service = PerConnection {
            served: served.clone(),
            peer,
            body_timeout: limits.body_timeout,
        };
        let conn = graceful.watch(http.serve_connection(io, service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "connection closed");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Accept errors: a connection reset before it was taken is nothing; running out of file
/// descriptors is, and retrying at once would spin.
async fn accept_failed(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "cannot accept a connection; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 5\r\n\
connection: close\r\n\
content-length: 107\r\n\
\r\n\
{\"error\":\"this tower has too many connections open from this address or in all; retry later\",\"problems\":[]}";

/// Over a limit: a prebuilt answer if the socket takes it right away, then close. Nothing
/// is read, parsed or awaited.
fn refuse(tcp: &TcpStream, ip: IpAddr) {
    tracing::debug!(%ip, "connection refused: too many open");
    let _ = tcp.try_write(REFUSED);
}

/// Open connections, in all and per address.
#[derive(Debug, Default)]
struct Open {
    counts: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One admitted connection; dropping it frees its place.
struct Slot {
    open: Arc<Open>,
    ip: IpAddr,
}

impl Open {
    fn admit(open: &Arc<Open>, ip: IpAddr, limits: &ConnectionLimits) -> Option<Slot> {
        let mut guard = open.counts.lock().unwrap_or_else(|e| e.into_inner());
        let (total, per) = &mut *guard;
        let mine = per.entry(ip).or_insert(0);
        if *total >= limits.total || *mine >= limits.per_address {
            if *mine == 0 {
                per.remove(&ip);
            }
            return None;
        }
        *mine += 1;
        *total += 1;
        Some(Slot {
            open: open.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut guard = self.open.counts.lock().unwrap_or_else(|e| e.into_inner());
        let (total, per) = &mut *guard;
        *total -= 1;
        if let Some(n) = per.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per.remove(&self.ip);
            }
        }
    }
}

/// The service of one connection: the index from memory, everything else through the
/// router with the peer's address and a deadline on the body.
#[derive(Clone)]
struct PerConnection {
    served: Served,
    peer: SocketAddr,
    body_timeout: Duration,
}

impl hyper::service::Service<Request<Incoming>> for PerConnection {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = <Served as tower_service::Service<axum::extract::Request>>::Future;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        if let Some(res) = self.served.from_memory(&req) {
            return futures_util::future::Either::Left(std::future::ready(Ok(res)));
        }
        let deadline = Instant::now() + self.body_timeout;
        let mut req = req.map(|body| {
            Body::new(Deadline {
                body,
                deadline,
                limit: self.body_timeout,
                timer: None,
            })
        });
        req.extensions_mut().insert(ConnectInfo(self.peer));
        futures_util::future::Either::Right(self.served.route(req))
    }
}

/// A request body that fails with [`BodyTimeout`] if it is not all in by `deadline`.
struct Deadline {
    body: Incoming,
    deadline: Instant,
    limit: Duration,
    /// Made only when the body is not already all there.
    timer: Option<Pin<Box<Sleep>>>,
}

/// The error of a body that did not arrive in time; the API answers it 408.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} s", .0.as_secs())]
pub struct BodyTimeout(pub Duration);

impl HttpBody for Deadline {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(Some(Err(BodyTimeout(this.limit).into())))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A TCP stream that fails with `TimedOut` once nothing has moved for `idle` while it is
/// being waited on. The timer is reset lazily (when it fires early), not on every read.
struct Watched {
    io: TcpStream,
    idle: Duration,
    last: Instant,
    timer: Pin<Box<Sleep>>,
}

impl Watched {
    fn new(io: TcpStream, idle: Duration) -> Watched {
        let last = Instant::now();
        Watched {
            io,
            idle,
            last,
            timer: Box::pin(tokio::time::sleep_until(last + idle)),
        }
    }

    /// What a read or write of the stream gave: when ready, the moment is noted; when not,
    /// the idle timer is polled, and fails the stream once it has run out.
    fn watch<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match r {
            Poll::Ready(r) => {
                self.last = Instant::now();
                Poll::Ready(r)
            }
            Poll::Pending => self.poll_idle(cx).map(Err),
        }
    }

    /// `Ready` with an error once `idle` has passed since the last byte moved.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            let due = self.last + self.idle;
            if self.timer.deadline() != due {
                self.timer.as_mut().reset(due);
            }
            ready!(self.timer.as_mut().poll(cx));
            if Instant::now() >= self.last + self.idle {
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no data moved for {} s", self.idle.as_secs()),
                ));
            }
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        this.watch(cx, r)
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.watch(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.watch(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_complete_answer_in_the_error_shape() {
        let text = std::str::from_utf8(REFUSED).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, body.len());
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(v["error"].is_string() && v["problems"] == serde_json::json!([]));
    }

    #[test]
    fn places_are_counted_per_address_and_in_all() {
        let open = Arc::new(Open::default());
        let limits = ConnectionLimits {
            per_address: 2,
            total: 3,
            ..ConnectionLimits::default()
        };
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = Open::admit(&open, a, &limits).unwrap();
        let _a2 = Open::admit(&open, a, &limits).unwrap();
        assert!(Open::admit(&open, a, &limits).is_none(), "per address");
        let _b1 = Open::admit(&open, b, &limits).unwrap();
        assert!(Open::admit(&open, b, &limits).is_none(), "in all");
        drop(a1);
        assert!(Open::admit(&open, b, &limits).is_some(), "a freed place");
    }
}
