//! `log`, `message` and `status`: text for the flight log (and the status line).

use crate::engine::steps::{Ctx, Node, Outcome, Res};
use crate::engine::Pilot;
use crate::journal::Also;
use crate::Error;
use testpilot_flight::spec::Text;
use testpilot_flight::template::Escape;

/// `log` and `message`: the step's own line in the timeline is the entry.
pub(super) fn run(
    p: &mut Pilot,
    cx: &mut Ctx,
    action: &str,
    t: &Text,
    path: &str,
    node: Node,
) -> Result<Outcome, Error> {
    let text = p.render(cx, &t.text, Escape::None)?;
    let what = format!("{action}: {text}");
    p.resolve(cx, path, node, Res::True, &what, Also::Nothing)
}

/// `status`: sets the flight's status line.
pub(super) fn status(
    p: &mut Pilot,
    cx: &mut Ctx,
    t: &Text,
    path: &str,
    node: Node,
) -> Result<Outcome, Error> {
    let text = p.render(cx, &t.text, Escape::None)?;
    cx.row.status_line = Some(text.clone());
    let what = format!("status: {text}");
    p.resolve(cx, path, node, Res::True, &what, Also::StatusLine(&text))
}
