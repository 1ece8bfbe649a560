//! `notify`: delivers a notification to the application, once (the host is idempotent per
//! key). Not undone: a notification cannot be taken back.

use crate::effect::Effect;
use crate::engine::steps::{Ctx, Node, Outcome, Res};
use crate::engine::Pilot;
use crate::journal::Also;
use crate::Error;
use testpilot_flight::spec::Notify;
use testpilot_flight::template::Escape;

pub(super) fn run(
    p: &mut Pilot,
    cx: &mut Ctx,
    n: &Notify,
    path: &str,
    node: Node,
) -> Result<Outcome, Error> {
    let topic = p.render(cx, &n.topic, Escape::None)?;
    let subject = p.render_opt(cx, n.subject.as_ref(), Escape::None)?;
    let data = p.render_data(cx, n.data.as_ref())?;
    let (id, node) = match p.pending_effect(&node)? {
        Some(e) => (e.id, node),
        None => {
            let effect = Effect::Notify {
                topic: topic.clone(),
                subject: subject.clone(),
                data: data.clone(),
            };
            let summary = format!("notified the application: {topic}");
            p.intent(cx, path, node, &effect, &summary, None)?
        }
    };
    p.faults().point("host notify")?;
    p.host
        .notify(&cx.key(id), &topic, subject.as_deref(), data.as_ref())?;
    let what = format!("delivered `{topic}` to the application");
    p.resolve(cx, path, node, Res::True, &what, Also::Done(id))
}
