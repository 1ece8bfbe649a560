//! Every way a flight ends, and parallel lists.

use crate::support::*;
use serde_json::json;
use testpilot_flight::Clock;
use testpilot_flight::Timestamp;
use testpilot_pilot::net::Response;

fn setting_plan(tail: serde_json::Value) -> serde_json::Value {
    let mut plan = vec![json!({"action": "feature", "id": "x", "value": {"on": true}})];
    plan.extend(tail.as_array().unwrap().iter().cloned());
    serde_json::Value::Array(plan)
}

/// Runs `flight` in a fresh profile with `act` in the middle, and checks the final status and
/// that the machine is as it was.
fn check_ending(
    f: serde_json::Value,
    expect: &str,
    act: impl FnOnce(&Rig, &mut testpilot_pilot::Pilot),
) {
    let rig = Rig::new();
    rig.set_features(json!({"x": {"on": false}}));
    let before = rig.snapshot();
    let mut p = rig.pilot();
    p.apply_index(&[f], 1).unwrap();
    p.tick().unwrap();
    act(&rig, &mut p);
    drive(&rig, &mut p, Say::Ignore, &[]).unwrap();
    let name = p.journal.flights().unwrap()[0].studyname.clone();
    assert_eq!(status(&p, &name), expect, "{}", timeline_text(&p, &name));
    assert_eq!(rig.snapshot(), before, "{}", timeline_text(&p, &name));
    let log = log_of(&p, &name);
    assert_eq!(log["cleanedUp"], true);
    let last = p.journal.outbox(100).unwrap().pop().unwrap().1;
    assert_eq!(last["status"], expect);
}

#[test]
fn completed() {
    check_ending(
        flight("f", setting_plan(json!([{"action": "wait", "for": "1h"}]))),
        "completed",
        |_, _| {},
    );
}

#[test]
fn completed_step_is_the_plan_length() {
    let rig = Rig::new();
    let mut p = rig.pilot();
    p.apply_index(&[flight("f", json!([{"action": "log", "text": "a"}, [{"action": "log", "text": "b"}, {"action": "log", "text": "c"}]]))], 1).unwrap();
    p.tick().unwrap();
    assert_eq!(log_of(&p, "f")["step"], 2);
}

#[test]
fn declined() {
    let plan = setting_plan(
        json!([{"action": "external", "type": "survey", "title": "Q", "url": "https://s.test/", "waitFor": "ok"}]),
    );
    check_ending(flight("f", plan), "declined", |rig, p| {
        let id = p.journal.open_prompts().unwrap()[0].id;
        p.journal.answer_prompt(id, "no", rig.now()).unwrap();
    });
}

#[test]
fn failed() {
    let plan = setting_plan(
        json!([{"action": "wait", "for": "1h"}, {"action": "ping", "url": "https://home.test/"}]),
    );
    check_ending(flight("f", plan), "failed", |rig, _| {
        rig.net.set(|_| {
            Ok(Response {
                status: 403,
                ..Response::default()
            })
        })
    });
}

#[test]
fn killed() {
    let plan = setting_plan(json!([{"action": "wait", "for": "7d"}]));
    let f = flight("f", plan.clone());
    check_ending(f, "killed", |_, p| {
        let mut k = flight("f", plan);
        k["kill"] = json!(true);
        k["version"] = json!(2);
        p.apply_index(&[k], 2).unwrap();
    });
}

#[test]
fn expired() {
    let mut f = flight("f", setting_plan(json!([{"action": "wait", "for": "7d"}])));
    f["endBy"] = json!(T0.0 + 86_400_000);
    check_ending(f, "expired", |_, _| {});
}

#[test]
fn timedout() {
    let mut f = flight("f", setting_plan(json!([{"action": "wait", "for": "7d"}])));
    f["fuse"] = json!("2d");
    check_ending(f, "timedout", |_, _| {});
}

