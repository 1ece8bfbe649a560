//! `--populations DIR` of `tower serve` and `up`: the population files the review page
//! offers for simulating a revision (docs/cli.md, "Running a tower"). A file that is not a
//! valid population stops the start, naming the file and every problem's field, before
//! anything is opened; valid ones let the tower start.

use crate::support::{scratch, stderr, tp, Tower};

#[test]
fn a_bad_population_file_stops_the_start_naming_the_file_and_the_field() {
    let dir = scratch("populations");
    let pops = dir.join("populations");
    let data = dir.join("data");
    std::fs::create_dir_all(&pops).unwrap();
    std::fs::write(pops.join("beta-heavy.json"), r#"{"channel": {"beta": 1}}"#).unwrap();
    std::fs::write(
        pops.join("typo.json"),
        r#"{"os": {"linux": 0.5, "windows": 0.4}, "chanel": {"beta": 1}}"#,
    )
    .unwrap();
    for cmd in [&["tower", "serve"][..], &["up"][..]] {
        let mut args = cmd.to_vec();
        args.extend([
            "--data",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--populations",
            pops.to_str().unwrap(),
        ]);
        let o = tp(&args);
        let said = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{cmd:?}: {said}");
        assert!(
            said.contains("typo.json: os: the shares add up to"),
            "{said}"
        );
        assert!(said.contains("typo.json: chanel: unknown field"), "{said}");
        // Nothing was started: no database.
        assert!(!data.join("tower.db").exists(), "{cmd:?}");
    }
    std::fs::remove_file(pops.join("typo.json")).unwrap();
    let db = format!("sqlite://{}", data.join("tower.db").display());
    let tower = Tower::serve(&db, &data, &["--populations", pops.to_str().unwrap()]);
    tower.kill();
    let missing = tp(&[
        "tower",
        "serve",
        "--data",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--populations",
        dir.join("nowhere").to_str().unwrap(),
    ]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("--populations"),
        "{}",
        stderr(&missing)
    );
}
