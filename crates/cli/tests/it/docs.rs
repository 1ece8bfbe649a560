//! The repository's own documentation stands alone (issue 8, "Reshape"): a clone has every
//! contract it cites, every link in the docs resolves, and the README's test command is the
//! one CI runs.

use crate::support::root;

/// The README's second command runs every test on a fresh machine, and CI runs exactly it
/// (after fmt and clippy). It was `cargo test --workspace`, which fails where Chromium is
/// not installed.
#[test]
fn the_readme_test_command_is_what_ci_runs() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let block: Vec<&str> = readme
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap()
        .lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .collect();
    assert_eq!(block[0], "cargo run --release -- up");
    let test_command = block[1];
    assert_eq!(test_command, "bash scripts/test");

    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    let steps: Vec<&str> = ci
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(|l| !l.starts_with("set ") && !l.starts_with("cd "))
        .collect();
    assert_eq!(
        steps,
        [
            "cargo fmt --all -- --check",
            "cargo clippy --workspace --all-targets -- -D warnings",
            test_command,
        ],
        ".ci/run is fmt, clippy and exactly the README's test command"
    );
    let script = std::fs::read_to_string(root().join("scripts/test")).unwrap();
    assert_eq!(
        script.lines().last(),
        Some("exec cargo test --workspace \"$@\""),
        "scripts/test ends by running every test"
    );
    for needed in ["pg_isready", "chromium-driver"] {
        assert!(script.contains(needed), "scripts/test sets up {needed}");
    }
}
