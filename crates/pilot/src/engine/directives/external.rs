//! `external`: a survey or message in the message center; with `waitFor`, the step waits for
//! the person's answer. Prompts still pending when the flight ends are withdrawn.

use crate::engine::steps::{Ctx, Node, Outcome, Res};
use crate::engine::Pilot;
use crate::journal::{prompt_state, Also, NewPrompt};
use crate::Error;
use testpilot_flight::spec::External;
use testpilot_flight::template::Escape;

pub(super) fn run(
    p: &mut Pilot,
    cx: &mut Ctx,
    x: &External,
    path: &str,
    node: Node,
) -> Result<Outcome, Error> {
    let node = match node.prompt {
        Some(_) => node,
        None => {
            let title = p.render(cx, &x.title, Escape::None)?;
            let text = p.render(cx, &x.text, Escape::None)?;
            let url = p.render_opt(cx, x.url.as_ref(), Escape::Url)?;
            let wait = x.wait_for.is_some();
            let prompt = NewPrompt {
                kind: x.kind.as_str(),
                title: title.clone(),
                text,
                url,
                wait,
                expires: x.expires.as_ref().map(|e| cx.now.plus(e.clone())),
            };
            let node = p.create_prompt(cx, path, node, prompt)?;
            if !wait {
                let what = format!("showed {} \"{title}\"", x.kind.as_str());
                return p.resolve(cx, path, node, Res::True, &what, Also::Nothing);
            }
            node
        }
    };
    await_answer(p, cx, path, node)
}

/// A step waiting for the person's answer to its prompt.
fn await_answer(p: &mut Pilot, cx: &mut Ctx, path: &str, node: Node) -> Result<Outcome, Error> {
    let Some(prompt) = node
        .prompt
        .and_then(|id| p.journal.prompt(id).ok().flatten())
    else {
        return Ok(Outcome::Failed(
            "the prompt is missing from the message center".into(),
        ));
    };
    let title = &prompt.title;
    let (res, what) = match prompt.state.as_str() {
        prompt_state::OK => (Res::True, format!("the person said ok to \"{title}\"")),
        prompt_state::NO => (Res::False, format!("the person said no to \"{title}\"")),
        prompt_state::EXPIRED => (Res::False, format!("\"{title}\" expired unanswered")),
        prompt_state::WITHDRAWN => (Res::False, format!("\"{title}\" was withdrawn")),
        _ => return Ok(Outcome::Pending(prompt.expires_at)),
    };
    p.resolve(cx, path, node, res, &what, Also::Nothing)
}
