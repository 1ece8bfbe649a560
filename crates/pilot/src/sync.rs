//! The seed's core loop, minus attempting flights (that is [`crate::Pilot::tick`]): download
//! the index, verify and parse it, set up flights; and upload the outbox of status reports.

use crate::net::{Answer, Request};
use crate::{Error, Pilot};
use serde_json::{json, Value};
use std::io::Read;
use std::path::PathBuf;
use testpilot_flight::index::{accept_signed, Trust};

/// Where the tower is.
#[derive(Debug, Clone, PartialEq)]
pub enum TowerSource {
    /// A tower over HTTP(S): the index at `index`, reports posted to `reports`.
    Http { index: String, reports: String },
    /// An exported index file (or a folder holding `control/index.json` or `index.json`).
    /// Reports stay in the outbox.
    File(PathBuf),
}

impl TowerSource {
    /// `https://host[:port][/base]` (the index at `/control/index.json`), a URL ending in
    /// `.json` (the index itself), or `file://PATH`.
    pub fn parse(s: &str) -> Result<TowerSource, Error> {
        if let Some(path) = s.strip_prefix("file://") {
            if path.is_empty() {
                return Err(Error::Usage(format!(
                    "`{s}`: a file:// tower needs a path, like file:///srv/index.json"
                )));
            }
            return Ok(TowerSource::File(PathBuf::from(path)));
        }
        if !(s.starts_with("http://") || s.starts_with("https://")) {
            return Err(Error::Usage(format!("`{s}` is not a tower address: give an http:// or https:// URL, or file://PATH of an exported index")));
        }
        let after_scheme = s.split_once("://").map(|x| x.1).unwrap_or("");
        let origin_end = after_scheme
            .find('/')
            .map(|i| s.len() - after_scheme.len() + i)
            .unwrap_or(s.len());
        let origin = &s[..origin_end];
        if origin.len() <= "https://".len() {
            return Err(Error::Usage(format!("`{s}` names no host")));
        }
        let base = s.trim_end_matches('/');
        let index = if base.ends_with(".json") {
            base.to_string()
        } else {
            format!("{base}/control/index.json")
        };
        let reports = if base.ends_with(".json") {
            format!("{origin}/api/v1/reports")
        } else {
            format!("{base}/api/v1/reports")
        };
        Ok(TowerSource::Http { index, reports })
    }

    pub fn describe(&self) -> String {
        match self {
            TowerSource::Http { index, .. } => index.clone(),
            TowerSource::File(p) => format!("file://{}", p.display()),
        }
    }
}

/// What a sync did.
#[derive(Debug, Clone, PartialEq)]
pub enum Synced {
    /// A new or changed index was accepted and applied.
    Accepted { serial: u64, flights: usize },
    /// The tower said nothing changed (ETag).
    NotModified,
}

/// Adds a line to the pilot's own log unless it repeats the last one (a tower that stays down
/// should not fill the log).
fn note_once(pilot: &mut Pilot, kind: &str, what: &str) -> Result<(), Error> {
    let last = pilot.journal.timeline("")?.pop();
    if last.is_some_and(|l| l.what == what) {
        return Ok(());
    }
    let now = pilot.now();
    pilot.journal.note("", now, kind, what, None)
}

