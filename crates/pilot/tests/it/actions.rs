//! Every action of docs/flight-spec.md and its undo.

use crate::support::*;
use serde_json::{json, Value};
use testpilot_pilot::net::Response;
use testpilot_pilot::Error;

/// A survey that holds the flight until answered: lets a test look at the machine mid-flight.
fn hold() -> Value {
    json!({"action": "external", "type": "survey", "title": "Hold", "url": "https://survey.test/hold", "waitFor": "ok"})
}

/// Runs the flight until it stops at `hold()`, checks the machine with `during`, then lets it
/// finish and returns the pilot.
fn run_with_hold(rig: &Rig, plan: Value, during: impl FnOnce(&Rig)) -> testpilot_pilot::Pilot {
    let mut p = rig.pilot();
    p.apply_index(&[flight("f", plan)], 1).unwrap();
    drive(rig, &mut p, Say::Ignore, &[]).unwrap();
    assert_eq!(status(&p, "f"), "running", "{}", timeline_text(&p, "f"));
    during(rig);
    drive(rig, &mut p, Say::Ok, &[]).unwrap();
    p
}

#[test]
fn feature_is_set_and_the_previous_value_restored() {
    let rig = Rig::new();
    rig.set_features(json!({"search.bar": {"on": false}, "other": {"keep": 1}}));
    let before = rig.snapshot();
    let plan = json!([
        {"action": "feature", "id": "search.bar", "value": {"on": true}},
        {"action": "feature", "id": "brand.new", "value": {"n": 1}},
        {"action": "feature", "id": "search.bar", "value": {"on": "twice"}},
        hold()
    ]);
    let p = run_with_hold(&rig, plan, |rig| {
        assert_eq!(
            rig.features(),
            json!({"search.bar": {"on": "twice"}, "other": {"keep": 1}, "brand.new": {"n": 1}})
        );
    });
    assert_eq!(status(&p, "f"), "completed");
    assert_eq!(rig.snapshot(), before);
    let log = log_of(&p, "f");
    assert_eq!(log["cleanedUp"], true);
    assert!(
        log["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["undone"] == true),
        "{log:#}"
    );
}

#[test]
fn addon_zip_install_and_undo() {
    let rig = Rig::new();
    let pkg = rig.scratch("helper.zip");
    let sha = zip_package(
        &pkg,
        &[
            ("manifest.json", "{\"id\":\"helper@x\"}"),
            ("lib/main.js", "go()"),
        ],
    );
    let before = rig.snapshot();
    let plan = json!([{"action": "addon", "do": "install", "id": "helper@x", "url": format!("file://{}", pkg.display()), "sha256": sha, "permission": "none"}, hold()]);
    let p = run_with_hold(&rig, plan, |rig| {
        let d = rig.profile.join("addons/helper@x");
        assert_eq!(
            std::fs::read_to_string(d.join("lib/main.js")).unwrap(),
            "go()"
        );
        let reg: Value = serde_json::from_str(
            &std::fs::read_to_string(rig.profile.join("addon-host/registry.json")).unwrap(),
        )
        .unwrap();
        assert!(reg["helper@x"]["owner"].as_str().unwrap().starts_with("f."));
    });
    assert_eq!(status(&p, "f"), "completed");
    assert_eq!(rig.snapshot(), before);
    assert!(timeline_text(&p, "f").contains("undid: installed add-on `helper@x`"));
}

#[test]
fn addon_tar_gz_and_single_file_packages() {
    let rig = Rig::new();
    let tgz = rig.scratch("a.tar.gz");
    let sha = tar_package(&tgz, &[("a/b.txt", "hello", 'f')]);
    let single = rig.scratch("tool.js");
    std::fs::write(&single, "console.log(1)").unwrap();
    let before = rig.snapshot();
    let plan = json!([
        [
            {"action": "addon", "do": "install", "id": "tgz@x", "url": format!("file://{}", tgz.display()), "sha256": sha, "permission": "none"},
            {"action": "addon", "do": "ensure", "id": "single@x", "path": single.display().to_string(), "permission": "none"}
        ],
        hold()
    ]);
    let p = run_with_hold(&rig, plan, |rig| {
        assert_eq!(
            std::fs::read_to_string(rig.profile.join("addons/tgz@x/a/b.txt")).unwrap(),
            "hello"
        );
        assert_eq!(
            std::fs::read_to_string(rig.profile.join("addons/single@x/tool.js")).unwrap(),
            "console.log(1)"
        );
    });
    assert_eq!(status(&p, "f"), "completed");
    assert_eq!(rig.snapshot(), before);
}

#[test]
fn addon_install_over_an_existing_one_puts_it_back() {
    let rig = Rig::new();
    rig.preinstall("helper@x", "old");
    let pkg = rig.scratch("new.zip");
    let sha = zip_package(&pkg, &[("main.js", "new")]);
    let before = rig.snapshot();
    let plan = json!([{"action": "addon", "do": "install", "id": "helper@x", "url": format!("file://{}", pkg.display()), "sha256": sha, "permission": "none"}, hold()]);
    let p = run_with_hold(&rig, plan, |rig| {
        assert_eq!(
            std::fs::read_to_string(rig.profile.join("addons/helper@x/main.js")).unwrap(),
            "new"
        );
    });
    assert_eq!(status(&p, "f"), "completed");
    assert_eq!(rig.snapshot(), before);
}

#[test]
fn addon_ensure_leaves_what_was_there() {
    let rig = Rig::new();
    rig.preinstall("helper@x", "mine");
    let pkg = rig.scratch("new.zip");
    let sha = zip_package(&pkg, &[("main.js", "theirs")]);
    let before = rig.snapshot();
    let plan = json!([{"action": "addon", "do": "ensure", "id": "helper@x", "url": format!("file://{}", pkg.display()), "sha256": sha, "permission": "none"}, hold()]);
    let p = run_with_hold(&rig, plan, |rig| {
        assert_eq!(
            std::fs::read_to_string(rig.profile.join("addons/helper@x/main.js")).unwrap(),
            "mine"
        );
    });
    assert_eq!(rig.snapshot(), before);
    assert!(timeline_text(&p, "f").contains("already installed: left as it is"));
}

#[test]
fn addon_uninstall_and_undo() {
    let rig = Rig::new();
    rig.preinstall("old@x", "precious");
    let before = rig.snapshot();
    let plan = json!([
        {"action": "addon", "do": "uninstall", "id": "old@x", "permission": "none"},
        {"action": "addon", "do": "uninstall", "id": "never@x", "permission": "none"},
        hold()
    ]);
    let p = run_with_hold(&rig, plan, |rig| {
        assert!(!rig.profile.join("addons/old@x").exists());
    });
    assert_eq!(status(&p, "f"), "completed");
    assert_eq!(rig.snapshot(), before);
    assert!(timeline_text(&p, "f").contains("`never@x` is not installed: nothing to uninstall"));
}

#[test]
fn addon_warn_asks_the_person_first() {
    for (say, expect, installed) in [(Say::No, "declined", false), (Say::Ok, "completed", true)] {
        let rig = Rig::new();
        let pkg = rig.scratch("h.zip");
        let sha = zip_package(&pkg, &[("main.js", "x")]);
        let before = rig.snapshot();
        let mut p = rig.pilot();
        let plan = json!([
            {"action": "addon", "do": "install", "id": "h@x", "url": format!("file://{}", pkg.display()), "sha256": sha, "permission": "warn", "msg": "Try {{studyname}}?"},
            {"action": "feature", "id": "seen", "value": {"v": 1}},
            {"action": "wait", "for": "1h"}
        ]);
        p.apply_index(&[flight("f", plan)], 1).unwrap();
        p.tick().unwrap();
        assert!(
            !rig.profile.join("addons/h@x").exists(),
            "nothing before the person agrees"
        );
        let prompts = testpilot_pilot::flightlog::pending_prompts(&p.journal).unwrap();
        assert_eq!(prompts.len(), 1);
        assert_eq!(prompts[0]["type"], "addon");
        assert_eq!(prompts[0]["text"], "Try f?");
        let id = prompts[0]["id"].as_i64().unwrap();
        p.journal
            .answer_prompt(id, if say == Say::Ok { "ok" } else { "no" }, rig.now())
            .unwrap();
        p.tick().unwrap();
        assert_eq!(rig.profile.join("addons/h@x/main.js").exists(), installed);
        drive(&rig, &mut p, say, &[]).unwrap();
        assert_eq!(status(&p, "f"), expect);
        assert_eq!(rig.snapshot(), before);
    }
}

#[test]
fn addon_notify_puts_a_message_that_vanishes_with_the_flight() {
    let rig = Rig::new();
    let pkg = rig.scratch("h.zip");
    let sha = zip_package(&pkg, &[("main.js", "x")]);
    let mut p = rig.pilot();
    let plan = json!([{"action": "addon", "do": "install", "id": "h@x", "url": format!("file://{}", pkg.display()), "sha256": sha, "permission": "notify"}, {"action": "wait", "for": "1d"}]);
    p.apply_index(&[flight("f", plan)], 1).unwrap();
    p.tick().unwrap();
    let prompts = testpilot_pilot::flightlog::pending_prompts(&p.journal).unwrap();
    assert_eq!(prompts.len(), 1);
    assert_eq!(prompts[0]["title"], "Add-on h@x installed");
    p.optout(Some("f")).unwrap();
    assert!(testpilot_pilot::flightlog::pending_prompts(&p.journal)
        .unwrap()
        .is_empty());
    assert!(!rig.profile.join("addons").exists());
}

#[test]
fn notify_is_delivered_once_with_templates() {
    let rig = Rig::new();
    let mut p = rig.pilot();
    let plan = json!([{"action": "notify", "topic": "tp-{{studyname}}", "subject": "{{os}}", "data": {"who": "{{personid}}", "n": 3}}]);
    p.apply_index(&[flight("f", plan)], 1).unwrap();
    drive(&rig, &mut p, Say::Ok, &[]).unwrap();
    let n = rig.notifications();
    assert_eq!(n.len(), 1);
    assert_eq!(n[0]["topic"], "tp-f");
    assert_eq!(n[0]["subject"], "linux");
    assert_eq!(n[0]["data"], json!({"who": "person-1", "n": 3}));
    assert_eq!(status(&p, "f"), "completed");
}

#[test]
fn ping_renders_templates_and_retries_with_backoff() {
    let rig = Rig::new();
    let tries = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let t2 = tries.clone();
    rig.net.set(move |_| {
        let n = t2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        match n {
            0 => Err(Error::Net {
                msg: "connection refused".into(),
                retryable: true,
            }),
            1 => Ok(Response {
                status: 503,
                ..Response::default()
            }),
            _ => Ok(Response {
                status: 204,
                ..Response::default()
            }),
        }
    });
    let mut p = rig.pilot();
    let plan = json!([{"action": "ping", "url": "https://home.test/{{os}}/{{person.locale}}?v={{version}}", "method": "POST", "data": {"id": "{{personid}}", "q": "a\"b"}}]);
    p.apply_index(&[flight("f", plan)], 1).unwrap();
    let t0 = rig.now();
    drive(&rig, &mut p, Say::Ok, &[]).unwrap();
    assert_eq!(status(&p, "f"), "completed");
    let sent = rig.net.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[0].url, "https://home.test/linux/en-US?v=1");
    let body: Value = serde_json::from_slice(sent[0].body.as_ref().unwrap()).unwrap();
    assert_eq!(body, json!({"id": "person-1", "q": "a\"b"}));
    // 30 s, then 60 s.
    assert_eq!(rig.now().0 - t0.0, 90_000);
    let log = log_of(&p, "f");
    assert_eq!(log["requests"].as_array().unwrap().len(), 3);
    assert_eq!(
        log["requests"][0]["url"],
        "https://home.test/linux/en-US?v=1"
    );
    assert_eq!(
        log["requests"][0]["body"],
        json!({"id": "person-1", "q": "a\"b"})
    );
}

