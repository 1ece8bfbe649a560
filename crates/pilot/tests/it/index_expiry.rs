//! An expired index: once the accepted index's `expiresAt` passes and no newer one could be
//! fetched (the tower answers 304, or cannot be reached), nothing new starts from it and
//! running flights end `indexexpired` and are undone (docs/index.md). In virtual time.

use crate::support::*;
use ed25519_dalek::SigningKey;
use serde_json::{json, Value};
use testpilot_flight::index::{Envelope, IndexPayload, Trust};
use testpilot_flight::Timestamp;
use testpilot_pilot::net::Response;
use testpilot_pilot::sync::{sync, Synced, TowerSource};
use testpilot_pilot::{Error, Pilot};

const HOUR: i64 = 3_600_000;
const KEY: [u8; 32] = [7; 32];

fn envelope(serial: u64, expires_at: Timestamp, flights: Vec<Value>) -> String {
    let payload = IndexPayload {
        serial,
        generated_at: T0,
        expires_at,
        flights,
        next_key: None,
    };
    Envelope::sign(&payload, &SigningKey::from_bytes(&KEY)).to_text()
}

/// The tower answers the index with `text` (ETag `tag`), 304 when the pilot already has it.
fn serve_index(rig: &Rig, text: String, tag: &'static str) {
    rig.net.set(move |req| {
        let have = req
            .headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("if-none-match") && v == tag);
        Ok(Response {
            status: if have { 304 } else { 200 },
            headers: vec![("ETag".into(), tag.into())],
            body: if have {
                Vec::new()
            } else {
                text.clone().into_bytes()
            },
        })
    });
}

fn unreachable(rig: &Rig) {
    rig.net.set(|req| {
        Err(Error::Net {
            msg: format!("{}: connection refused", req.url),
            retryable: true,
        })
    });
}

fn tower() -> TowerSource {
    TowerSource::parse("https://tower.test").unwrap()
}

fn sync_now(p: &mut Pilot) -> Result<Synced, Error> {
    let vk = SigningKey::from_bytes(&KEY).verifying_key();
    sync(p, &tower(), &Trust::Pinned(&vk))
}

/// A flight that changes a feature and then waits two days.
fn long_flight() -> Value {
    flight(
        "long",
        json!([{"action": "feature", "id": "x", "value": {"on": true}}, {"action": "wait", "for": "2d"}]),
    )
}

/// A pilot running `long` from an index that expires an hour after T0.
fn running_until_expiry() -> (Rig, Pilot, std::collections::BTreeMap<String, String>) {
    let rig = Rig::new();
    rig.set_features(json!({"x": {"on": false}}));
    let before = rig.snapshot();
    serve_index(
        &rig,
        envelope(1, Timestamp(T0.0 + HOUR), vec![long_flight()]),
        "\"s1\"",
    );
    let mut p = rig.pilot();
    assert_eq!(
        sync_now(&mut p).unwrap(),
        Synced::Accepted {
            serial: 1,
            flights: 1
        }
    );
    let wake = p.tick().unwrap();
    assert_eq!(status(&p, "long"), "running");
    assert_eq!(rig.features()["x"]["on"], true);
    assert_eq!(
        wake,
        Some(Timestamp(T0.0 + HOUR)),
        "the pilot wakes when the index expires, before the 2-day wait is over"
    );
    (rig, p, before)
}

fn assert_ended_by_expiry(
    rig: &Rig,
    p: &Pilot,
    before: &std::collections::BTreeMap<String, String>,
) {
    let text = timeline_text(p, "long");
    assert_eq!(status(p, "long"), "indexexpired", "{text}");
    assert!(
        text.contains("ended indexexpired: the index expired at 2026-05-28T21:26:40.000Z and no newer one could be fetched"),
        "{text}"
    );
    assert!(
        text.contains("cleaned up: everything the flight did is undone"),
        "{text}"
    );
    assert_eq!(log_of(p, "long")["cleanedUp"], true);
    assert_eq!(&rig.snapshot(), before, "the feature is restored");
    let last = p.journal.outbox(100).unwrap().pop().unwrap().1;
    assert_eq!(last["status"], "indexexpired", "{last}");
    // A report the tower reads.
    let mut r = last.clone();
    r["seq"] = json!(1);
    let batch = json!({"client": "0f8fad5b-d9cb-469f-a165-70867728950e", "reports": [r]});
    testpilot_flight::report::ReportBatch::from_json(&batch, 100).unwrap();
}

#[test]
fn an_expired_index_ends_running_flights_when_the_tower_answers_304() {
    let (rig, mut p, before) = running_until_expiry();
    // Before expiry a 304 changes nothing.
    rig.clock.set(Timestamp(T0.0 + HOUR - 1));
    assert_eq!(sync_now(&mut p).unwrap(), Synced::NotModified);
    p.tick().unwrap();
    assert_eq!(status(&p, "long"), "running");
    // At expiry the tower still says "not modified": the pilot has nothing newer.
    rig.clock.set(Timestamp(T0.0 + HOUR));
    assert_eq!(sync_now(&mut p).unwrap(), Synced::NotModified);
    p.tick().unwrap();
    assert_ended_by_expiry(&rig, &p, &before);
}

#[test]
fn an_expired_index_ends_running_flights_when_the_tower_cannot_be_reached() {
    let (rig, mut p, before) = running_until_expiry();
    unreachable(&rig);
    rig.clock.set(Timestamp(T0.0 + 2 * HOUR));
    assert!(sync_now(&mut p).is_err());
    // Not even a sync: the engine decides from the journal and its clock alone.
    p.tick().unwrap();
    assert_ended_by_expiry(&rig, &p, &before);
}

#[test]
fn a_newer_index_before_expiry_keeps_flights_running() {
    let (rig, mut p, _) = running_until_expiry();
    rig.clock.set(Timestamp(T0.0 + HOUR / 2));
    serve_index(
        &rig,
        envelope(2, Timestamp(T0.0 + 3 * 86_400_000), vec![long_flight()]),
        "\"s2\"",
    );
    assert!(matches!(
        sync_now(&mut p).unwrap(),
        Synced::Accepted { serial: 2, .. }
    ));
    rig.clock.set(Timestamp(T0.0 + 2 * HOUR));
    p.tick().unwrap();
    assert_eq!(status(&p, "long"), "running");
    drive(&rig, &mut p, Say::Ok, &[]).unwrap();
    assert_eq!(status(&p, "long"), "completed");
}

#[test]
fn nothing_new_starts_from_an_expired_index() {
    let (rig, mut p, before) = running_until_expiry();
    // Past expiry the tower serves an index that has expired too, with a new flight in it.
    rig.clock.set(Timestamp(T0.0 + 2 * HOUR));
    serve_index(
        &rig,
        envelope(
            2,
            Timestamp(T0.0 + HOUR + 1),
            vec![
                long_flight(),
                flight("fresh", json!([{"action": "log", "text": "hi"}])),
            ],
        ),
        "\"s2\"",
    );
    let e = sync_now(&mut p).unwrap_err();
    assert!(e.to_string().contains("expired"), "{e}");
    p.tick().unwrap();
    assert!(
        p.journal.flight("fresh").unwrap().is_none(),
        "nothing new started"
    );
    assert_ended_by_expiry(&rig, &p, &before);
    // Applying the flights of the held (expired) index again starts nothing either.
    p.apply_index(
        &[flight("other", json!([{"action": "log", "text": "hi"}]))],
        1,
    )
    .unwrap();
    assert!(p.journal.flight("other").unwrap().is_none());
}
