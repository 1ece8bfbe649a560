//! Every copilot example in `examples/copilot/` expands to a flight the real engine runs to
//! its end, in virtual time, with an in-memory journal and host: the surveys appear in the
//! message center, the arm's features are set, the recording runs for the study's duration
//! and streams to the tower, and, the surveys answered, the flight completes with
//! everything undone.

use crate::support::{FakeNet, T0};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use testpilot_flight::copilot::Copilot;
use testpilot_flight::{Clock, Timestamp};
use testpilot_pilot::engine::PilotConfig;
use testpilot_pilot::host::MemoryHost;
use testpilot_pilot::net::Response;
use testpilot_pilot::stream::upload_events;
use testpilot_pilot::TowerSource;
use testpilot_pilot::{Journal, ManualClock, Pilot};

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/copilot");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "at least two copilot examples");
    files
}

/// The example's study, and its expansion as the tower serves it (with a version).
fn load(path: &Path) -> (Copilot, Value) {
    let text = std::fs::read_to_string(path).unwrap();
    let study = Copilot::from_json(&serde_json::from_str(&text).unwrap())
        .unwrap_or_else(|d| panic!("{}: {d}", path.display()));
    let mut flight = study.expand().to_json();
    flight["version"] = json!(1);
    (study, flight)
}

/// A tower that accepts every batch of events (its answer says how many it took).
fn accepting_tower() -> Arc<FakeNet> {
    FakeNet::with(|r| {
        let n = serde_json::from_slice::<Value>(r.body.as_deref().unwrap_or(b"{}"))
            .ok()
            .and_then(|v| v["events"].as_array().map(Vec::len))
            .unwrap_or(0);
        Ok(Response {
            status: 200,
            body: json!({"accepted": n, "duplicates": 0})
                .to_string()
                .into_bytes(),
            ..Response::default()
        })
    })
}

fn pilot(personid: &str, clock: &ManualClock, net: Arc<FakeNet>) -> Pilot {
    let config = PilotConfig {
        profile: std::env::temp_dir(),
        person: Some(
            json!({"personid": personid, "os": "linux", "channel": "beta", "locale": "en-US", "appversion": "130.0"}),
        ),
    };
    Pilot::with_journal(
        Journal::in_memory(Default::default()).unwrap(),
        config,
        Box::new(MemoryHost::default()),
        net,
        Arc::new(clock.clone()),
    )
    .unwrap()
}

/// What one person's run showed.
struct Run {
    arm: String,
    status: String,
    /// Prompt titles in the order they appeared.
    prompts: Vec<String>,
    /// When the recording step was first reached.
    recording_started: Option<Timestamp>,
    ended: Timestamp,
    effects: Vec<(String, bool)>,
    timeline: String,
    /// Every event the tower received: (flight, arm, topic).
    streamed: Vec<(String, String, String)>,
    /// Events recorded while the recording ran.
    recorded: usize,
}

/// Runs the study for one person to its end as the agent would (ticks, then streams to the
/// tower): answers every prompt "ok" as it appears, records the watched topics every hour,
/// and moves virtual time on.
fn run(flight: &Value, watch: &[String], duration_ms: i64, personid: &str) -> Run {
    let clock = ManualClock::new(T0);
    let net = accepting_tower();
    let tower = TowerSource::parse("https://tower.test").unwrap();
    let mut p = pilot(personid, &clock, net.clone());
    let mut recorded = 0;
    let name = flight["studyname"].as_str().unwrap().to_string();
    p.apply_index(std::slice::from_ref(flight), 1).unwrap();
    let mut prompts = Vec::new();
    let mut recording_started = None;
    for _ in 0..2_000 {
        let wake = p.tick().unwrap();
        upload_events(&mut p, &tower).unwrap();
        let row = p
            .journal
            .flight(&name)
            .unwrap()
            .expect("the person is enrolled");
        if recording_started.is_none()
            && p.journal
                .effects(&name)
                .unwrap()
                .iter()
                .any(|e| matches!(e.kind.as_str(), "record" | "stream"))
        {
            recording_started = Some(clock.now());
        }
        if row.status != "running" && row.cleaned_up {
            let effects = p
                .journal
                .effects(&name)
                .unwrap()
                .into_iter()
                .map(|e| (e.kind, e.undone_at.is_some()))
                .collect();
            let timeline = p
                .journal
                .timeline(&name)
                .unwrap()
                .into_iter()
                .map(|t| t.what)
                .collect::<Vec<_>>()
                .join("\n");
            let mut streamed = Vec::new();
            for r in net.sent.lock().unwrap().iter() {
                assert_eq!(r.url, "https://tower.test/api/v1/events");
                let body: Value = serde_json::from_slice(r.body.as_deref().unwrap()).unwrap();
                for e in body["events"].as_array().unwrap() {
                    let text = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                    streamed.push((text("flight"), text("arm"), text("topic")));
                }
            }
            return Run {
                streamed,
                recorded,
                arm: row.arm.unwrap_or_default(),
                status: row.status,
                prompts,
                recording_started,
                ended: clock.now(),
                effects,
                timeline,
            };
        }
        let pending: Vec<_> = p
            .journal
            .open_prompts()
            .unwrap()
            .into_iter()
            .filter(|x| x.state == "pending")
            .collect();
        if !pending.is_empty() {
            for x in pending {
                assert_eq!(x.kind, "survey");
                assert!(x.url.as_deref().is_some_and(|u| u.starts_with("https://")));
                prompts.push(x.title.clone());
                p.journal.answer_prompt(x.id, "ok", clock.now()).unwrap();
            }
            continue;
        }
        // An hour of use: one event of each watched topic, then the next due moment.
        for t in watch {
            p.journal.record_event(t, None, None, clock.now()).unwrap();
        }
        if recording_started.is_some_and(|s| clock.now().0 < s.0 + duration_ms) {
            recorded += watch.len();
        }
        let next = Timestamp(clock.now().0 + 3_600_000);
        clock.set(match wake {
            Some(w) if w > clock.now() && w < next => w,
            _ => next,
        });
    }
    panic!("{name} did not end in 2,000 rounds");
}