#[test]
fn ping_fails_on_4xx_and_after_all_retries() {
    for (code, tries) in [(404u16, 1usize), (500, 5)] {
        let rig = Rig::new();
        rig.net.set(move |_| {
            Ok(Response {
                status: code,
                ..Response::default()
            })
        });
        let mut p = rig.pilot();
        p.apply_index(
            &[flight(
                "f",
                json!([{"action": "ping", "url": "https://home.test/x"}]),
            )],
            1,
        )
        .unwrap();
        drive(&rig, &mut p, Say::Ok, &[]).unwrap();
        assert_eq!(status(&p, "f"), "failed");
        assert_eq!(rig.net.sent.lock().unwrap().len(), tries);
        assert!(p
            .journal
            .flight("f")
            .unwrap()
            .unwrap()
            .reason
            .unwrap()
            .contains(&format!("answered {code}")));
    }
}

#[test]
fn observe_counts_events_after_the_step_starts() {
    let rig = Rig::new();
    let mut p = rig.pilot();
    p.journal
        .record_event("click", Some("button"), None, rig.now())
        .unwrap();
    let plan = json!([{"action": "observe", "topic": "click", "subject": "button", "count": 2}]);
    p.apply_index(&[flight("f", plan)], 1).unwrap();
    p.tick().unwrap();
    p.journal
        .record_event("click", Some("button"), None, rig.now())
        .unwrap();
    p.journal
        .record_event("click", Some("other"), None, rig.now())
        .unwrap();
    p.tick().unwrap();
    assert_eq!(status(&p, "f"), "running");
    p.journal
        .record_event("click", Some("button"), None, rig.now())
        .unwrap();
    p.tick().unwrap();
    assert_eq!(status(&p, "f"), "completed");
}

