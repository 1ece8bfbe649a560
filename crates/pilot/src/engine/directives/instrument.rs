//! `instrument`: records events for a while, then uploads them. The recording is the
//! undoable effect (undo deletes the recorded events); the upload is a request like a ping.

use super::ping;
use crate::effect::{Effect, Sent};
use crate::engine::steps::{Ctx, Node, Outcome};
use crate::engine::Pilot;
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
    // Streaming to the tower (no `upload`) is built on the outbox; until then the recording
    // simply completes here.
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
