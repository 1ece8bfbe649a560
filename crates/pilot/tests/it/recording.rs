//! A streaming `instrument` (no `upload`): what it records (its window from the journaled
//! start, across restarts; the cap), how it streams to the tower (batches over real HTTP,
//! retries with the same `seq`, deletion once accepted, a refused batch dropped), and that
//! every ending deletes what is left.

use crate::support::*;
use crate::sync_http::{http_pilot, serve, Handler, Seen};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use testpilot_flight::Timestamp;
use testpilot_pilot::net::Response;
use testpilot_pilot::stream::{upload_events, upload_events_retrying, MAX_BATCH_EVENTS};
use testpilot_pilot::sync::TowerSource;
use testpilot_pilot::{Faults, Journal, Pilot};

const MIN: i64 = 60_000;

fn at(min: i64) -> Timestamp {
    Timestamp(T0.0 + min * MIN)
}

fn study(name: &str, watch: &[&str], for_: &str, every: &str) -> Value {
    flight(
        name,
        json!([
            {"action": "instrument", "watch": watch, "for": for_, "uploadEvery": every},
            {"action": "log", "text": "after the recording"}
        ]),
    )
}

/// The application observing an event, in its own process (its own journal handle).
fn observe(rig: &Rig, topic: &str, subject: Option<&str>, value: Option<f64>) {
    let mut j = Journal::open(&rig.profile, Faults::default()).unwrap();
    j.record_event(topic, subject, value, rig.now()).unwrap();
}

fn left(p: &Pilot, name: &str) -> usize {
    p.journal.recorded(name, usize::MAX >> 1).unwrap().len()
}

#[test]
fn the_window_counts_from_the_journaled_start_across_a_restart() {
    let rig = Rig::new();
    observe(&rig, "a", None, None); // before the flight: not recorded
    {
        let mut p = rig.pilot();
        p.apply_index(&[study("s", &["a", "b"], "1h", "10m")], 1)
            .unwrap();
        assert_eq!(p.tick().unwrap(), Some(at(60)));
        rig.clock.set(at(10));
        observe(&rig, "a", Some("button"), Some(2.5));
        observe(&rig, "c", None, None); // not watched
        p.tick().unwrap();
        assert_eq!(left(&p, "s"), 1);
    }
    // A restart late in the window: it still ends an hour after the step started.
    rig.clock.set(at(50));
    let mut p = rig.pilot();
    observe(&rig, "b", None, Some(-1.0));
    p.tick().unwrap();
    rig.clock.set(at(61));
    observe(&rig, "a", None, None); // after the window
    let wake = p.tick().unwrap();
    let got: Vec<(String, Option<String>, Option<f64>, Timestamp)> = p
        .journal
        .recorded("s", 100)
        .unwrap()
        .into_iter()
        .map(|e| (e.topic, e.subject, e.value, e.at))
        .collect();
    assert_eq!(
        got,
        vec![
            ("a".into(), Some("button".into()), Some(2.5), at(10)),
            ("b".into(), None, Some(-1.0), at(50)),
        ]
    );
    let r = p.journal.recorder("s", "0").unwrap().unwrap();
    assert_eq!(r.ends_at, at(60));
    // Nothing could be sent (no upload ran): the step waits out the grace, then goes on, and
    // the cleanup deletes what is left.
    assert_eq!(wake, Some(at(70)));
    assert_eq!(status(&p, "s"), "running");
    rig.clock.set(at(70));
    p.tick().unwrap();
    assert_eq!(status(&p, "s"), "completed");
    assert_eq!(left(&p, "s"), 0);
    assert!(p.journal.recorders().unwrap().is_empty());
    let log = timeline_text(&p, "s");
    assert!(
        log.contains("2 recorded event(s) could not be sent"),
        "{log}"
    );
    assert!(log.contains("2 event(s) were not sent"), "{log}");
    // `testpilot log` shows every recorded event.
    let text = testpilot_pilot::flightlog::render_text(&[log_of(&p, "s")], &[], 0);
    assert!(text.contains("a subject=button value=2.5 at"), "{text}");
    assert!(text.contains(" b value=-1 at"), "{text}");
}

