//! Crash safety: stop the pilot at every journal write and every effect on the machine, restart
//! it on the same profile, run to the end, and check that nothing is left installed or changed
//! and nothing happened twice.

use crate::support::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use testpilot_pilot::journal::phase;
use testpilot_pilot::Faults;

struct Scenario {
    rig: Rig,
    flights: Vec<Value>,
    before: BTreeMap<String, String>,
}

/// A plan with add-ons (install over an existing one, install new with a permission prompt,
/// uninstall), features (new and replaced), prompts, waits, observe, notify, a ping and a
/// parallel list; and a second flight that is killed half-way.
fn scenario() -> Scenario {
    let rig = Rig::new();
    rig.preinstall("old@x", "the person's add-on");
    rig.preinstall("helper@x", "helper v1");
    rig.set_features(json!({"search.bar": {"on": false}}));
    let a = rig.scratch("a.zip");
    let a_sha = zip_package(&a, &[("main.js", "new add-on"), ("data/x.json", "{}")]);
    let h = rig.scratch("h.tar.gz");
    let h_sha = tar_package(&h, &[("main.js", "helper v2", 'f')]);
    let plan = json!([
        {"action": "feature", "id": "search.bar", "value": {"on": true}},
        [
            {"action": "addon", "do": "install", "id": "new@x", "url": format!("file://{}", a.display()), "sha256": a_sha, "permission": "warn"},
            {"action": "addon", "do": "install", "id": "helper@x", "url": format!("file://{}", h.display()), "sha256": h_sha, "permission": "notify"},
            {"action": "feature", "id": "fresh", "value": {"n": 1}}
        ],
        {"action": "addon", "do": "uninstall", "id": "old@x", "permission": "none"},
        {"action": "notify", "topic": "hello", "data": {"who": "{{personid}}"}},
        {"action": "wait", "for": "1d"},
        {"action": "external", "type": "survey", "title": "How was it?", "url": "https://s.test/q", "waitFor": "ok"},
        {"action": "ping", "url": "https://home.test/done"},
        {"action": "observe", "topic": "go"},
        {"action": "log", "text": "done"}
    ]);
    let second = json!([
        {"action": "feature", "id": "second", "value": {"s": 2}},
        {"action": "wait", "for": "3d"}
    ]);
    let before = rig.snapshot();
    Scenario {
        rig,
        flights: vec![flight("main", plan), flight("second", second)],
        before,
    }
}

/// Runs the scenario; after `apply` the second flight is killed once time passes two days.
/// Every error is taken as a crash: the pilot is opened again (fresh faults) and goes on.
fn run(s: &Scenario, faults: Faults) -> (usize, u64) {
    let mut crashes = 0;
    let mut faults = Some(faults);
    let mut applied = false;
    let mut killed = false;
    let mut passed = 0;
    loop {
        let f = faults.take().unwrap_or_default();
        let mut p = match s.rig.pilot_with(f.clone()) {
            Ok(p) => p,
            Err(e) => {
                assert!(e.is_crash(), "{e}");
                crashes += 1;
                continue;
            }
        };
        let result = (|| {
            if !applied {
                p.apply_index(&s.flights, 1)?;
                applied = true;
            }
            loop {
                drive(&s.rig, &mut p, Say::Ok, &["go"])?;
                if !killed && s.rig.now().0 >= T0.0 + 86_400_000 {
                    let mut k = s.flights[1].clone();
                    k["kill"] = json!(true);
                    p.apply_index(&[s.flights[0].clone(), k], 2)?;
                    killed = true;
                    continue;
                }
                if !killed {
                    // Both ended before the kill: still deliver it (it must be a no-op).
                    killed = true;
                    continue;
                }
                return Ok::<(), testpilot_pilot::Error>(());
            }
        })();
        passed += f.passed();
        match result {
            Ok(()) => {
                assert!(p.running().unwrap().is_empty());
                return (crashes, passed);
            }
            Err(e) => {
                assert!(e.is_crash(), "not a crash: {e}");
                crashes += 1;
                assert!(crashes < 10, "crash loop");
            }
        }
    }
}

fn check(s: &Scenario, label: &str) {
    let p = s.rig.pilot();
    assert_eq!(
        s.rig.snapshot(),
        s.before,
        "{label}: the machine is not as it was\n{}",
        timeline_text(&p, "main")
    );
    let main = log_of(&p, "main");
    assert_eq!(
        main["status"],
        "completed",
        "{label}: {}",
        timeline_text(&p, "main")
    );
    assert_eq!(main["cleanedUp"], true, "{label}");
    let second = log_of(&p, "second");
    assert!(
        matches!(second["status"].as_str(), Some("killed" | "completed")),
        "{label}: {second}"
    );
    assert_eq!(second["cleanedUp"], true, "{label}");
    // Nothing twice: one notification; at most one ping; every effect undone once.
    let n = s.rig.notifications();
    assert_eq!(n.len(), 1, "{label}: {n:?}");
    let pings = s
        .rig
        .net
        .urls()
        .iter()
        .filter(|u| u.contains("home.test"))
        .count();
    assert!(pings <= 1, "{label}: the ping was sent {pings} times");
    for name in ["main", "second"] {
        let effects = p.journal.effects(name).unwrap();
        let mut per_path: BTreeMap<(String, String), usize> = BTreeMap::new();
        for e in &effects {
            if e.phase != phase::FAILED {
                *per_path
                    .entry((e.path.clone(), e.kind.clone()))
                    .or_default() += 1;
            }
            if matches!(
                e.kind.as_str(),
                "addon-install" | "addon-uninstall" | "feature"
            ) {
                assert_eq!(e.phase, phase::UNDONE, "{label}: {e:?}");
            }
        }
        assert!(
            per_path.values().all(|n| *n == 1),
            "{label}: an effect was journaled twice: {per_path:?}"
        );
        let undos = p
            .journal
            .timeline(name)
            .unwrap()
            .iter()
            .filter(|t| t.kind == "undo" && t.what.starts_with("undid"))
            .count();
        let undoable = effects
            .iter()
            .filter(|e| {
                matches!(
                    e.kind.as_str(),
                    "addon-install" | "addon-uninstall" | "feature" | "record"
                )
            })
            .count();
        assert_eq!(undos, undoable, "{label}: {name}: each undo is logged once");
    }
    assert!(
        testpilot_pilot::flightlog::pending_prompts(&p.journal)
            .unwrap()
            .is_empty(),
        "{label}"
    );
}