/// Fetches the index, accepts it only as docs/index.md says, and sets up its flights. A rejected or
/// unreachable index leaves everything as it was and says why in the flight log.
pub fn sync(pilot: &mut Pilot, tower: &TowerSource, trust: &Trust) -> Result<Synced, Error> {
    let (text, etag) = match fetch(pilot, tower) {
        Ok(Some(x)) => x,
        Ok(None) => return Ok(Synced::NotModified),
        Err(e) => {
            note_once(
                pilot,
                "index",
                &format!(
                    "cannot get the index from {}: {e}; keeping the last good one",
                    tower.describe()
                ),
            )?;
            return Err(e);
        }
    };
    let last: Option<u64> = pilot
        .journal
        .meta("last_serial")?
        .and_then(|s| s.parse().ok());
    let now = pilot.now();
    // The keys pinned in the journal (they follow rotations), once there are any.
    let pins = crate::pins::effective(&pilot.journal, trust)?;
    let trust = match &pins {
        Some(keys) => Trust::PinnedSet(keys),
        None => Trust::InsecureUnsigned,
    };
    let accepted = match accept_signed(&text, &trust, last, now) {
        Ok(a) => a,
        Err(e) => {
            let keeping = last
                .map(|s| format!("serial {s}"))
                .unwrap_or_else(|| "none yet".into());
            note_once(
                pilot,
                "index",
                &format!(
                    "refused the index from {}: {e}; keeping the last good one ({keeping})",
                    tower.describe()
                ),
            )?;
            return Err(Error::Index(e));
        }
    };
    let payload = &accepted.payload;
    if last != Some(payload.serial) {
        let what = format!(
            "accepted index serial {} from {} ({} flights)",
            payload.serial,
            tower.describe(),
            payload.flights.len()
        );
        pilot.journal.note("", now, "index", &what, None)?;
    }
    pilot.apply_accepted(payload)?;
    if let Some(before) = &pins {
        crate::pins::follow(&mut pilot.journal, before, &accepted, now)?;
    }
    pilot
        .journal
        .set_meta("last_serial", &payload.serial.to_string())?;
    if let Some(tag) = etag {
        pilot.journal.set_meta("index_etag", &tag)?;
    }
    Ok(Synced::Accepted {
        serial: payload.serial,
        flights: payload.flights.len(),
    })
}

/// Most bytes of an index (real ones with a few hundred flights are well under 1 MiB).
pub const MAX_INDEX: u64 = 8 << 20;

const INDEX_ANSWER: Answer = Answer::Whole {
    what: "index",
    max: MAX_INDEX,
};

/// The index text and its ETag, or `None` when the tower says it has not changed.
fn fetch(
    pilot: &mut Pilot,
    tower: &TowerSource,
) -> Result<Option<(String, Option<String>)>, Error> {
    match tower {
        TowerSource::File(p) => {
            let path = if p.is_dir() {
                let nested = p.join("control").join("index.json");
                if nested.exists() {
                    nested
                } else {
                    p.join("index.json")
                }
            } else {
                p.clone()
            };
            let shown = path.display().to_string();
            let cant = |e: std::io::Error| Error::Net {
                msg: format!("cannot read {shown}: {e}"),
                retryable: true,
            };
            let mut body = Vec::new();
            std::fs::File::open(&path)
                .map_err(cant)?
                .take(MAX_INDEX + 1)
                .read_to_end(&mut body)
                .map_err(cant)?;
            INDEX_ANSWER.check(&shown, body.len() as u64)?;
            let text = String::from_utf8(body).map_err(|_| Error::Net {
                msg: format!("{shown}: the index is not UTF-8 text"),
                retryable: false,
            })?;
            Ok(Some((text, None)))
        }
        TowerSource::Http { index, .. } => {
            let mut headers = vec![("Accept".to_string(), "application/json".to_string())];
            let etag = pilot.journal.meta("index_etag")?;
            let have_serial = pilot.journal.meta("last_serial")?.is_some();
            if let (Some(tag), true) = (&etag, have_serial) {
                headers.push(("If-None-Match".into(), tag.clone()));
            }
            let resp = pilot.net().send(&Request {
                method: "GET".into(),
                url: index.clone(),
                headers,
                body: None,
                answer: INDEX_ANSWER,
            })?;
            match resp.status {
                304 => Ok(None),
                200..=299 => {
                    INDEX_ANSWER.check(index, resp.body.len() as u64)?;
                    let etag = resp.header("etag").map(str::to_string);
                    let text = String::from_utf8(resp.body).map_err(|_| Error::Net {
                        msg: format!("{index}: the index is not UTF-8 text"),
                        retryable: false,
                    })?;
                    Ok(Some((text, etag)))
                }
                s => Err(Error::Net {
                    msg: format!("{index} answered {s}"),
                    retryable: s >= 500 || s == 429,
                }),
            }
        }
    }
}

