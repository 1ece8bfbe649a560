//! The dashboard in a real headless Chromium: a person follows a flight from push through
//! review and approval by a second person, watches reports arrive and the funnel move
//! without reloading, kills it behind the confirmation, and sees the list change. Every
//! page is saved as a screenshot (1366×768, a laptop screen).

use crate::pages::hostile;
use crate::support::{flight, screenshot_dir, Tower, T0};
use crate::webdriver::Browser;
use serde_json::{json, Value};
use testpilot_flight::{Clock, Timestamp};
use testpilot_tower::dashboard::fixtures;
use testpilot_tower::server::serve;
use testpilot_tower::store::Engine;

/// A tower serving HTTP on 127.0.0.1:0.
pub async fn running(t: &Tower) -> testpilot_tower::RunningTower {
    serve(t.state.clone(), "127.0.0.1:0".parse().unwrap(), 200)
        .await
        .expect("serve the tower")
}

pub async fn sign_in(b: &Browser, base: &str, token: &str) {
    b.goto(&format!("{base}/ui/")).await;
    assert!(
        b.url().await.contains("/ui/signin"),
        "asked to sign in first"
    );
    b.type_into("#token", token).await;
    b.click("#signin").await;
    b.find("header .who").await;
}

async fn sign_out(b: &Browser) {
    b.click("header .who button").await;
    b.find("#token").await;
}

