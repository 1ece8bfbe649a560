//! The client's flight log and message center (the seed's "flightlog"): what each flight did on
//! this machine — status, step, arm, timeline, every request sent off the machine, everything
//! installed or changed and what was undone — and the prompts waiting for the person.

use crate::journal::{phase, Journal};
use crate::Error;
use serde_json::{json, Value};
use std::fmt::Write;
use testpilot_flight::Timestamp;

/// One JSON object per flight the profile knows (docs/cli.md, `testpilot log --json`).
pub fn flights(journal: &Journal, only: Option<&str>) -> Result<Vec<Value>, Error> {
    let mut out = Vec::new();
    for f in journal.flights()? {
        if only.is_some_and(|o| o != f.studyname) {
            continue;
        }
        let timeline: Vec<Value> = journal
            .timeline(&f.studyname)?
            .into_iter()
            .map(|t| {
                let mut v = json!({"at": t.at.to_rfc3339(), "what": t.what, "kind": t.kind});
                if let Some(d) = t.detail {
                    v["detail"] = d;
                }
                v
            })
            .collect();
        let requests: Vec<Value> = journal
            .timeline(&f.studyname)?
            .into_iter()
            .filter(|t| t.kind == "request")
            .map(|t| {
                let d = t.detail.unwrap_or(Value::Null);
                json!({"at": t.at.to_rfc3339(), "method": d.get("method"), "url": d.get("url"), "body": d.get("body")})
            })
            .collect();
        let changes: Vec<Value> = journal
            .effects(&f.studyname)?
            .into_iter()
            .filter(|e| matches!(e.kind.as_str(), "addon-install" | "addon-uninstall" | "feature" | "record" | "stream" | "notify"))
            .map(|e| {
                json!({
                    "at": e.at.to_rfc3339(), "step": e.path, "kind": e.kind, "what": e.summary, "phase": e.phase,
                    "undone": e.phase == phase::UNDONE, "undoneAt": e.undone_at.map(Timestamp::to_rfc3339),
                })
            })
            .collect();
        let prompts: Vec<Value> = journal
            .prompts_of(&f.studyname)?
            .into_iter()
            .map(|p| json!({"id": p.id, "type": p.kind, "title": p.title, "state": p.state, "url": p.url}))
            .collect();
        let reports: Vec<Value> = outbox_of(journal, &f.studyname)?;
        // Recorded events still on this machine (not yet accepted by the tower); each one
        // recorded is also in the timeline, with every upload.
        let recorded: Vec<Value> = journal
            .recorded(&f.studyname, crate::engine::MAX_RECORDED as usize)?
            .iter()
            .map(|e| json!({"seq": e.seq, "topic": e.topic, "subject": e.subject, "value": e.value, "at": e.at.to_rfc3339()}))
            .collect();
        let started = f.started_at.is_some();
        out.push(json!({
            "studyname": f.studyname,
            "version": f.version,
            "status": f.status,
            "statusLine": f.status_line,
            "step": f.step,
            "arm": f.arm,
            "startedAt": f.started_at.map(Timestamp::to_rfc3339),
            "endedAt": f.ended_at.map(Timestamp::to_rfc3339),
            "reason": f.reason,
            "cleanedUp": f.cleaned_up || !started,
            "undoTries": f.undo_tries,
            "undoRetryAt": f.undo_retry_at.filter(|_| !f.cleaned_up).map(Timestamp::to_rfc3339),
            "timeline": timeline,
            "requests": requests,
            "changes": changes,
            "prompts": prompts,
            "reports": reports,
            "recorded": recorded,
        }));
    }
    Ok(out)
}