#[test]
fn the_cap_stops_recording_with_one_line() {
    let rig = Rig::new();
    let mut p = rig.pilot();
    p.set_recording_cap(3);
    p.apply_index(&[study("s", &["a"], "1h", "1d")], 1).unwrap();
    p.tick().unwrap();
    rig.clock.set(at(1));
    for _ in 0..5 {
        observe(&rig, "a", None, None);
    }
    p.tick().unwrap();
    assert_eq!(left(&p, "s"), 3);
    rig.clock.set(at(2));
    observe(&rig, "a", None, None);
    p.tick().unwrap();
    assert_eq!(left(&p, "s"), 3);
    let log = timeline_text(&p, "s");
    assert_eq!(
        log.matches("the flight recorded its limit of 3 events")
            .count(),
        1,
        "{log}"
    );
}

/// A tower over real HTTP whose answer to events is set by `status` (200 answers like the
/// contract; 422 with an error body; 201 is a 200 that is not the events endpoint's answer,
/// 202 a 200 that counts one event short; 413 refuses batches of more than 250 events and
/// accepts the rest; anything else answers with that status and a body that is not JSON).
fn tower(status: Arc<AtomicU16>) -> (String, Arc<std::sync::Mutex<Vec<Seen>>>) {
    let handler: Arc<Handler> = Arc::new(move |r: &Seen| {
        if r.path != "/api/v1/events" {
            return (404, vec![], b"{}".to_vec());
        }
        let n = serde_json::from_str::<Value>(&r.body).unwrap()["events"]
            .as_array()
            .map_or(0, Vec::len);
        match status.load(Ordering::SeqCst) {
            200 => (
                200,
                vec![],
                json!({"accepted": n, "duplicates": 0}).to_string().into_bytes(),
            ),
            422 => (
                422,
                vec![],
                br#"{"error": "flight not live", "problems": [{"path": "events[0].flight", "message": "no such flight"}]}"#.to_vec(),
            ),
            201 => (200, vec![], b"<html>welcome to the hotel wifi</html>".to_vec()),
            202 => (
                200,
                vec![],
                json!({"accepted": n - 1, "duplicates": 0}).to_string().into_bytes(),
            ),
            413 if n > 250 => (413, vec![], b"too large".to_vec()),
            413 => (
                200,
                vec![],
                json!({"accepted": n, "duplicates": 0}).to_string().into_bytes(),
            ),
            // A 429 that says how long to wait.
            1429 => (
                429,
                vec![("Retry-After".into(), "600".into())],
                b"slow down".to_vec(),
            ),
            // One that asks for far too long.
            2429 => (
                429,
                vec![("Retry-After".into(), "99999999999999".into())],
                b"slow down".to_vec(),
            ),
            s => (s, vec![], b"oops".to_vec()),
        }
    });
    serve(handler)
}

fn seqs(seen: &Seen) -> Vec<i64> {
    serde_json::from_str::<Value>(&seen.body).unwrap()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect()
}