/// Reports from `clients` clients: each enrols, and `done` of them complete all four steps.
async fn report(
    http: &reqwest::Client,
    base: &str,
    first: usize,
    clients: usize,
    step: u64,
    status: &str,
) {
    for c in first..first + clients {
        let client = format!("00000000-0000-4000-8000-{c:012x}");
        let arm = if c % 2 == 0 { "control" } else { "treatment" };
        let seq = step + if status == "running" { 1 } else { 10 };
        let body = json!({"client": client, "reports": [
            {"seq": seq, "flight": "newtab", "version": 1, "arm": arm, "status": status, "step": step,
             "at": Timestamp(T0 + 3_600_000 * step as i64).to_rfc3339()}]});
        let r = http
            .post(format!("{base}/api/v1/reports"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "report accepted: {}", r.status());
    }
}

/// The funnel's value text for a step (1-based row), e.g. "10 · 100%".
async fn funnel_row(b: &Browser, row: usize) -> String {
    let v: Value = b
        .eval(
            "var t = document.querySelectorAll('figure.funnel')[0].querySelectorAll('text.value'); return t[arguments[0]] ? t[arguments[0]].textContent : '';",
            json!([row - 1]),
        )
        .await;
    v.as_str().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_follows_a_flight_from_push_to_kill() {
    let dir = screenshot_dir();
    let t = Tower::new(Engine::Sqlite).await;
    let tower = running(&t).await;
    let base = tower.url.clone();
    let http = reqwest::Client::new();
    let b = Browser::start(1366, 768).await;

    // Alice, an author, signs in: nothing yet.
    b.goto(&format!("{base}/ui/")).await;
    b.find("#token").await;
    b.screenshot(&dir, "01-signin").await;
    sign_in(&b, &base, &t.author).await;
    assert!(b.text("main").await.contains("No flights yet."));
    b.screenshot(&dir, "02-flights-empty").await;

    // She pushes a flight and sends it for review.
    b.click("a[href='/ui/push']").await;
    let spec = serde_json::to_string_pretty(&flight(
        "newtab",
        "Tries a grid layout on the new tab page, then asks how it feels.",
    ))
    .unwrap();
    b.eval(
        "document.getElementById('spec').value = arguments[0];",
        json!([spec]),
    )
    .await;
    b.screenshot(&dir, "03-push").await;
    b.click("#push").await;
    b.find("#submit-review").await;
    assert!(b.url().await.ends_with("/ui/flights/newtab"));
    b.click("#submit-review").await;
    b.find("#review-link").await;
    b.screenshot(&dir, "04-flight-in-review").await;
    // She may not approve her own revision: no approve button works for her.
    b.click("#review-link").await;
    assert!(b.text("main").await.contains("an approver decides"));
    sign_out(&b).await;

    // Bob, an approver, reviews and approves it.
    sign_in(&b, &base, &t.approver).await;
    b.click("a[href='/ui/review']").await;
    assert!(b.text("main").await.contains("newtab"));
    b.screenshot(&dir, "05-review-queue").await;
    b.click("a.button[href='/ui/flights/newtab/review']").await;
    assert!(b.text("#validation").await.contains("valid"));
    b.screenshot(&dir, "06-review").await;
    b.click("#approve").await;
    b.wait_text("h1 .badge", 10, |t| t == "live").await;
    assert_eq!(
        t.state.index.current().flights,
        1,
        "the flight is in the index"
    );

    // Reports arrive; the page updates itself (no reload: the marker survives).
    b.eval("window.__marker = 'same page';", json!([])).await;
    report(&http, &base, 0, 10, 0, "running").await;
    b.wait_text("#kpi-enrolled", 30, |t| t == "10").await;
    assert_eq!(funnel_row(&b, 1).await, "10 · 100%");
    assert_eq!(funnel_row(&b, 2).await, "0 · 0%");
    report(&http, &base, 0, 6, 2, "running").await;
    report(&http, &base, 0, 3, 4, "completed").await;
    report(&http, &base, 6, 1, 1, "failed").await;
    b.wait_text("#kpi-completed", 30, |t| t == "3").await;
    b.wait_text("#kpi-failed", 30, |t| t == "1").await;
    assert_eq!(
        funnel_row(&b, 2).await,
        "7 · 70%",
        "step 2 reached by 6 + the failed one"
    );
    assert_eq!(funnel_row(&b, 3).await, "6 · 60%");
    assert_eq!(funnel_row(&b, 5).await, "3 · 30%", "every step done");
    let marker = b.eval("return window.__marker || null;", json!([])).await;
    assert_eq!(marker, json!("same page"), "updated without a reload");
    assert!(b.text("#updated").await.contains("live"));
    b.screenshot(&dir, "07-flight-live").await;
    b.color_scheme("dark").await;
    let bg = b
        .eval(
            "return getComputedStyle(document.body).backgroundColor;",
            json!([]),
        )
        .await;
    assert_eq!(bg, json!("rgb(21, 23, 28)"), "the dark palette applies");
    b.screenshot(&dir, "07-flight-live-dark").await;
    b.color_scheme("light").await;

    // Kill, behind the confirmation that names the flight and the clients affected.
    b.click("#kill-link").await;
    let affects = b.text("#affects").await;
    assert!(
        affects.contains("10 clients") && affects.contains("newtab"),
        "{affects}"
    );
    assert!(affects.contains("6 of them running"), "{affects}");
    b.screenshot(&dir, "08-kill-confirm").await;
    b.type_into("#confirm", "newtabb").await;
    b.click("#do-confirm").await;
    assert!(b.text("p.problem").await.contains("type the flight's name"));
    b.type_into("#reason", "the grid breaks on small screens")
        .await;
    b.type_into("#confirm", "newtab").await;
    b.click("#do-confirm").await;
    b.wait_text("h1 .badge", 10, |t| t == "killed").await;
    assert!(b
        .text("#audit")
        .await
        .contains("the grid breaks on small screens"));
    b.screenshot(&dir, "09-flight-killed").await;

    // The list shows it killed; as pilots report `killed`, the list updates by itself.
    b.click("a.brand").await;
    let row = "tr[data-flight='newtab']";
    assert!(b.text(row).await.contains("killed"));
    b.eval("window.__marker = 'list';", json!([])).await;
    // The six clients still running (3, 4, 5 at step 3; 7, 8, 9 at step 1) end as killed.
    report(&http, &base, 3, 3, 2, "killed").await;
    report(&http, &base, 7, 3, 0, "killed").await;
    b.wait_text(&format!("{row} td:nth-child(9)"), 30, |t| t == "6")
        .await;
    assert_eq!(
        b.eval("return window.__marker || null;", json!([])).await,
        json!("list")
    );
    b.screenshot(&dir, "10-flights-index").await;
    b.color_scheme("dark").await;
    b.screenshot(&dir, "10-flights-index-dark").await;
    b.color_scheme("light").await;

    b.goto(&format!("{base}/ui/flights/no-such-flight")).await;
    assert!(b.text("main").await.contains("there is no flight named"));
    b.screenshot(&dir, "11-not-found").await;

    b.quit().await;
    tower.stop().await.unwrap();
    t.cleanup().await;
}

/// The big pages (500 flights; a flight with 100,000 reports) and a flight whose every text
/// is an HTML/script payload, as the browser shows them: the payload never runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_big_and_hostile_pages() {
    let dir = screenshot_dir();
    let t = Tower::new(Engine::Sqlite).await;
    let now = Timestamp(T0);
    fixtures::many_flights(t.store(), 500, now).await.unwrap();
    t.live(&flight(
        "big",
        "A big flight: 25,000 clients over two weeks.",
    ))
    .await;
    fixtures::many_reports(t.store(), "big", 100_000, 14, now)
        .await
        .unwrap();
    t.live(&hostile()).await;
    t.clock.set(Timestamp(T0 + 15 * 86_400_000));
    assert!(t.clock.now().0 > T0);
    let tower = running(&t).await;
    let base = tower.url.clone();
    let b = Browser::start(1366, 768).await;
    sign_in(&b, &base, &t.approver).await;

    assert_eq!(
        b.eval(
            "return document.querySelectorAll('tr[data-flight]').length;",
            json!([])
        )
        .await,
        json!(502)
    );
    b.screenshot(&dir, "12-flights-500").await;
    b.goto(&format!("{base}/ui/?state=live&q=big")).await;
    assert_eq!(
        b.eval(
            "return document.querySelectorAll('tr[data-flight]').length;",
            json!([])
        )
        .await,
        json!(1)
    );
    b.goto(&format!("{base}/ui/flights/big")).await;
    assert_eq!(b.text("#kpi-enrolled").await, "25,000");
    b.screenshot(&dir, "13-flight-100k-reports").await;

    for path in ["/ui/flights/hostile", "/ui/", "/ui/flights/hostile/kill"] {
        b.goto(&format!("{base}{path}")).await;
        b.find("main").await;
        let ran = b.eval("return window.__xss || null;", json!([])).await;
        assert_eq!(ran, Value::Null, "a payload ran on {path}");
        let src = b.source().await;
        assert!(!src.contains("<img src=\"x\""), "{path}");
    }
    b.goto(&format!("{base}/ui/flights/hostile")).await;
    let shown = b.text("p.description").await;
    assert!(
        shown.contains("<script>window.__xss='script'</script>"),
        "shown as text: {shown}"
    );
    b.screenshot(&dir, "14-flight-hostile").await;

    b.quit().await;
    tower.stop().await.unwrap();
    t.cleanup().await;
}
