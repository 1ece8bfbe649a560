//! Requests sent off the machine. The engine and sync see only the [`Net`] trait, so tests
//! answer requests themselves and the flight log can show every request (URL and body).

use crate::Error;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends HTTP requests. Blocking: the engine runs on its own thread.
pub trait Net: Send + Sync {
    /// Any HTTP answer is `Ok`; `Err` is for requests that got none (retryable).
    fn send(&self, req: &Request) -> Result<Response, Error>;
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
    pub fn new(timeout: Duration) -> Result<HttpNet, Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Net {
                msg: format!("cannot start the network runtime: {e}"),
                retryable: false,
            })?;
        let client = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            .user_agent(concat!("testpilot-pilot/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Net {
                msg: format!("cannot set up HTTP: {e}"),
                retryable: false,
            })?;
        Ok(HttpNet { rt, client })
    }
}

impl Net for HttpNet {
    fn send(&self, req: &Request) -> Result<Response, Error> {
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
        let url = req.url.clone();
        self.rt.block_on(async move {
            let resp = b.send().await.map_err(|e| Error::Net {
                msg: format!("{url}: {}", describe(&e)),
                retryable: true,
            })?;
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
            let body = resp.bytes().await.map_err(|e| Error::Net {
                msg: format!("{url}: {}", describe(&e)),
                retryable: true,
            })?;
            Ok(Response {
                status,
                headers,
                body: body.to_vec(),
            })
        })
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