#[test]
fn every_copilot_example_runs_to_completion_in_the_engine() {
    for path in examples() {
        let (study, flight) = load(&path);
        let mut arms_seen = std::collections::BTreeSet::new();
        for i in 0..40 {
            if arms_seen.len() == study.arms.len() {
                break;
            }
            let duration = study.duration.ms as i64;
            let r = run(&flight, &study.watch, duration, &format!("person-{i}"));
            let shown = path.display();
            assert_eq!(r.status, "completed", "{shown}:\n{}", r.timeline);
            let expected_prompts: Vec<String> = [&study.surveys.before, &study.surveys.after]
                .into_iter()
                .flatten()
                .map(|s| s.title.clone())
                .collect();
            assert_eq!(
                r.prompts, expected_prompts,
                "{shown}: the surveys, in order"
            );
            let started = r
                .recording_started
                .unwrap_or_else(|| panic!("{shown}: the plan never reached the recording"));
            assert!(
                r.ended.0 - started.0 >= study.duration.ms as i64,
                "{shown}: the recording lasted its whole duration"
            );
            let arm = study.arms.iter().find(|a| a.name == r.arm).unwrap();
            let features = r.effects.iter().filter(|(k, _)| k == "feature").count();
            assert_eq!(features, arm.features.len(), "{shown}: arm {}", r.arm);
            assert!(
                r.effects.iter().all(|(_, undone)| *undone),
                "{shown}: everything is undone when the study ends: {:?}",
                r.effects
            );
            // Every event recorded in the window reached the tower, once, under the
            // flight and the person's arm.
            assert_eq!(r.streamed.len(), r.recorded, "{shown}");
            assert!(r
                .streamed
                .iter()
                .all(|(f, a, _)| *f == study.studyname && *a == r.arm));
            arms_seen.insert(r.arm);
        }
        assert_eq!(
            arms_seen.len(),
            study.arms.len(),
            "{}: every arm ran",
            path.display()
        );
    }
}

/// The pre-survey is the door: a person who says no is never changed nor recorded.
#[test]
fn saying_no_to_the_pre_survey_changes_and_records_nothing() {
    let path = examples()
        .into_iter()
        .find(|p| p.ends_with("search-bar-2027.json"))
        .unwrap();
    let (_, flight) = load(&path);
    let clock = ManualClock::new(T0);
    let mut p = pilot("person-no", &clock, accepting_tower());
    p.apply_index(std::slice::from_ref(&flight), 1).unwrap();
    p.tick().unwrap();
    let prompt = p
        .journal
        .open_prompts()
        .unwrap()
        .pop()
        .expect("the pre-survey");
    assert_eq!(prompt.title, "Before we start");
    p.journal
        .answer_prompt(prompt.id, "no", clock.now())
        .unwrap();
    p.tick().unwrap();
    let row = p.journal.flight("search-bar-2027").unwrap().unwrap();
    assert_eq!(row.status, "declined");
    assert!(
        p.journal.effects("search-bar-2027").unwrap().is_empty(),
        "no feature set, no recording"
    );
}
