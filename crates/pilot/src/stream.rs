//! Streaming recorded events to the tower that served the index (`POST /api/v1/events`,
//! docs/api.md "Events"): every `uploadEvery` and at the end of a recording's window, in
//! batches of one flight, at most [`MAX_BATCH_EVENTS`] events and [`MAX_BATCH_BYTES`].
//!
//! An event leaves the journal only once the tower accepted it (a 2xx whose body is the
//! events endpoint's answer, `{"accepted": a, "duplicates": d}` with `a + d` the batch's
//! size) or refused its batch for good (400, 415 or 422 in the tower's error shape, a JSON
//! object with `"error"`: the flight log says why). A 413 sends the same events again in
//! halves. Every other answer and every network error keeps the batch and tries again with
//! backoff — or later, when a 429 or 503 says `Retry-After` (capped at a day) — the flight
//! log saying why; a batch sent again carries the same `seq`s, which the
//! tower counts once. Every request is written to the flight log before it is sent
//! (URL and a summary of its body). With an index from a file there is no tower: the events
//! stay on the machine (bounded by the cap) and the flight log says so once.

use crate::engine::backoff_ms;
use crate::journal::topic_counts;
use crate::journal::{Line, RecordedEvent, RecorderRow};
use crate::net::{Answer, Request, PEEK};
use crate::sync::TowerSource;
use crate::{Error, Pilot};
use serde_json::{json, Value};
use testpilot_flight::Timestamp;

/// Most events in one batch.
pub const MAX_BATCH_EVENTS: usize = 1_000;
/// Most bytes of one batch's body.
pub const MAX_BATCH_BYTES: usize = 1 << 20;

/// Where events go for a tower: `<base>/api/v1/events`, beside its reports.
pub fn events_url(tower: &TowerSource) -> Option<String> {
    match tower {
        TowerSource::Http { reports, .. } => Some(format!(
            "{}/api/v1/events",
            reports.strip_suffix("/api/v1/reports").unwrap_or(reports)
        )),
        TowerSource::File(_) => None,
    }
}

/// What one call did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Streamed {
    /// Events the tower accepted (new or already had).
    pub accepted: usize,
    /// Events dropped because the tower refused their batch for good.
    pub refused: usize,
    /// Batches that failed and are tried again later.
    pub failed: usize,
}

/// Records what came in, then sends the recorded events of every recorder that is due.
pub fn upload_events(pilot: &mut Pilot, tower: &TowerSource) -> Result<Streamed, Error> {
    upload(pilot, tower, false)
}

/// Like [`upload_events`], but a recorder whose last upload failed is tried now rather than
/// after its backoff: what `pilot run --once` does, whose caller (a person, or a scheduler
/// running it now and then) is the spacing between tries. `uploadEvery` still holds.
pub fn upload_events_retrying(pilot: &mut Pilot, tower: &TowerSource) -> Result<Streamed, Error> {
    upload(pilot, tower, true)
}

fn upload(pilot: &mut Pilot, tower: &TowerSource, retry_now: bool) -> Result<Streamed, Error> {
    let now = pilot.now();
    pilot.harvest(now)?;
    let mut out = Streamed::default();
    for r in pilot.journal.recorders()? {
        if r.next_upload_at > now && !(retry_now && r.tries > 0) {
            continue;
        }
        let next = next_upload(&r, now);
        let Some(url) = events_url(tower) else {
            let left = pilot.journal.recorded_count(&r.flight)?;
            let line = (left > 0).then(|| {
                Line::new("record", format!(
                    "step {}: {left} recorded event(s) stay on this machine: the index came from a file, so there is no tower to send them to (at most {} are kept)",
                    r.path, pilot.recording_cap()
                ))
            });
            // Said once: later the schedule moves on quietly.
            let said = pilot.journal.timeline(&r.flight)?.iter().any(|t| {
                t.kind == "record" && t.what.contains("there is no tower to send them to")
            });
            let line = line.filter(|_| !said);
            pilot
                .journal
                .schedule_upload(&r, 0, next, now, line.as_ref())?;
            continue;
        };
        send_flight(pilot, &r, &url, now, &mut out)?;
    }
    Ok(out)
}

/// After a successful round: the next period, or the window's end if that comes first.
fn next_upload(r: &RecorderRow, now: Timestamp) -> Timestamp {
    let next = now.0.saturating_add(r.every_ms);
    if now < r.ends_at {
        Timestamp(next.min(r.ends_at.0))
    } else {
        Timestamp(next)
    }
}

