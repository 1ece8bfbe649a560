//! `testpilot flight push|review|approve|send-back|kill|end|status`: an author's and
//! approver's side of a tower, over its HTTP API.

use crate::term::{self, errln, outln};
use anyhow::Context;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;

/// How many of a flight's newest error reports `status` shows.
const RECENT_ERRORS: u32 = 5;

/// Which tower, and who.
#[derive(clap::Args, Clone)]
pub struct TowerArgs {
    /// The tower's URL, e.g. http://127.0.0.1:8470 (or set TESTPILOT_TOWER).
    #[arg(long, env = "TESTPILOT_TOWER")]
    pub tower: String,
    /// An API token from `testpilot tower token create` (or set TESTPILOT_TOKEN).
    #[arg(long, env = "TESTPILOT_TOKEN", hide_env_values = true)]
    pub token: String,
}

#[derive(clap::Subcommand)]
pub enum RemoteCmd {
    /// Push a flight file, or a copilot document (which the tower expands and keeps beside the
    /// flight), to a tower: creates the flight or a new draft revision.
    Push {
        file: PathBuf,
        #[command(flatten)]
        to: TowerArgs,
    },
    /// Send a flight's newest revision (a draft) for review.
    Review {
        name: String,
        /// The revision you mean (refused unless it is the newest).
        #[arg(long)]
        version: Option<u64>,
        #[command(flatten)]
        to: TowerArgs,
    },
    /// Approve the revision under review: it goes live. Needs someone other than its author
    /// (unless the tower runs in single-user mode, as under `testpilot up`).
    Approve {
        name: String,
        /// The revision you reviewed (refused unless it is the one under review).
        #[arg(long)]
        version: Option<u64>,
        #[command(flatten)]
        to: TowerArgs,
    },
    /// Send the revision under review back to its author as a draft, saying why. A live
    /// revision keeps running.
    SendBack {
        name: String,
        /// Why it goes back: what the author reads (kept in the audit log).
        #[arg(long)]
        comment: String,
        /// The revision you reviewed (refused unless it is the one under review).
        #[arg(long)]
        version: Option<u64>,
        #[command(flatten)]
        to: TowerArgs,
    },
    /// Kill a live flight: every pilot ends it and undoes what it did.
    Kill {
        name: String,
        /// Why, for the audit log.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        to: TowerArgs,
    },
    /// End a flight: it leaves the index.
    End {
        name: String,
        /// Why, for the audit log.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        to: TowerArgs,
    },
    /// Show a flight: state, revisions, audit log, progress and the newest error reports.
    Status {
        name: String,
        /// Print one JSON object: {"flight": ..., "progress": ..., "errors": [...]}.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        to: TowerArgs,
    },
}

pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// An answer: status and JSON body (null when the body is not JSON).
pub(crate) struct Answer {
    pub status: reqwest::StatusCode,
    pub body: Value,
}

impl Client {
    pub(crate) fn new(t: &TowerArgs) -> anyhow::Result<Client> {
        let scheme = t
            .tower
            .split_once("://")
            .map(|(s, _)| s.to_ascii_lowercase());
        if !matches!(scheme.as_deref(), Some("http") | Some("https")) {
            anyhow::bail!(
                "--tower `{}` is not an http:// or https:// address; write it like http://127.0.0.1:8470",
                t.tower
            );
        }
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        Ok(Client {
            http,
            base: t.tower.trim_end_matches('/').to_string(),
            token: t.token.trim().to_string(),
        })
    }

    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Answer> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req
            .send()
            .await
            .with_context(|| format!("cannot reach the tower at {}", self.base))?;
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        Ok(Answer {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        })
    }
}

fn segment(name: &str) -> String {
    // Studynames are [a-z0-9._-]; anything else is refused by the tower anyway, but keep
    // the URL well-formed.
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c.to_string()
            } else {
                format!("%{:02X}", c as u32 & 0xff)
            }
        })
        .collect()
}

/// Prints a refusal: the tower's message, and each problem as `PREFIX: PATH: message`.
pub(crate) fn refused(a: &Answer, what: &str, prefix: &str) -> ExitCode {
    let msg = a
        .body
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("no explanation given");
    let why = match a.status.as_u16() {
        401 => "not authenticated",
        403 => "not allowed",
        404 => "not found",
        409 => "not possible in the current state",
        413 => "too large",
        422 => "not valid",
        429 => "rate limited",
        s if s >= 500 => "the tower failed",
        _ => "refused",
    };
    errln!("{what}: {why} ({}): {msg}", a.status);
    for p in a
        .body
        .get("problems")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let path = p.get("path").and_then(Value::as_str).unwrap_or("$");
        let message = p.get("message").and_then(Value::as_str).unwrap_or("");
        outln!("{prefix}: {path}: {message}");
    }
    ExitCode::from(1)
}

