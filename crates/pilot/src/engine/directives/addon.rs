//! `addon`: install, ensure or uninstall an add-on, after the person agreed when the
//! permission says so and after the package's sha256 is checked. Undo removes what was
//! installed and puts back what was there before, or puts back what was uninstalled.

use crate::effect::Effect;
use crate::engine::steps::{Ctx, Node, Outcome, Res};
use crate::engine::{backoff_ms, Pilot, MAX_ATTEMPTS};
use crate::journal::{prompt_state, Also, EffectRow, Line, NewPrompt};
use crate::package::{self, sha256_file};
use crate::Error;
use serde_json::json;
use std::path::PathBuf;
use testpilot_flight::spec::{Addon, AddonOp, Permission};
use testpilot_flight::template::Escape;
use testpilot_flight::Timestamp;

/// A package checked against the flight's sha256, ready to install.
struct Package {
    file: PathBuf,
    sha256: String,
    source: String,
    /// Downloaded into the profile (deleted once installed).
    downloaded: bool,
}

pub(super) fn run(
    p: &mut Pilot,
    cx: &mut Ctx,
    a: &Addon,
    path: &str,
    node: Node,
) -> Result<Outcome, Error> {
    let pending = p.pending_effect(&node)?;
    if pending.is_none() {
        if let Some(done) = nothing_to_do(p, cx, a, path, node)? {
            return Ok(done);
        }
    }
    let node = cx.node(path);
    if a.op == AddonOp::Uninstall {
        return uninstall(p, cx, a, path, node, pending);
    }
    // Install or ensure: get the package and check it before anything is installed.
    let pkg = match fetch_package(p, cx, a, path)? {
        Ok(x) => x,
        Err(Outcome::Failed(why)) => {
            let node = cx.nodes.get(path).cloned().unwrap_or(node);
            return p.resolve(cx, path, node, Res::Failed, &why, Also::Nothing);
        }
        Err(other) => return Ok(other),
    };
    let id = match pending {
        Some(e) => e.id,
        None => {
            let effect = Effect::AddonInstall {
                id: a.id.clone(),
                sha256: pkg.sha256.clone(),
                source: pkg.source.clone(),
                op: op_name(a.op).into(),
            };
            let summary = format!("installed add-on `{}` from {}", a.id, pkg.source);
            p.intent(cx, path, node.clone(), &effect, &summary, None)?.0
        }
    };
    let node = cx.nodes.get(path).cloned().unwrap_or(node);
    p.faults().point("host install")?;
    let result = p
        .host
        .addon_install(&cx.key(id), &a.id, &pkg.file, &pkg.sha256);
    if pkg.downloaded {
        discard_download(p, &pkg.file);
    }
    match result {
        Ok(()) => {
            let what = format!(
                "installed add-on `{}` from {} (sha256 {})",
                a.id, pkg.source, pkg.sha256
            );
            let node = if a.permission == Permission::Notify {
                let text = match &a.msg {
                    Some(m) => p.render(cx, m, Escape::None)?,
                    None => format!("The study {} installed the add-on {}.", cx.name, a.id),
                };
                let prompt = NewPrompt {
                    kind: "message",
                    title: format!("Add-on {} installed", a.id),
                    text,
                    url: None,
                    wait: false,
                    expires: None,
                };
                p.create_prompt(cx, path, node, prompt)?
            } else {
                node
            };
            p.resolve(cx, path, node, Res::True, &what, Also::Done(id))
        }
        Err(Error::Package(msg)) => p.resolve(cx, path, node, Res::Failed, &msg, Also::Failed(id)),
        Err(e) => Err(e),
    }
}

