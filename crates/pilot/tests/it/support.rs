//! The test rig: a profile in a temp dir, virtual time, a scripted network, packages made on
//! the spot, and a driver that runs flights to their end the way a person would.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use testpilot_flight::{Clock, Timestamp};
use testpilot_pilot::engine::PilotConfig;
use testpilot_pilot::net::{Net, Request, Response};
use testpilot_pilot::{Error, Faults, ManualClock, Pilot, ReferenceHost};

pub const T0: Timestamp = Timestamp(1_780_000_000_000);

type Answer = Box<dyn Fn(&Request) -> Result<Response, Error> + Send + Sync>;

/// A network that answers from a script and remembers every request.
pub struct FakeNet {
    pub sent: Mutex<Vec<Request>>,
    answer: Mutex<Answer>,
}

impl FakeNet {
    pub fn ok() -> Arc<FakeNet> {
        FakeNet::with(|_| {
            Ok(Response {
                status: 200,
                ..Response::default()
            })
        })
    }
    pub fn with(
        f: impl Fn(&Request) -> Result<Response, Error> + Send + Sync + 'static,
    ) -> Arc<FakeNet> {
        Arc::new(FakeNet {
            sent: Mutex::new(Vec::new()),
            answer: Mutex::new(Box::new(f)),
        })
    }
    pub fn set(&self, f: impl Fn(&Request) -> Result<Response, Error> + Send + Sync + 'static) {
        *self.answer.lock().unwrap() = Box::new(f);
    }
    pub fn urls(&self) -> Vec<String> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .map(|r| format!("{} {}", r.method, r.url))
            .collect()
    }
}

impl Net for FakeNet {
    fn send(&self, req: &Request) -> Result<Response, Error> {
        self.sent.lock().unwrap().push(req.clone());
        (self.answer.lock().unwrap())(req)
    }
}

pub struct Rig {
    pub dir: tempfile::TempDir,
    pub profile: PathBuf,
    pub clock: ManualClock,
    pub net: Arc<FakeNet>,
}

