//! Pruning the journal (`journal/prune.rs`): a year of flights and events in virtual time stays
//! bounded, and nothing a running flight still reads goes.

use crate::support::*;
use serde_json::json;
use std::time::Duration;
use testpilot_flight::Timestamp;
use testpilot_pilot::journal::{prune, Retention};
use testpilot_pilot::{Journal, Pilot};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

/// A rig whose profile is on a RAM disk when there is one: a year of writes, each synced.
fn fast_rig() -> Rig {
    let mut rig = Rig::new();
    if let Ok(dir) = tempfile::tempdir_in("/dev/shm") {
        let profile = dir.path().join("profile");
        std::fs::create_dir_all(&profile).unwrap();
        rig.profile = profile;
        rig.dir = dir;
    }
    rig
}

fn count(p: &Pilot, table: &str) -> i64 {
    p.journal
        .conn()
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// What the tower does with reports: accepts them all.
fn send_reports(p: &mut Pilot, now: Timestamp) {
    let seqs: Vec<i64> = p
        .journal
        .outbox(10_000)
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    p.journal.mark_sent(&seqs, now).unwrap();
}

fn short_flight(n: usize) -> serde_json::Value {
    flight(
        &format!("f{n}"),
        json!([
            {"action": "feature", "id": format!("app.f{n}"), "value": {"on": true}},
            {"action": "wait", "for": "1d"}
        ]),
    )
}

fn watcher() -> serde_json::Value {
    flight(
        "watcher",
        json!([{"action": "observe", "topic": "rare", "count": 2}]),
    )
}

#[test]
fn a_year_of_flights_and_events_stays_bounded_and_running_flights_keep_what_they_read() {
    let rig = fast_rig();
    let mut p = rig.pilot();
    let r = Retention {
        keep: Duration::from_secs(30 * 86_400),
        max_events: 3_000,
    };
    p.apply_index(&[watcher()], 1).unwrap();
    p.tick().unwrap();
    let mut next_prune = rig.now();
    let mut flights = 0;
    let mut sizes = Vec::new();
    let mut max_events = 0;
    let mut last_id = 0;
    for hour in 0..365 * 24 {
        // An event every ten minutes, a new short flight every three days.
        for _ in 0..6 {
            p.journal
                .record_event("tick", None, None, rig.now())
                .unwrap();
            rig.clock.advance(10 * 60_000);
        }
        if hour == 24 {
            p.journal
                .record_event("rare", None, None, rig.now())
                .unwrap();
        }
        if hour % 72 == 0 {
            flights += 1;
            p.apply_index(&[watcher(), short_flight(flights)], flights as u64 + 1)
                .unwrap();
        }
        p.tick().unwrap();
        send_reports(&mut p, rig.now());
        if rig.now() >= next_prune {
            prune::on_schedule(&mut p.journal, rig.now(), &r).unwrap();
            next_prune = Timestamp(rig.now().0 + prune::PRUNE_EVERY.as_millis() as i64);
        }
        // Ids are never handed out again.
        let id = p.journal.last_event_id().unwrap();
        assert!(id > last_id, "event ids went back from {last_id} to {id}");
        last_id = id;
        max_events = max_events.max(count(&p, "events"));
        if hour % (30 * 24) == 0 {
            sizes.push(
                std::fs::metadata(Journal::path_in(&rig.profile))
                    .unwrap()
                    .len(),
            );
        }
        assert_eq!(status(&p, "watcher"), "running", "hour {hour}");
    }
    // The waiting observe step still sees its event from the first day, eleven months on.
    p.journal
        .record_event("rare", None, None, rig.now())
        .unwrap();
    p.tick().unwrap();
    assert_eq!(status(&p, "watcher"), "completed");

    // Bounded: the event cap (and its slack), a month of reports and flight histories.
    assert!(max_events <= 3_300 + 6, "{max_events} events kept");
    assert!(
        count(&p, "outbox") < 200,
        "{} outbox rows",
        count(&p, "outbox")
    );
    assert!(
        count(&p, "effects") < 40,
        "{} effects",
        count(&p, "effects")
    );
    assert!(
        count(&p, "timeline") < 500,
        "{} timeline lines",
        count(&p, "timeline")
    );
    let (early, late) = (sizes[3], *sizes.last().unwrap());
    assert!(
        late <= early + early / 2,
        "the journal grew from {early} to {late} bytes between months 3 and 12: {sizes:?}"
    );

    // Ended flights stay listed, with a line that sums them up, and never run again.
    let log = log_of(&p, "f1");
    assert_eq!(log["status"], "completed");
    let lines = log["timeline"].as_array().unwrap();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["kind"], "pruned");
    assert!(lines[0]["what"]
        .as_str()
        .unwrap()
        .contains("ended completed"));
    let effects = count(&p, "effects");
    p.apply_index(&[short_flight(1)], 1_000).unwrap();
    p.tick().unwrap();
    assert_eq!(status(&p, "f1"), "completed");
    assert_eq!(count(&p, "effects"), effects, "a pruned flight ran again");
    // The pilot's log says what was pruned.
    assert!(timeline_text(&p, "").contains("pruned "));
}

