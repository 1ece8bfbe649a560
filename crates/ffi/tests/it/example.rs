//! examples/c/feature.c, compiled with the system's C compiler against libtestpilot and run:
//! a flight turns a feature on, the program observes the event the flight waits for, and the
//! flight completes with its feature undone.

use crate::support::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The folder with the libtestpilot this test run built: `target/<profile>/deps`, next to the
/// test executable (what `cargo test` builds lands there; `target/<profile>` has it only after
/// a `cargo build`, and may hold an older one).
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap().to_path_buf();
    let found = [deps.clone(), deps.parent().unwrap().to_path_buf()]
        .into_iter()
        .find(|d| d.join("libtestpilot.so").exists());
    found.unwrap_or_else(|| panic!("no libtestpilot.so next to {}", exe.display()))
}

/// Compiles examples/c/feature.c into `out`, linked to the shared library (with an rpath).
pub fn compile_example(out: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let lib = lib_dir();
    let exe = out.join("feature");
    let st = Command::new("cc")
        .arg(root.join("examples/c/feature.c"))
        .arg("-std=c99")
        .args(["-Wall", "-Wextra", "-Werror", "-D_POSIX_C_SOURCE=200809L"])
        .arg("-I")
        .arg(root.join("crates/ffi/include"))
        .arg("-L")
        .arg(&lib)
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-ltestpilot")
        .arg("-o")
        .arg(&exe)
        .status()
        .expect("cc runs");
    assert!(st.success(), "compiling examples/c/feature.c failed");
    exe
}

#[test]
fn the_c_example_sees_a_feature_come_and_go() {
    let plan = json!([
        {"action": "feature", "id": "search.bar", "value": {"on": true}},
        {"action": "observe", "topic": "search.used"},
    ]);
    let s = Setup::new(vec![flight("search-bar", plan)]);
    let exe = compile_example(s.dir.path());
    // cargo's LD_LIBRARY_PATH names target/debug first, which may hold an older library than
    // the one linked (its rpath): without it, the rpath decides.
    let mut child = Command::new(&exe)
        .env_remove("LD_LIBRARY_PATH")
        .arg(s.profile("p"))
        .arg(&s.index)
        .arg(&s.key)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the example failed ({:?}):\n{stdout}\n{stderr}",
        out.status
    );
    for line in [
        "started the agent",
        r#"feature search.bar is {"arm":null,"studyname":"search-bar","value":{"on":true},"version":1}"#,
        "observed search.used",
        "feature search.bar is null",
        "stopped",
        "ok",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "no line {line:?} in:\n{stdout}"
        );
    }
    // The profile says the same to the next opener.
    let (rc, p) = open(&s.config("p"));
    assert_eq!(rc, 0, "{}", last_error());
    let f = flight_log(p, "search-bar");
    assert_eq!(f["status"], "completed", "{f:#}");
    assert_eq!(f["cleanedUp"], true, "{f:#}");
    testpilot::c::tp_pilot_close(p);
}