/// Sends the flight's recorded events in batches until none is left or one fails.
fn send_flight(
    pilot: &mut Pilot,
    r: &RecorderRow,
    url: &str,
    now: Timestamp,
    out: &mut Streamed,
) -> Result<(), Error> {
    let client = pilot.journal.meta("client")?.unwrap_or_default();
    let mut sent_any = false;
    // Failures in a row: a batch accepted in this round resets them.
    let mut tries = r.tries;
    // The most events in one batch: halved each time the tower answers 413.
    let mut limit = MAX_BATCH_EVENTS;
    loop {
        let events = pilot.journal.recorded(&r.flight, limit)?;
        if events.is_empty() {
            if !sent_any {
                pilot
                    .journal
                    .schedule_upload(r, 0, next_upload(r, now), now, None)?;
            }
            return Ok(());
        }
        sent_any = true;
        let batch = cut(&events);
        let (first, last) = (batch[0].seq, batch[batch.len() - 1].seq);
        let items: Vec<Value> = batch.iter().map(RecordedEvent::to_json).collect();
        let body = json!({"client": client, "events": items});
        let topics = topic_counts(batch.iter().map(|e| e.topic.as_str()));
        let summary = json!({"client": client, "events": batch.len(), "seq": [first, last], "topics": topics});
        let what = format!(
            "sending {} recorded event(s) (seq {first}–{last}) to {url}",
            batch.len()
        );
        let line =
            Line::new("request", what).with(json!({"method": "POST", "url": url, "body": summary}));
        pilot
            .journal
            .note(&r.flight, now, line.kind, &line.what, line.detail.as_ref())?;
        let req = Request {
            method: "POST".into(),
            url: url.to_string(),
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: Some(body.to_string().into_bytes()),
            answer: Answer::Status,
        };
        let answer = match pilot.net().send(&req) {
            Ok(resp) => Ok(resp),
            Err(e) if e.is_fatal() => return Err(e),
            Err(e) => Err(e.to_string()),
        };
        let n = batch.len();
        // A 429 or 503 may say how long to wait; never sooner than our own backoff.
        let asked = answer.as_ref().ok().and_then(|r| r.retry_after_ms());
        match judge(answer, n, url) {
            Verdict::Settled {
                accepted,
                duplicates,
            } => {
                let line = Line::new(
                    "upload",
                    format!(
                        "the tower accepted {n} event(s) (seq {first}–{last}): {accepted} new, {duplicates} it already had"
                    ),
                );
                let next = next_upload(r, now);
                pilot
                    .journal
                    .events_settled(r, (first, last), next, now, &line)?;
                tries = 0;
                out.accepted += n;
            }
            Verdict::Refused { status, text } => {
                let line = Line::new(
                    "upload",
                    format!(
                        "the tower refused {n} event(s) (seq {first}–{last}) with {status}: {text}; they are dropped"
                    ),
                );
                let next = next_upload(r, now);
                pilot
                    .journal
                    .events_settled(r, (first, last), next, now, &line)?;
                tries = 0;
                out.refused += n;
            }
            Verdict::Smaller => {
                limit = (n / 2).max(1);
                let what = format!(
                    "{url} answered 413 (too large) for {n} event(s) (seq {first}–{last}): sending them again in batches of at most {limit}"
                );
                pilot.journal.note(&r.flight, now, "upload", &what, None)?;
            }
            Verdict::Retry(why) => {
                let tries = tries + 1;
                let wait = backoff_ms(tries).max(asked.unwrap_or(0));
                let at = Timestamp(now.0.saturating_add(wait));
                let asked = match asked {
                    Some(ms) => format!(" (the tower asked to wait {} s)", ms / 1000),
                    None => String::new(),
                };
                let line = Line::new(
                    "upload",
                    format!("{n} recorded event(s) not sent yet: {why}{asked}; they are kept and tried again at {at}"),
                );
                pilot
                    .journal
                    .schedule_upload(r, tries, at, now, Some(&line))?;
                out.failed += 1;
                return Ok(());
            }
        }
    }
}

/// What an answer to a batch of `n` events means for it.
#[derive(Debug, PartialEq)]
enum Verdict {
    /// The events endpoint's answer, counting every event: the batch leaves the journal.
    Settled { accepted: u64, duplicates: u64 },
    /// Refused for good, in the tower's error shape: the batch is dropped.
    Refused { status: u16, text: String },
    /// 413: the same events again, in smaller batches.
    Smaller,
    /// Anything else: kept and tried again with backoff, for the reason given.
    Retry(String),
}

