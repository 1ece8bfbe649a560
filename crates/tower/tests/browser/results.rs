//! The results section of a flight's page, and the charts' text at any width: through the
//! router (what the page holds) and in headless Chromium at 320, 1024 and 2560 pixels wide
//! (what a person sees: chart text at the body's font size, never scaled; step labels
//! without raw `{{template}}` syntax).

use crate::e2e::{running, sign_in};
use crate::support::{flight, screenshot_dir, Tower, T0};
use crate::webdriver::Browser;
use axum::http::StatusCode;
use serde_json::{json, Value};
use testpilot_flight::Timestamp;
use testpilot_tower::dashboard::fixtures;
use testpilot_tower::store::Engine;

/// A flight without arms whose steps' texts are templates.
fn solo(name: &str) -> Value {
    json!({
        "studyname": name,
        "author": "research@example.com",
        "description": "One plan for everyone, with a greeting that names the person.",
        "variables": {"greeting": "Welcome"},
        "flightplan": [
            {"action": "message", "text": "{{greeting}}, {{personid}}: thanks for testing {{studyname}}"},
            {"action": "external", "type": "survey", "title": "How is it on {{os}}?", "url": "https://example.com/s?os={{os}}", "waitFor": "ok"},
            {"action": "wait", "for": "1d"},
            {"action": "log", "text": "done"}
        ]
    })
}