/// Resolves the step when there is nothing to do (uninstalling what is absent, ensuring what
/// is there) or the person did not agree; waits while the person has not answered.
fn nothing_to_do(
    p: &mut Pilot,
    cx: &mut Ctx,
    a: &Addon,
    path: &str,
    node: Node,
) -> Result<Option<Outcome>, Error> {
    let present = p.host.addon_present(&a.id)?;
    let nothing = match a.op {
        AddonOp::Uninstall if !present => Some(format!(
            "add-on `{}` is not installed: nothing to uninstall",
            a.id
        )),
        AddonOp::Ensure if present => Some(format!(
            "add-on `{}` is already installed: left as it is",
            a.id
        )),
        _ => None,
    };
    if let Some(what) = nothing {
        return p
            .resolve(cx, path, node, Res::True, &what, Also::Nothing)
            .map(Some);
    }
    if a.permission != Permission::Warn {
        return Ok(None);
    }
    let node = match node.prompt {
        Some(_) => node,
        None => {
            let verb = if a.op == AddonOp::Uninstall {
                "Remove"
            } else {
                "Install"
            };
            let text = match &a.msg {
                Some(m) => p.render(cx, m, Escape::None)?,
                None => format!(
                    "The study {} would like to {} the add-on {}.",
                    cx.name,
                    verb.to_lowercase(),
                    a.id
                ),
            };
            let prompt = NewPrompt {
                kind: "addon",
                title: format!("{verb} the add-on {}?", a.id),
                text,
                url: None,
                wait: true,
                expires: None,
            };
            p.create_prompt(cx, path, node, prompt)?
        }
    };
    let prompt = node
        .prompt
        .and_then(|id| p.journal.prompt(id).ok().flatten());
    let Some(prompt) = prompt else {
        let why = "the add-on's permission prompt is missing from the message center";
        return p
            .resolve(cx, path, node, Res::Failed, why, Also::Nothing)
            .map(Some);
    };
    match prompt.state.as_str() {
        prompt_state::OK => Ok(None),
        prompt_state::PENDING | prompt_state::LATER => {
            Ok(Some(Outcome::Pending(prompt.expires_at)))
        }
        other => {
            let what = format!(
                "the person did not agree to \"{}\" ({other}); nothing was installed or removed",
                prompt.title
            );
            p.resolve(cx, path, node, Res::False, &what, Also::Nothing)
                .map(Some)
        }
    }
}

fn uninstall(
    p: &mut Pilot,
    cx: &mut Ctx,
    a: &Addon,
    path: &str,
    node: Node,
    pending: Option<EffectRow>,
) -> Result<Outcome, Error> {
    let (id, node) = match pending {
        Some(e) => (e.id, node),
        None => {
            let effect = Effect::AddonUninstall { id: a.id.clone() };
            let summary = format!("uninstalled add-on `{}`", a.id);
            p.intent(cx, path, node, &effect, &summary, None)?
        }
    };
    p.faults().point("host uninstall")?;
    p.host.addon_uninstall(&cx.key(id), &a.id)?;
    let what = format!(
        "uninstalled add-on `{}` (kept aside to put back on undo)",
        a.id
    );
    p.resolve(cx, path, node, Res::True, &what, Also::Done(id))
}

fn op_name(op: AddonOp) -> &'static str {
    match op {
        AddonOp::Install => "install",
        AddonOp::Uninstall => "uninstall",
        AddonOp::Ensure => "ensure",
    }
}

fn discard_download(p: &Pilot, file: &std::path::Path) {
    let _ = std::fs::remove_file(file);
    let _ = std::fs::remove_dir(p.profile.join("downloads"));
}

