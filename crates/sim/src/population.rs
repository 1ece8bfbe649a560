//! The population file (docs/simulate.md): shares of each person key and a behaviour model.
//! Read from untrusted JSON with every problem reported at its path; persons are then drawn
//! from it one at a time, from the seed and the client's number, never stored.

use crate::rng::{person_id, Rng, Stream};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use testpilot_flight::diagnostic::did_you_mean;
use testpilot_flight::{parse_duration, Diagnostics, JsonPath, Person};

/// The largest population file read (it is a handful of shares).
pub const MAX_POPULATION_BYTES: usize = 1 << 20;

const DAY_MS: f64 = 86_400_000.0;

/// One person key and the shares of its values.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyShares {
    pub key: String,
    pub values: Vec<Value>,
    pub shares: Vec<f64>,
    cumulative: Vec<f64>,
}

impl KeyShares {
    fn draw(&self, u: f64) -> &Value {
        let i = self
            .cumulative
            .iter()
            .position(|c| u < *c)
            .unwrap_or(self.values.len() - 1);
        &self.values[i]
    }
}

/// How often a topic is observed: events a day, for everyone or by arm.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRate {
    pub per_day: f64,
    pub by_arm: BTreeMap<String, f64>,
}

impl EventRate {
    pub fn for_arm(&self, arm: Option<&str>) -> f64 {
        arm.and_then(|a| self.by_arm.get(a))
            .copied()
            .unwrap_or(self.per_day)
    }
}

/// What people do: answer prompts, produce events, go offline, crash.
#[derive(Debug, Clone, PartialEq)]
pub struct Behaviour {
    /// Shares of answers to a prompt that waits for one: ok, no, later.
    pub answers: [f64; 3],
    /// The mean time before a person answers a prompt (exponential).
    pub answer_after_ms: f64,
    /// How long a prompt put off with "later" stays put off before the person looks again.
    pub later_after_ms: f64,
    pub events: BTreeMap<String, EventRate>,
    pub offline_per_day: f64,
    /// The mean length of an offline period (exponential).
    pub offline_for_ms: f64,
    pub crash_per_day: f64,
    /// The mean time from launch to a client's first poll (exponential): not every machine
    /// is on when a flight goes live.
    pub arrival_ms: f64,
}

/// A population: who the clients are and how they behave.
#[derive(Debug, Clone, PartialEq)]
pub struct Population {
    pub keys: Vec<KeyShares>,
    pub behaviour: Behaviour,
}

/// The built-in population, shaped like a desktop browser's installed base (docs/simulate.md
/// gives its numbers and where they come from).
pub const DEFAULT_POPULATION: &str = include_str!("default-population.json");

const WELL_KNOWN: [&str; 4] = ["os", "channel", "locale", "appversion"];
const TOP: [&str; 6] = [
    "os",
    "channel",
    "locale",
    "appversion",
    "extra",
    "behaviour",
];
const BEHAVIOUR: [&str; 9] = [
    "answers",
    "answerAfter",
    "laterAfter",
    "events",
    "offlinePerDay",
    "offlineFor",
    "crashPerDay",
    "arrival",
    "comment",
];

impl Population {
    /// The built-in default population.
    pub fn builtin() -> Population {
        let v: Value = serde_json::from_str(DEFAULT_POPULATION).unwrap_or(Value::Null);
        Population::from_json(&v).unwrap_or_else(|_| Population {
            keys: Vec::new(),
            behaviour: Behaviour::default(),
        })
    }

    /// Reads a population file's text, bounded in size before parsing.
    pub fn from_text(text: &str) -> Result<Population, Diagnostics> {
        let mut d = Diagnostics::default();
        if text.len() > MAX_POPULATION_BYTES {
            d.push(
                &JsonPath::root(),
                format!(
                    "the population file is {} bytes; the limit is {MAX_POPULATION_BYTES}",
                    text.len()
                ),
            );
            return Err(d);
        }
        match testpilot_flight::json::from_str(text) {
            Ok(v) => Population::from_json(&v),
            Err(e) => {
                d.push(&JsonPath::root(), format!("not JSON: {e}"));
                Err(d)
            }
        }
    }

