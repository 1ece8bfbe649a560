//! `feature`: sets a feature's value; undo puts back what was there before.

use crate::effect::Effect;
use crate::engine::steps::{Ctx, Node, Outcome, Res};
use crate::engine::Pilot;
use crate::journal::Also;
use crate::Error;
use serde_json::Value;
use testpilot_flight::spec::Feature;

pub(super) fn run(
    p: &mut Pilot,
    cx: &mut Ctx,
    f: &Feature,
    path: &str,
    node: Node,
) -> Result<Outcome, Error> {
    let (id, node, effect) = match p.pending_effect(&node)? {
        Some(e) => (e.id, node, e.effect),
        None => {
            let effect = Effect::Feature {
                id: f.id.clone(),
                value: Value::Object(f.value.clone()),
                prior: p.host.feature_get(&f.id)?,
            };
            let summary = format!("set feature `{}`", f.id);
            let (id, node) = p.intent(cx, path, node, &effect, &summary, None)?;
            (id, node, effect)
        }
    };
    let Effect::Feature { value, prior, .. } = &effect else {
        return Err(Error::Journal {
            path: p.journal.path().to_path_buf(),
            msg: format!("effect {id} of step {path} is not a feature change: {effect:?}"),
        });
    };
    p.faults().point("host feature")?;
    p.host.feature_set(&f.id, Some(value))?;
    let what = format!(
        "set feature `{}` to {} (was {})",
        f.id,
        Value::Object(f.value.clone()),
        shown(prior.as_ref())
    );
    p.resolve(cx, path, node, Res::True, &what, Also::Done(id))
}

fn shown(v: Option<&Value>) -> String {
    v.map(|p| p.to_string()).unwrap_or_else(|| "unset".into())
}

/// Restores the value the feature had before (or unsets it).
pub(super) fn undo(
    p: &mut Pilot,
    id: &str,
    prior: Option<&Value>,
    summary: &str,
) -> Result<String, Error> {
    p.host.feature_set(id, prior)?;
    Ok(format!("undid: {summary} (restored {})", shown(prior)))
}

/// A later change of the same feature stays: it restores this one's "before" in its turn.
pub(super) fn hand_over(prior: Option<Value>, next: &Effect) -> Effect {
    let mut next = next.clone();
    if let Effect::Feature { prior: p, .. } = &mut next {
        *p = prior;
    }
    next
}