#[test]
fn waits_for_a_duration_and_until_a_date() {
    let rig = Rig::new();
    let mut p = rig.pilot();
    let until = T0.0 + 3 * 86_400_000;
    let plan = json!([{"action": "wait", "for": "1d"}, {"action": "wait", "until": until}]);
    p.apply_index(&[flight("f", plan)], 1).unwrap();
    assert_eq!(
        p.tick().unwrap(),
        Some(testpilot_flight::Timestamp(T0.0 + 86_400_000))
    );
    rig.clock
        .set(testpilot_flight::Timestamp(T0.0 + 86_400_000));
    assert_eq!(p.tick().unwrap(), Some(testpilot_flight::Timestamp(until)));
    rig.clock.set(testpilot_flight::Timestamp(until));
    p.tick().unwrap();
    assert_eq!(status(&p, "f"), "completed");
    assert_eq!(p.journal.flight("f").unwrap().unwrap().step, 2);
}

#[test]
fn external_prompts_later_expiry_and_withdrawal() {
    let rig = Rig::new();
    let mut p = rig.pilot();
    let plan = json!([
        {"action": "external", "type": "message", "title": "Hello {{os}}", "text": "just so you know"},
        {"action": "external", "type": "survey", "title": "Tell us", "url": "https://s.test/{{studyname}}", "waitFor": "ok", "expires": "2d"}
    ]);
    p.apply_index(&[flight("f", plan)], 1).unwrap();
    p.tick().unwrap();
    let prompts = testpilot_pilot::flightlog::pending_prompts(&p.journal).unwrap();
    assert_eq!(
        prompts.len(),
        2,
        "the message resolves once shown and stays listed"
    );
    assert_eq!(prompts[0]["title"], "Hello linux");
    assert_eq!(prompts[1]["url"], "https://s.test/f");
    let survey = prompts[1]["id"].as_i64().unwrap();
    p.journal.answer_prompt(survey, "later", rig.now()).unwrap();
    assert_eq!(
        p.tick().unwrap(),
        Some(testpilot_flight::Timestamp(T0.0 + 2 * 86_400_000))
    );
    assert_eq!(
        testpilot_pilot::flightlog::pending_prompts(&p.journal).unwrap()[1]["state"],
        "later"
    );
    rig.clock
        .set(testpilot_flight::Timestamp(T0.0 + 2 * 86_400_000));
    p.tick().unwrap();
    assert_eq!(status(&p, "f"), "declined");
    assert!(
        testpilot_pilot::flightlog::pending_prompts(&p.journal)
            .unwrap()
            .is_empty(),
        "the message is withdrawn with the flight"
    );
    let err = p
        .journal
        .answer_prompt(survey, "ok", rig.now())
        .unwrap_err();
    assert!(err.to_string().contains("no longer pending"), "{err}");
}

