//! Data for the dashboard's tests and benchmark: many flights, and a flight with many
//! reports, written through the store's own functions; and results of a flight's
//! recordings, as the results endpoint answers them, for drawing the results section.

use crate::error::Result;
use crate::lifecycle::{Actor, Role};
use crate::results::{
    ArmResults, DayCount, Difference, Mean, Results, Share, TopicResults, VsControl, NO_ARM,
};
use crate::store::Store;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Mutex;
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

// ---------------------------------------------------------------- results

fn mean(mean: f64, low: f64, high: f64) -> Mean {
    Mean {
        mean: Some(mean),
        low: Some(low),
        high: Some(high),
    }
}

fn share(value: f64, low: f64, high: f64) -> Share {
    Share {
        value: Some(value),
        low: Some(low),
        high: Some(high),
    }
}

fn difference(diff: f64, low: f64, high: f64, p: f64) -> Difference {
    Difference {
        diff: Some(diff),
        low: Some(low),
        high: Some(high),
        p: Some(p),
    }
}

const UNDEFINED: Difference = Difference {
    diff: None,
    low: None,
    high: None,
    p: None,
};

/// Events per day for 14 days from 2026-04-23, for `arms` with `per_day[k]` events a day
/// on average (a weekly wave; some days without events, which results leave out).
fn days(arms: &[&str], per_day: &[u64]) -> Vec<DayCount> {
    let mut out = Vec::new();
    for d in 0..14u64 {
        for (k, a) in arms.iter().enumerate() {
            let events = per_day[k] * [4, 5, 6, 5, 4, 2, 1][d as usize % 7] / 4;
            if events > 0 && d != 9 {
                out.push(DayCount {
                    day: Timestamp(1_776_902_400_000 + d as i64 * 86_400_000).to_rfc3339()[..10]
                        .to_string(),
                    arm: a.to_string(),
                    events,
                });
            }
        }
    }
    out
}

/// Results of a two-arm flight (`control`, `treatment`, as [`flight_json`]'s) with the
/// three cases an author meets: `search-bar-used` happens more often in `treatment`
/// (12 %, 95 %: 4 % to 20 %), `newtab-opened` shows no detectable difference, and
/// `settings-changed` has too few clients to say anything (`null`s).
pub fn results(studyname: &str) -> Results {
    let arm =
        |name: &str, clients, with, events, m: Mean, s: Share, vs: Option<VsControl>| ArmResults {
            arm: name.into(),
            clients,
            clients_with_event: with,
            events,
            per_client: m,
            share: s,
            vs_control: vs,
        };
    let arms = ["control", "treatment"];
    Results {
        studyname: studyname.into(),
        arms: arms.iter().map(|a| a.to_string()).collect(),
        topics: vec![
            TopicResults {
                topic: "search-bar-used".into(),
                arms: vec![
                    arm(
                        "control",
                        50,
                        30,
                        120,
                        mean(2.4, 2.21, 2.59),
                        share(0.6, 0.46, 0.72),
                        None,
                    ),
                    arm(
                        "treatment",
                        48,
                        34,
                        129,
                        mean(2.69, 2.5, 2.88),
                        share(0.708, 0.57, 0.82),
                        Some(VsControl {
                            per_client: difference(0.288, 0.096, 0.48, 0.0036),
                            share: difference(0.108, -0.08, 0.29, 0.26),
                        }),
                    ),
                ],
                days: days(&arms, &[9, 10]),
            },
            TopicResults {
                topic: "newtab-opened".into(),
                arms: vec![
                    arm(
                        "control",
                        50,
                        44,
                        610,
                        mean(12.2, 10.1, 14.3),
                        share(0.88, 0.76, 0.94),
                        None,
                    ),
                    arm(
                        "treatment",
                        48,
                        41,
                        600,
                        mean(12.5, 10.2, 14.8),
                        share(0.854, 0.73, 0.93),
                        Some(VsControl {
                            per_client: difference(0.3, -2.8, 3.4, 0.41),
                            share: difference(-0.026, -0.16, 0.11, 0.71),
                        }),
                    ),
                ],
                days: days(&arms, &[44, 43]),
            },
            TopicResults {
                topic: "settings-changed".into(),
                arms: vec![
                    arm(
                        "control",
                        1,
                        1,
                        2,
                        Mean {
                            mean: Some(2.0),
                            low: None,
                            high: None,
                        },
                        share(1.0, 0.21, 1.0),
                        None,
                    ),
                    arm(
                        "treatment",
                        0,
                        0,
                        0,
                        Mean {
                            mean: None,
                            low: None,
                            high: None,
                        },
                        Share {
                            value: None,
                            low: None,
                            high: None,
                        },
                        Some(VsControl {
                            per_client: UNDEFINED,
                            share: UNDEFINED,
                        }),
                    ),
                ],
                days: days(&["control"], &[1]),
            },
        ],
    }
}

/// Results of a flight without arms: one topic, one arm named [`NO_ARM`].
pub fn results_one_arm(studyname: &str) -> Results {
    Results {
        studyname: studyname.into(),
        arms: vec![NO_ARM.into()],
        topics: vec![TopicResults {
            topic: "search-bar-used".into(),
            arms: vec![ArmResults {
                arm: NO_ARM.into(),
                clients: 120,
                clients_with_event: 80,
                events: 300,
                per_client: mean(2.5, 2.1, 2.9),
                share: share(0.667, 0.58, 0.74),
                vs_control: None,
            }],
            days: days(&[NO_ARM], &[20]),
        }],
    }
}

static SHOWN: Mutex<BTreeMap<String, Results>> = Mutex::new(BTreeMap::new());

/// Makes the dashboard's flight page show `r` for its flight, whatever the store holds:
/// for tests of the page's drawing, independent of how results are computed.
pub fn show_results(r: Results) {
    if let Ok(mut m) = SHOWN.lock() {
        m.insert(r.studyname.clone(), r);
    }
}

/// The results [`show_results`] set for `studyname`.
pub fn shown_results(studyname: &str) -> Option<Results> {
    SHOWN.lock().ok().and_then(|m| m.get(studyname).cloned())
}
