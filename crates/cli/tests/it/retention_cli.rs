//! `--retention` of `pilot run` and `tower serve`: a value that is not a duration of at least a
//! day is refused at start, naming the flag, before anything is opened.

use crate::support::{scratch, stderr, tp};

#[test]
fn a_bad_retention_is_refused_at_start() {
    let dir = scratch("retention");
    let profile = dir.join("profile");
    let data = dir.join("data");
    for value in ["0", "12h", "forever", "90"] {
        let pilot = tp(&[
            "pilot",
            "run",
            "--insecure-unsigned",
            "--once",
            "--tower",
            "file:///nowhere",
            "--profile",
            profile.to_str().unwrap(),
            "--retention",
            value,
        ]);
        assert_eq!(pilot.status.code(), Some(2), "pilot --retention {value}");
        assert!(stderr(&pilot).contains("--retention"), "{}", stderr(&pilot));
        let tower = tp(&[
            "tower",
            "serve",
            "--data",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--retention",
            value,
        ]);
        assert_eq!(tower.status.code(), Some(2), "tower --retention {value}");
        assert!(stderr(&tower).contains("--retention"), "{}", stderr(&tower));
    }
    // Nothing was started: no journal, no database.
    assert!(!profile.join("journal.sqlite").exists());
    assert!(!data.exists() || std::fs::read_dir(&data).unwrap().next().is_none());
}