    /// Reads a population, reporting every problem with its JSON path.
    pub fn from_json(v: &Value) -> Result<Population, Diagnostics> {
        let mut d = Diagnostics::default();
        let root = JsonPath::root();
        let Some(map) = v.as_object() else {
            d.push(&root, format!("expected an object with shares per person key (`os`, `channel`, `locale`, `appversion`, `extra`) and `behaviour`, found {}", kind(v)));
            return Err(d);
        };
        unknown_keys(map, &root, &TOP, &mut d);
        let mut keys = Vec::new();
        for key in WELL_KNOWN {
            if let Some(x) = map.get(key) {
                if let Some(k) = shares(key, x, &root.key(key), false, &mut d) {
                    keys.push(k);
                }
            }
        }
        if let Some(extra) = map.get("extra") {
            let path = root.key("extra");
            match extra.as_object() {
                None => d.push(
                    &path,
                    format!(
                        "expected an object of person keys to shares, found {}",
                        kind(extra)
                    ),
                ),
                Some(m) => {
                    for (key, x) in m {
                        if key == "personid" || WELL_KNOWN.contains(&key.as_str()) {
                            d.push(
                                &path.key(key),
                                format!("`{key}` is not an extra key: give it at the top level"),
                            );
                        } else if let Some(k) = shares(key, x, &path.key(key), true, &mut d) {
                            keys.push(k);
                        }
                    }
                }
            }
        }
        let behaviour = match map.get("behaviour") {
            None => Behaviour::default(),
            Some(b) => behaviour(b, &root.key("behaviour"), &mut d),
        };
        if d.is_empty() {
            Ok(Population { keys, behaviour })
        } else {
            Err(d)
        }
    }

    /// The person of client `client`: its id and keys, drawn from the seed.
    pub fn person(&self, seed: u64, client: u64) -> Person {
        let mut r = Rng::new(seed, client, Stream::Person);
        // The id's own draws come first in this stream; skip them so keys do not echo it.
        r.next_u64();
        r.next_u64();
        let mut p = Person::new(&person_id(seed, client));
        for k in &self.keys {
            p = p.with(&k.key, k.draw(r.unit()).clone());
        }
        p
    }

    /// The person's keys as a JSON object (for the pilot's person context).
    pub fn person_json(&self, seed: u64, client: u64) -> Value {
        Value::Object(self.person(seed, client).as_map().clone())
    }
}