#[test]
fn log_status_message_and_missing_person_keys() {
    let rig = Rig::new();
    let mut p = rig.pilot();
    let plan = json!([
        {"action": "log", "text": "hello {{person.country}}!"},
        {"action": "status", "text": "phase one at step {{step}}"},
        {"action": "message", "text": "thanks"}
    ]);
    p.apply_index(&[flight("f", plan)], 1).unwrap();
    drive(&rig, &mut p, Say::Ok, &[]).unwrap();
    let t = timeline_text(&p, "f");
    assert!(t.contains("hello !"), "{t}");
    assert!(t.contains("no value for {{person.country}}"), "{t}");
    assert_eq!(log_of(&p, "f")["statusLine"], "phase one at step 1");
}

#[test]
fn instrument_records_uploads_and_deletes_on_undo() {
    let rig = Rig::new();
    let mut p = rig.pilot();
    let plan = json!([{"action": "instrument", "watch": ["tab-open"], "for": "1h", "upload": "https://up.test/{{studyname}}"}]);
    p.apply_index(&[flight("f", plan)], 1).unwrap();
    p.tick().unwrap();
    p.journal
        .record_event("tab-open", Some("a"), None, rig.now())
        .unwrap();
    p.journal
        .record_event("tab-close", None, None, rig.now())
        .unwrap();
    drive(&rig, &mut p, Say::Ok, &[]).unwrap();
    assert_eq!(status(&p, "f"), "completed");
    let sent = rig.net.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].url, "https://up.test/f");
    let body: Value = serde_json::from_slice(sent[0].body.as_ref().unwrap()).unwrap();
    assert_eq!(body["events"].as_array().unwrap().len(), 1);
    assert!(
        p.journal.events_after(0, "tab-open").unwrap().is_empty(),
        "recorded events are deleted on undo"
    );
    assert_eq!(
        p.journal.events_after(0, "tab-close").unwrap().len(),
        1,
        "other events stay"
    );
}

#[test]
fn arms_pick_their_plan_and_variables() {
    let rig = Rig::new();
    let mut p = rig.pilot();
    let f = json!({
        "studyname": "armed", "author": "a", "description": "d", "version": 3,
        "arms": [
            {"name": "only", "ratio": 1, "variables": {"color": "red"}, "flightplan": [{"action": "feature", "id": "color", "value": {"c": "red"}}, {"action": "log", "text": "arm {{arm}} {{color}}"}]}
        ]
    });
    p.apply_index(&[f], 1).unwrap();
    drive(&rig, &mut p, Say::Ok, &[]).unwrap();
    let log = log_of(&p, "armed");
    assert_eq!(log["arm"], "only");
    assert_eq!(log["status"], "completed");
    assert!(timeline_text(&p, "armed").contains("arm only red"));
}
