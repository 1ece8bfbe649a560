//! The review page's simulation: through the router (the form's answers: results, the
//! problems at their field, busy, CSRF) and in a real headless Chromium, where an approver
//! chooses a population, runs the simulation and reads the reach table.

use crate::e2e::{running, sign_in};
use crate::support::{screenshot_dir, Tower, T0};
use crate::webdriver::Browser;
use axum::http::StatusCode;
use serde_json::{json, Value};
use std::sync::Arc;
use testpilot_flight::{Flight, Timestamp};
use testpilot_tower::api::ApiConfig;
use testpilot_tower::dashboard::fixtures::flight_json;
use testpilot_tower::simulate::{Populations, SimConfig, SimRequest};
use testpilot_tower::store::Engine;
use testpilot_tower::{Actor, Role};

/// A live flight on the same feature as the fixture, for everyone on release.
fn companion() -> Value {
    json!({
        "studyname": "grid-everywhere",
        "author": "study-team@example.com",
        "description": "the grid for everyone on release",
        "filter": {"channels": ["release"]},
        "flightplan": [{"action": "feature", "id": "newtab.layout", "value": {"layout": "grid"}}]
    })
}

/// A tower offering the built-in population and `linux-heavy`, with `companion` live and
/// the fixture flight `newtab` under review.
async fn tower() -> (Tower, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("tp-ui-populations-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("linux-heavy.json"),
        r#"{"os": {"linux": 0.8, "windows": 0.2}, "channel": {"release": 0.5, "beta": 0.5}}"#,
    )
    .unwrap();
    let config = ApiConfig {
        simulate: SimConfig {
            populations: Arc::new(Populations::load(&dir).unwrap()),
            ..SimConfig::default()
        },
        ..ApiConfig::default()
    };
    let t = Tower::with(Engine::Sqlite, config).await;
    t.live(&companion()).await;
    let alice = Actor::new("alice", Role::Author);
    let f = Flight::from_json(&flight_json("newtab", "a grid")).unwrap();
    t.store().push(&alice, &f, Timestamp(T0)).await.unwrap();
    t.store()
        .review(&alice, "newtab", None, Timestamp(T0))
        .await
        .unwrap();
    (t, dir)
}

/// `1234567` as the dashboard writes it: `1,234,567`.
fn thousands(x: u64) -> String {
    let s = x.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

const REVIEW: &str = "/ui/flights/newtab/review";
const SIMULATE: &str = "/ui/flights/newtab/simulate";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_form_answers_through_the_router() {
    let (t, dir) = tower().await;
    let p = t.get(REVIEW, Some(&t.approver)).await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(p.body.contains("id=\"simulate-form\""), "{}", p.body);
    assert!(p.body.contains("<option value=\"linux-heavy\""));
    // A run: the reach table, for the population chosen.
    let fields = [
        ("population", "linux-heavy"),
        ("clients", "3000"),
        ("days", "3"),
        ("seed", "2"),
        ("runs", "0"),
        ("version", "1"),
    ];
    let p = t.post(SIMULATE, &t.approver, REVIEW, &fields).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert!(p.body.contains("id=\"reach\""), "{}", p.body);
    assert!(p.body.contains("<strong>linux-heavy</strong>"));
    assert!(p.body.contains("href=\"/ui/flights/grid-everywhere\""));
    let req = SimRequest {
        population: "linux-heavy".into(),
        clients: 3000,
        days: 3.0,
        seed: 2,
        ..SimRequest::default()
    };
    let sim = testpilot_tower::simulate::simulate(&t.state, "newtab", &req)
        .await
        .unwrap();
    let enrolled = sim.flight().unwrap().enrolled;
    assert!(enrolled > 0);
    assert!(
        p.body.contains(&format!(
            "<tr data-row=\"enrolled\"><td>enrolled</td><td class=\"num\">{}</td>",
            thousands(enrolled)
        )),
        "{}",
        p.body
    );
    // Problems at their field, the form kept.
    let p = t
        .post(
            SIMULATE,
            &t.approver,
            REVIEW,
            &[("clients", "0"), ("runs", "9999")],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(p.body.contains("id=\"sim-problems\""));
    assert!(p
        .body
        .contains("<code>clients</code>: must be between 1 and 1000000"));
    assert!(p.body.contains("<code>runs</code>"));
    // Busy.
    let slot = t.state.simulations.take().unwrap();
    let p = t
        .post(SIMULATE, &t.author, REVIEW, &[("clients", "100")])
        .await;
    assert_eq!(p.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(p.body.contains("id=\"sim-busy\""));
    drop(slot);
    // A form from elsewhere is refused, and nothing runs.
    let p = t
        .post(SIMULATE, &t.author, REVIEW, &[("csrf", "forged")])
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    let p = t.get(SIMULATE, Some(&t.author)).await;
    assert_eq!(p.status, StatusCode::METHOD_NOT_ALLOWED);
    t.cleanup().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_simulates_the_revision_under_review() {
    let dir = screenshot_dir();
    let (t, pop_dir) = tower().await;
    let tower = running(&t).await;
    let base = tower.url.clone();
    let b = Browser::start(1366, 900).await;
    sign_in(&b, &base, &t.approver).await;
    b.goto(&format!("{base}{REVIEW}")).await;
    b.find("#simulate-form").await;
    // Choose the population from the list, a small fleet, a few engine runs.
    b.click("#sim-population option[value='linux-heavy']").await;
    b.type_into("#sim-clients", "2500").await;
    b.type_into("#sim-days", "4").await;
    b.type_into("#sim-runs", "20").await;
    b.click("#simulate").await;
    let reach = b.wait_text("#reach", 60, |t| t.contains("enrolled")).await;
    assert!(
        reach.contains("eligible") && reach.contains("sampled"),
        "{reach}"
    );
    let summary = b.text("#sim-summary").await;
    assert!(
        summary.contains("2,500 clients of population linux-heavy"),
        "{summary}"
    );
    assert!(b.text("#sim-agreement").await.contains("agrees"));
    assert!(b.text("#sim-arms").await.contains("treatment"));
    assert!(b.text("#sim-overlaps").await.contains("grid-everywhere"));
    assert!(b.text("#sim-load").await.contains("index fetches"));
    b.find("#sim-outcomes").await;
    b.find("figure.chart.daily svg.bars").await;
    // The figures are those of the same simulation run directly.
    let req = SimRequest {
        population: "linux-heavy".into(),
        clients: 2500,
        days: 4.0,
        runs: 20,
        version: Some(1),
        ..SimRequest::default()
    };
    let sim = testpilot_tower::simulate::simulate(&t.state, "newtab", &req)
        .await
        .unwrap();
    let f = sim.flight().unwrap();
    let enrolled = b.text("#reach tr[data-row='enrolled'] td.num").await;
    assert_eq!(enrolled, thousands(f.enrolled));
    // The form keeps what was asked; nothing changed: still under review.
    let chosen = b
        .eval(
            "return document.getElementById('sim-population').value;",
            json!([]),
        )
        .await;
    assert_eq!(chosen, json!("linux-heavy"));
    b.find("#approve").await;
    b.screenshot(&dir, "10-review-simulation").await;
    b.quit().await;
    tower.stop().await.unwrap();
    t.cleanup().await;
    let _ = std::fs::remove_dir_all(&pop_dir);
}