#[test]
fn the_scenario_runs_clean_without_crashes() {
    let s = scenario();
    let (crashes, passed) = run(&s, Faults::default());
    assert_eq!(crashes, 0);
    assert!(passed > 50, "only {passed} fault points");
    check(&s, "no crash");
}

#[test]
fn a_crash_at_every_fault_point_leaves_nothing_behind() {
    let total = {
        let s = scenario();
        run(&s, Faults::default()).1
    };
    eprintln!("{total} fault points");
    for n in 1..=total {
        let s = scenario();
        let (crashes, _) = run(&s, Faults::crash_after(n));
        assert_eq!(
            crashes, 1,
            "fault point {n} of {total} did not crash exactly once"
        );
        check(&s, &format!("crash at fault point {n} of {total}"));
    }
}

#[test]
fn two_crashes_in_a_row_during_cleanup() {
    // Crash at a point during the undo, then again right after the restart.
    let total = {
        let s = scenario();
        run(&s, Faults::default()).1
    };
    for n in (total.saturating_sub(30)..=total).step_by(3) {
        let s = scenario();
        let _ = run(&s, Faults::crash_after(n));
        // A second run from the ended state must be a no-op.
        let mut p = s.rig.pilot();
        p.tick().unwrap();
        check(&s, &format!("double crash near {n}"));
    }
}

/// Two flights change the same feature and add-on; the first to start ends first, so its undo
/// must hand what was there before over to the other rather than restore it under it.
fn overlap() -> Scenario {
    let rig = Rig::new();
    rig.preinstall("shared@x", "the person's version");
    rig.set_features(json!({"shared": {"v": "original"}}));
    let a = rig.scratch("a.zip");
    let a_sha = zip_package(&a, &[("main.js", "from a")]);
    let b = rig.scratch("b.zip");
    let b_sha = zip_package(&b, &[("main.js", "from b")]);
    let plan = |pkg: &std::path::Path, sha: &str, v: &str, wait: &str| {
        json!([
            {"action": "feature", "id": "shared", "value": {"v": v}},
            {"action": "addon", "do": "install", "id": "shared@x", "url": format!("file://{}", pkg.display()), "sha256": sha, "permission": "none"},
            {"action": "wait", "for": wait}
        ])
    };
    let mut third = flight(
        "c-uninstaller",
        json!([{"action": "addon", "do": "uninstall", "id": "shared@x", "permission": "none"}, {"action": "wait", "for": "3h"}]),
    );
    third["version"] = json!(1);
    let before = rig.snapshot();
    Scenario {
        flights: vec![
            flight("a-first", plan(&a, &a_sha, "a", "1h")),
            flight("b-second", plan(&b, &b_sha, "b", "2h")),
            third,
        ],
        rig,
        before,
    }
}

fn run_overlap(s: &Scenario, faults: Faults) -> u64 {
    let mut faults = Some(faults);
    let mut applied = false;
    let mut passed = 0;
    for _ in 0..10 {
        let f = faults.take().unwrap_or_default();
        let r = s.rig.pilot_with(f.clone()).and_then(|mut p| {
            if !applied {
                p.apply_index(&s.flights, 1)?;
                applied = true;
            }
            drive(&s.rig, &mut p, Say::Ok, &[])
        });
        passed += f.passed();
        match r {
            Ok(()) => return passed,
            Err(e) => assert!(e.is_crash(), "{e}"),
        }
    }
    panic!("crash loop");
}

fn check_overlap(s: &Scenario, label: &str) {
    let p = s.rig.pilot();
    for f in ["a-first", "b-second", "c-uninstaller"] {
        assert_eq!(log_of(&p, f)["status"], "completed", "{label}: {f}");
        assert_eq!(log_of(&p, f)["cleanedUp"], true, "{label}: {f}");
    }
    assert_eq!(
        s.rig.snapshot(),
        s.before,
        "{label}\n{}\n{}",
        timeline_text(&p, "a-first"),
        timeline_text(&p, "b-second")
    );
}

#[test]
fn overlapping_flights_end_out_of_order_and_still_restore_the_original() {
    let s = overlap();
    let total = run_overlap(&s, Faults::default());
    check_overlap(&s, "no crash");
    let p = s.rig.pilot();
    assert!(timeline_text(&p, "a-first").contains("changed it since and keeps its change"));
    for n in 1..=total {
        let s = overlap();
        run_overlap(&s, Faults::crash_after(n));
        check_overlap(&s, &format!("crash at fault point {n} of {total}"));
    }
}
