//! What a tick keeps from one to the next rather than reading or parsing again: validated
//! flights (per spec text), prepared transactions; and that nothing of it changes what the
//! engine does.

use crate::support::*;
use serde_json::json;

#[test]
fn a_flight_enrolled_again_with_another_spec_runs_the_new_one() {
    let rig = Rig::new();
    let mut p = rig.pilot();
    // Version 1 is not for this person (linux); version 2 is, with another plan. Both
    // validate, under the same name: the engine must run the spec it stored last.
    let mut v1 = flight("f", json!([{"action": "log", "text": "one"}]));
    v1["filter"] = json!({"oses": ["windows"]});
    p.apply_index(&[v1], 1).unwrap();
    p.tick().unwrap();
    assert_eq!(status(&p, "f"), "ineligible");
    let mut v2 = flight(
        "f",
        json!([{"action": "log", "text": "two"}, {"action": "wait", "for": "1h"}]),
    );
    v2["version"] = json!(2);
    p.apply_index(&[v2], 2).unwrap();
    p.tick().unwrap();
    let text = timeline_text(&p, "f");
    assert!(text.contains("log: two"), "{text}");
    assert!(!text.contains("log: one"), "{text}");
    assert_eq!(log_of(&p, "f")["version"], 2);
}

#[test]
fn steps_under_way_are_the_started_unresolved_ones() {
    let rig = Rig::new();
    let mut p = rig.pilot();
    let plan = json!([{"action": "log", "text": "a"}, [{"action": "observe", "topic": "seen"}, {"action": "wait", "for": "1h"}]]);
    p.apply_index(&[flight("f", plan)], 1).unwrap();
    p.tick().unwrap();
    // A parallel list has no state of its own: its branches have.
    let under_way = |p: &testpilot_pilot::Pilot| {
        let mut v = p.steps_under_way("f").unwrap();
        v.sort();
        v
    };
    assert_eq!(under_way(&p), ["1.0", "1.1"]);
    p.journal
        .record_event("seen", None, None, rig.now())
        .unwrap();
    p.tick().unwrap();
    assert_eq!(under_way(&p), ["1.1"]);
    assert!(p.steps_under_way("nothing").unwrap().is_empty());
}

#[test]
fn a_write_that_fails_half_way_leaves_nothing_and_the_next_one_works() {
    let rig = Rig::new();
    let before = rig.snapshot();
    let mut p = rig.pilot();
    let plan = json!([{"action": "feature", "id": "x", "value": {"on": true}}, {"action": "wait", "for": "1h"}]);
    p.apply_index(&[flight("f", plan)], 1).unwrap();
    p.tick().unwrap();
    // Ending the flight updates its row, then adds the "end" line, which is refused here.
    p.journal
        .conn()
        .execute_batch(
            "CREATE TEMP TRIGGER refuse_end BEFORE INSERT ON timeline WHEN NEW.kind = 'end'
             BEGIN SELECT RAISE(ABORT, 'refused'); END;",
        )
        .unwrap();
    let err = p.optout(Some("f")).unwrap_err();
    assert!(err.to_string().contains("refused"), "{err}");
    // Rolled back: still running, no transaction left open.
    assert_eq!(status(&p, "f"), "running");
    assert!(p.journal.conn().is_autocommit());
    p.journal
        .conn()
        .execute_batch("DROP TRIGGER refuse_end")
        .unwrap();
    p.optout(Some("f")).unwrap();
    assert_eq!(status(&p, "f"), "optedout");
    assert_eq!(log_of(&p, "f")["cleanedUp"], true);
    assert_eq!(rig.snapshot(), before);
}