#[test]
fn events_stream_to_the_tower_in_batches_with_retries_and_are_deleted_once_accepted() {
    let rig = Rig::new();
    let answer = Arc::new(AtomicU16::new(500));
    let (base, seen) = tower(answer.clone());
    let tower = TowerSource::parse(&base).unwrap();
    let mut p = http_pilot(&rig);
    let mut f = study("s", &["a"], "1h", "10m");
    f["arms"] = json!([{"name": "only", "ratio": 1}]);
    p.apply_index(&[f], 1).unwrap();
    p.tick().unwrap();
    rig.clock.set(at(1));
    {
        let mut j = Journal::open(&rig.profile, Faults::default()).unwrap();
        for i in 0..2_500 {
            j.record_event("a", Some(&format!("s{i}")), Some(i as f64), rig.now())
                .unwrap();
        }
    }
    // Not due before `uploadEvery`.
    assert_eq!(upload_events(&mut p, &tower).unwrap().accepted, 0);
    assert!(seen.lock().unwrap().is_empty());
    assert_eq!(left(&p, "s"), 2_500);
    // Due: the tower fails (500), so everything is kept and tried again with backoff.
    rig.clock.set(at(10));
    let out = upload_events(&mut p, &tower).unwrap();
    assert_eq!((out.accepted, out.failed), (0, 1));
    assert_eq!(left(&p, "s"), 2_500);
    let first = seqs(&seen.lock().unwrap()[0]);
    assert_eq!(first.len(), MAX_BATCH_EVENTS);
    rig.clock.set(Timestamp(at(10).0 + 10_000));
    assert_eq!(
        upload_events(&mut p, &tower).unwrap().accepted,
        0,
        "backoff"
    );
    answer.store(200, Ordering::SeqCst);
    rig.clock.set(Timestamp(at(10).0 + 30_000));
    let out = upload_events(&mut p, &tower).unwrap();
    assert_eq!(out.accepted, 2_500);
    assert_eq!(left(&p, "s"), 0);
    let all = seen.lock().unwrap().clone();
    assert_eq!(all.len(), 4, "one failed batch, then three");
    // The retry carries the same seqs: the tower counts them once.
    assert_eq!(seqs(&all[1]), first);
    assert_eq!(
        all[1..].iter().map(|s| seqs(s).len()).collect::<Vec<_>>(),
        vec![1_000, 1_000, 500]
    );
    let sent: Vec<i64> = all[1..].iter().flat_map(seqs).collect();
    assert_eq!(sent, (1..=2_500).collect::<Vec<i64>>());
    let body: Value = serde_json::from_str(&all[1].body).unwrap();
    assert_eq!(body["client"], json!(p.journal.meta("client").unwrap()));
    let e = &body["events"][0];
    assert_eq!(
        (&e["flight"], &e["version"], &e["arm"], &e["topic"]),
        (&json!("s"), &json!(1), &json!("only"), &json!("a"))
    );
    assert_eq!((&e["subject"], &e["value"]), (&json!("s0"), &json!(0.0)));
    assert_eq!(e["at"], json!(at(1).to_rfc3339()));
    assert!(all[1]
        .headers
        .iter()
        .any(|(k, v)| k == "content-type" && v == "application/json"));
    // A batch the tower refuses for good is dropped, with the tower's words in the log.
    rig.clock.set(at(15));
    observe(&rig, "a", None, None);
    answer.store(422, Ordering::SeqCst);
    // Due again `uploadEvery` after the last upload.
    rig.clock.set(at(21));
    let out = upload_events(&mut p, &tower).unwrap();
    assert_eq!(out.refused, 1);
    assert_eq!(left(&p, "s"), 0);
    let log = timeline_text(&p, "s");
    assert!(
        log.contains(
            "refused 1 event(s) (seq 2501–2501) with 422: {\"error\": \"flight not live\""
        ),
        "{log}"
    );
    // Sequence numbers are never reused, even after deletion.
    answer.store(200, Ordering::SeqCst);
    rig.clock.set(at(25));
    observe(&rig, "a", None, None);
    // At the end of the window the step waits for the final upload, then goes on.
    rig.clock.set(at(60));
    p.tick().unwrap();
    assert_eq!(status(&p, "s"), "running");
    upload_events(&mut p, &tower).unwrap();
    assert_eq!(seqs(seen.lock().unwrap().last().unwrap()), vec![2_502]);
    p.tick().unwrap();
    assert_eq!(status(&p, "s"), "completed");
    let log = timeline_text(&p, "s");
    assert!(
        log.contains("recording ended: nothing recorded is left to send"),
        "{log}"
    );
    // Every request is in the flight log, with its URL and a summary of its body.
    let requests = log_of(&p, "s")["requests"].as_array().unwrap().clone();
    assert_eq!(requests.len(), 6, "{requests:?}");
    assert_eq!(requests[0]["url"], json!(format!("{base}/api/v1/events")));
    assert_eq!(requests[0]["body"]["seq"], json!([1, 1000]));
    assert_eq!(requests[0]["body"]["events"], json!(1000));
}