#[test]
fn a_waiting_step_keeps_its_topic_and_nothing_else() {
    let rig = fast_rig();
    let mut p = rig.pilot();
    let r = Retention {
        keep: Duration::from_secs(30 * 86_400),
        max_events: 10,
    };
    let old = p
        .journal
        .record_event("rare", None, None, rig.now())
        .unwrap();
    p.apply_index(&[watcher()], 1).unwrap();
    p.tick().unwrap();
    let mine = p
        .journal
        .record_event("rare", None, None, rig.now())
        .unwrap();
    for _ in 0..100 {
        p.journal
            .record_event("noise", None, None, rig.now())
            .unwrap();
    }
    rig.clock.advance(200 * DAY);
    let newest = p
        .journal
        .record_event("noise", None, None, rig.now())
        .unwrap();
    let pruned = p.journal.prune(rig.now(), &r).unwrap();
    assert_eq!(pruned.events, 101, "{pruned:?}");
    let ids = |p: &Pilot, topic: &str| -> Vec<i64> {
        p.journal
            .events_after(0, topic)
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect()
    };
    // The event before the step started goes; the one it counts stays; the newest stays.
    assert_eq!(ids(&p, "rare"), vec![mine]);
    assert_eq!(ids(&p, "noise"), vec![newest]);
    assert!(old < mine);
    p.journal
        .record_event("rare", None, None, rig.now())
        .unwrap();
    p.tick().unwrap();
    assert_eq!(status(&p, "watcher"), "completed");
    // Once the flight is over, its event goes too.
    p.journal.prune(rig.now(), &r).unwrap();
    assert!(!ids(&p, "rare").contains(&mine));
}

#[test]
fn only_sent_reports_go_and_the_newest_seq_stays() {
    let rig = fast_rig();
    let mut p = rig.pilot();
    let r = Retention::default();
    p.apply_index(&[short_flight(1), short_flight(2)], 1)
        .unwrap();
    p.tick().unwrap();
    let all: Vec<i64> = p
        .journal
        .outbox(100)
        .unwrap()
        .iter()
        .map(|(s, _)| *s)
        .collect();
    assert!(all.len() >= 2);
    // The first report was sent, the others are still waiting for the tower.
    p.journal.mark_sent(&all[..1], rig.now()).unwrap();
    rig.clock.advance(365 * DAY);
    let pruned = p.journal.prune(rig.now(), &r).unwrap();
    assert_eq!(pruned.reports, 1);
    assert_eq!(p.journal.outbox_pending().unwrap(), all.len() as i64 - 1);
    // All sent, all old: the newest stays, so its seq is never used again.
    send_reports(&mut p, rig.now());
    rig.clock.advance(365 * DAY);
    p.journal.prune(rig.now(), &r).unwrap();
    assert_eq!(count(&p, "outbox"), 1);
    let max: i64 = p
        .journal
        .conn()
        .query_row("SELECT max(seq) FROM outbox", [], |x| x.get(0))
        .unwrap();
    assert_eq!(max, *all.last().unwrap());
}

#[test]
fn a_flight_not_yet_undone_keeps_its_history() {
    let rig = fast_rig();
    let mut p = rig.pilot();
    p.apply_index(&[short_flight(1)], 1).unwrap();
    p.tick().unwrap();
    // Ended, but its undo has not run: nothing of it goes, however old.
    p.journal
        .conn()
        .execute(
            "UPDATE flights SET status = 'failed', ended_at = ?1 WHERE studyname = 'f1'",
            [rig.now().0],
        )
        .unwrap();
    rig.clock.advance(365 * DAY);
    let before = count(&p, "effects");
    let pruned = p.journal.prune(rig.now(), &Retention::default()).unwrap();
    assert!(pruned.flights.is_empty());
    assert_eq!(count(&p, "effects"), before);
    assert!(before > 0);
}

#[test]
fn nothing_to_prune_writes_nothing() {
    let rig = fast_rig();
    let mut p = rig.pilot();
    let lines = count(&p, "timeline");
    let pruned = p.journal.prune(rig.now(), &Retention::default()).unwrap();
    assert!(!pruned.anything());
    assert_eq!(count(&p, "timeline"), lines);
}

#[test]
fn the_file_shrinks_after_a_big_prune() {
    let rig = fast_rig();
    let mut p = rig.pilot();
    for i in 0..20_000 {
        p.journal
            .record_event(
                "noise",
                Some(&format!("subject {i:0>100}")),
                None,
                rig.now(),
            )
            .unwrap();
    }
    let path = Journal::path_in(&rig.profile);
    let before = p.journal.size().unwrap();
    rig.clock.advance(365 * DAY);
    let pruned = p.journal.prune(rig.now(), &Retention::default()).unwrap();
    assert!(pruned.vacuumed, "{pruned:?}");
    assert!(
        pruned.bytes * 10 < before,
        "{} of {before} bytes",
        pruned.bytes
    );
    let on_disk = std::fs::metadata(&path).unwrap().len();
    assert!(on_disk * 10 < before, "{on_disk} bytes on disk");
}
