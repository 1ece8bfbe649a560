//! Requests sent off the machine. The engine and sync see only the [`Net`] trait, so tests
//! answer requests themselves and the flight log can show every request (URL and body).

use crate::error::bytes;
use crate::Error;
use std::io::Write;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// How much of the answer's body the caller takes: every body is bounded, so a hostile or
    /// broken server cannot make the pilot hold more than this.
    pub answer: Answer,
}

/// How much of an answer's body is read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Answer {
    /// The body is needed whole: it is read, but the answer is refused (an error that is not
    /// retried) as soon as its `Content-Length` or the bytes received pass `max`.
    Whole { what: &'static str, max: u64 },
    /// Only the status matters: at most the first [`PEEK`] bytes are kept (for messages) and
    /// the rest is dropped unread.
    Status,
}

/// The bytes of an [`Answer::Status`] body that are kept.
pub const PEEK: usize = 4096;

/// How long an idle kept-alive connection may wait to be reused: half the tower's own idle
/// limit (its 10 s header timeout, docs/api.md), so the pilot never sends on a connection
/// the tower is closing.
pub const IDLE_REUSE: Duration = Duration::from_secs(5);

impl Answer {
    /// Refuses a body of `len` bytes (received, or declared) that passes the bound.
    pub fn check(&self, url: &str, len: u64) -> Result<(), Error> {
        match *self {
            Answer::Whole { what, max } if len > max => Err(Error::Net {
                msg: format!(
                    "{url}: the {what} answer is larger than {}; refused",
                    bytes(max)
                ),
                retryable: false,
            }),
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The longest wait a server's `Retry-After` can ask for: a broken or hostile server cannot
/// make the pilot hold its data back longer than this.
pub const MAX_RETRY_AFTER_MS: i64 = 86_400_000;

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// How long the server asked to wait before the next try: `Retry-After` in seconds on a
    /// 429 or 503 (as the tower sends it), at most [`MAX_RETRY_AFTER_MS`]. `None` on any
    /// other status (a proxy's page cannot hold uploads back), when absent, or when not a
    /// whole number of seconds (the HTTP-date form is not taken: the caller's own backoff
    /// applies).
    pub fn retry_after_ms(&self) -> Option<i64> {
        if self.status != 429 && self.status != 503 {
            return None;
        }
        let v = self.header("retry-after")?.trim();
        if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let secs: u64 = v.parse().unwrap_or(u64::MAX);
        Some((secs.min(MAX_RETRY_AFTER_MS as u64 / 1000) * 1000) as i64)
    }
}

/// Sends HTTP requests. Blocking: the engine runs on its own thread.
pub trait Net: Send + Sync {
    /// Any HTTP answer is `Ok`; `Err` is for requests that got none (retryable), or whose
    /// body passed the bound of `req.answer`.
    fn send(&self, req: &Request) -> Result<Response, Error>;

    /// Like [`Net::send`], but a 2xx answer's body goes into `sink` as it arrives, bounded by
    /// `req.answer`, instead of into the response; other answers keep their first [`PEEK`]
    /// bytes in it. An error of `sink` stops the transfer.
    ///
    /// The default buffers through [`Net::send`], which is fine for answers made up in tests.
    fn send_to(&self, req: &Request, sink: &mut dyn Write) -> Result<Response, Error> {
        let mut resp = self.send(req)?;
        if (200..300).contains(&resp.status) {
            let body = std::mem::take(&mut resp.body);
            req.answer.check(&req.url, body.len() as u64)?;
            sink.write_all(&body).map_err(|e| Error::Net {
                msg: format!("{}: cannot keep the answer: {e}", req.url),
                retryable: false,
            })?;
        }
        Ok(resp)
    }
}

/// A machine without network: every request fails (used by `testpilot optout` when it cleans
/// up on its own; reports wait in the outbox for the agent).
pub struct Offline;

impl Net for Offline {
    fn send(&self, req: &Request) -> Result<Response, Error> {
        Err(Error::Net {
            msg: format!(
                "{} {}: not sent (no network in this command)",
                req.method, req.url
            ),
            retryable: true,
        })
    }
}

/// HTTP over reqwest (rustls), on a small runtime of its own so that it can be called from any
/// thread, inside or outside another runtime's blocking pool.
pub struct HttpNet {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl HttpNet {
    /// `timeout` bounds connecting and every wait for the next bytes of an answer; a whole
    /// exchange may take up to 60 times as long, so that a 256 MiB package on a slow but
    /// moving link completes, while a server that drips bytes still cannot hold the pilot
    /// forever (and every answer is capped in size: see [`Answer`]).
    pub fn new(timeout: Duration) -> Result<HttpNet, Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Net {
                msg: format!("cannot start the network runtime: {e}"),
                retryable: false,
            })?;
        let client = reqwest::Client::builder()
            // A kept-alive connection is reused only well within the tower's idle limit (10 s,
            // `tower serve`'s header timeout): one reused just as the tower closes it fails
            // with "connection closed before message completed" (seen with `testpilot up`,
            // whose pilot polls every 10 s).
            .pool_idle_timeout(IDLE_REUSE)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .read_timeout(timeout)
            .timeout(timeout.saturating_mul(60))
            .user_agent(concat!("testpilot-pilot/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Net {
                msg: format!("cannot set up HTTP: {e}"),
                retryable: false,
            })?;
        Ok(HttpNet { rt, client })
    }
}

impl HttpNet {
    /// Sends `req`; a 2xx body goes to `sink` when there is one, every other body is read as
    /// `req.answer` says into the response.
    fn exchange(&self, req: &Request, sink: Option<&mut dyn Write>) -> Result<Response, Error> {
        let method =
            reqwest::Method::from_bytes(req.method.as_bytes()).map_err(|_| Error::Net {
                msg: format!("bad method {}", req.method),
                retryable: false,
            })?;
        let mut b = self.client.request(method, &req.url);
        for (k, v) in &req.headers {
            b = b.header(k, v);
        }
        if let Some(body) = &req.body {
            b = b.body(body.clone());
        }
        self.rt.block_on(async move {
            let answer = receive(b, req, sink).await;
            // An answer dropped before its end (refused, or only peeked at) leaves its
            // connection to a task of this runtime; let it run now, so the socket closes at
            // once rather than at the next request while the server stays blocked on it.
            for _ in 0..8 {
                tokio::task::yield_now().await;
            }
            answer
        })
    }
}

/// Sends the request and reads its answer as [`HttpNet::exchange`] says.
async fn receive(
    b: reqwest::RequestBuilder,
    req: &Request,
    sink: Option<&mut dyn Write>,
) -> Result<Response, Error> {
    let url = req.url.as_str();
    let failed = |e: reqwest::Error| Error::Net {
        msg: format!("{url}: {}", describe(&e)),
        retryable: true,
    };
    let mut resp = b.send().await.map_err(failed)?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = Vec::new();
    // Only a success's body is the thing asked for; an error page is kept for messages.
    let success = (200..300).contains(&status);
    if success && matches!(req.answer, Answer::Whole { .. }) {
        // Refused before a byte is read when the server says how long it is.
        if let Some(len) = resp.content_length() {
            req.answer.check(url, len)?;
        }
        let out: &mut dyn Write = match sink {
            Some(s) => s,
            None => &mut body,
        };
        let mut received = 0u64;
        while let Some(chunk) = resp.chunk().await.map_err(failed)? {
            received += chunk.len() as u64;
            req.answer.check(url, received)?;
            out.write_all(&chunk).map_err(|e| Error::Net {
                msg: format!("{url}: cannot keep the answer: {e}"),
                retryable: false,
            })?;
        }
    } else {
        // Only the status counts: keep a little for messages, drop the connection
        // rather than read the rest.
        while body.len() < PEEK {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    let n = chunk.len().min(PEEK - body.len());
                    body.extend_from_slice(&chunk[..n]);
                }
                Ok(None) | Err(_) => break,
            }
        }
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

impl Net for HttpNet {
    fn send(&self, req: &Request) -> Result<Response, Error> {
        self.exchange(req, None)
    }

