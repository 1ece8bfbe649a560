//! `observe`: resolves true once a topic has been seen `count` times since the step started.

use crate::engine::steps::{Ctx, Node, Outcome, Res};
use crate::engine::Pilot;
use crate::journal::Also;
use crate::Error;
use testpilot_flight::spec::Observe;
use testpilot_flight::template::Escape;

pub(super) fn run(
    p: &mut Pilot,
    cx: &mut Ctx,
    o: &Observe,
    path: &str,
    node: Node,
) -> Result<Outcome, Error> {
    let topic = p.render(cx, &o.topic, Escape::None)?;
    let subject = p.render_opt(cx, o.subject.as_ref(), Escape::None)?;
    let seen = p
        .journal
        .events_after(node.mark.unwrap_or(0), &topic)?
        .into_iter()
        .filter(|e| subject.is_none() || e.subject == subject)
        .count() as u64;
    if seen < o.count {
        return Ok(Outcome::Pending(None));
    }
    let what = format!(
        "observed `{topic}`{} {seen} time(s)",
        subject.map(|s| format!(" `{s}`")).unwrap_or_default()
    );
    p.resolve(cx, path, node, Res::True, &what, Also::Nothing)
}
