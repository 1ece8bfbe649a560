//! `wait`: resolves true when the time comes.

use crate::engine::steps::{Ctx, Node, Outcome, Res};
use crate::engine::Pilot;
use crate::journal::Also;
use crate::Error;
use testpilot_flight::spec::Wait;
use testpilot_flight::Timestamp;

pub(super) fn run(
    p: &mut Pilot,
    cx: &mut Ctx,
    w: &Wait,
    path: &str,
    node: Node,
) -> Result<Outcome, Error> {
    let at = match (&w.until, &w.for_) {
        (Some(u), _) => u.at,
        (None, Some(f)) => Timestamp(node.started).plus(f.clone()),
        (None, None) => cx.now,
    };
    if cx.now < at {
        return Ok(Outcome::Pending(Some(at)));
    }
    let what = format!("waited until {at}");
    p.resolve(cx, path, node, Res::True, &what, Also::Nothing)
}
