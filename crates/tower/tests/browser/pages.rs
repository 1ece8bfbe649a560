//! Every page through the router: empty, with 500 flights, with a flight of 100,000
//! reports; escaping of hostile text; sign-in, roles and CSRF; bad input.

use crate::both;
use crate::support::{flight, Tower, T0};
use axum::http::StatusCode;
use serde_json::json;
use testpilot_flight::Timestamp;
use testpilot_tower::dashboard::fixtures;
use testpilot_tower::store::Engine;

/// Every page a signed-in approver can open, on a flight called `name`.
fn pages_of(name: &str) -> Vec<String> {
    vec![
        "/ui/".into(),
        "/ui/live".into(),
        "/ui/review".into(),
        format!("/ui/flights/{name}"),
        format!("/ui/flights/{name}/live"),
        format!("/ui/flights/{name}/review"),
        format!("/ui/flights/{name}/kill"),
        format!("/ui/flights/{name}/end"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_tower_pages() {
    let t = Tower::new(Engine::Sqlite).await;
    for (path, expect) in [
        ("/ui/", "No flights yet."),
        ("/ui/live", "No flights yet."),
        ("/ui/review", "Nothing is waiting for approval."),
        ("/ui/signin", "Paste a tower token"),
    ] {
        let p = t.get(path, Some(&t.approver)).await;
        assert_eq!(p.status, StatusCode::OK, "{path}");
        assert!(p.body.contains(expect), "{path} says {expect:?}");
    }
    let p = t.get("/ui/push", Some(&t.author)).await;
    assert_eq!(p.status, StatusCode::OK);
    let p = t.get("/ui/flights/nothing-here", Some(&t.approver)).await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
    assert!(p.body.contains("there is no flight named `nothing-here`"));
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_flights() {
    let t = Tower::new(Engine::Sqlite).await;
    fixtures::many_flights(t.store(), 500, Timestamp(T0))
        .await
        .unwrap();
    let p = t.get("/ui/", Some(&t.approver)).await;
    assert_eq!(p.status, StatusCode::OK);
    assert_eq!(p.body.matches("<tr data-flight=").count(), 500);
    assert!(p.body.contains("live <span class=\"count\">100</span>"));
    let p = t.get("/ui/?state=killed", Some(&t.approver)).await;
    assert_eq!(p.body.matches("<tr data-flight=").count(), 100);
    let p = t.get("/ui/?q=FLIGHT-0042", Some(&t.approver)).await;
    assert_eq!(p.body.matches("<tr data-flight=").count(), 1);
    assert!(p.body.contains("href=\"/ui/flights/flight-0042\""));
    let p = t.get("/ui/review", Some(&t.approver)).await;
    assert_eq!(p.body.matches("class=\"button\" href=").count(), 100);
    for path in pages_of("flight-0002") {
        let p = t.get(&path, Some(&t.approver)).await;
        assert_eq!(p.status, StatusCode::OK, "{path}");
    }
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flight_with_100000_reports() {
    let t = Tower::new(Engine::Sqlite).await;
    t.live(&flight("big", "a big flight")).await;
    fixtures::many_reports(t.store(), "big", 100_000, 14, Timestamp(T0))
        .await
        .unwrap();
    let p = t.get("/ui/flights/big", Some(&t.approver)).await;
    assert_eq!(p.status, StatusCode::OK);
    // 25,000 clients: 1 in 20 failed, declined, opted out; 4 in 20 running; 13 completed.
    assert!(p
        .body
        .contains("<span class=\"v\" id=\"kpi-enrolled\">25,000</span>"));
    assert!(p.body.contains("id=\"kpi-completed\">16,250</span>"));
    assert!(p.body.contains("id=\"kpi-failed\">1,250</span>"));
    assert!(p.body.contains("100,000"), "the report count");
    assert!(p.body.contains("Arm control"));
    assert!(
        p.body.contains("survey server answered 503"),
        "the latest errors"
    );
    // 14 days of enrolments and completions.
    assert_eq!(p.body.matches("enrolled</title>").count(), 14);
    let live = t.get("/ui/flights/big/live", Some(&t.approver)).await;
    assert!(live.body.contains("kpi-enrolled\">25,000"));
    let index = t.get("/ui/", Some(&t.approver)).await;
    assert!(index
        .body
        .contains("<td class=\"num enrolled\">25,000</td>"));
    for path in pages_of("big") {
        let p = t.get(&path, Some(&t.approver)).await;
        assert_eq!(p.status, StatusCode::OK, "{path}");
    }
    let kill = t.get("/ui/flights/big/kill", Some(&t.approver)).await;
    assert!(kill.body.contains("25,000 clients"));
    t.cleanup().await;
}

pub const SCRIPT: &str = "<script>window.__xss='script'</script>";
pub const IMG: &str = "\"><img src=x onerror=\"window.__xss='img'\">";

/// A flight whose every free text is a payload.
pub fn hostile() -> serde_json::Value {
    json!({
        "studyname": "hostile",
        "author": IMG,
        "description": format!("{SCRIPT} and {IMG}"),
        "infourl": "https://example.com/?q=\"><script>window.__xss='link'</script>",
        "arms": [{"name": "a", "ratio": 1, "variables": {"v": SCRIPT}}],
        "flightplan": [
            {"action": "log", "text": SCRIPT},
            {"action": "external", "type": "message", "title": IMG, "text": SCRIPT},
            {"action": "status", "text": "</svg><script>window.__xss='svg'</script>"}
        ]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_text_is_escaped_everywhere() {
    let t = Tower::new(Engine::Sqlite).await;
    t.live(&hostile()).await;
    let report = json!({"client": "00000000-0000-4000-8000-000000000001", "reports": [
        {"seq": 1, "flight": "hostile", "version": 1, "arm": "a", "status": "failed", "step": 1,
         "at": "2026-04-23T01:00:00Z", "detail": {"error": SCRIPT}}]});
    let batch = testpilot_flight::report::ReportBatch::from_json(&report, 10).unwrap();
    t.store()
        .insert_reports(&[&batch], Timestamp(T0))
        .await
        .unwrap();
    // A second revision with the payload in the diff, waiting for review.
    let mut v2 = hostile();
    v2["description"] = json!(format!("v2 {SCRIPT}"));
    let author = testpilot_tower::Actor::new("alice", testpilot_tower::Role::Author);
    let f = testpilot_flight::Flight::from_json(&v2).unwrap();
    t.store().push(&author, &f, Timestamp(T0)).await.unwrap();
    t.store()
        .review(&author, "hostile", None, Timestamp(T0))
        .await
        .unwrap();
    for path in pages_of("hostile") {
        let p = t.get(&path, Some(&t.approver)).await;
        assert_eq!(p.status, StatusCode::OK, "{path}");
        assert!(
            !p.body.contains("<script>window"),
            "{path} has a raw script"
        );
        assert!(!p.body.contains("<img"), "{path} has a raw img");
        assert!(
            !p.body.contains("href=\"javascript:"),
            "{path} links to javascript:"
        );
        assert!(p.csp.as_deref().unwrap_or("").contains("script-src 'self'"));
    }
    let p = t.get("/ui/flights/hostile", Some(&t.approver)).await;
    assert!(p
        .body
        .contains("&lt;script&gt;window.__xss='script'&lt;/script&gt;"));
    assert!(p
        .body
        .contains("&quot;&gt;&lt;img src=x onerror=&quot;window.__xss='img'&quot;&gt;"));
    assert!(p.body.contains("&lt;/svg&gt;&lt;script&gt;"));
    let p = t.get("/ui/", Some(&t.approver)).await;
    assert!(p.body.contains("&lt;script&gt;window.__xss"));
    // A hostile search and next are escaped or refused too.
    let p = t
        .get("/ui/?q=%3Cscript%3Ex%3C/script%3E", Some(&t.approver))
        .await;
    assert!(p.body.contains("value=\"&lt;script&gt;x&lt;/script&gt;\""));
    let p = t.get("/ui/signin?next=https://evil.example/", None).await;
    assert!(p.body.contains("name=\"next\" value=\"/ui/\""));
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_sets_a_strict_http_only_cookie() {
    let t = Tower::new(Engine::Sqlite).await;
    let p = t.get("/ui/", None).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(p.location.as_deref(), Some("/ui/signin?next=%2Fui%2F"));
    let origin = [("origin", "http://tower.test")];
    let form = |tok: &str| {
        vec![
            ("token".to_string(), tok.to_string()),
            ("next".into(), "/ui/review".into()),
        ]
    };
    let p = t
        .post_raw("/ui/signin", None, &origin, &form("tp_nope"))
        .await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED);
    assert!(p.body.contains("not known to this tower"));
    let p = t
        .post_raw("/ui/signin", None, &origin, &form("x; Path=/"))
        .await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED);
    let p = t
        .post_raw("/ui/signin", None, &origin, &form(&t.author))
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(p.location.as_deref(), Some("/ui/review"));
    let c = p.set_cookie.unwrap();
    assert!(c.starts_with(&format!("tp_dashboard={};", t.author)));
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(c.contains(attr), "{c} has {attr}");
    }
    // Sign-in from another site is refused.
    let p = t
        .post_raw(
            "/ui/signin",
            None,
            &[("sec-fetch-site", "cross-site")],
            &form(&t.author),
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    let p = t.get("/ui/", Some("tp_unknown")).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_need_same_origin_and_the_csrf_field() {
    let t = Tower::new(Engine::Sqlite).await;
    t.live(&flight("target", "x")).await;
    let csrf = t
        .get("/ui/flights/target/kill", Some(&t.approver))
        .await
        .csrf();
    let fields = |c: &str| {
        vec![
            ("csrf".to_string(), c.to_string()),
            ("confirm".to_string(), "target".to_string()),
        ]
    };
    let path = "/ui/flights/target/kill";
    let tok = Some(t.approver.as_str());
    for (headers, c) in [
        (vec![], csrf.as_str()),
        (vec![("origin", "http://evil.example")], csrf.as_str()),
        (vec![("sec-fetch-site", "cross-site")], csrf.as_str()),
        (vec![("sec-fetch-site", "same-site")], csrf.as_str()),
        (vec![("origin", "http://tower.test")], "forged"),
        (vec![("sec-fetch-site", "same-origin")], ""),
    ] {
        let p = t.post_raw(path, tok, &headers, &fields(c)).await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "{headers:?} {c:?}");
    }
    // Another person's CSRF value does not work with this cookie.
    let other = t.get("/ui/", Some(&t.admin)).await.csrf();
    let p = t
        .post_raw(
            path,
            tok,
            &[("sec-fetch-site", "same-origin")],
            &fields(&other),
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert_eq!(
        t.store()
            .flight_summary("target")
            .await
            .unwrap()
            .unwrap()
            .state,
        testpilot_tower::FlightState::Live
    );
    let p = t
        .post_raw(
            path,
            tok,
            &[("sec-fetch-site", "same-origin")],
            &fields(&csrf),
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(
        t.store()
            .flight_summary("target")
            .await
            .unwrap()
            .unwrap()
            .state,
        testpilot_tower::FlightState::Killed
    );
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_role_decides_which_buttons_exist() {
    let t = Tower::new(Engine::Sqlite).await;
    t.live(&flight("roles", "x")).await;
    let author = t.get("/ui/flights/roles", Some(&t.author)).await;
    assert!(!author.body.contains("id=\"kill-link\""));
    assert!(!author.body.contains("id=\"end-link\""));
    assert!(author.body.contains("href=\"/ui/push\""));
    let approver = t.get("/ui/flights/roles", Some(&t.approver)).await;
    assert!(approver.body.contains("id=\"kill-link\""));
    assert!(approver.body.contains("id=\"end-link\""));
    assert!(!approver.body.contains("href=\"/ui/push\""));
    let admin = t.get("/ui/flights/roles", Some(&t.admin)).await;
    assert!(admin.body.contains("id=\"kill-link\"") && admin.body.contains("href=\"/ui/push\""));
    // The server refuses what the buttons do not offer.
    let p = t.get("/ui/flights/roles/kill", Some(&t.author)).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    let p = t
        .post(
            "/ui/flights/roles/kill",
            &t.author,
            "/ui/",
            &[("confirm", "roles")],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert!(p.body.contains("role author, which may not kill"));
    let p = t.get("/ui/push", Some(&t.approver)).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    t.cleanup().await;
}

/// Push, review, send back with a comment, push again, approve as a second person; the
/// author cannot approve their own revision here either.
async fn review_send_back_and_approve(engine: Engine) {
    let t = Tower::new(engine).await;
    let spec = flight("reviewed", "first try").to_string();
    let p = t
        .post("/ui/push", &t.author, "/ui/push", &[("spec", &spec)])
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(p.location.as_deref(), Some("/ui/flights/reviewed"));
    let from = "/ui/flights/reviewed";
    let p = t
        .post(
            "/ui/flights/reviewed/submit",
            &t.author,
            from,
            &[("version", "1")],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    let r = t
        .get("/ui/flights/reviewed/review", Some(&t.approver))
        .await;
    assert!(r.body.contains("The spec is valid."));
    assert!(r.body.contains("Changes (nothing is live yet)"));
    // Send back needs a comment.
    let p = t
        .post(
            "/ui/flights/reviewed/sendback",
            &t.approver,
            from,
            &[("version", "1"), ("comment", " ")],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    let p = t
        .post(
            "/ui/flights/reviewed/sendback",
            &t.approver,
            from,
            &[("version", "1"), ("comment", "make the survey shorter")],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    let s = t.store().flight_summary("reviewed").await.unwrap().unwrap();
    assert_eq!(s.state, testpilot_tower::FlightState::Draft);
    let page = t.get(from, Some(&t.author)).await;
    assert!(page.body.contains("“make the survey shorter”"));
    assert!(
        page.body.contains("id=\"sent-back\""),
        "the author sees why, up front"
    );
    assert!(page.body.contains("id=\"submit-review\""));
    // Again: a second revision, sent for review; alice cannot approve it, bob can.
    let spec2 = flight("reviewed", "second try").to_string();
    t.post("/ui/push", &t.author, "/ui/push", &[("spec", &spec2)])
        .await;
    t.post("/ui/flights/reviewed/submit", &t.author, from, &[])
        .await;
    let r = t.get("/ui/flights/reviewed/review", Some(&t.admin)).await;
    assert!(
        r.body.contains("<code>description</code>"),
        "the diff shows the change"
    );
    let alice_admin = t.token(testpilot_tower::Role::Admin, "alice").await;
    let own = t
        .get("/ui/flights/reviewed/review", Some(&alice_admin))
        .await;
    assert!(own.body.contains("id=\"own-revision\""));
    let p = t
        .post(
            "/ui/flights/reviewed/approve",
            &alice_admin,
            from,
            &[("version", "2")],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert!(p.body.contains("approval needs someone else"));
    let p = t
        .post(
            "/ui/flights/reviewed/approve",
            &t.approver,
            from,
            &[("version", "2")],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    let s = t.store().flight_summary("reviewed").await.unwrap().unwrap();
    assert_eq!(
        (s.state, s.live_version),
        (testpilot_tower::FlightState::Live, Some(2))
    );
    assert_eq!(
        t.state.index.current().flights,
        1,
        "approval refreshed the index"
    );
    let audit: Vec<String> = t
        .store()
        .audit(Some("reviewed"), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .collect();
    assert_eq!(
        audit,
        ["push", "review", "sendback", "push", "review", "approve"]
    );
    let index = t.get("/ui/", Some(&t.approver)).await;
    assert!(index.body.contains("ago</time>"), "live since");
    t.cleanup().await;
}
both!(review_send_back_and_approve);

/// Kill and end behind a confirmation that names the flight and the clients affected.
async fn kill_and_end_need_the_name(engine: Engine) {
    let t = Tower::new(engine).await;
    t.live(&flight("doomed", "x")).await;
    t.live(&flight("finished", "y")).await;
    fixtures::many_reports(t.store(), "doomed", 40, 1, Timestamp(T0))
        .await
        .unwrap();
    let c = t.get("/ui/flights/doomed/kill", Some(&t.approver)).await;
    assert!(c.body.contains("This affects <strong>10 clients</strong>"));
    assert!(c.body.contains("Kill doomed for 10 clients"));
    let from = "/ui/flights/doomed/kill";
    let p = t
        .post(
            "/ui/flights/doomed/kill",
            &t.approver,
            from,
            &[("confirm", "doomed-not")],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        p.body.contains("type the flight&#39;s name") || p.body.contains("type the flight's name")
    );
    let p = t
        .post(
            "/ui/flights/doomed/kill",
            &t.approver,
            from,
            &[("confirm", "doomed"), ("reason", "crashes on start")],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    let page = t.get("/ui/flights/doomed", Some(&t.approver)).await;
    assert!(page.body.contains("badge s-killed"));
    assert!(page.body.contains("reason: crashes on start"));
    assert!(!page.body.contains("id=\"kill-link\""));
    let p = t
        .post(
            "/ui/flights/doomed/kill",
            &t.approver,
            from,
            &[("confirm", "doomed")],
        )
        .await;
    assert_eq!(p.status, StatusCode::CONFLICT);
    assert!(p.body.contains("already killed"));
    let p = t
        .post(
            "/ui/flights/finished/end",
            &t.approver,
            "/ui/flights/finished/end",
            &[("confirm", "finished")],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    let ended = t.get("/ui/flights/finished", Some(&t.approver)).await;
    assert!(ended.body.contains("badge s-ended"));
    assert!(
        !ended.body.contains("data-poll"),
        "an ended flight's page does not poll"
    );
    let glances = t.store().glances().await.unwrap();
    assert_eq!(glances["doomed"].by_status.values().sum::<u64>(), 10);
    assert!(glances["doomed"].live_since.is_some());
    assert_eq!(
        t.store().enrolments_per_day("doomed").await.unwrap(),
        [("2026-04-23".to_string(), 10)]
    );
    t.cleanup().await;
}
both!(kill_and_end_need_the_name);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_4xx_pages() {
    let t = Tower::new(Engine::Sqlite).await;
    t.live(&flight("ok", "x")).await;
    let tok = Some(t.approver.as_str());
    for (path, status, says) in [
        (
            "/ui/flights/ok?from=abc",
            StatusCode::BAD_REQUEST,
            "must be a revision number",
        ),
        (
            "/ui/flights/ok?to=9",
            StatusCode::NOT_FOUND,
            "has no revision 9",
        ),
        (
            "/ui/?state=flying",
            StatusCode::BAD_REQUEST,
            "is not a flight state",
        ),
        (
            "/ui/flights/%3Cb%3E",
            StatusCode::NOT_FOUND,
            "no flight named `&lt;b&gt;`",
        ),
        ("/ui/assets/../../etc/passwd", StatusCode::NOT_FOUND, ""),
        (
            "/ui/flights/nope/kill",
            StatusCode::NOT_FOUND,
            "no flight named",
        ),
    ] {
        let p = t.get(path, tok).await;
        assert_eq!(p.status, status, "{path}");
        assert!(p.body.contains(says), "{path}: {}", p.body);
    }
    let p = t
        .post("/ui/push", &t.admin, "/ui/push", &[("spec", "{not json")])
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(p.body.contains("not valid JSON"));
    assert!(
        p.body.contains("{not json</textarea>"),
        "the text is kept to fix"
    );
    let p = t
        .post(
            "/ui/push",
            &t.admin,
            "/ui/push",
            &[("spec", r#"{"studyname": "Bad Name", "flightplan": []}"#)],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(p.body.contains("<code>studyname</code>"));
    let p = t
        .post_raw(
            "/ui/flights/ok/approve",
            tok,
            &[("origin", "http://tower.test")],
            &[("csrf".into(), "%%%".into())],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    let p = t
        .post(
            "/ui/flights/ok/approve",
            &t.approver,
            "/ui/",
            &[("version", "x")],
        )
        .await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    let p = t
        .post("/ui/flights/ok/approve", &t.approver, "/ui/", &[])
        .await;
    assert_eq!(p.status, StatusCode::CONFLICT);
    let r = t.get("/ui/flights/ok/review", tok).await;
    assert!(r.body.contains("Nothing to review"));
    t.cleanup().await;
}

/// Open pages reuse the progress aggregates until this tower accepts a report (or the
/// snapshot ages past its limit on the tower's clock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_retaken_when_a_report_arrives() {
    let t = Tower::new(Engine::Sqlite).await;
    t.live(&flight("watched", "x")).await;
    let enrolled = |p: &crate::support::Page| {
        let at = p.body.find("id=\"kpi-enrolled\">").unwrap() + 18;
        p.body[at..at + p.body[at..].find('<').unwrap()].to_string()
    };
    let p = t.get("/ui/flights/watched/live", Some(&t.approver)).await;
    assert_eq!(enrolled(&p), "0");
    // Written behind the tower's back (as another tower on a shared database would): the
    // snapshot may serve until it ages out.
    fixtures::many_reports(t.store(), "watched", 8, 1, Timestamp(T0))
        .await
        .unwrap();
    let p = t.get("/ui/flights/watched/live", Some(&t.approver)).await;
    assert_eq!(enrolled(&p), "0", "a fresh snapshot serves");
    t.clock
        .advance(testpilot_tower::dashboard::SNAPSHOT_MAX_AGE_MS);
    let p = t.get("/ui/flights/watched/live", Some(&t.approver)).await;
    assert_eq!(enrolled(&p), "2", "an old snapshot is retaken");
    // A report through this tower's API is seen at once.
    let batch = json!({"client": "00000000-0000-4000-8000-0000000000aa", "reports": [
        {"seq": 1, "flight": "watched", "version": 1, "arm": "control", "status": "running",
         "step": 0, "at": "2026-04-23T05:00:00Z"}]});
    let req = axum::http::Request::builder()
        .method("POST")
        .uri("/api/v1/reports")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(batch.to_string()))
        .unwrap();
    assert_eq!(t.send(req).await.status, StatusCode::OK);
    let p = t.get("/ui/flights/watched/live", Some(&t.approver)).await;
    assert_eq!(enrolled(&p), "3");
    t.cleanup().await;
}

/// Issue 8, item 11 through the dashboard: alice pushes v1, carol changes one character as
/// v2, and alice — with an approver token under another case of her name — may not approve
/// v2. The dashboard's approval goes through the same service as the API, so it is counted
/// in the metrics too (it used to skip them).
async fn two_person_rule_in_the_dashboard(engine: Engine) {
    let t = Tower::new(engine).await;
    let carol = t.token(testpilot_tower::Role::Author, "carol").await;
    let alice = t.token(testpilot_tower::Role::Approver, "Alice").await;
    let v1 = flight("pair", "says hello").to_string();
    let v2 = flight("pair", "says hellO").to_string();
    let p = t
        .post("/ui/push", &t.author, "/ui/push", &[("spec", &v1)])
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    t.post("/ui/push", &carol, "/ui/push", &[("spec", &v2)])
        .await;
    let from = "/ui/flights/pair";
    let p = t
        .post("/ui/flights/pair/submit", &carol, from, &[("version", "2")])
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    let review = t.get("/ui/flights/pair/review", Some(&alice)).await;
    assert!(
        review.body.contains("id=\"own-revision\""),
        "the page says alice cannot approve"
    );
    let p = t
        .post(
            "/ui/flights/pair/approve",
            &alice,
            from,
            &[("version", "2")],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN, "{}", p.body);
    assert!(p.body.contains("approval needs someone else"), "{}", p.body);
    let counted = || {
        t.state
            .metrics
            .management_actions
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let before = counted();
    let p = t
        .post(
            "/ui/flights/pair/approve",
            &t.approver,
            from,
            &[("version", "2")],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(counted(), before + 1, "the dashboard's approval is counted");
    let s = t.store().flight_summary("pair").await.unwrap().unwrap();
    assert_eq!(s.live_version, Some(2));
    t.cleanup().await;
}
both!(two_person_rule_in_the_dashboard);
