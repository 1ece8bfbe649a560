//! Signing keys: kept outside the database, and rotated by two people with an audit trail
//! (`docs/keys.md`).

use crate::both;
use crate::support::{flight, Tower};
use axum::http::{Method, StatusCode};
use ed25519_dalek::SigningKey;
use serde_json::{json, Value};
use std::sync::Arc;
use testpilot_flight::index::{
    accept_signed, key_id, parse_public_key, public_key_to_base64, Trust, VerifyingKey,
};
use testpilot_tower::api::ApiConfig;
use testpilot_tower::keys::KeyRing;
use testpilot_tower::store::Engine;
use testpilot_tower::testing::TestDb;
use testpilot_tower::{AppState, ManualClock, Role, Store};

async fn index_text(t: &Tower) -> String {
    let r = t.call(Method::GET, "/control/index.json", None, None).await;
    String::from_utf8(r.bytes).unwrap()
}

fn key_of(v: &Value) -> VerifyingKey {
    parse_public_key(v["publicKey"].as_str().unwrap()).unwrap()
}

async fn audit(t: &Tower) -> Vec<(String, String)> {
    let a = t.get("/api/v1/audit", &t.admin).await;
    a.json
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("key."))
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["actor"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

// The two-person rule for a rotation, its audit trail, and what the index says at each step.
both!(rotation_takes_two_people_and_is_audited);
async fn rotation_takes_two_people_and_is_audited(engine: Engine) {
    let t = Tower::new(engine).await;
    t.make_live(flight("a")).await;
    let old = parse_public_key(&t.state.public_key()).unwrap();
    let carol = t.token(Role::Approver, "carol").await;
    let bob_again = t.token(Role::Approver, "BOB").await;

    let keys = t.get("/api/v1/keys", &t.author).await;
    assert_eq!(keys.status, StatusCode::OK, "{}", keys.json);
    assert_eq!(key_of(&keys.json["current"]), old);
    assert_eq!(keys.json["current"]["secret"], "database");
    assert!(keys.json.get("next").is_none());

    // An author may not rotate; nothing to complete yet.
    let r = t.post("/api/v1/keys/rotate", &t.author, json!({})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.json);
    assert!(r.json["error"]
        .as_str()
        .unwrap()
        .contains("approver or admin"));
    let r = t
        .post("/api/v1/keys/rotate/complete", &carol, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.json);

    // bob proposes: the index announces the successor, signed by the current key.
    let serial_before = t.state.index.current().serial;
    let r = t.post("/api/v1/keys/rotate", &t.approver, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let next = key_of(&r.json["next"]);
    assert_eq!(r.json["next"]["proposedBy"], "bob");
    assert_eq!(r.json["serial"], serial_before + 1);
    let got = accept_signed(
        &index_text(&t).await,
        &Trust::Pinned(&old),
        None,
        t.clock_now(),
    )
    .expect("still signed by the current key");
    assert_eq!(got.payload.next_key, Some(next));
    assert_eq!(got.payload.serial, serial_before + 1);
    assert_eq!(got.pins(), vec![old, next]);

    // bob (under either spelling of his name) cannot complete his own proposal.
    for token in [&t.approver, &bob_again] {
        let r = t
            .post("/api/v1/keys/rotate/complete", token, json!({}))
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.json);
        assert!(
            r.json["error"].as_str().unwrap().contains("second person"),
            "{}",
            r.json
        );
    }
    assert_eq!(t.state.public_key(), public_key_to_base64(&old));

    // carol completes: signed by the successor alone, serial grown, nothing announced.
    let r = t
        .post("/api/v1/keys/rotate/complete", &carol, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(key_of(&r.json["current"]), next);
    assert!(r.json.get("next").is_none());
    let text = index_text(&t).await;
    assert!(accept_signed(&text, &Trust::Pinned(&old), None, t.clock_now()).is_err());
    let got = accept_signed(&text, &Trust::PinnedSet(&[old, next]), None, t.clock_now()).unwrap();
    assert_eq!(got.signed_by, Some(next));
    assert_eq!(got.payload.serial, serial_before + 2);
    assert_eq!(got.payload.next_key, None);
    assert_eq!(got.payload.flights.len(), 1);
    assert_eq!(t.state.public_key(), public_key_to_base64(&next));
    let health = t.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(health.json["keyId"], key_id(&next));

    assert_eq!(
        audit(&t).await,
        [
            ("key.create".to_string(), "tower".to_string()),
            ("key.rotate".into(), "bob".into()),
            ("key.complete".into(), "carol".into()),
        ]
    );
    // A retired key never comes back.
    let r = t
        .post(
            "/api/v1/keys/rotate",
            &carol,
            json!({"publicKey": public_key_to_base64(&old)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.json);
    assert!(r.json["error"].as_str().unwrap().contains("retired"));
    // A bad key is refused with its path.
    let r = t
        .post("/api/v1/keys/rotate", &carol, json!({"publicKey": "AAAA"}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.json);
    assert_eq!(r.json["problems"][0]["path"], "publicKey");
    t.finish().await;
}

// Single-user mode lifts the two-person rule, and says so in the answer and the audit log.
both!(single_user_completes_its_own_rotation_visibly);
async fn single_user_completes_its_own_rotation_visibly(engine: Engine) {
    let t = Tower::with(
        engine,
        ApiConfig {
            single_user: true,
            ..ApiConfig::default()
        },
    )
    .await;
    assert!(t
        .post("/api/v1/keys/rotate", &t.admin, json!({}))
        .await
        .status
        .is_success());
    let r = t
        .post("/api/v1/keys/rotate/complete", &t.admin, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert!(r.json["warning"].as_str().unwrap().contains("single-user"));
    let a = t.get("/api/v1/audit", &t.admin).await;
    let last = a.json.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["action"], "key.complete");
    assert_eq!(last["detail"]["selfApproved"], true);
    t.finish().await;
}

async fn state_on(url: &str, ring: KeyRing) -> testpilot_tower::Result<AppState> {
    let store = Store::open(url).await?;
    let clock = Arc::new(ManualClock::new(testpilot_flight::Timestamp(
        crate::support::T0,
    )));
    AppState::with_keys(store, clock, ApiConfig::default(), ring).await
}

// --signing-key-file: the database holds only the public key; a tower without the file is
// refused with the fix; a successor kept outside is completed only by a tower holding it,
// and other towers on the database then sign with it too.
both!(keys_kept_outside_the_database);
async fn keys_kept_outside_the_database(engine: Engine) {
    let db = TestDb::new(engine).await.unwrap();
    let k1 = SigningKey::from_bytes(&[11; 32]);
    let k2 = SigningKey::from_bytes(&[12; 32]);
    let a = state_on(&db.url, KeyRing::new(vec![k1.clone()]))
        .await
        .unwrap();
    assert_eq!(a.public_key(), public_key_to_base64(&k1.verifying_key()));
    let status = a.store.key_status().await.unwrap();
    assert_eq!(status.current.secret, "outside");

    let e = state_on(&db.url, KeyRing::default())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains(&key_id(&k1.verifying_key())) && e.contains("--signing-key-file"),
        "{e}"
    );

    let bob = testpilot_tower::Actor::new("bob", Role::Approver);
    let carol = testpilot_tower::Actor::new("carol", Role::Admin);
    testpilot_tower::keys::propose(&a, &bob, Some(k2.verifying_key()))
        .await
        .unwrap();
    let e = testpilot_tower::keys::complete(&a, &carol)
        .await
        .unwrap_err();
    assert!(
        matches!(e, testpilot_tower::Error::Conflict(_)) && e.to_string().contains("key file"),
        "{e}"
    );
    // Another tower on the same database, given both seeds, completes it.
    let b = state_on(&db.url, KeyRing::new(vec![k1.clone(), k2.clone()]))
        .await
        .unwrap();
    let done = testpilot_tower::keys::complete(&b, &carol).await.unwrap();
    assert_eq!(done.current.key_id, key_id(&k2.verifying_key()));
    assert_eq!(b.public_key(), public_key_to_base64(&k2.verifying_key()));
    // The first tower cannot sign with k2: it keeps serving its last index and says why.
    let e = a.refresh_index().await.unwrap_err().to_string();
    assert!(e.contains("--signing-key-file"), "{e}");
    assert_eq!(a.public_key(), public_key_to_base64(&k1.verifying_key()));
    a.store.close().await;
    b.store.close().await;
    db.cleanup().await;
}

// A version 1 database kept the seed in `tower_key`: it moves to `signing_keys` (same key,
// so pilots notice nothing) and leaves no copy behind.
both!(the_version_1_key_moves_and_is_not_copied);
async fn the_version_1_key_moves_and_is_not_copied(engine: Engine) {
    let db = TestDb::new(engine).await.unwrap();
    let store = Store::open(&db.url).await.unwrap();
    let seed = [21u8; 32];
    sqlx::any::install_default_drivers();
    let raw = sqlx::AnyPool::connect(&db.url).await.unwrap();
    sqlx::query("INSERT INTO tower_key (id, secret, created_at) VALUES (1, $1, 0)")
        .bind(hex::encode(seed))
        .execute(&raw)
        .await
        .unwrap();
    let keys = store
        .init_signing_key(&KeyRing::default(), [0; 32], testpilot_flight::Timestamp(1))
        .await
        .unwrap();
    assert_eq!(
        keys.current.public,
        SigningKey::from_bytes(&seed).verifying_key()
    );
    let left: i64 = sqlx::Row::get(
        &sqlx::query("SELECT count(*) FROM tower_key")
            .fetch_one(&raw)
            .await
            .unwrap(),
        0,
    );
    assert_eq!(left, 0);
    raw.close().await;
    store.close().await;
    db.cleanup().await;
}

// The data directory 0700 and every file SQLite writes in it 0600, however loose the umask.
#[cfg(unix)]
#[tokio::test]
async fn sqlite_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let base = testpilot_tower::testing::temp_dir("testpilot-private-data");
    let data = base.join("data");
    let clock = Arc::new(ManualClock::new(testpilot_flight::Timestamp(
        crate::support::T0,
    )));
    let local = testpilot_tower::local::start_local(
        testpilot_tower::local::LocalOptions {
            data_dir: data.clone(),
            listen: "127.0.0.1:0".parse().unwrap(),
            examples: None,
            simulate: Default::default(),
        },
        clock,
    )
    .await
    .unwrap();
    assert_eq!(mode(&data), 0o700);
    for f in ["tower.db", "tower.db-wal", "tower.db-shm", "local-token"] {
        let p = data.join(f);
        assert!(p.exists(), "{f}");
        assert_eq!(mode(&p), 0o600, "{f}");
    }
    local.tower.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(base);
}