impl Rig {
    pub fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let profile = dir.path().join("profile");
        std::fs::create_dir_all(&profile).unwrap();
        Rig {
            dir,
            profile,
            clock: ManualClock::new(T0),
            net: FakeNet::ok(),
        }
    }

    /// A pilot on the rig's profile, as after a (re)start.
    pub fn pilot(&self) -> Pilot {
        self.pilot_with(Faults::default()).unwrap()
    }

    pub fn pilot_with(&self, faults: Faults) -> Result<Pilot, Error> {
        let host = ReferenceHost::new(&self.profile, faults.clone());
        let person = json!({"personid": "person-1", "os": "linux", "channel": "release", "locale": "en-US", "appversion": "2.4.0"});
        let config = PilotConfig {
            profile: self.profile.clone(),
            person: Some(person),
        };
        Pilot::open(
            config,
            Box::new(host),
            self.net.clone(),
            Arc::new(self.clock.clone()),
            faults,
        )
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// A file in the rig's scratch space (outside the profile).
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The machine state a flight may touch: every file under the profile except the pilot's
    /// own (journal, lock, notifications), with its content.
    pub fn snapshot(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        walk(&self.profile, &self.profile, &mut out);
        out
    }

    /// An add-on installed before any flight, by someone else.
    pub fn preinstall(&self, id: &str, content: &str) {
        let d = self.profile.join("addons").join(id);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("main.js"), content).unwrap();
        let reg_path = self.profile.join("addon-host/registry.json");
        std::fs::create_dir_all(reg_path.parent().unwrap()).unwrap();
        let mut reg: serde_json::Map<String, Value> = std::fs::read_to_string(&reg_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        reg.insert(id.into(), json!({"owner": "the-person", "sha256": "00"}));
        std::fs::write(&reg_path, serde_json::to_string_pretty(&reg).unwrap()).unwrap();
    }

    pub fn set_features(&self, v: Value) {
        std::fs::write(
            self.profile.join("features.json"),
            serde_json::to_string_pretty(&v).unwrap(),
        )
        .unwrap();
    }

    pub fn features(&self) -> Value {
        std::fs::read_to_string(self.profile.join("features.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(json!({}))
    }

    pub fn notifications(&self) -> Vec<Value> {
        std::fs::read_to_string(self.profile.join("notifications.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        if rel.starts_with("journal.sqlite") || rel == "agent.lock" || rel == "notifications.jsonl"
        {
            continue;
        }
        if p.is_dir() {
            out.insert(format!("{rel}/"), String::new());
            walk(root, &p, out);
        } else {
            out.insert(
                rel,
                std::fs::read_to_string(&p).unwrap_or_else(|_| "<binary>".into()),
            );
        }
    }
}

/// A flight with a default header.
pub fn flight(name: &str, plan: Value) -> Value {
    json!({"studyname": name, "author": "t@example.com", "description": "a test flight", "version": 1, "flightplan": plan})
}

/// Lowercase hex SHA-256.
pub fn sha256(path: &Path) -> String {
    testpilot_pilot::package::sha256_file(path).unwrap()
}

/// A zip package with the given files.
pub fn zip_package(path: &Path, files: &[(&str, &str)]) -> String {
    let f = std::fs::File::create(path).unwrap();
    let mut z = zip::ZipWriter::new(f);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, content) in files {
        z.start_file(*name, opts).unwrap();
        z.write_all(content.as_bytes()).unwrap();
    }
    z.finish().unwrap();
    sha256(path)
}

/// A zip package holding a symbolic link.
pub fn zip_with_symlink(path: &Path) -> String {
    let f = std::fs::File::create(path).unwrap();
    let mut z = zip::ZipWriter::new(f);
    let opts = zip::write::SimpleFileOptions::default();
    z.start_file("ok.txt", opts).unwrap();
    z.write_all(b"fine").unwrap();
    z.add_symlink("evil", "/etc/passwd", opts).unwrap();
    z.finish().unwrap();
    sha256(path)
}

/// A .tar.gz package; entries are `(name, content, kind)` with kind `f` (file) or `l`
/// (symlink to content). Names are written raw, so `../x` and `/abs` can be tested.
pub fn tar_package(path: &Path, entries: &[(&str, &str, char)]) -> String {
    let f = std::fs::File::create(path).unwrap();
    let gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
    let mut b = tar::Builder::new(gz);
    for (name, content, kind) in entries {
        let mut h = tar::Header::new_old();
        let bytes = name.as_bytes();
        h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        h.set_mode(0o644);
        match kind {
            'l' => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_link_name(content).unwrap();
                h.set_size(0);
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
            _ => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(content.len() as u64);
                h.set_cksum();
                b.append(&h, content.as_bytes()).unwrap();
            }
        }
    }
    b.into_inner().unwrap().finish().unwrap();
    sha256(path)
}

/// How the driver answers prompts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Say {
    Ok,
    No,
    Ignore,
}

/// Runs flights until none is running or nothing more can happen: answers open prompts,
/// records events for `observe` steps (`topics`), and moves virtual time to the next due
/// moment. Stops early on an error (an injected crash) and returns it. It plays a tower that
/// keeps its index fresh: the index's expiry is not a moment it waits for.
pub fn drive(rig: &Rig, pilot: &mut Pilot, say: Say, topics: &[&str]) -> Result<(), Error> {
    for _ in 0..500 {
        let expiry = pilot.index_expires_at()?;
        let wake = pilot.tick()?.filter(|w| Some(*w) != expiry);
        let open = pilot
            .journal
            .flights()?
            .iter()
            .any(|f| f.status == "running" || (f.started_at.is_some() && !f.cleaned_up));
        if !open {
            return Ok(());
        }
        let prompts = pilot.journal.open_prompts()?;
        let waiting: Vec<_> = prompts.iter().filter(|p| p.state == "pending").collect();
        if say != Say::Ignore && !waiting.is_empty() {
            for p in waiting {
                pilot.journal.answer_prompt(
                    p.id,
                    if say == Say::Ok { "ok" } else { "no" },
                    rig.now(),
                )?;
            }
            continue;
        }
        match wake {
            Some(t) if t > rig.now() => rig.clock.set(t),
            Some(_) => {}
            None => {
                if topics.is_empty() {
                    return Ok(());
                }
                for t in topics {
                    pilot.journal.record_event(t, None, None, rig.now())?;
                }
                rig.clock.advance(1_000);
            }
        }
    }
    panic!("the flights did not settle in 500 rounds");
}

/// The one flight's log entry.
pub fn log_of(pilot: &Pilot, name: &str) -> Value {
    testpilot_pilot::flightlog::flights(&pilot.journal, Some(name))
        .unwrap()
        .pop()
        .unwrap_or(Value::Null)
}

pub fn status(pilot: &Pilot, name: &str) -> String {
    pilot
        .journal
        .flight(name)
        .unwrap()
        .map(|f| f.status)
        .unwrap_or_default()
}

pub fn timeline_text(pilot: &Pilot, name: &str) -> String {
    pilot
        .journal
        .timeline(name)
        .unwrap()
        .into_iter()
        .map(|t| t.what)
        .collect::<Vec<_>>()
        .join("\n")
}
