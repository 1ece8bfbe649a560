//! What the CLI tests share: the binary, scratch folders, running a command with a timeout,
//! starting a tower (SQLite or PostgreSQL) and waiting for things. One place, so that every
//! test runs the binary the same way: with no `TESTPILOT_*` settings leaking in from the
//! environment, never hanging the suite, and never blocking on a full pipe.

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use testpilot_tower::store::Engine;
pub use testpilot_tower::testing::TestDb;

/// The `testpilot` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_testpilot");

/// How long one command may take before the test fails (a hung command must not hang the
/// suite).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// The repository's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The example flights.
pub fn examples() -> PathBuf {
    root().join("examples")
}

/// A fresh, empty folder for one test (unique per process and name).
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tp-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `testpilot` with no tower, token or database from the environment.
pub fn command() -> Command {
    let mut c = Command::new(BIN);
    for k in ["TESTPILOT_TOWER", "TESTPILOT_TOKEN", "TESTPILOT_DB"] {
        c.env_remove(k);
    }
    c
}

/// Runs `cmd` to the end and returns what it printed; fails the test after
/// [`COMMAND_TIMEOUT`], killing it.
pub fn run(cmd: &mut Command) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|s| Box::new(s) as _));
    let err = drain(child.stderr.take().map(|s| Box::new(s) as _));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > COMMAND_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// `testpilot ARGS`, run in the repository's root.
pub fn tp(args: &[&str]) -> Output {
    tp_env(args, &[])
}

/// `testpilot ARGS` with extra environment variables, run in the repository's root.
pub fn tp_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = command();
    c.current_dir(root()).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    run(&mut c)
}

/// `testpilot ARGS`, which must succeed and print JSON.
pub fn tp_json(args: &[&str]) -> Value {
    let out = tp(args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {}", stdout(&out)))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Polls until `f` returns something, for at most two minutes (a slow machine only waits
/// longer).
pub fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(x) = f() {
            return x;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "gave up waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Every file and folder of a profile with its content, except the journal, the lock and
/// the notification log (which only grow), to check that a profile is left as it was.
pub fn snapshot(profile: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if rel.starts_with("journal.sqlite")
                || rel == "agent.lock"
                || rel == "notifications.jsonl"
            {
                continue;
            }
            if p.is_dir() {
                out.insert(format!("{rel}/"), String::new());
                walk(root, &p, out);
            } else {
                out.insert(rel, std::fs::read_to_string(&p).unwrap_or_default());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(profile, profile, &mut out);
    out
}

/// A running `testpilot tower serve`, killed when dropped.
pub struct Tower {
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// What it has written to its standard error, printed if the test fails.
    said: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Tower {
    /// Starts `testpilot tower serve --db DB --data DATA --listen 127.0.0.1:0 EXTRA...` and
    /// waits until it listens.
    pub fn serve(db: &str, data: &Path, extra: &[&str]) -> Tower {
        let mut child = command()
            .args(["tower", "serve", "--db", db, "--listen", "127.0.0.1:0"])
            .arg("--data")
            .arg(data)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run testpilot tower serve");
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let said = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = said.clone();
        // Reads its standard error for the address, then keeps draining it (the last lines
        // kept for a failing test) so that the tower never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut lines = BufReader::new(stderr).lines();
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("tower listening on ") {
                    let url = rest.split_whitespace().next().unwrap_or("").to_string();
                    let _ = tx.send(Ok(url));
                    for line in lines.map_while(|l| l.ok()) {
                        let mut kept = keep.lock().unwrap_or_else(|e| e.into_inner());
                        if kept.len() == 200 {
                            kept.remove(0);
                        }
                        kept.push(line);
                    }
                    return;
                }
                seen.push(line);
            }
            let _ = tx.send(Err(seen.join("\n")));
        });
        match rx.recv_timeout(COMMAND_TIMEOUT) {
            Ok(Ok(url)) => Tower { child, url, said },
            Ok(Err(said)) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the tower exited before listening:\n{said}");
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the tower did not listen within {COMMAND_TIMEOUT:?}");
            }
        }
    }

    /// SIGKILL, and wait for it to be gone.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL the tower");
        self.child.wait().unwrap();
    }
}

impl Drop for Tower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let said = self.said.lock().unwrap_or_else(|e| e.into_inner());
            if !said.is_empty() {
                eprintln!("the tower at {} said:\n{}", self.url, said.join("\n"));
            }
        }
    }
}

/// `testpilot tower token create --role ROLE --name NAME --db DB`: the token it prints alone
/// on standard output.
pub fn make_token(db: &str, role: &str, name: &str) -> String {
    let o = tp(&[
        "tower", "token", "create", "--role", role, "--name", name, "--db", db,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(
        out.lines().count(),
        1,
        "the token alone on standard output: {out:?}"
    );
    out.trim().to_string()
}

/// The environment that points the CLI at `tower` as the holder of `token`.
pub fn as_holder<'a>(tower: &'a Tower, token: &'a str) -> [(&'static str, &'a str); 2] {
    [
        ("TESTPILOT_TOWER", tower.url.as_str()),
        ("TESTPILOT_TOKEN", token),
    ]
}

/// Wall-clock ms, for checking expiry of what a real tower signed.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Warnings and errors logged in this test process (by the tower's store a test opens, or
/// by sqlx beneath it, e.g. a connection's set-up failing before a pool gives up) go to the
/// test's captured output, shown if it fails.
pub fn log_warnings() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_ansi(false)
        .with_test_writer()
        .try_init();
}
