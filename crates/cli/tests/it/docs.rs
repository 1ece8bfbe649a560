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

/// GitHub's anchor for a heading: lower case, spaces to `-`, punctuation dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// Every relative link in the README, ARCHITECTURE.md and docs/ names a file that exists,
/// and its `#anchor`, if any, a heading in it.
#[test]
fn every_link_in_the_docs_resolves() {
    let mut pages = vec![root().join("README.md"), root().join("ARCHITECTURE.md")];
    pages.extend(
        std::fs::read_dir(root().join("docs"))
            .expect("a docs/ folder")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "md")),
    );
    for want in [
        "flight-spec.md",
        "index.md",
        "api.md",
        "reports.md",
        "cli.md",
    ] {
        assert!(
            root().join("docs").join(want).is_file(),
            "docs/{want} is missing"
        );
    }
    let mut broken = Vec::new();
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        for (i, _) in text.match_indices("](") {
            let rest = &text[i + 2..];
            let Some(end) = rest.find(')') else { continue };
            let target = &rest[..end];
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
            let path = if file.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap().join(file)
            };
            if !path.is_file() {
                broken.push(format!("{}: {target}: no such file", page.display()));
                continue;
            }
            if !anchor.is_empty() {
                let found = std::fs::read_to_string(&path)
                    .unwrap()
                    .lines()
                    .filter(|l| l.starts_with('#'))
                    .any(|l| slug(l.trim_start_matches('#')) == anchor);
                if !found {
                    broken.push(format!("{}: {target}: no such heading", page.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
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
            "cargo clippy -p testpilot-ffi --features python --all-targets -- -D warnings",
            test_command,
        ],
        ".ci/run is fmt, clippy (also of the Python binding) and exactly the README's test command"
    );
    let script = std::fs::read_to_string(root().join("scripts/test")).unwrap();
    assert!(
        script.lines().any(|l| l == "cargo test --workspace \"$@\""),
        "scripts/test runs every Rust test"
    );
    assert!(
        script
            .lines()
            .last()
            .is_some_and(|l| l.contains("-m pytest")),
        "scripts/test ends with the Python package's tests"
    );
    for needed in ["pg_isready", "chromium-driver"] {
        assert!(script.contains(needed), "scripts/test sets up {needed}");
    }
}