#[test]
fn kill_and_opt_out_delete_what_was_recorded() {
    let rig = Rig::new();
    let mut p = rig.pilot();
    let flights = [
        study("k", &["a"], "1h", "1d"),
        study("o", &["a"], "1h", "1d"),
    ];
    p.apply_index(&flights, 1).unwrap();
    p.tick().unwrap();
    rig.clock.set(at(1));
    observe(&rig, "a", None, None);
    p.tick().unwrap();
    assert_eq!((left(&p, "k"), left(&p, "o")), (1, 1));
    let mut killed = flights[0].clone();
    killed["kill"] = json!(true);
    p.apply_index(&[killed, flights[1].clone()], 2).unwrap();
    assert_eq!(status(&p, "k"), "killed");
    assert_eq!((left(&p, "k"), left(&p, "o")), (0, 1));
    p.optout(Some("o")).unwrap();
    assert_eq!(left(&p, "o"), 0);
    // Nothing records for them any more.
    observe(&rig, "a", None, None);
    p.tick().unwrap();
    assert_eq!((left(&p, "k"), left(&p, "o")), (0, 0));
    assert!(p.journal.recorders().unwrap().is_empty());
    assert!(timeline_text(&p, "k").contains("deleted the recording; 1 event(s) were not sent"));
}

#[test]
fn with_a_file_index_the_events_stay_and_the_log_says_so_once() {
    let rig = Rig::new();
    let mut p = rig.pilot();
    let tower = TowerSource::File(rig.scratch("index.json"));
    p.apply_index(&[study("s", &["a"], "1h", "10m")], 1)
        .unwrap();
    p.tick().unwrap();
    for m in [5, 10, 20, 30] {
        rig.clock.set(at(m));
        observe(&rig, "a", None, None);
        upload_events(&mut p, &tower).unwrap();
    }
    assert_eq!(left(&p, "s"), 4);
    assert!(rig.net.urls().is_empty());
    let log = timeline_text(&p, "s");
    assert_eq!(
        log.matches("there is no tower to send them to").count(),
        1,
        "{log}"
    );
}

/// Crash at every fault point of a streaming recording (recorder, harvests, uploads, the
/// final wait, the cleanup): every event of the window reaches the tower under one `seq`,
/// nothing is left on the machine.
#[test]
fn a_crash_at_every_fault_point_loses_and_duplicates_nothing() {
    let run = |faults: Faults| -> (u64, Rig) {
        let rig = Rig::new();
        rig.net.set(|r| {
            let n = serde_json::from_slice::<Value>(r.body.as_deref().unwrap_or(b"{}"))
                .ok()
                .and_then(|v| v["events"].as_array().map(Vec::len))
                .unwrap_or(0);
            Ok(Response {
                status: 200,
                body: json!({"accepted": n, "duplicates": 0})
                    .to_string()
                    .into_bytes(),
                ..Response::default()
            })
        });
        let tower = TowerSource::parse("https://tower.test").unwrap();
        let mut faults = Some(faults);
        let mut passed = 0;
        let mut applied = false;
        let mut minute = 0;
        let mut observed = -1;
        for _ in 0..20 {
            let f = faults.take().unwrap_or_default();
            let r = rig.pilot_with(f.clone()).and_then(|mut p| {
                if !applied {
                    p.apply_index(&[study("s", &["a"], "1h", "20m")], 1)?;
                    applied = true;
                }
                while minute <= 100 {
                    rig.clock.set(at(minute));
                    if observed < minute && minute % 7 == 3 {
                        observe(&rig, "a", None, Some(minute as f64));
                        observed = minute;
                    }
                    p.tick()?;
                    upload_events(&mut p, &tower)?;
                    minute += 1;
                }
                Ok(())
            });
            passed += f.passed();
            match r {
                Ok(()) => return (passed, rig),
                Err(e) => assert!(e.is_crash(), "{e}"),
            }
        }
        panic!("crash loop");
    };
    let check = |rig: &Rig, label: &str| {
        let p = rig.pilot();
        assert_eq!(status(&p, "s"), "completed", "{label}");
        assert_eq!(log_of(&p, "s")["cleanedUp"], true, "{label}");
        assert_eq!(left(&p, "s"), 0, "{label}");
        let mut by_seq: BTreeMap<i64, Value> = BTreeMap::new();
        for r in rig.net.sent.lock().unwrap().iter() {
            let body: Value = serde_json::from_slice(r.body.as_deref().unwrap()).unwrap();
            for e in body["events"].as_array().unwrap() {
                let old = by_seq.insert(e["seq"].as_i64().unwrap(), e["value"].clone());
                assert!(
                    old.is_none() || old.as_ref() == Some(&e["value"]),
                    "{label}: a seq names two events"
                );
            }
        }
        let mut values: Vec<i64> = by_seq
            .values()
            .map(|v| v.as_f64().unwrap() as i64)
            .collect();
        values.sort();
        let want: Vec<i64> = (0..60).filter(|m| m % 7 == 3).collect();
        assert_eq!(values, want, "{label}: {}", timeline_text(&p, "s"));
    };
    let (total, rig) = run(Faults::default());
    check(&rig, "no crash");
    eprintln!("{total} fault points");
    for n in 1..=total {
        let (_, rig) = run(Faults::crash_after(n));
        check(&rig, &format!("crash at fault point {n} of {total}"));
    }
}

