//! `ping`, and every request a step sends off the machine: at most once per try (never
//! repeated after a crash), retried with backoff on network errors and 5xx. Not undone.

use crate::effect::{Effect, Sent};
use crate::engine::steps::{Ctx, Node, Outcome, Res};
use crate::engine::{backoff_ms, Pilot, MAX_ATTEMPTS};
use crate::journal::{Also, Line};
use crate::net::{Answer, Request};
use crate::Error;
use serde_json::{json, Value};
use testpilot_flight::spec::Ping;
use testpilot_flight::template::Escape;
use testpilot_flight::Timestamp;

pub(super) fn run(
    p: &mut Pilot,
    cx: &mut Ctx,
    ping: &Ping,
    path: &str,
    node: Node,
) -> Result<Outcome, Error> {
    let url = p.render(cx, &ping.url, Escape::Url)?;
    let body = p.render_data(cx, ping.data.as_ref())?;
    let sent = Sent {
        method: ping.method.as_str().into(),
        url,
        body,
        attempt: node.attempts + 1,
    };
    send(p, cx, path, node, Effect::Ping(sent))
}

/// Sends the request of `effect` (a [`Effect::Ping`] or [`Effect::Upload`]).
pub(super) fn send(
    p: &mut Pilot,
    cx: &mut Ctx,
    path: &str,
    node: Node,
    effect: Effect,
) -> Result<Outcome, Error> {
    let (Effect::Ping(sent) | Effect::Upload(sent)) = &effect else {
        return Ok(Outcome::Failed(format!("{effect:?} is not a request")));
    };
    let (method, url, body) = (sent.method.as_str(), sent.url.as_str(), &sent.body);
    if let Some(e) = p.pending_effect(&node)? {
        // The pilot stopped while this request was being sent: it may or may not have
        // arrived. Requests are never repeated, so take it as sent.
        let what =
            format!("{method} {url} may have been sent when the pilot stopped; not repeated");
        return p.resolve(cx, path, node, Res::True, &what, Also::SentUnknown(e.id));
    }
    if let Some(at) = node.retry_at {
        if cx.now.0 < at {
            return Ok(Outcome::Pending(Some(Timestamp(at))));
        }
    }
    let line = Line::new("request", format!("{method} {url}"))
        .with(json!({"method": method, "url": url, "body": body}));
    let summary = format!("{method} {url}");
    let (id, mut node) = p.intent(cx, path, node, &effect, &summary, Some(line))?;
    let mut headers = vec![("Idempotency-Key".to_string(), cx.key(id))];
    let bytes = body.as_ref().map(|b: &Value| {
        headers.push(("Content-Type".into(), "application/json".into()));
        b.to_string().into_bytes()
    });
    p.faults().point("send")?;
    let result = p.net.send(&Request {
        method: method.into(),
        url: url.into(),
        headers,
        body: bytes,
        answer: Answer::Status,
    });
    node.effect = None;
    node.attempts += 1;
    let (retry, why) = match result {
        Ok(r) if (200..300).contains(&r.status) => {
            let what = format!("{method} {url} answered {}", r.status);
            return p.resolve(cx, path, node, Res::True, &what, Also::Done(id));
        }
        Ok(r) if r.status >= 500 => (true, format!("{method} {url} answered {}", r.status)),
        Ok(r) => (false, format!("{method} {url} answered {}", r.status)),
        Err(e) => (true, format!("{method} {url} failed: {e}")),
    };
    if retry && node.attempts < MAX_ATTEMPTS {
        let at = Timestamp(cx.now.0 + backoff_ms(node.attempts));
        node.retry_at = Some(at.0);
        let line = Line::new(
            "retry",
            format!(
                "step {path}: {why}; trying again at {at} (try {} of {MAX_ATTEMPTS})",
                node.attempts + 1
            ),
        );
        p.save_node(cx, path, node, "retry", Also::Failed(id), Some(line))?;
        return Ok(Outcome::Pending(Some(at)));
    }
    let why = if retry {
        format!("{why}; gave up after {} tries", node.attempts)
    } else {
        why
    };
    p.resolve(cx, path, node, Res::Failed, &why, Also::Failed(id))
}