pub fn run(c: RemoteCmd) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(c))
}

async fn run_async(c: RemoteCmd) -> anyhow::Result<ExitCode> {
    match c {
        RemoteCmd::Push { file, to } => push(&file, &to).await,
        RemoteCmd::Review { name, version, to } => {
            action(&to, &name, "review", json!({"version": version})).await
        }
        RemoteCmd::Approve { name, version, to } => {
            action(&to, &name, "approve", json!({"version": version})).await
        }
        RemoteCmd::SendBack {
            name,
            comment,
            version,
            to,
        } => {
            action(
                &to,
                &name,
                "send-back",
                json!({"comment": comment, "version": version}),
            )
            .await
        }
        RemoteCmd::Kill { name, reason, to } => {
            action(&to, &name, "kill", json!({"reason": reason})).await
        }
        RemoteCmd::End { name, reason, to } => {
            action(&to, &name, "end", json!({"reason": reason})).await
        }
        RemoteCmd::Status { name, json, to } => status(&to, &name, json).await,
    }
}

async fn push(file: &std::path::Path, to: &TowerArgs) -> anyhow::Result<ExitCode> {
    let shown = file.display().to_string();
    let v = match crate::cmd_flight::read_json(file) {
        Ok(v) => v,
        Err(e) => {
            outln!("{shown}: $: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    // Validate here first: the same lines as `flight validate` (or `copilot validate` for a
    // copilot document, which the tower expands), without a round trip.
    let checked = if testpilot_flight::copilot::is_copilot(&v) {
        testpilot_flight::copilot::expand_json(&v).map(|_| ())
    } else {
        testpilot_flight::Flight::from_json(&v).map(|_| ())
    };
    if let Err(d) = checked {
        for p in d {
            outln!("{shown}: {}: {}", p.path, p.message);
        }
        return Ok(ExitCode::from(1));
    }
    let client = Client::new(to)?;
    let a = client
        .send(reqwest::Method::POST, "/api/v1/flights", Some(&v))
        .await?;
    if !a.status.is_success() {
        return Ok(refused(&a, &format!("push {shown}"), &shown));
    }
    let name = a
        .body
        .get("studyname")
        .and_then(Value::as_str)
        .unwrap_or("?");
    let version = a.body.get("version").and_then(Value::as_u64).unwrap_or(0);
    if a.body.get("unchanged").and_then(Value::as_bool) == Some(true) {
        outln!("{name}: unchanged; revision {version} is already this flight");
    } else {
        let n = a
            .body
            .get("changes")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        let what = if version == 1 {
            "created".to_string()
        } else {
            format!("{n} changes")
        };
        outln!("{name}: revision {version} pushed as a draft ({what}); next: testpilot flight review {name}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn action(to: &TowerArgs, name: &str, verb: &str, body: Value) -> anyhow::Result<ExitCode> {
    let body: Value = match body {
        Value::Object(o) => Value::Object(o.into_iter().filter(|(_, v)| !v.is_null()).collect()),
        other => other,
    };
    let client = Client::new(to)?;
    let a = client
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/flights/{}/{verb}", segment(name)),
            Some(&body),
        )
        .await?;
    if !a.status.is_success() {
        return Ok(refused(&a, &format!("{verb} {name}"), name));
    }
    let version = a.body.get("version").and_then(Value::as_u64).unwrap_or(0);
    let state = a.body.get("state").and_then(Value::as_str).unwrap_or("?");
    let serial = a
        .body
        .get("serial")
        .and_then(Value::as_u64)
        .map(|s| format!("; index serial {s}"))
        .unwrap_or_default();
    // States as a sentence says them: "is under review", "is a draft", "is live".
    let said = match state {
        "review" => "under review",
        "draft" => "a draft",
        s => s,
    };
    outln!("{name}: {verb} done on revision {version}; the flight is {said}{serial}");
    if let Some(w) = a.body.get("warning").and_then(Value::as_str) {
        errln!("warning: {w}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(to: &TowerArgs, name: &str, as_json: bool) -> anyhow::Result<ExitCode> {
    let client = Client::new(to)?;
    let f = client
        .send(
            reqwest::Method::GET,
            &format!("/api/v1/flights/{}", segment(name)),
            None,
        )
        .await?;
    if !f.status.is_success() {
        return Ok(refused(&f, &format!("status {name}"), name));
    }
    let p = client
        .send(
            reqwest::Method::GET,
            &format!("/api/v1/flights/{}/progress", segment(name)),
            None,
        )
        .await?;
    if !p.status.is_success() {
        return Ok(refused(&p, &format!("progress {name}"), name));
    }
    // The newest reports that said why (a failure's detail), as the dashboard shows them.
    let e = client
        .send(
            reqwest::Method::GET,
            &format!(
                "/api/v1/flights/{}/errors?limit={RECENT_ERRORS}",
                segment(name)
            ),
            None,
        )
        .await?;
    if !e.status.is_success() {
        return Ok(refused(&e, &format!("errors {name}"), name));
    }
    if as_json {
        term::print_json(&json!({"flight": f.body, "progress": p.body, "errors": e.body}))?;
        return Ok(ExitCode::SUCCESS);
    }
    let s = |v: &Value, k: &str| {
        v.get(k)
            .map(|x| {
                x.as_str()
                    .map(String::from)
                    .unwrap_or_else(|| x.to_string())
            })
            .unwrap_or_default()
    };
    let fb = &f.body;
    outln!("flight      {}", s(fb, "studyname"));
    let mut state = s(fb, "state");
    if let Some(v) = fb.get("liveVersion").and_then(Value::as_u64) {
        state.push_str(&format!(" (live revision {v})"));
    }
    if let Some(p) = fb.get("pending").filter(|p| !p.is_null()) {
        state.push_str(&format!(
            "; revision {} is {}",
            s(p, "version"),
            s(p, "state")
        ));
    }
    outln!("state       {state}");
    outln!("author      {}", s(fb, "author"));
    outln!("revisions");
    for r in fb
        .get("revisions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        outln!(
            "  {:>4}  {:<10}  by {:<16}  {}",
            s(r, "version"),
            s(r, "state"),
            s(r, "createdBy"),
            s(r, "createdAt")
        );
    }
    outln!("audit");
    for e in fb
        .get("audit")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let version = e
            .get("version")
            .and_then(Value::as_u64)
            .map(|v| format!(" v{v}"))
            .unwrap_or_default();
        // What the audit entry says beyond who and what: a kill's or end's reason, a
        // self-approval in single-user mode, a send-back's comment.
        let d = e.get("detail");
        let extra = [
            d.and_then(|d| d.get("reason"))
                .and_then(Value::as_str)
                .map(|r| format!("reason: {r}")),
            d.and_then(|d| d.get("comment"))
                .and_then(Value::as_str)
                .map(|c| format!("comment: {c}")),
            d.and_then(|d| d.get("selfApproved"))
                .and_then(Value::as_bool)
                .filter(|b| *b)
                .map(|_| "approved by its own author (single-user mode)".to_string()),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>();
        let extra = if extra.is_empty() {
            String::new()
        } else {
            format!("  ({})", extra.join("; "))
        };
        outln!(
            "  {}  {:<16}  {}{version}{extra}",
            s(e, "at"),
            s(e, "actor"),
            s(e, "action")
        );
    }
    let pb = &p.body;
    let counts = |k: &str| {
        pb.get(k)
            .and_then(Value::as_object)
            .map(|o| {
                o.iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    outln!(
        "progress    {} clients, {} reports",
        s(pb, "clients"),
        s(pb, "reports")
    );
    outln!("  by status {}", counts("byStatus"));
    outln!("  by step   {}", counts("byStep"));
    outln!("  by arm    {}", counts("byArm"));
    let errors = e.body.as_array().map(Vec::as_slice).unwrap_or_default();
    if !errors.is_empty() {
        outln!("recent errors");
    }
    for r in errors {
        let arm = r
            .get("arm")
            .and_then(Value::as_str)
            .map(|a| format!(", arm {a}"))
            .unwrap_or_default();
        outln!(
            "  {}  {} at step {} (v{}{arm}): {}",
            s(r, "at"),
            s(r, "status"),
            s(r, "step"),
            s(r, "version"),
            s(r, "detail")
        );
    }
    Ok(ExitCode::SUCCESS)
}
