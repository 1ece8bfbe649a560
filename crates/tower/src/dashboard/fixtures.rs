//! Data for the dashboard's tests and benchmark: many flights, and a flight with many
//! reports, written through the store's own functions.

use crate::error::Result;
use crate::lifecycle::{Actor, Role};
use crate::store::Store;
use serde_json::{json, Value};
use testpilot_flight::report::ReportBatch;
use testpilot_flight::{Flight, Timestamp};

/// A flight with two arms and a four-step plan.
pub fn flight_json(name: &str, description: &str) -> Value {
    json!({
        "studyname": name,
        "author": "research@example.com",
        "description": description,
        "randomDeploy": {"ge": 0, "lt": 0.25},
        "filter": {"channels": ["beta", "release"], "oses": ["linux", "macos"]},
        "arms": [{"name": "control", "ratio": 1}, {"name": "treatment", "ratio": 1, "variables": {"layout": "grid"}}],
        "flightplan": [
            {"action": "feature", "id": "newtab.layout", "value": {"layout": "{{layout}}"}},
            {"action": "wait", "for": "1d"},
            {"action": "external", "type": "survey", "title": "How is the new tab?", "url": "https://example.com/s?l={{layout}}", "waitFor": "ok"},
            {"action": "log", "text": "done"}
        ],
        "variables": {"layout": "list"}
    })
}

fn flight(v: &Value) -> Result<Flight> {
    Flight::from_json(v).map_err(|d| crate::Error::Invalid {
        message: "fixture flight is not valid".into(),
        problems: d,
    })
}

/// Pushes `name`, sends it for review and approves it (as two people): it is live.
pub async fn live_flight(store: &Store, spec: &Value, now: Timestamp) -> Result<()> {
    let author = Actor::new("alice", Role::Author);
    let approver = Actor::new("bob", Role::Approver);
    let f = flight(spec)?;
    store.push(&author, &f, now).await?;
    store.review(&author, &f.studyname, None, now).await?;
    store
        .approve(&approver, &f.studyname, None, false, now)
        .await?;
    Ok(())
}

/// `n` flights `flight-0000` ..., in every state in turn.
pub async fn many_flights(store: &Store, n: usize, now: Timestamp) -> Result<()> {
    let author = Actor::new("alice", Role::Author);
    let approver = Actor::new("bob", Role::Approver);
    for i in 0..n {
        let name = format!("flight-{i:04}");
        let f = flight(&flight_json(&name, &format!("study number {i}")))?;
        store.push(&author, &f, now).await?;
        if i % 5 >= 1 {
            store.review(&author, &name, None, now).await?;
        }
        if i % 5 >= 2 {
            store.approve(&approver, &name, None, false, now).await?;
        }
        if i % 5 == 3 {
            store.kill(&approver, &name, Some("fixture"), now).await?;
        }
        if i % 5 == 4 {
            store.end(&approver, &name, None, now).await?;
        }
    }
    Ok(())
}

/// `reports` reports on the live flight `name` from `reports / 4` clients over `days` days:
/// each client enrols, reaches a step or two, and most complete; some fail, decline or opt
/// out. Written in batches through [`Store::insert_reports`].
pub async fn many_reports(
    store: &Store,
    name: &str,
    reports: usize,
    days: i64,
    start: Timestamp,
) -> Result<()> {
    let clients = reports / 4;
    let mut batches = Vec::new();
    for c in 0..clients {
        let client = format!("{:08x}-0000-4000-8000-{:012x}", c, c);
        let arm = if c % 2 == 0 { "control" } else { "treatment" };
        let day = (c as i64 * days) / clients.max(1) as i64;
        let at = |k: i64| Timestamp(start.0 + day * 86_400_000 + k * 3_600_000).to_rfc3339();
        let end = match c % 20 {
            0 => (
                "failed",
                2,
                Some(json!({"error": "survey server answered 503"})),
            ),
            1 => ("declined", 2, None),
            2 => ("optedout", 1, None),
            3..=6 => ("running", 3, None),
            _ => ("completed", 4, None),
        };
        let mut rs = vec![
            json!({"seq": 1, "flight": name, "version": 1, "arm": arm, "status": "running", "step": 0, "at": at(0)}),
            json!({"seq": 2, "flight": name, "version": 1, "arm": arm, "status": "running", "step": 1, "at": at(1)}),
            json!({"seq": 3, "flight": name, "version": 1, "arm": arm, "status": "running", "step": 2, "at": at(2)}),
        ];
        let mut last = json!({"seq": 4, "flight": name, "version": 1, "arm": arm, "status": end.0, "step": end.1, "at": at(3)});
        if let Some(d) = end.2 {
            last["detail"] = d;
        }
        rs.push(last);
        batches.push(json!({"client": client, "reports": rs}));
        if batches.len() == 250 || c + 1 == clients {
            let parsed: Vec<ReportBatch> = batches
                .iter()
                .map(|b| ReportBatch::from_json(b, 1000))
                .collect::<std::result::Result<_, _>>()
                .map_err(|d| crate::Error::Invalid {
                    message: "fixture reports are not valid".into(),
                    problems: d,
                })?;
            let refs: Vec<&ReportBatch> = parsed.iter().collect();
            store.insert_reports(&refs, start).await?;
            batches.clear();
        }
    }
    Ok(())
}
