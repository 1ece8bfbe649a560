//! The signing key end to end with the real binary, on PostgreSQL with the key kept out of
//! the database (`docs/keys.md`): a key file, a two-person rotation, a pilot that follows it
//! and refuses a key nobody pinned, and the recovery from a leaked key by re-pinning.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use testpilot_flight::index::{key_id, parse_public_key, Envelope, IndexPayload};
use testpilot_flight::Timestamp;
use testpilot_pilot::Journal;
use testpilot_tower::store::Engine;
use testpilot_tower::testing::{temp_dir, TestDb};

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_testpilot"));
    c.args(args)
        .env_remove("TESTPILOT_TOWER")
        .env_remove("TESTPILOT_TOKEN")
        .env_remove("TESTPILOT_DB")
        .env_remove("TESTPILOT_SIGNING_KEY")
        .env_remove("TESTPILOT_SIGNING_KEY_FILE");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run testpilot")
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn serve(db: &str, key_file: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_testpilot"))
        .args(["tower", "serve", "--db", db, "--listen", "127.0.0.1:0"])
        .env("TESTPILOT_SIGNING_KEY_FILE", key_file)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("the tower to start").unwrap();
        if let Some(rest) = line.strip_prefix("tower listening on ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines.by_ref() {});
    (child, url)
}

fn stop(mut tower: Child) {
    tower.kill().unwrap();
    tower.wait().unwrap();
}

/// The pilot's pinned keys and its own flight-log lines.
fn pilot_state(profile: &Path) -> (Vec<String>, String) {
    let j = Journal::open(profile, Default::default()).unwrap();
    let log: Vec<String> = j
        .timeline("")
        .unwrap()
        .into_iter()
        .map(|t| t.what)
        .collect();
    (j.pinned_keys().unwrap(), log.join("\n"))
}

fn id(public: &str) -> String {
    key_id(&parse_public_key(public).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pilot_follows_a_two_person_rotation_of_a_key_kept_outside_the_database() {
    let db = TestDb::new(Engine::Postgres).await.unwrap();
    let data = temp_dir("testpilot-keys-cli");
    let url = db.url.clone();
    let s = |p: &Path| p.to_str().unwrap().to_string();

    // A key file, mode 600; a copy others can read is refused with the fix.
    let k1 = data.join("signing.key");
    let pub1 = ok(&run(&["tower", "key", "generate", "--out", &s(&k1)], &[]));
    let loose = data.join("loose.key");
    std::fs::copy(&k1, &loose).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&k1).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
        let o = run(
            &[
                "tower",
                "pubkey",
                "--db",
                &url,
                "--signing-key-file",
                &s(&loose),
            ],
            &[],
        );
        assert_eq!(o.status.code(), Some(2));
        assert!(
            err(&o).contains(&format!("chmod 600 {}", s(&loose))),
            "{}",
            err(&o)
        );
    }
    // The database keeps only the public key: without the file, the fix is named.
    assert_eq!(
        ok(&run(
            &[
                "tower",
                "pubkey",
                "--db",
                &url,
                "--signing-key-file",
                &s(&k1)
            ],
            &[]
        )),
        pub1
    );
    let o = run(&["tower", "pubkey", "--db", &url], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("--signing-key-file"), "{}", err(&o));

    let token = |name: &str| {
        ok(&run(
            &[
                "tower", "token", "create", "--role", "approver", "--name", name, "--db", &url,
            ],
            &[],
        ))
    };
    let (bob, carol) = (token("bob"), token("carol"));
    let (tower, base) = serve(&url, &k1);
    let profile = data.join("pilot");
    let pilot = |key: &str, from: &str| {
        ok(&run(
            &[
                "pilot",
                "run",
                "--once",
                "--tower",
                from,
                "--profile",
                &s(&profile),
                "--public-key",
                key,
            ],
            &[],
        ));
        pilot_state(&profile)
    };
    assert_eq!(pilot(&pub1, &base).0, vec![pub1.clone()]);

    // bob proposes a successor whose seed stays in a file; the pilot pins it.
    let k2 = data.join("successor.key");
    let pub2 = ok(&run(&["tower", "key", "generate", "--out", &s(&k2)], &[]));
    let call = |args: &[&str], token: &str, base: &str| {
        run(
            args,
            &[("TESTPILOT_TOWER", base), ("TESTPILOT_TOKEN", token)],
        )
    };
    let proposed = ok(&call(
        &["tower", "key", "rotate", "--key-file", &s(&k2)],
        &bob,
        &base,
    ));
    assert!(
        proposed.contains(&format!("announces key {}", id(&pub2))),
        "{proposed}"
    );
    let (pins, log) = pilot(&pub1, &base);
    assert_eq!(pins, [pub1.clone(), pub2.clone()]);
    assert!(log.contains(&format!("pinned key {}", id(&pub2))), "{log}");

    // Completing takes a second person, and a tower that holds the successor's seed.
    let o = call(&["tower", "key", "complete"], &bob, &base);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("second person"), "{}", err(&o));
    let o = call(&["tower", "key", "complete"], &carol, &base);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("does not hold its seed"), "{}", err(&o));
    stop(tower);
    let both = format!(
        "{}{}",
        std::fs::read_to_string(&k1).unwrap(),
        std::fs::read_to_string(&k2).unwrap()
    );
    std::fs::write(&k1, both).unwrap();
    let (tower, base) = serve(&url, &k1);
    let done = ok(&call(&["tower", "key", "complete"], &carol, &base));
    assert!(
        done.contains(&format!("signed by key {}", id(&pub2))),
        "{done}"
    );
    let status = ok(&call(&["tower", "key", "status"], &carol, &base));
    assert!(
        status.starts_with(&format!("current  {}", id(&pub2))),
        "{status}"
    );

    // The pilot, started with the same flag as always, accepts the index signed by k2 alone.
    let (pins, log) = pilot(&pub1, &base);
    assert_eq!(pins, vec![pub2.clone()]);
    assert!(
        log.contains(&format!("key {} is no longer pinned", id(&pub1))),
        "{log}"
    );
    let floor: u64 = Journal::open(&profile, Default::default())
        .unwrap()
        .meta("last_serial")
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        floor >= 2,
        "the rotation's two steps grew the serial: {floor}"
    );

    // An index signed by a key nobody pinned is refused.
    // `seed` in the key file format.
    let signed = |serial: u64, seed: &str| {
        let p = IndexPayload {
            serial,
            generated_at: Timestamp(0),
            expires_at: Timestamp(4_102_444_800_000), // 2100
            flights: vec![],
            next_key: None,
        };
        let file = data.join(format!("index-{serial}.json"));
        let key = testpilot_tower::keys::parse_keys(seed).unwrap().remove(0);
        std::fs::write(&file, Envelope::sign(&p, &key).to_text()).unwrap();
        format!("file://{}", s(&file))
    };
    let (_, log) = pilot(&pub1, &signed(1_000, &"03".repeat(32)));
    assert!(log.contains("which is not pinned"), "{log}");

    // k2 leaks: a forged index with a huge serial is accepted, and then every real one is a
    // "rollback".
    pilot(
        &pub1,
        &signed(999_999, &std::fs::read_to_string(&k2).unwrap()),
    );
    // Recovery: rotate the tower away from k2 (bob proposes, carol completes; the tower
    // makes the new seed). The pilot refuses the real index as a rollback meanwhile.
    ok(&call(&["tower", "key", "rotate"], &bob, &base));
    let (_, log) = pilot(&pub1, &base);
    assert!(
        log.rsplit("accepted index serial 999999")
            .next()
            .unwrap()
            .contains("rollback"),
        "{log}"
    );
    ok(&call(&["tower", "key", "complete"], &carol, &base));
    // Then re-pin the pilot with the new key.
    let pub3 = ok(&run(
        &[
            "tower",
            "pubkey",
            "--db",
            &url,
            "--signing-key-file",
            &s(&k1),
        ],
        &[],
    ));
    assert_ne!(pub3, pub2);
    let (pins, log) = pilot(&pub3, &base);
    assert_eq!(pins, vec![pub3.clone()]);
    let after = log.rsplit("re-pinned").next().unwrap();
    assert!(after.contains("(serial 999999) is reset"), "{log}");
    assert!(after.contains("accepted index serial"), "{log}");
    // A profile others can reach is named on start, with the fix.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&profile).unwrap().permissions().mode() & 0o777,
            0o700
        );
        std::fs::set_permissions(&profile, std::fs::Permissions::from_mode(0o755)).unwrap();
        let o = run(
            &[
                "pilot",
                "run",
                "--once",
                "--tower",
                &base,
                "--profile",
                &s(&profile),
                "--public-key",
                &pub3,
            ],
            &[],
        );
        assert!(
            err(&o).contains(&format!("chmod 700 {}", s(&profile))),
            "{}",
            err(&o)
        );
    }
    stop(tower);
    let _ = std::fs::remove_dir_all(&data);
    db.cleanup().await;
}