#[test]
fn an_unreachable_tower_408_and_429_keep_the_events_for_later() {
    let rig = Rig::new();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let answer = Arc::new(AtomicU16::new(429));
    let (base, seen) = tower(answer.clone());
    let mut p = http_pilot(&rig);
    p.apply_index(&[study("s", &["a"], "1h", "10m")], 1)
        .unwrap();
    p.tick().unwrap();
    rig.clock.set(at(1));
    observe(&rig, "a", None, None);
    rig.clock.set(at(10));
    let out = upload_events(&mut p, &TowerSource::parse(&closed).unwrap()).unwrap();
    assert_eq!(out.failed, 1);
    let tower = TowerSource::parse(&base).unwrap();
    for (i, status) in [429, 408].into_iter().enumerate() {
        answer.store(status, Ordering::SeqCst);
        rig.clock.set(Timestamp(at(20).0 + i as i64 * 3_600_000));
        assert_eq!(upload_events(&mut p, &tower).unwrap().failed, 1, "{status}");
        assert_eq!(left(&p, "s"), 1, "{status}");
    }
    assert_eq!(seen.lock().unwrap().len(), 2);
    let log = timeline_text(&p, "s");
    assert_eq!(log.matches("not sent yet").count(), 3, "{log}");
    assert!(log.contains("answered 429"), "{log}");
    assert!(log.contains("answered 408"), "{log}");

    // Within the backoff nothing is tried; a `--once` run tries again now and sends it.
    answer.store(200, Ordering::SeqCst);
    let soon = Timestamp(at(20).0 + 3_600_000 + 1_000);
    rig.clock.set(soon);
    assert_eq!(upload_events(&mut p, &tower).unwrap(), Default::default());
    assert_eq!(left(&p, "s"), 1);
    assert_eq!(upload_events_retrying(&mut p, &tower).unwrap().accepted, 1);
    assert_eq!(left(&p, "s"), 0);
}

/// A 429 with `Retry-After` holds the events back that long (longer than the pilot's own
/// 30 s backoff), and no more than a day however long the tower asks.
#[test]
fn retry_after_holds_the_next_try_back() {
    let rig = Rig::new();
    let answer = Arc::new(AtomicU16::new(1429));
    let (base, seen) = tower(answer.clone());
    let tower = TowerSource::parse(&base).unwrap();
    let mut p = http_pilot(&rig);
    p.apply_index(&[study("s", &["a"], "2d", "10m")], 1)
        .unwrap();
    p.tick().unwrap();
    rig.clock.set(at(1));
    observe(&rig, "a", None, None);
    rig.clock.set(at(10));
    assert_eq!(upload_events(&mut p, &tower).unwrap().failed, 1);
    let log = timeline_text(&p, "s");
    assert!(log.contains("the tower asked to wait 600 s"), "{log}");
    // After the backoff but within the 600 s asked: nothing is sent.
    answer.store(200, Ordering::SeqCst);
    rig.clock.set(Timestamp(at(10).0 + 120_000));
    assert_eq!(upload_events(&mut p, &tower).unwrap(), Default::default());
    assert_eq!(seen.lock().unwrap().len(), 1);
    rig.clock.set(Timestamp(at(10).0 + 600_000));
    assert_eq!(upload_events(&mut p, &tower).unwrap().accepted, 1);
    assert_eq!(left(&p, "s"), 0);

    // Years asked for: a day at most.
    observe(&rig, "a", None, None);
    answer.store(2429, Ordering::SeqCst);
    let t = Timestamp(at(10).0 + 1_200_000);
    rig.clock.set(t);
    assert_eq!(upload_events(&mut p, &tower).unwrap().failed, 1);
    assert!(timeline_text(&p, "s").contains("the tower asked to wait 86400 s"));
    answer.store(200, Ordering::SeqCst);
    rig.clock.set(Timestamp(t.0 + 86_400_000 - 1_000));
    assert_eq!(upload_events(&mut p, &tower).unwrap(), Default::default());
    rig.clock.set(Timestamp(t.0 + 86_400_000));
    assert_eq!(upload_events(&mut p, &tower).unwrap().accepted, 1);
}

