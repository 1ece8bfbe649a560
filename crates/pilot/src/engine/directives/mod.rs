//! One executor per directive, each in its own file with its undo beside it. [`run`] and
//! [`undo`] only dispatch.

mod addon;
mod external;
mod feature;
mod instrument;
mod notify;
mod observe;
mod ping;
mod say;
mod wait;

use super::steps::{Ctx, Node, Outcome};
use super::Pilot;
use crate::effect::Effect;
use crate::journal::EffectRow;
use crate::Error;
use testpilot_flight::spec::Directive;

/// Moves an unresolved directive on as far as it goes now.
pub(super) fn run(
    p: &mut Pilot,
    cx: &mut Ctx,
    d: &Directive,
    path: &str,
    node: Node,
) -> Result<Outcome, Error> {
    match d {
        Directive::Wait(w) => wait::run(p, cx, w, path, node),
        Directive::Log(t) | Directive::Message(t) => say::run(p, cx, d.action(), t, path, node),
        Directive::Status(t) => say::status(p, cx, t, path, node),
        Directive::Observe(o) => observe::run(p, cx, o, path, node),
        Directive::Notify(n) => notify::run(p, cx, n, path, node),
        Directive::Feature(f) => feature::run(p, cx, f, path, node),
        Directive::External(x) => external::run(p, cx, x, path, node),
        Directive::Ping(x) => ping::run(p, cx, x, path, node),
        Directive::Addon(a) => addon::run(p, cx, a, path, node),
        Directive::Instrument(i) => instrument::run(p, cx, i, path, node),
    }
}

/// Reverses an effect of an ended flight (its host key `key`); returns what the flight log
/// says about it. Effects that cannot be taken back (notifications, requests) are not undone.
pub(super) fn undo(p: &mut Pilot, key: &str, e: &EffectRow) -> Result<Option<String>, Error> {
    match &e.effect {
        Effect::Feature { id, prior, .. } => feature::undo(p, id, prior.as_ref(), &e.summary),
        Effect::AddonInstall { id, .. } => addon::undo_install(p, key, id, &e.summary),
        Effect::AddonUninstall { id } => addon::undo_uninstall(p, key, id, &e.summary),
        Effect::Record {
            watch,
            after,
            until,
        } => instrument::undo(p, watch, *after, *until, &e.summary),
        Effect::Stream { .. } => instrument::undo_stream(p, &e.flight, &e.summary),
        Effect::Notify { .. } | Effect::Ping(_) | Effect::Upload(_) => return Ok(None),
    }
    .map(Some)
}

/// `e` is undone while `next`, a later change of the same feature or add-on, stays: `next`
/// takes over what was there before `e`. Returns `next`'s effect when it changes.
pub(super) fn hand_over(
    p: &mut Pilot,
    key: &str,
    e: &EffectRow,
    next: &EffectRow,
) -> Result<Option<Effect>, Error> {
    match (&e.effect, &next.effect) {
        (Effect::Feature { prior, .. }, Effect::Feature { .. }) => {
            Ok(Some(feature::hand_over(prior.clone(), &next.effect)))
        }
        (Effect::AddonInstall { id, .. } | Effect::AddonUninstall { id }, _) => {
            let next_key = format!("{}.{}", next.flight, next.id);
            addon::hand_over(p, key, &next_key, id)?;
            Ok(None)
        }
        _ => Ok(None),
    }
}