/// The package of an add-on as a local file, checked against its sha256, or how the step
/// stands when it is not there yet.
fn fetch_package(
    p: &mut Pilot,
    cx: &mut Ctx,
    a: &Addon,
    path: &str,
) -> Result<Result<Package, Outcome>, Error> {
    let (file, source, downloaded) = if let Some(local) = &a.path {
        (PathBuf::from(local), local.clone(), false)
    } else if let Some(u) = &a.url {
        if let Some(rest) = u.strip_prefix("file://") {
            (PathBuf::from(rest), u.clone(), false)
        } else {
            let sha = a.sha256.clone().unwrap_or_default();
            let file = p.profile.join("downloads").join(format!("{sha}.pkg"));
            if !file.exists() {
                if let Err(outcome) = download(p, cx, a, path, u, &file)? {
                    return Ok(Err(outcome));
                }
            }
            (file, u.clone(), true)
        }
    } else {
        return Ok(Err(Outcome::Failed(format!(
            "add-on `{}` has no package (`url` or `path`)",
            a.id
        ))));
    };
    if !file.is_file() {
        return Ok(Err(Outcome::Failed(format!(
            "the package of add-on `{}` is not at {}; nothing was installed",
            a.id,
            file.display()
        ))));
    }
    let actual = match sha256_file(&file) {
        Ok(s) => s,
        Err(e) => return Ok(Err(Outcome::Failed(e.to_string()))),
    };
    if let Some(expected) = &a.sha256 {
        if !expected.eq_ignore_ascii_case(&actual) {
            if downloaded {
                discard_download(p, &file);
            }
            return Ok(Err(Outcome::Failed(format!(
                "the package of add-on `{}` from {source} has sha256 {actual}, but the flight says {expected}; nothing was installed",
                a.id
            ))));
        }
    }
    Ok(Ok(Package {
        file,
        sha256: actual,
        source,
        downloaded,
    }))
}

/// Downloads a package to `file`; on a network error or 5xx, tries again later with backoff.
fn download(
    p: &mut Pilot,
    cx: &mut Ctx,
    a: &Addon,
    path: &str,
    url: &str,
    file: &std::path::Path,
) -> Result<Result<(), Outcome>, Error> {
    let node = cx.node(path);
    if let Some(at) = node.retry_at {
        if cx.now.0 < at {
            return Ok(Err(Outcome::Pending(Some(Timestamp(at)))));
        }
    }
    let now = cx.now;
    let line =
        Line::new("request", format!("GET {url}")).with(json!({"method": "GET", "url": url}));
    p.journal
        .note(&cx.name, now, line.kind, &line.what, line.detail.as_ref())?;
    let sha = a.sha256.as_deref().unwrap_or_default();
    let why = match package::fetch(p.net.as_ref(), url, sha, file) {
        Ok(()) => return Ok(Ok(())),
        Err(
            e @ (Error::Package(_)
            | Error::Net {
                retryable: false, ..
            }),
        ) => {
            return Ok(Err(Outcome::Failed(format!(
                "downloading add-on `{}` failed: {e}",
                a.id
            ))));
        }
        Err(e) if e.is_fatal() => return Err(e),
        Err(e) => format!("downloading add-on `{}` failed: {e}", a.id),
    };
    // A network error or 5xx: try again later, with backoff.
    let mut node = node;
    node.attempts += 1;
    if node.attempts >= MAX_ATTEMPTS {
        return Ok(Err(Outcome::Failed(format!(
            "{why}; gave up after {} tries",
            node.attempts
        ))));
    }
    let at = Timestamp(now.0 + backoff_ms(node.attempts));
    node.retry_at = Some(at.0);
    let line = Line::new("retry", format!("step {path}: {why}; trying again at {at}"));
    p.save_node(cx, path, node, "retry", Also::Nothing, Some(line))?;
    Ok(Err(Outcome::Pending(Some(at))))
}

/// Removes what the install put there and puts back what was there before.
pub(super) fn undo_install(
    p: &mut Pilot,
    key: &str,
    id: &str,
    summary: &str,
) -> Result<String, Error> {
    p.host.addon_undo_install(key, id)?;
    Ok(format!(
        "undid: {summary} (removed it, and put back what was there before)"
    ))
}

/// Puts back what the uninstall kept aside.
pub(super) fn undo_uninstall(
    p: &mut Pilot,
    key: &str,
    id: &str,
    summary: &str,
) -> Result<String, Error> {
    p.host.addon_undo_uninstall(key, id)?;
    Ok(format!("undid: {summary} (put it back)"))
}

/// A later install or uninstall of the same add-on stays: it takes over what this one kept
/// aside.
pub(super) fn hand_over(p: &mut Pilot, key: &str, next_key: &str, id: &str) -> Result<(), Error> {
    p.faults().point("host handover")?;
    p.host.addon_handover(key, next_key, id)
}