/// Only the events endpoint's answer settles a batch and only the tower's error drops it:
/// a 2xx with another body, a 2xx that counts short, and a 400 or 404 that is not the
/// tower's error keep the events, and the flight log says why.
#[test]
fn only_the_towers_own_answers_settle_or_drop_a_batch() {
    let rig = Rig::new();
    let answer = Arc::new(AtomicU16::new(201));
    let (base, seen) = tower(answer.clone());
    let tower = TowerSource::parse(&base).unwrap();
    let mut p = http_pilot(&rig);
    p.apply_index(&[study("s", &["a"], "1h", "10m")], 1)
        .unwrap();
    p.tick().unwrap();
    rig.clock.set(at(1));
    observe(&rig, "a", None, None);
    rig.clock.set(at(10));
    for (i, (status, why)) in [
        (201, "but not with the events endpoint's answer"),
        (202, "adding up to 1"),
        (400, "answered 400, but not with the tower's error"),
        (415, "answered 415, but not with the tower's error"),
        (404, "answered 404"),
        (503, "answered 503"),
    ]
    .into_iter()
    .enumerate()
    {
        answer.store(status, Ordering::SeqCst);
        let out = upload_events_retrying(&mut p, &tower).unwrap();
        assert_eq!(
            (out.accepted, out.refused, out.failed),
            (0, 0, 1),
            "{status}"
        );
        assert_eq!(left(&p, "s"), 1, "{status}: kept");
        assert_eq!(seen.lock().unwrap().len(), i + 1);
        let log = timeline_text(&p, "s");
        assert!(log.contains(why), "{status}: {log}");
    }
    assert_eq!(
        timeline_text(&p, "s")
            .matches("they are kept and tried again")
            .count(),
        6
    );
    // The tower's error, in its shape, drops the batch.
    answer.store(422, Ordering::SeqCst);
    let out = upload_events_retrying(&mut p, &tower).unwrap();
    assert_eq!(out.refused, 1);
    assert_eq!(left(&p, "s"), 0);
}

/// A 413 sends the same events again in halves, in the same round, until they fit.
#[test]
fn a_413_halves_the_batch() {
    let rig = Rig::new();
    let answer = Arc::new(AtomicU16::new(413));
    let (base, seen) = tower(answer.clone());
    let tower = TowerSource::parse(&base).unwrap();
    let mut p = http_pilot(&rig);
    p.apply_index(&[study("s", &["a"], "1h", "10m")], 1)
        .unwrap();
    p.tick().unwrap();
    rig.clock.set(at(1));
    {
        let mut j = Journal::open(&rig.profile, Faults::default()).unwrap();
        for _ in 0..1_000 {
            j.record_event("a", None, None, rig.now()).unwrap();
        }
    }
    rig.clock.set(at(10));
    let out = upload_events(&mut p, &tower).unwrap();
    assert_eq!((out.accepted, out.failed), (1_000, 0));
    assert_eq!(left(&p, "s"), 0);
    let sizes: Vec<usize> = seen.lock().unwrap().iter().map(|s| seqs(s).len()).collect();
    assert_eq!(sizes, [1_000, 500, 250, 250, 250, 250]);
    let sent: Vec<i64> = seen.lock().unwrap()[2..].iter().flat_map(seqs).collect();
    assert_eq!(sent, (1..=1_000).collect::<Vec<i64>>());
    let log = timeline_text(&p, "s");
    assert!(log.contains("answered 413 (too large) for 1000 event(s) (seq 1–1000): sending them again in batches of at most 500"), "{log}");
    assert!(log.contains("in batches of at most 250"), "{log}");
}