/// Only the events endpoint's own answers settle a batch: a 2xx whose body is
/// `{"accepted": a, "duplicates": d}` with `a + d == n` (anything else in between, like a
/// proxy's page, might not have reached the tower), and a 400, 415 or 422 in the tower's
/// error shape (a JSON object with `"error"`), which drops the batch. A 413 asks for smaller
/// batches (a single event too large is kept); every other answer and every network error is
/// tried again.
fn judge(answer: Result<crate::net::Response, String>, n: usize, url: &str) -> Verdict {
    let resp = match answer {
        Ok(resp) => resp,
        Err(e) => return Verdict::Retry(e),
    };
    let status = resp.status;
    let text = String::from_utf8_lossy(&resp.body[..resp.body.len().min(PEEK)]).into_owned();
    let body: Option<Value> = serde_json::from_slice(&resp.body).ok();
    match status {
        200..=299 => {
            let count = |k: &str| body.as_ref().and_then(|b| b.get(k)).and_then(Value::as_u64);
            match (count("accepted"), count("duplicates")) {
                (Some(a), Some(d)) if a.checked_add(d) == Some(n as u64) => Verdict::Settled {
                    accepted: a,
                    duplicates: d,
                },
                _ => Verdict::Retry(format!(
                    "{url} answered {status}, but not with the events endpoint's answer ({{\"accepted\": a, \"duplicates\": d}} adding up to {n}): {text}"
                )),
            }
        }
        400 | 415 | 422 if body.as_ref().is_some_and(|b| b.get("error").is_some()) => {
            Verdict::Refused { status, text }
        }
        400 | 415 | 422 => Verdict::Retry(format!(
            "{url} answered {status}, but not with the tower's error (a JSON object with \"error\"): {text}"
        )),
        413 if n > 1 => Verdict::Smaller,
        _ => Verdict::Retry(format!("{url} answered {status}")),
    }
}

/// The longest prefix of `events` that fits in one batch (at least one event: a single
/// event is far below the limit, its subject being at most a few hundred bytes).
fn cut(events: &[RecordedEvent]) -> &[RecordedEvent] {
    // The envelope `{"client": "<uuid>", "events": []}` and the commas between events.
    let mut size = 128;
    for (i, e) in events.iter().enumerate().take(MAX_BATCH_EVENTS) {
        size += e.to_json().to_string().len() + 1;
        if size > MAX_BATCH_BYTES && i > 0 {
            return &events[..i];
        }
    }
    &events[..events.len().min(MAX_BATCH_EVENTS)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: i64, subject: usize) -> RecordedEvent {
        RecordedEvent {
            seq,
            flight: "f".into(),
            version: 1,
            arm: None,
            topic: "t".into(),
            subject: Some("x".repeat(subject)),
            value: None,
            at: Timestamp(0),
        }
    }

    #[test]
    fn batches_stay_under_the_limits() {
        let many: Vec<_> = (1..=1_500).map(|s| event(s, 10)).collect();
        assert_eq!(cut(&many).len(), MAX_BATCH_EVENTS);
        let big: Vec<_> = (1..=1_000).map(|s| event(s, 4_000)).collect();
        let b = cut(&big);
        assert!(b.len() < 1_000 && b.len() > 200, "{}", b.len());
        let body = json!({"client": "0f8fad5b-d9cb-469f-a165-70867728950e", "events": b.iter().map(RecordedEvent::to_json).collect::<Vec<_>>()});
        assert!(body.to_string().len() <= MAX_BATCH_BYTES);
        assert_eq!(cut(&big[..1]).len(), 1);
    }

    #[test]
    fn the_events_url_sits_beside_the_reports() {
        let u = |s: &str| events_url(&TowerSource::parse(s).unwrap());
        assert_eq!(
            u("http://127.0.0.1:8470").as_deref(),
            Some("http://127.0.0.1:8470/api/v1/events")
        );
        assert_eq!(
            u("http://h:9/control/index.json").as_deref(),
            Some("http://h:9/api/v1/events")
        );
        assert_eq!(
            u("https://t.example/tp/").as_deref(),
            Some("https://t.example/tp/api/v1/events")
        );
        assert_eq!(u("file:///srv/index.json"), None);
    }
}