fn outbox_of(journal: &Journal, flight: &str) -> Result<Vec<Value>, Error> {
    let mut st = journal
        .conn()
        .prepare("SELECT seq, report, sent_at FROM outbox WHERE flight = ?1 ORDER BY seq")?;
    let rows = st
        .query_map([flight], |r| {
            let report: String = r.get(1)?;
            let sent: Option<i64> = r.get(2)?;
            Ok(json!({"seq": r.get::<_, i64>(0)?, "report": serde_json::from_str::<Value>(&report).unwrap_or(Value::Null), "sentAt": sent.map(|s| Timestamp(s).to_rfc3339())}))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The pilot's own log: index accepted or refused, the agent starting and stopping, opt-outs.
pub fn pilot_notes(journal: &Journal) -> Result<Vec<Value>, Error> {
    Ok(journal
        .timeline("")?
        .into_iter()
        .map(|t| json!({"at": t.at.to_rfc3339(), "what": t.what, "kind": t.kind}))
        .collect())
}

/// The message center: prompts waiting for the person (docs/cli.md, `later list --json`).
pub fn pending_prompts(journal: &Journal) -> Result<Vec<Value>, Error> {
    Ok(journal
        .open_prompts()?
        .into_iter()
        .map(|p| {
            json!({
                "id": p.id, "studyname": p.flight, "type": p.kind, "title": p.title, "text": p.text, "url": p.url,
                "state": p.state, "waitsForAnswer": p.wait, "createdAt": p.created_at.to_rfc3339(),
                "expiresAt": p.expires_at.map(Timestamp::to_rfc3339),
            })
        })
        .collect())
}

/// One recorded event: `#3 search-bar-used subject=x value=2.5 at 2027-01-05T10:00:00.000Z`.
fn event_text(e: &Value) -> String {
    let mut t = format!("#{} {}", e["seq"], e["topic"].as_str().unwrap_or(""));
    if let Some(sub) = e["subject"].as_str() {
        let _ = write!(t, " subject={sub}");
    }
    if let Some(v) = e["value"].as_f64() {
        let _ = write!(t, " value={v}");
    }
    let _ = write!(t, " at {}", e["at"].as_str().unwrap_or(""));
    t
}

/// The flight log as text, for people.
pub fn render_text(flights: &[Value], notes: &[Value], pending_reports: i64) -> String {
    let mut s = String::new();
    if flights.is_empty() {
        s.push_str("No flights have run in this profile.\n");
    }
    let str_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    for f in flights {
        let arm = f
            .get("arm")
            .and_then(Value::as_str)
            .map(|a| format!(", arm {a}"))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "{} (version {}{arm}): {} at step {}",
            str_of(f, "studyname"),
            f["version"],
            str_of(f, "status"),
            f["step"]
        );
        if let Some(line) = f.get("statusLine").and_then(Value::as_str) {
            let _ = writeln!(s, "  status line: {line}");
        }
        if let Some(r) = f.get("reason").and_then(Value::as_str) {
            let _ = writeln!(s, "  why: {r}");
        }
        // A flight that never started has nothing to clean up; saying "cleaned up" would puzzle.
        if !matches!(
            f.get("status").and_then(Value::as_str),
            Some("running" | "ineligible" | "unsampled")
        ) {
            let done = f.get("cleanedUp").and_then(Value::as_bool).unwrap_or(false);
            let stuck = match f.get("undoRetryAt").and_then(Value::as_str) {
                Some(at) if !done => format!(
                    " (the undo failed {} time(s); next try at {at})",
                    f["undoTries"]
                ),
                _ => String::new(),
            };
            let _ = writeln!(
                s,
                "  cleaned up: {}{stuck}",
                if done { "yes" } else { "not yet" }
            );
        }
        for t in f["timeline"].as_array().into_iter().flatten() {
            let _ = writeln!(s, "  {}  {}", str_of(t, "at"), str_of(t, "what"));
            // Why a flight did not start (targeting and sampling), in words.
            for r in t
                .get("detail")
                .and_then(|d| d.get("reasons"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                let _ = writeln!(s, "      - {r}");
            }
            // Every recorded event, as it was recorded.
            for e in t
                .get("detail")
                .filter(|_| str_of(t, "kind") == "record")
                .and_then(|d| d.get("events"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let _ = writeln!(s, "      - {}", event_text(e));
            }
            if str_of(t, "kind") == "request" {
                if let Some(b) = t
                    .get("detail")
                    .and_then(|d| d.get("body"))
                    .filter(|b| !b.is_null())
                {
                    let _ = writeln!(s, "      body: {b}");
                }
            }
        }
        let changes = f["changes"].as_array().cloned().unwrap_or_default();
        if !changes.is_empty() {
            let _ = writeln!(s, "  changes on this machine:");
            for c in changes {
                let state = if c["undone"].as_bool() == Some(true) {
                    "undone".to_string()
                } else {
                    str_of(&c, "phase")
                };
                let _ = writeln!(s, "    - {} [{state}]", str_of(&c, "what"));
            }
        }
        let waiting = f["recorded"].as_array().map_or(0, Vec::len);
        if waiting > 0 {
            let _ = writeln!(
                s,
                "  {waiting} recorded event(s) wait on this machine to be sent to the tower"
            );
        }
        let open: Vec<&Value> = f["prompts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| matches!(p["state"].as_str(), Some("pending" | "later")))
            .collect();
        for p in open {
            let _ = writeln!(s, "  waiting for you: prompt {} \"{}\" (answer with `testpilot later --profile PROFILE ok|no|later {}`)", p["id"], str_of(p, "title"), p["id"]);
        }
        s.push('\n');
    }
    if !notes.is_empty() {
        s.push_str("pilot:\n");
        let skip = notes.len().saturating_sub(20);
        for n in &notes[skip..] {
            let _ = writeln!(s, "  {}  {}", str_of(n, "at"), str_of(n, "what"));
        }
    }
    if pending_reports > 0 {
        let _ = writeln!(
            s,
            "{pending_reports} status report(s) wait in the outbox for the tower."
        );
    }
    s
}
