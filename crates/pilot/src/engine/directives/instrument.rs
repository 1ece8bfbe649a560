//! `instrument`: records events for a while. With `upload`, it then uploads them once, a
//! request like a ping; the recording is the undoable effect (undo deletes the recorded
//! events). Without `upload`, it streams: a recorder in the journal copies the watched events
//! of its window into the flight's recordings (bounded by [`Pilot::recording_cap`]), and
//! [`crate::stream`] sends them to the tower every `uploadEvery` and at the end; the step ends
//! once everything was sent, or a grace (`uploadEvery`) after its window. Undo deletes what is
//! left.

use super::ping;
use crate::effect::{Effect, Sent};
use crate::engine::steps::Res;
use crate::engine::steps::{Ctx, Node, Outcome};
use crate::engine::Pilot;
use crate::journal::{Also, Line, NewRecorder};
use crate::Error;
use serde_json::json;
use testpilot_flight::spec::Instrument;
use testpilot_flight::template::Escape;
use testpilot_flight::Timestamp;

pub(super) fn run(
    p: &mut Pilot,
    cx: &mut Ctx,
    i: &Instrument,
    path: &str,
    node: Node,
) -> Result<Outcome, Error> {
    if i.upload.is_none() {
        return stream(p, cx, i, path, node);
    }
    let end = Timestamp(node.started).plus(i.for_.clone());
    let mark = node.mark.unwrap_or(0);
    let recorded = p
        .journal
        .effects(&cx.name)?
        .into_iter()
        .any(|e| e.path == path && matches!(e.effect, Effect::Record { .. }));
    if !recorded {
        let effect = Effect::Record {
            watch: i.watch.clone(),
            after: mark,
            until: end.0,
        };
        let summary = format!("recorded events {:?}", i.watch);
        let (id, _) = p.intent(cx, path, node.clone(), &effect, &summary, None)?;
        p.journal.effect_done(id, cx.now)?;
    }
    let mut node = cx.nodes.get(path).cloned().unwrap_or(node);
    if cx.now < end {
        return Ok(Outcome::Pending(Some(end)));
    }
    let mut events = Vec::new();
    for topic in &i.watch {
        for e in p.journal.events_after(mark, topic)? {
            if e.at <= end {
                events
                    .push(json!({"topic": e.topic, "subject": e.subject, "at": e.at.to_rfc3339()}));
            }
        }
    }
    let Some(upload) = &i.upload else {
        return Ok(Outcome::True);
    };
    let url = p.render(cx, upload, Escape::Url)?;
    let body = json!({"studyname": cx.name, "version": cx.row.version, "arm": cx.row.arm, "events": events});
    // The recording's effect is done; what follows is the upload's.
    node.effect = None;
    let sent = Sent {
        method: "POST".into(),
        url,
        body: Some(body),
        attempt: node.attempts + 1,
    };
    ping::send(p, cx, path, node, Effect::Upload(sent))
}

/// Deletes the recorded events.
pub(super) fn undo(
    p: &mut Pilot,
    watch: &[String],
    after: i64,
    until: i64,
    summary: &str,
) -> Result<String, Error> {
    p.journal.delete_recording(watch, after, until)?;
    Ok(format!("undid: {summary} (deleted the recorded events)"))
}

/// How often a streamed recording is sent when the flight does not say (`uploadEvery`).
pub const DEFAULT_UPLOAD_EVERY_MS: i64 = 86_400_000;

/// A streaming `instrument` (no `upload`): opens its recorder once (the effect's intent, then
/// the recorder with the effect done), records what came in, and after its window waits for
/// the final upload or the grace.
fn stream(
    p: &mut Pilot,
    cx: &mut Ctx,
    i: &Instrument,
    path: &str,
    node: Node,
) -> Result<Outcome, Error> {
    // The window counts from the step's journaled start: a restart never extends it.
    let start = Timestamp(node.started);
    let end = start.plus(i.for_.clone());
    let every = i
        .upload_every
        .as_ref()
        .map(|d| i64::try_from(d.ms).unwrap_or(i64::MAX).max(1))
        .unwrap_or(DEFAULT_UPLOAD_EVERY_MS);
    let mine = p
        .journal
        .effects(&cx.name)?
        .into_iter()
        .find(|e| e.path == path && matches!(e.effect, Effect::Stream { .. }));
    let effect = match mine {
        Some(e) if e.phase != crate::journal::phase::INTENT => None,
        Some(e) => Some(e.id),
        None => {
            let effect = Effect::Stream {
                watch: i.watch.clone(),
                after: node.mark.unwrap_or(0),
                from: start.0,
                until: end.0,
            };
            let summary = format!(
                "recorded events {:?} until {end}, streamed to the tower",
                i.watch
            );
            Some(p.intent(cx, path, node.clone(), &effect, &summary, None)?.0)
        }
    };
    if let Some(id) = effect {
        let r = NewRecorder {
            flight: &cx.name,
            path,
            version: cx.row.version,
            arm: cx.row.arm.as_deref(),
            watch: &i.watch,
            mark: node.mark.unwrap_or(0),
            starts_at: start,
            ends_at: end,
            every_ms: every,
        };
        let line = Line::new(
            "record",
            format!(
                "step {path}: recording {} until {end}; sent to the tower every {}",
                i.watch.join(", "),
                every_text(every)
            ),
        );
        p.journal.open_recorder(id, &r, cx.now, &line)?;
    }
    p.harvest(cx.now)?;
    let node = cx.nodes.get(path).cloned().unwrap_or(node);
    if cx.now < end {
        return Ok(Outcome::Pending(Some(end)));
    }
    let left = p.journal.recorded_count(&cx.name)?;
    if left == 0 {
        let what =
            "recording ended: nothing recorded is left to send (each upload is in the flight log)";
        return p.resolve(cx, path, node, Res::True, what, Also::Nothing);
    }
    let grace = Timestamp(end.0.saturating_add(every));
    if cx.now < grace {
        return Ok(Outcome::Pending(Some(grace)));
    }
    let what = format!(
        "recording ended: {left} recorded event(s) could not be sent to the tower within {} of its end; they are deleted with the flight's cleanup",
        every_text(every)
    );
    p.resolve(cx, path, node, Res::True, &what, Also::Nothing)
}

/// A duration in ms as a person reads it (`1d`, `6h`, `90s`, `250ms`).
pub(crate) fn every_text(ms: i64) -> String {
    for (unit, n) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= n && ms % n == 0 {
            return format!("{}{unit}", ms / n);
        }
    }
    format!("{ms}ms")
}

impl Pilot {
    /// Copies what every open recorder watches from the host's event stream into the
    /// recordings (each in its window, within the cap). Called on every tick of a recording
    /// step and before each upload.
    pub fn harvest(&mut self, now: Timestamp) -> Result<usize, Error> {
        let cap = self.recording_cap();
        let mut n = 0;
        for r in self.journal.recorders()? {
            let mut r = r;
            loop {
                let h = self.journal.harvest(&r, cap, now)?;
                n += h.recorded;
                if h.looked_at == 0 {
                    break;
                }
                match self.journal.recorder(&r.flight, &r.path)? {
                    Some(next) => r = next,
                    None => break,
                }
            }
        }
        Ok(n)
    }
}

/// Deletes what a streaming recording kept and its recorder.
pub(super) fn undo_stream(p: &mut Pilot, flight: &str, summary: &str) -> Result<String, Error> {
    let n = p.journal.delete_recordings(flight)?;
    Ok(format!(
        "undid: {summary} (deleted the recording; {n} event(s) were not sent)"
    ))
}