impl Default for Behaviour {
    fn default() -> Behaviour {
        Behaviour {
            answers: [0.5, 0.2, 0.3],
            answer_after_ms: 4.0 * 3_600_000.0,
            later_after_ms: DAY_MS,
            events: BTreeMap::new(),
            offline_per_day: 0.0,
            offline_for_ms: 12.0 * 3_600_000.0,
            crash_per_day: 0.0,
            arrival_ms: DAY_MS,
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn unknown_keys(map: &Map<String, Value>, path: &JsonPath, known: &[&str], d: &mut Diagnostics) {
    for k in map.keys() {
        if !known.contains(&k.as_str()) {
            let hint = did_you_mean(k, known)
                .map(|m| format!(" (did you mean `{m}`?)"))
                .unwrap_or_default();
            d.push(
                &path.key(k),
                format!(
                    "unknown field `{k}`{hint}; expected one of {}",
                    known.join(", ")
                ),
            );
        }
    }
}

/// A share or rate: a finite number, at least 0 (and at most `max`).
fn number(v: &Value, path: &JsonPath, max: Option<f64>, d: &mut Diagnostics) -> Option<f64> {
    match v.as_f64() {
        Some(x) if x.is_finite() && x >= 0.0 && max.is_none_or(|m| x <= m) => Some(x),
        Some(x) => {
            let range = max.map_or("at least 0".to_string(), |m| format!("between 0 and {m}"));
            d.push(
                path,
                format!("{x} is out of range: expected a number {range}"),
            );
            None
        }
        None => {
            d.push(path, format!("expected a number, found {}", kind(v)));
            None
        }
    }
}

fn shares_sum(sum: f64, path: &JsonPath, d: &mut Diagnostics) {
    if (sum - 1.0).abs() > 1e-6 {
        d.push(path, format!("the shares add up to {sum:.6}, not 1"));
    }
}

/// `{"value": share, ...}`: shares of a key's values, adding up to 1. Extra keys' values
/// that read as JSON scalars (`true`, `3`) become those; the well-known keys stay text.
fn shares(
    key: &str,
    v: &Value,
    path: &JsonPath,
    extra: bool,
    d: &mut Diagnostics,
) -> Option<KeyShares> {
    let Some(m) = v.as_object() else {
        d.push(
            path,
            format!(
                "expected an object of values to shares, like {{\"a\": 0.7, \"b\": 0.3}}, found {}",
                kind(v)
            ),
        );
        return None;
    };
    if m.is_empty() {
        d.push(path, "no values: give at least one value with its share");
        return None;
    }
    let before = d.len();
    let (mut values, mut list) = (Vec::new(), Vec::new());
    for (name, share) in m {
        if let Some(s) = number(share, &path.key(name), Some(1.0), d) {
            let value = match serde_json::from_str::<Value>(name) {
                Ok(x @ (Value::Bool(_) | Value::Number(_) | Value::Null)) if extra => x,
                _ => Value::String(name.clone()),
            };
            values.push(value);
            list.push(s);
        }
    }
    if d.len() > before {
        return None;
    }
    let sum: f64 = list.iter().sum();
    shares_sum(sum, path, d);
    if d.len() > before {
        return None;
    }
    let mut acc = 0.0;
    let cumulative = list
        .iter()
        .map(|s| {
            acc += s / sum;
            acc
        })
        .collect();
    Some(KeyShares {
        key: key.to_string(),
        values,
        shares: list,
        cumulative,
    })
}

fn duration_ms(v: &Value, path: &JsonPath, d: &mut Diagnostics) -> Option<f64> {
    match parse_duration(v) {
        Ok(x) => Some(x.ms as f64),
        Err(e) => {
            d.push(path, e);
            None
        }
    }
}

fn behaviour(v: &Value, path: &JsonPath, d: &mut Diagnostics) -> Behaviour {
    let mut b = Behaviour::default();
    let Some(m) = v.as_object() else {
        d.push(path, format!("expected an object (answers, laterAfter, events, offlinePerDay, crashPerDay, ...), found {}", kind(v)));
        return b;
    };
    unknown_keys(m, path, &BEHAVIOUR, d);
    if let Some(a) = m.get("answers") {
        let p = path.key("answers");
        match a.as_object() {
            None => d.push(
                &p,
                format!(
                    "expected {{\"ok\": share, \"no\": share, \"later\": share}}, found {}",
                    kind(a)
                ),
            ),
            Some(am) => {
                unknown_keys(am, &p, &["ok", "no", "later"], d);
                let mut got = [0.0; 3];
                for (i, k) in ["ok", "no", "later"].iter().enumerate() {
                    if let Some(x) = am.get(*k) {
                        got[i] = number(x, &p.key(k), Some(1.0), d).unwrap_or(0.0);
                    }
                }
                shares_sum(got.iter().sum(), &p, d);
                b.answers = got;
            }
        }
    }
    for (key, slot) in [
        ("answerAfter", &mut b.answer_after_ms),
        ("laterAfter", &mut b.later_after_ms),
        ("offlineFor", &mut b.offline_for_ms),
        ("arrival", &mut b.arrival_ms),
    ] {
        if let Some(x) = m.get(key) {
            if let Some(ms) = duration_ms(x, &path.key(key), d) {
                *slot = ms;
            }
        }
    }
    for (key, slot) in [
        ("offlinePerDay", &mut b.offline_per_day),
        ("crashPerDay", &mut b.crash_per_day),
    ] {
        if let Some(x) = m.get(key) {
            if let Some(r) = number(x, &path.key(key), Some(1000.0), d) {
                *slot = r;
            }
        }
    }
    if let Some(e) = m.get("events") {
        let p = path.key("events");
        match e.as_object() {
            None => d.push(&p, format!("expected an object of topics, like {{\"page-opened\": {{\"perDay\": 5}}}}, found {}", kind(e))),
            Some(em) => {
                for (topic, rate) in em {
                    if let Some(r) = event_rate(rate, &p.key(topic), d) {
                        b.events.insert(topic.clone(), r);
                    }
                }
            }
        }
    }
    b
}

fn event_rate(v: &Value, path: &JsonPath, d: &mut Diagnostics) -> Option<EventRate> {
    let Some(m) = v.as_object() else {
        d.push(
            path,
            format!(
                "expected {{\"perDay\": rate, \"byArm\": {{arm: rate}}}}, found {}",
                kind(v)
            ),
        );
        return None;
    };
    unknown_keys(m, path, &["perDay", "byArm"], d);
    let per_day = match m.get("perDay") {
        None => {
            d.push(
                path,
                "missing field `perDay`: how many of these events a person has a day",
            );
            return None;
        }
        Some(x) => number(x, &path.key("perDay"), Some(100_000.0), d)?,
    };
    let mut by_arm = BTreeMap::new();
    if let Some(a) = m.get("byArm") {
        let p = path.key("byArm");
        match a.as_object() {
            None => d.push(
                &p,
                format!(
                    "expected an object of arm names to rates, found {}",
                    kind(a)
                ),
            ),
            Some(am) => {
                for (arm, x) in am {
                    if let Some(r) = number(x, &p.key(arm), Some(100_000.0), d) {
                        by_arm.insert(arm.clone(), r);
                    }
                }
            }
        }
    }
    Some(EventRate { per_day, by_arm })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_builtin_population_reads() {
        let v: Value = serde_json::from_str(DEFAULT_POPULATION).unwrap();
        let p = Population::from_json(&v).unwrap();
        assert_eq!(p, Population::builtin());
        assert!(p.keys.iter().any(|k| k.key == "hasAccount"));
    }

    #[test]
    fn persons_are_drawn_with_the_shares() {
        let p = Population::from_json(
            &json!({"os": {"linux": 0.25, "windows": 0.75}, "extra": {"beta": {"true": 1.0}}}),
        )
        .unwrap();
        let n = 40_000;
        let linux = (0..n)
            .filter(|i| p.person(3, *i).text("os").as_deref() == Some("linux"))
            .count();
        assert!((linux as f64 / n as f64 - 0.25).abs() < 0.01, "{linux}");
        assert_eq!(p.person(3, 1).as_map()["beta"], json!(true));
        assert_eq!(p.person(3, 5), p.person(3, 5));
    }

    #[test]
    fn every_problem_has_its_path() {
        let d = Population::from_json(&json!({
            "os": {"windows": 0.7, "linux": 0.2},
            "chanel": {},
            "locale": {"en-US": "most"},
            "appversion": [],
            "extra": {"os": {"x": 1}},
            "behaviour": {"answers": {"ok": 0.5, "no": 0.6}, "laterAfter": "soon",
                          "events": {"t": {"perday": 1}}, "crashPerDay": -1}
        }))
        .unwrap_err();
        let text = d.to_string();
        for want in [
            "os: the shares add up to 0.900000, not 1",
            "chanel: unknown field `chanel` (did you mean `channel`?)",
            "locale.en-US: expected a number, found a string",
            "appversion: expected an object of values to shares",
            "extra.os: `os` is not an extra key",
            "behaviour.answers: the shares add up to 1.100000, not 1",
            "behaviour.laterAfter: \"soon\" is not a duration",
            "behaviour.events.t.perday: unknown field `perday` (did you mean `perDay`?)",
            "behaviour.events.t: missing field `perDay`",
            "behaviour.crashPerDay: -1 is out of range",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
    }

    #[test]
    fn too_large_or_not_json() {
        let big = " ".repeat(MAX_POPULATION_BYTES + 1);
        assert!(Population::from_text(&big)
            .unwrap_err()
            .to_string()
            .contains("the limit is"));
        assert!(Population::from_text("{")
            .unwrap_err()
            .to_string()
            .starts_with("$: not JSON"));
    }
}