#[test]
fn optedout() {
    check_ending(
        flight("f", setting_plan(json!([{"action": "wait", "for": "7d"}]))),
        "optedout",
        |_, p| {
            assert_eq!(p.optout(Some("f")).unwrap(), vec!["f".to_string()]);
        },
    );
}

#[test]
fn withdrawn() {
    check_ending(
        flight("f", setting_plan(json!([{"action": "wait", "for": "7d"}]))),
        "withdrawn",
        |_, p| {
            p.apply_index(&[], 2).unwrap();
        },
    );
}

#[test]
fn ineligible_and_unsampled_never_start() {
    let rig = Rig::new();
    let before = rig.snapshot();
    let mut p = rig.pilot();
    let mut a = flight("a", json!([{"action": "feature", "id": "x", "value": {}}]));
    a["filter"] = json!({"oses": ["windows"]});
    let mut b = flight("b", json!([{"action": "feature", "id": "x", "value": {}}]));
    b["randomDeploy"] = json!({"ge": 0.0, "lt": 0.000001});
    p.apply_index(&[a, b], 1).unwrap();
    p.tick().unwrap();
    assert_eq!(status(&p, "a"), "ineligible");
    assert_eq!(status(&p, "b"), "unsampled");
    assert_eq!(rig.snapshot(), before);
    let log = testpilot_pilot::flightlog::flights(&p.journal, None).unwrap();
    assert!(log.iter().all(|f| f["cleanedUp"] == true));
}

#[test]
fn parallel_list_with_one_branch_false_declines_and_undoes_the_others() {
    let rig = Rig::new();
    let before = rig.snapshot();
    let mut p = rig.pilot();
    let plan = json!([[
        {"action": "feature", "id": "a", "value": {"v": 1}},
        {"action": "external", "type": "survey", "title": "Q", "url": "https://s.test/", "waitFor": "ok"},
        {"action": "wait", "for": "1d"},
        {"action": "notify", "topic": "t"}
    ], {"action": "log", "text": "never"}]);
    p.apply_index(&[flight("f", plan)], 1).unwrap();
    p.tick().unwrap();
    assert_eq!(
        rig.features(),
        json!({"a": {"v": 1}}),
        "branches run side by side"
    );
    assert_eq!(rig.notifications().len(), 1);
    drive(&rig, &mut p, Say::No, &[]).unwrap();
    assert_eq!(status(&p, "f"), "declined");
    assert_eq!(log_of(&p, "f")["step"], 0);
    assert_eq!(rig.snapshot(), before);
    assert_eq!(rig.now(), T0, "the wait was cancelled, not waited for");
    assert!(!timeline_text(&p, "f").contains("never"));
}

#[test]
fn parallel_list_resolves_true_when_all_branches_have() {
    let rig = Rig::new();
    let mut p = rig.pilot();
    let plan = json!([[{"action": "wait", "for": "1h"}, {"action": "wait", "for": "2h"}, {"action": "observe", "topic": "go"}], {"action": "log", "text": "after"}]);
    p.apply_index(&[flight("f", plan)], 1).unwrap();
    drive(&rig, &mut p, Say::Ok, &["go"]).unwrap();
    assert_eq!(status(&p, "f"), "completed");
    assert!(rig.now().0 >= T0.0 + 7_200_000);
}

#[test]
fn a_running_flight_keeps_its_version_until_killed() {
    let rig = Rig::new();
    let mut p = rig.pilot();
    p.apply_index(
        &[flight(
            "f",
            json!([{"action": "wait", "for": "1d"}, {"action": "log", "text": "from v1"}]),
        )],
        1,
    )
    .unwrap();
    p.tick().unwrap();
    let mut v2 = flight("f", json!([{"action": "log", "text": "from v2"}]));
    v2["version"] = json!(2);
    p.apply_index(&[v2], 2).unwrap();
    drive(&rig, &mut p, Say::Ok, &[]).unwrap();
    assert_eq!(status(&p, "f"), "completed");
    assert_eq!(log_of(&p, "f")["version"], 1);
    let t = timeline_text(&p, "f");
    assert!(t.contains("from v1") && !t.contains("from v2"), "{t}");
}