    fn send_to(&self, req: &Request, sink: &mut dyn Write) -> Result<Response, Error> {
        self.exchange(req, Some(sink))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn with(v: &str) -> Response {
        Response {
            status: 429,
            headers: vec![("retry-after".into(), v.into())],
            body: vec![],
        }
    }

    #[test]
    fn retry_after_is_whole_seconds_and_bounded() {
        assert_eq!(with("120").retry_after_ms(), Some(120_000));
        assert_eq!(with(" 5 ").retry_after_ms(), Some(5_000));
        assert_eq!(with("0").retry_after_ms(), Some(0));
        assert_eq!(
            with("99999999999").retry_after_ms(),
            Some(MAX_RETRY_AFTER_MS)
        );
        for bad in [
            "",
            "-1",
            "1.5",
            "soon",
            "Wed, 21 Oct 2026 07:28:00 GMT",
            "123456789012345678901234",
        ] {
            assert_eq!(with(bad).retry_after_ms(), None, "{bad:?}");
        }
        assert_eq!(Response::default().retry_after_ms(), None);
        for status in [200, 302, 408, 500, 502] {
            let r = Response {
                status,
                ..with("600")
            };
            assert_eq!(r.retry_after_ms(), None, "{status}");
        }
        let r = Response {
            status: 503,
            ..with("600")
        };
        assert_eq!(r.retry_after_ms(), Some(600_000));
    }
}
