//! The repository's own documentation stands alone (issue 8, "Reshape"): a clone has every
//! contract it cites, every link in the docs resolves, and the README's test command is the
//! one CI runs.

use crate::support::root;
use std::path::{Path, PathBuf};

/// Every file git would ship that people read or that cites docs: sources, tests, scripts,
/// Markdown. Build output and dependencies are left out.
fn readable_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() {
                if !matches!(name.as_str(), "target" | ".git" | "node_modules") {
                    walk(&p, out);
                }
            } else if [
                ".rs", ".md", ".toml", ".sh", ".py", ".sql", ".json", ".html", ".css", ".js",
            ]
            .iter()
            .any(|x| name.ends_with(x))
                || p.parent()
                    .and_then(Path::file_name)
                    .is_some_and(|d| d == "scripts" || d == ".ci")
            {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root(), &mut out);
    out
}

/// Code comments and docs cited a design file outside the repository, which a user's clone
/// does not have; they cite `docs/` now.
#[test]
fn nothing_cites_a_design_file_outside_the_repository() {
    // Spelled in pieces, so that this file does not find itself.
    let banned = [
        ["..", "/shared"].concat(),
        ["DESIGN", " §"].concat(),
        ["DESIGN", ".md"].concat(),
    ];
    let mut found = Vec::new();
    for f in readable_files() {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            if banned.iter().any(|b| line.contains(b.as_str())) {
                found.push(format!("{}:{}: {line}", f.display(), n + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "cite docs/… instead:\n{}",
        found.join("\n")
    );
}

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