#[test]
fn optout_all_ends_running_flights_and_keeps_new_ones_from_starting() {
    let rig = Rig::new();
    let mut p = rig.pilot();
    p.apply_index(&[flight("a", json!([{"action": "wait", "for": "1d"}]))], 1)
        .unwrap();
    p.tick().unwrap();
    p.optout(None).unwrap();
    assert_eq!(status(&p, "a"), "optedout");
    p.apply_index(
        &[
            flight("a", json!([{"action": "wait", "for": "1d"}])),
            flight("b", json!([{"action": "wait", "for": "1d"}])),
        ],
        2,
    )
    .unwrap();
    p.tick().unwrap();
    assert!(p.journal.flight("b").unwrap().is_none());
    assert_eq!(status(&p, "a"), "optedout");
}

#[test]
fn opt_out_requests_from_another_process_are_carried_out() {
    let rig = Rig::new();
    let mut p = rig.pilot();
    p.apply_index(
        &[flight(
            "a",
            json!([{"action": "feature", "id": "x", "value": {}}, {"action": "wait", "for": "1d"}]),
        )],
        1,
    )
    .unwrap();
    p.tick().unwrap();
    let mut other = testpilot_pilot::Journal::open(&rig.profile, Default::default()).unwrap();
    let req = other.add_request("optout", Some("a"), rig.now()).unwrap();
    p.tick().unwrap();
    assert!(other.request_done(req).unwrap());
    assert_eq!(status(&p, "a"), "optedout");
    assert_eq!(rig.features(), json!({}));
    let _ = Timestamp(0);
}

/// The same inputs give the same run: a simulator can replay a client in virtual time, with
/// an in-memory journal and host.
#[test]
fn same_inputs_same_run_in_memory() {
    let run = || {
        let clock = testpilot_pilot::ManualClock::new(T0);
        let journal = testpilot_pilot::Journal::in_memory(Default::default()).unwrap();
        let config = testpilot_pilot::engine::PilotConfig {
            profile: std::env::temp_dir(),
            person: Some(json!({"personid": "sim-1", "os": "linux", "locale": "en-US"})),
        };
        let host = Box::new(testpilot_pilot::host::MemoryHost::default());
        let mut p = testpilot_pilot::Pilot::with_journal(
            journal,
            config,
            host,
            FakeNet::ok(),
            std::sync::Arc::new(clock.clone()),
        )
        .unwrap();
        let plan = json!([
            {"action": "feature", "id": "x", "value": {"on": true}},
            [{"action": "wait", "for": "2h"}, {"action": "observe", "topic": "t", "count": 2}],
            {"action": "ping", "url": "https://h.test/{{locale}}"},
            {"action": "external", "type": "survey", "title": "Q", "url": "https://s.test/", "waitFor": "ok", "expires": "1d"}
        ]);
        let mut f = flight("sim", plan);
        f["arms"] = json!([{"name": "a", "ratio": 1}, {"name": "b", "ratio": 3}]);
        p.apply_index(&[f], 1).unwrap();
        let mut trace = Vec::new();
        for i in 0..20 {
            let wake = p.tick().unwrap();
            trace.push(format!("{} {:?}", clock.now(), wake));
            if p.running().unwrap().is_empty() {
                break;
            }
            if i % 3 == 0 {
                p.journal
                    .record_event("t", None, None, clock.now())
                    .unwrap();
            }
            clock.set(wake.unwrap_or(testpilot_flight::Timestamp(clock.now().0 + 60_000)));
        }
        let log = testpilot_pilot::flightlog::flights(&p.journal, None).unwrap();
        (trace, log)
    };
    let (t1, l1) = run();
    let (t2, l2) = run();
    assert_eq!(t1, t2);
    assert_eq!(l1, l2);
    assert_eq!(
        l1[0]["status"], "declined",
        "the survey expired unanswered: {:#}",
        l1[0]
    );
}
