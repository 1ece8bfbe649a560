//! The signed index: signature, serial, ETag and 304, Cache-Control, re-signing, export.

use crate::both;
use crate::support::{flight, Tower, T0};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::json;
use testpilot_flight::index::{accept, parse_public_key, Envelope, Trust};
use testpilot_flight::Timestamp;
use testpilot_tower::store::Engine;

async fn get_index(t: &Tower, if_none_match: Option<&str>) -> crate::support::Resp {
    let mut req = Request::get("/control/index.json");
    if let Some(e) = if_none_match {
        req = req.header("if-none-match", e);
    }
    t.send(req.body(Body::empty()).unwrap()).await
}

both!(served_index_verifies_and_serial_grows);
async fn served_index_verifies_and_serial_grows(engine: Engine) {
    let t = Tower::new(engine).await;
    let key = parse_public_key(&t.state.public_key()).unwrap();
    let first = get_index(&t, None).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.headers["content-type"], "application/json");
    let p0 = accept(
        std::str::from_utf8(&first.bytes).unwrap(),
        &Trust::Pinned(&key),
        None,
        t.clock_now(),
    )
    .unwrap();
    assert_eq!((p0.serial, p0.flights.len()), (0, 0));
    assert_eq!(p0.generated_at, Timestamp(T0));
    assert_eq!(p0.expires_at, Timestamp(T0 + 7 * 86_400_000));

    t.make_live(flight("a")).await;
    t.make_live(flight("b")).await;
    let second = get_index(&t, None).await;
    let p = accept(
        std::str::from_utf8(&second.bytes).unwrap(),
        &Trust::Pinned(&key),
        Some(p0.serial),
        t.clock_now(),
    )
    .unwrap();
    assert_eq!(p.serial, 2);
    let names: Vec<&str> = p
        .flights
        .iter()
        .map(|f| f["studyname"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"]);

    // A tampered payload does not verify; another key does not verify.
    let mut env: Envelope = serde_json::from_slice(&second.bytes).unwrap();
    env.payload = env.payload.replace("\"a\"", "\"x\"");
    assert!(env.verify(&key).is_err());
    let other = ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key();
    assert!(accept(
        std::str::from_utf8(&second.bytes).unwrap(),
        &Trust::Pinned(&other),
        None,
        t.clock_now()
    )
    .is_err());

    // The key survives a restart of the tower on the same database.
    let again = testpilot_tower::Store::open(&t.db.as_ref().unwrap().url)
        .await
        .unwrap();
    let keys = again
        .init_signing_key(&Default::default(), [1; 32], t.clock_now())
        .await
        .unwrap();
    assert_eq!(
        testpilot_flight::index::public_key_to_base64(&keys.current.public),
        t.state.public_key()
    );
    again.close().await;
    t.finish().await;
}

both!(etag_and_not_modified);
async fn etag_and_not_modified(engine: Engine) {
    let t = Tower::new(engine).await;
    t.make_live(flight("a")).await;
    let full = get_index(&t, None).await;
    let etag = full.headers["etag"].to_str().unwrap().to_string();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "a strong ETag: {etag}"
    );
    assert_eq!(full.headers["cache-control"], "public, max-age=60");

    let same = get_index(&t, Some(&etag)).await;
    assert_eq!(same.status, StatusCode::NOT_MODIFIED);
    assert!(same.bytes.is_empty());
    assert_eq!(same.headers["etag"], etag.as_str());
    assert_eq!(same.headers["cache-control"], "public, max-age=60");
    assert_eq!(
        get_index(&t, Some(&format!("W/{etag}"))).await.status,
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(
        get_index(&t, Some(&format!("\"other\", {etag}")))
            .await
            .status,
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(
        get_index(&t, Some("\"other\"")).await.status,
        StatusCode::OK
    );

    t.post("/api/v1/flights/a/kill", &t.approver, json!({}))
        .await;
    let changed = get_index(&t, Some(&etag)).await;
    assert_eq!(
        changed.status,
        StatusCode::OK,
        "a change makes the old ETag stale"
    );
    assert_ne!(changed.headers["etag"], etag.as_str());
    t.finish().await;
}

// The index is re-signed when its window rolls over (same serial, later expiry), and is
// built from memory: reading it never changes it.
both!(index_is_resigned_when_the_window_rolls);
async fn index_is_resigned_when_the_window_rolls(engine: Engine) {
    let t = Tower::new(engine).await;
    t.make_live(flight("a")).await;
    let before = t.state.index.current();
    t.clock.advance(3_600_000);
    assert!(!t.state.index.is_stale(before.serial, t.clock_now()));
    t.clock.advance(86_400_000);
    assert!(t.state.index.is_stale(before.serial, t.clock_now()));
    t.state.refresh_index().await.unwrap();
    let after = t.state.index.current();
    assert_eq!(after.serial, before.serial);
    assert!(after.expires_at > before.expires_at);
    assert_ne!(after.etag, before.etag);
    t.finish().await;
}

both!(export_writes_the_served_bytes);
async fn export_writes_the_served_bytes(engine: Engine) {
    let t = Tower::new(engine).await;
    t.make_live(flight("a")).await;
    let served = get_index(&t, None).await;
    let dir = testpilot_tower::testing::temp_dir("testpilot-export");
    let timing = t.state.index.timing();
    testpilot_tower::index::export(
        &t.state.store,
        t.state.index.ring(),
        timing,
        t.clock_now(),
        &dir,
    )
    .await
    .unwrap();
    let written = std::fs::read(dir.join("control").join("index.json")).unwrap();
    assert_eq!(
        written, served.bytes,
        "the exported file is byte for byte what the tower serves"
    );
    let _ = std::fs::remove_dir_all(&dir);
    t.finish().await;
}

#[tokio::test]
async fn index_is_open_and_not_rate_limited() {
    let config = testpilot_tower::api::ApiConfig {
        limits: testpilot_tower::ClientLimits {
            rate_per_sec: 1.0,
            burst: 1.0,
            ..Default::default()
        },
        ..Default::default()
    };
    let t = Tower::with(Engine::Sqlite, config).await;
    for _ in 0..20 {
        assert_eq!(
            t.call(Method::GET, "/control/index.json", None, None)
                .await
                .status,
            StatusCode::OK
        );
    }
    t.finish().await;
}