/// A tower with `newtab` (two arms) and `solo` (no arms), both live with reports, and the
/// fixture results shown for them under their own names (`prefix-newtab`, `prefix-solo`).
async fn tower_with_results(prefix: &str) -> (Tower, String, String) {
    let t = Tower::new(Engine::Sqlite).await;
    let (two, one) = (format!("{prefix}-newtab"), format!("{prefix}-solo"));
    t.live(&flight(&two, "Tries a grid layout on the new tab page."))
        .await;
    t.live(&solo(&one)).await;
    fixtures::many_reports(t.store(), &two, 400, 7, Timestamp(T0))
        .await
        .unwrap();
    // A flight without arms: reports without one; 30 clients, a third at each step.
    let batches: Vec<testpilot_flight::report::ReportBatch> = (0..30u64)
        .map(|c| {
            let b = json!({"client": format!("00000000-0000-4000-8000-{c:012x}"), "reports": [
                {"seq": 1, "flight": one, "version": 1, "status": "running", "step": c % 3,
                 "at": Timestamp(T0 + 3_600_000 * c as i64).to_rfc3339()}]});
            testpilot_flight::report::ReportBatch::from_json(&b, 10).unwrap()
        })
        .collect();
    let refs: Vec<_> = batches.iter().collect();
    t.store()
        .insert_reports(&refs, Timestamp(T0))
        .await
        .unwrap();
    fixtures::show_results(fixtures::results(&two));
    fixtures::show_results(fixtures::results_one_arm(&one));
    (t, two, one)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flight_page_shows_results_and_readable_steps() {
    let (t, two, one) = tower_with_results("router").await;
    let p = t
        .get(&format!("/ui/flights/{two}"), Some(&t.approver))
        .await;
    assert_eq!(p.status, StatusCode::OK);
    let b = &p.body;
    assert!(b.contains("<section id=\"results\">"));
    assert!(b.contains(&format!("href=\"/ui/flights/{two}/events.csv\"")));
    assert!(b.contains(&format!("href=\"/ui/flights/{two}/events.jsonl\"")));
    assert!(b.contains(
        "In <code>treatment</code>, <code>search-bar-used</code> happened 12% more often per client than in <code>control</code> (95%: 4% to 20%; p = 0.004)."
    ));
    assert!(b.contains(
        "no detectable difference in <code>newtab-opened</code> yet (p = 0.41, n = 48 and 50)"
    ));
    assert!(b.contains("not enough data yet to compare <code>settings-changed</code>"));
    assert!(!b.contains("NaN"));
    for chart in ["funnel", "daily", "intervals"] {
        let at = b
            .find(&format!("<figure class=\"chart {chart}"))
            .unwrap_or_else(|| panic!("a {chart} chart"));
        let fig = &b[at..];
        let fig = &fig[..fig.find("</figure>").unwrap()];
        // Swatches (no text) may scale; a chart with text may not.
        let scaled = fig.matches("viewBox").count() - fig.matches("swatch\" viewBox").count();
        assert_eq!(scaled, 0, "the {chart} chart scales its text: {fig}");
    }

    let p = t
        .get(&format!("/ui/flights/{one}"), Some(&t.approver))
        .await;
    assert!(p.body.contains(
        "<code>search-bar-used</code> happened 2.5 times per client on average (95%: 2.1 to 2.9), and 67% of 120 clients had it at least once."
    ));
    assert!(p
        .body
        .contains("1. message: Welcome, «personid»: thanks for testing"));
    assert!(p.body.contains("2. survey: How is it on «os»?"));
    let funnel = &p.body[p.body.find("figure class=\"chart funnel\"").unwrap()..];
    let funnel = &funnel[..funnel.find("</figure>").unwrap()];
    assert!(!funnel.contains("{{"), "raw templates in {funnel}");

    // A flight without results has no results section.
    t.live(&flight("plain", "no recordings")).await;
    let p = t.get("/ui/flights/plain", Some(&t.approver)).await;
    assert!(!p.body.contains("id=\"results\""));
    t.cleanup().await;
}

/// Every visible text of the page's charts: its font size as drawn (the computed size
/// times the SVG's scale) and the body's font size.
const MEASURE: &str = r#"
var body = parseFloat(getComputedStyle(document.body).fontSize);
var out = [];
document.querySelectorAll('figure.chart svg text').forEach(function (t) {
  if (getComputedStyle(t).display === 'none') return;
  var m = t.getScreenCTM();
  var scale = m ? Math.sqrt(m.a * m.a + m.b * m.b) : 1;
  out.push({text: t.textContent.slice(0, 50),
            drawn: parseFloat(getComputedStyle(t).fontSize) * scale,
            height: t.getBoundingClientRect().height});
});
var figures = Array.prototype.map.call(document.querySelectorAll('figure.chart'), function (f) {
  return f.getBoundingClientRect().right;
});
return {body: body, texts: out, width: document.documentElement.clientWidth, figures: figures,
        labels: Array.prototype.map.call(document.querySelectorAll('figure.funnel text.label'), function (t) { return t.textContent; })};
"#;

async fn check_text_sizes(b: &Browser, page: &str, width: u32, min_texts: usize) {
    let v = b.eval(MEASURE, json!([])).await;
    let body = v["body"].as_f64().unwrap();
    assert!(body >= 10.0, "{page} @{width}: body font {body}");
    let texts = v["texts"].as_array().unwrap();
    assert!(
        texts.len() >= min_texts,
        "{page} @{width}: only {} chart texts",
        texts.len()
    );
    for t in texts {
        let drawn = t["drawn"].as_f64().unwrap();
        assert!(
            (drawn - body).abs() < 0.01,
            "{page} @{width}: {} drawn at {drawn}px, the body's font is {body}px",
            t["text"]
        );
        let h = t["height"].as_f64().unwrap();
        assert!(
            h <= body * 1.6,
            "{page} @{width}: {} is {h}px tall",
            t["text"]
        );
    }
    let vw = v["width"].as_f64().unwrap();
    for right in v["figures"].as_array().unwrap() {
        assert!(
            right.as_f64().unwrap() <= vw + 0.5,
            "{page} @{width}: a chart ends at {right}, past the window's {vw}"
        );
    }
    for l in v["labels"].as_array().unwrap() {
        assert!(
            !l.as_str().unwrap().contains("{{"),
            "{page} @{width}: raw template in the step label {l}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_chart_text_keeps_the_page_size_at_any_width() {
    let dir = screenshot_dir();
    let (t, two, one) = tower_with_results("browser").await;
    let tower = running(&t).await;
    let base = tower.url.clone();
    let b = Browser::start(1024, 900).await;
    sign_in(&b, &base, &t.approver).await;
    for width in [320, 1024, 2560] {
        b.resize(width, 900).await;
        for name in [&two, &one] {
            b.goto(&format!("{base}/ui/flights/{name}")).await;
            b.find("#results").await;
            let inner = b
                .eval("return window.innerWidth;", json!([]))
                .await
                .as_f64()
                .unwrap();
            assert!(
                (inner - width as f64).abs() < 40.0,
                "the window is {inner} wide, not about {width}"
            );
            check_text_sizes(&b, name, width, 10).await;
            b.eval(
                "document.getElementById('results').scrollIntoView();",
                json!([]),
            )
            .await;
            b.screenshot(&dir, &format!("20-results-{name}-{width}"))
                .await;
            b.eval(
                "document.getElementById('progress').scrollIntoView();",
                json!([]),
            )
            .await;
            b.screenshot(&dir, &format!("20-progress-{name}-{width}"))
                .await;
        }
    }
    // What a person reads, and where the exports are.
    b.resize(1366, 900).await;
    b.goto(&format!("{base}/ui/flights/{two}")).await;
    let verdicts = b.text("#results").await;
    assert!(
        verdicts.contains(
            "happened 12% more often per client than in control (95%: 4% to 20%; p = 0.004)"
        ),
        "{verdicts}"
    );
    assert!(verdicts.contains("no detectable difference in newtab-opened yet"));
    let href = b
        .eval(
            "return document.getElementById('export-csv').getAttribute('href');",
            json!([]),
        )
        .await;
    assert_eq!(href, json!(format!("/ui/flights/{two}/events.csv")));
    let swatch = b
        .eval(
            "return getComputedStyle(document.querySelector('#results circle.mean.arm-1')).fill;",
            json!([]),
        )
        .await;
    assert_eq!(
        swatch,
        json!("rgb(11, 99, 206)"),
        "arm colours from the stylesheet"
    );
    b.color_scheme("dark").await;
    b.screenshot(&dir, "21-results-dark").await;
    b.color_scheme("light").await;
    b.quit().await;
    tower.stop().await.unwrap();
    t.cleanup().await;
}

/// Real events through `POST /api/v1/events` into a live flight that records them: the
/// flight page shows the results the store computes, and the dashboard's export links
/// stream them for a signed-in session (and for nobody else).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_events_show_and_export_from_the_dashboard() {
    use axum::body::Body;
    use axum::http::{Method, Request};
    let t = Tower::new(Engine::Sqlite).await;
    let name = "recorded-search";
    t.live(&json!({
        "studyname": name,
        "author": "study-team@example.com",
        "description": "search bar",
        "arms": [{"name": "control", "ratio": 1}, {"name": "new-bar", "ratio": 1}],
        "flightplan": [{"action": "instrument", "watch": ["search"], "for": "7d", "uploadEvery": "2d"}]
    }))
    .await;
    let at = Timestamp(T0).to_rfc3339();
    let post = |path: &str, body: Value| {
        Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    for c in 0..6u64 {
        let client = format!("00000000-0000-4000-8000-{c:012}");
        let arm = if c % 2 == 0 { "control" } else { "new-bar" };
        let r = t
            .send(post(
                "/api/v1/reports",
                json!({"client": client, "reports": [{"seq": 1, "flight": name, "version": 1, "arm": arm, "status": "running", "step": 0, "at": at}]}),
            ))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let events: Vec<Value> = (0..=c)
            .map(|s| json!({"seq": s + 1, "flight": name, "version": 1, "arm": arm, "topic": "search",
                            "subject": if s == 0 { json!("=1+2") } else { Value::Null }, "value": null, "at": at}))
            .collect();
        let r = t
            .send(post(
                "/api/v1/events",
                json!({"client": client, "events": events}),
            ))
            .await;
        assert!(r.status.is_success(), "{}", r.body);
    }
    let p = t.get(&format!("/ui/flights/{name}"), Some(&t.author)).await;
    assert!(p.body.contains("<section id=\"results\">"), "{}", p.body);
    assert!(p.body.contains("data-topic=\"search\""));
    // 9 events in control (1 + 3 + 5), 12 in new-bar (2 + 4 + 6).
    assert!(
        p.body.contains("<td class=\"num\">9</td>") && p.body.contains("<td class=\"num\">12</td>")
    );

    let csv = t
        .get(&format!("/ui/flights/{name}/events.csv"), Some(&t.author))
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(
        lines[0],
        "client,seq,version,arm,topic,subject,value,at,received"
    );
    assert_eq!(lines.len(), 1 + 21);
    assert!(csv.body.contains(",'=1+2,"), "formulas are guarded");
    let jsonl = t
        .get(
            &format!("/ui/flights/{name}/events.jsonl"),
            Some(&t.approver),
        )
        .await;
    assert_eq!(jsonl.status, StatusCode::OK);
    assert_eq!(jsonl.body.lines().count(), 21);
    for l in jsonl.body.lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["topic"], "search");
    }
    // Nobody signed in: to the sign-in page; no such flight: a 404 page.
    let anon = t.get(&format!("/ui/flights/{name}/events.csv"), None).await;
    assert_eq!(anon.status, StatusCode::SEE_OTHER);
    assert!(anon.location.unwrap().starts_with("/ui/signin"));
    let none = t
        .get("/ui/flights/no-such/events.jsonl", Some(&t.author))
        .await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);
    t.cleanup().await;
}