/// Most reports in one upload.
pub const BATCH: usize = 100;

/// Why reports stayed in the outbox, and how long the tower asked the pilot to wait before
/// the next try (`Retry-After` of a 429 or 503, at most a day; `None`: the caller's backoff).
#[derive(Debug)]
pub struct ReportsNotSent {
    pub error: Error,
    pub retry_after_ms: Option<i64>,
}

impl From<Error> for ReportsNotSent {
    fn from(error: Error) -> Self {
        ReportsNotSent {
            error,
            retry_after_ms: None,
        }
    }
}

impl std::fmt::Display for ReportsNotSent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

/// Uploads the outbox in batches; a report leaves the outbox only once the tower accepted it
/// (2xx). Returns how many were sent.
pub fn upload_reports(pilot: &mut Pilot, tower: &TowerSource) -> Result<usize, ReportsNotSent> {
    let TowerSource::Http { reports: url, .. } = tower else {
        return Ok(0);
    };
    let client = pilot.journal.meta("client")?.unwrap_or_default();
    let mut sent = 0;
    loop {
        let batch = pilot.journal.outbox(BATCH)?;
        if batch.is_empty() {
            return Ok(sent);
        }
        let seqs: Vec<i64> = batch.iter().map(|(s, _)| *s).collect();
        let reports: Vec<Value> = batch
            .into_iter()
            .map(|(seq, mut r)| {
                if let Some(o) = r.as_object_mut() {
                    o.insert("seq".into(), json!(seq));
                    if o.get("detail").is_some_and(Value::is_null) {
                        o.remove("detail");
                    }
                }
                r
            })
            .collect();
        let body = json!({"client": client, "reports": reports});
        let req = Request {
            method: "POST".into(),
            url: url.clone(),
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: Some(body.to_string().into_bytes()),
            answer: Answer::Status,
        };
        let resp = pilot.net().send(&req)?;
        if !(200..300).contains(&resp.status) {
            let text = String::from_utf8_lossy(&resp.body)
                .chars()
                .take(300)
                .collect::<String>();
            let e = Error::Net {
                msg: format!(
                    "{url} answered {} to {} reports: {text}",
                    resp.status,
                    seqs.len()
                ),
                retryable: resp.status >= 500 || resp.status == 429,
            };
            let retry_after_ms = resp.retry_after_ms();
            let asked = match retry_after_ms {
                Some(ms) => format!(" (the tower asked to wait {} s)", ms / 1000),
                None => String::new(),
            };
            note_once(
                pilot,
                "reports",
                &format!("reports not accepted yet: {e}{asked}; they stay in the outbox"),
            )?;
            return Err(ReportsNotSent {
                error: e,
                retry_after_ms,
            });
        }
        let now = pilot.now();
        pilot.journal.mark_sent(&seqs, now)?;
        sent += seqs.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tower_addresses() {
        let http = |i: &str, r: &str| TowerSource::Http {
            index: i.into(),
            reports: r.into(),
        };
        assert_eq!(
            TowerSource::parse("http://127.0.0.1:8470").unwrap(),
            http(
                "http://127.0.0.1:8470/control/index.json",
                "http://127.0.0.1:8470/api/v1/reports"
            )
        );
        assert_eq!(
            TowerSource::parse("https://tower.example.com/tp/").unwrap(),
            http(
                "https://tower.example.com/tp/control/index.json",
                "https://tower.example.com/tp/api/v1/reports"
            )
        );
        assert_eq!(
            TowerSource::parse("https://cdn.example.com/exports/index.json").unwrap(),
            http(
                "https://cdn.example.com/exports/index.json",
                "https://cdn.example.com/api/v1/reports"
            )
        );
        assert_eq!(
            TowerSource::parse("file:///srv/index.json").unwrap(),
            TowerSource::File("/srv/index.json".into())
        );
        assert!(TowerSource::parse("ftp://x")
            .unwrap_err()
            .to_string()
            .contains("not a tower address"));
        assert!(TowerSource::parse("file://").is_err());
        assert!(TowerSource::parse("https://").is_err());
    }
}
