//! Validation of a copilot document: JSON in, a [`Copilot`] out, or every problem with its
//! JSON path. Fields shared with flights (the filter, names, URLs, durations, feature ids)
//! follow the flight's rules, from the same functions.

use super::{Copilot, CopilotArm, Survey, Surveys, COPILOT_VERSION, DEFAULT_UPLOAD_EVERY_MS};
use crate::diagnostic::{did_you_mean, quote, Diagnostics, JsonPath};
use crate::reader::{type_name, Obj, Reader};
use crate::spec::Filter;
use crate::template::{self, BUILTIN_VARIABLES};
use crate::time::{parse_dateish, parse_duration, DurationSpec};
use crate::validate::{check_url, feature_id_problem, is_name, read_filter};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

const FIELDS: &[&str] = &[
    "copilot",
    "studyname",
    "author",
    "description",
    "infourl",
    "filter",
    "sample",
    "arms",
    "watch",
    "duration",
    "uploadEvery",
    "surveys",
    "endBy",
];
const ARM_FIELDS: &[&str] = &["name", "ratio", "features"];
const SURVEYS_FIELDS: &[&str] = &["before", "after"];
const SURVEY_FIELDS: &[&str] = &["title", "text", "url", "expires"];

/// The largest arm ratio, as for flights.
const MAX_RATIO: u64 = 1_000_000;

/// The longest topic name, as the events endpoint takes it.
const MAX_TOPIC: usize = 64;

/// The most arms a study may have: each arm is a copy of the plan in the expanded flight.
pub const MAX_ARMS: usize = 32;
/// The most topics a study may watch.
pub const MAX_WATCH: usize = 64;
/// The longest survey title, in characters.
pub const MAX_SURVEY_TITLE_CHARS: usize = 200;
/// The longest survey text, in characters.
pub const MAX_SURVEY_TEXT_CHARS: usize = 4000;
/// The largest expanded flight, in bytes of JSON (estimated before expanding: every arm
/// repeats the surveys and the watch list).
pub const MAX_EXPANDED_BYTES: usize = 1 << 20;

pub(super) fn read(v: &Value) -> Result<Copilot, Diagnostics> {
    let mut r = Reader::default();
    let doc = document(&mut r, v);
    match doc {
        Some(d) if r.diags.is_empty() => Ok(d),
        _ => {
            if r.diags.is_empty() {
                // Defensive: a missing value without a message must never pass as valid.
                r.error(&JsonPath::root(), "the copilot document could not be read");
            }
            Err(r.diags)
        }
    }
}

fn document(r: &mut Reader, v: &Value) -> Option<Copilot> {
    let root = JsonPath::root();
    let o = r.object(v, &root, "a copilot document", FIELDS)?;

    let copilot = r
        .required(
            &o,
            "copilot",
            "say which version of the format this is: \"copilot\": 1",
        )
        .and_then(|x| version(r, x, &root.key("copilot")));
    let studyname = r.req_string(
        &o,
        "studyname",
        "every study needs a unique name like \"search-bar-2027\"",
    );
    if let Some(n) = &studyname {
        if !is_name(n, 128) {
            r.error(
                &root.key("studyname"),
                format!("{} is not a valid studyname: use 1 to 128 lowercase letters, digits, `.`, `_` and `-`, starting with a letter or digit", quote(n)),
            );
        }
    }
    let author = nonempty(
        r,
        &o,
        "author",
        "say who runs this study (a team or an email address)",
    );
    let description = nonempty(
        r,
        &o,
        "description",
        "say in plain words what this study does; people see it in their flight log",
    );
    let infourl = r.opt_string(&o, "infourl");
    if let Some(u) = &infourl {
        if let Err(e) = check_url(u, &["https", "http"]) {
            r.error(&root.key("infourl"), e);
        }
    }
    let filter = match o.map.get("filter") {
        Some(f) => read_filter(r, f, &root.key("filter")).unwrap_or_default(),
        None => Filter::default(),
    };
    let sample = match o.map.get("sample") {
        None => Some(None),
        Some(x) => sample(r, x, &root.key("sample")).map(Some),
    };
    let arms = match r.required(
        &o,
        "arms",
        "list the arms, the control first, like [{\"name\": \"control\", \"features\": {}}]",
    ) {
        Some(a) => arms(r, a, &root.key("arms")),
        None => None,
    };
    let watch = match r.required(
        &o,
        "watch",
        "list the event topics to record, like [\"search-bar-used\"]",
    ) {
        Some(w) => watch(r, w, &root.key("watch")),
        None => None,
    };
    let duration = r
        .required(&o, "duration", "say how long to record, like \"14d\"")
        .and_then(|x| read_duration(r, x, &root.key("duration")));
    let upload_every = match o.map.get("uploadEvery") {
        None => Some(None),
        Some(x) => read_duration(r, x, &root.key("uploadEvery")).map(Some),
    };
    if let (Some(Some(every)), Some(d)) = (&upload_every, &duration) {
        if every.ms > d.ms {
            r.error(
                &root.key("uploadEvery"),
                format!(
                    "`uploadEvery` ({}) is longer than `duration` ({}): the recording would end before its first upload; make it at most the duration, or leave it out (default: {}, or the duration when shorter)",
                    text_of(every),
                    text_of(d),
                    crate::time::format_duration(DEFAULT_UPLOAD_EVERY_MS)
                ),
            );
        }
    }
    let surveys = match o.map.get("surveys") {
        None => Some(Surveys::default()),
        Some(x) => surveys(r, x, &root.key("surveys")),
    };
    let end_by = match o.map.get("endBy") {
        None => Some(None),
        Some(x) => match parse_dateish(x) {
            Ok(d) => Some(Some(d)),
            Err(e) => {
                r.error(&root.key("endBy"), e);
                None
            }
        },
    };
    if let (Some(a), Some(w), Some(s)) = (&arms, &watch, &surveys) {
        let size = expanded_size(a, w, s);
        if size > MAX_EXPANDED_BYTES {
            r.error(
                &root.key("arms"),
                format!(
                    "the expanded flight would be about {size} bytes, more than {MAX_EXPANDED_BYTES}: every arm repeats the surveys and the watch list, so use fewer arms or shorter surveys"
                ),
            );
        }
    }
    Some(Copilot {
        copilot: copilot?,
        studyname: studyname?,
        author: author?,
        description: description?,
        infourl,
        filter,
        sample: sample?,
        arms: arms?,
        watch: watch?,
        duration: duration?,
        upload_every: upload_every?,
        surveys: surveys?,
        end_by: end_by?,
    })
}

/// An estimate of the expanded flight's size, from above: every arm carries its own
/// features, a copy of the surveys and of the watch list, and room for its fixed fields.
/// Computed from the document's parts, without building the flight.
fn expanded_size(arms: &[CopilotArm], watch: &[String], surveys: &Surveys) -> usize {
    const FIXED: usize = 512;
    let shared = json_len(surveys)
        .saturating_add(json_len(&watch))
        .saturating_add(FIXED);
    arms.iter()
        .map(|a| shared.saturating_add(json_len(a)))
        .fold(FIXED, usize::saturating_add)
}

fn json_len<T: serde::Serialize + ?Sized>(x: &T) -> usize {
    serde_json::to_vec(x).map_or(usize::MAX, |v| v.len())
}

/// How a duration reads in a message: as written, or in milliseconds.
fn text_of(d: &DurationSpec) -> String {
    match &d.text {
        Some(t) => quote(t),
        None => format!("{} ms", d.ms),
    }
}

fn version(r: &mut Reader, v: &Value, path: &JsonPath) -> Option<u64> {
    let n = r.integer(v, path, 1)?;
    if n != COPILOT_VERSION {
        r.error(
            path,
            format!("this is copilot format {n}, but only format {COPILOT_VERSION} exists: write \"copilot\": {COPILOT_VERSION}"),
        );
        return None;
    }
    Some(n)
}

fn nonempty(r: &mut Reader, o: &Obj, key: &str, hint: &str) -> Option<String> {
    let s = r.req_string(o, key, hint)?;
    if s.trim().is_empty() {
        r.error(&o.path.key(key), format!("`{key}` is empty: {hint}"));
    }
    Some(s)
}

fn read_duration(r: &mut Reader, v: &Value, path: &JsonPath) -> Option<DurationSpec> {
    match parse_duration(v) {
        Ok(d) => Some(d),
        Err(e) => {
            r.error(path, e);
            None
        }
    }
}

fn sample(r: &mut Reader, v: &Value, path: &JsonPath) -> Option<f64> {
    let f = r.number(v, path)?;
    if !(f > 0.0 && f <= 1.0) {
        r.error(
            path,
            format!("`sample` is {f}, but it must be above 0 and at most 1 (the share of people who pass the filter that take part, like 0.1 for 10 %)"),
        );
        return None;
    }
    Some(f)
}

fn arms(r: &mut Reader, v: &Value, path: &JsonPath) -> Option<Vec<CopilotArm>> {
    let items = r.array(v, path)?;
    if items.is_empty() {
        r.error(
            path,
            "`arms` is empty: list at least the control, like [{\"name\": \"control\", \"features\": {}}]",
        );
        return None;
    }
    if items.len() > MAX_ARMS {
        r.error(
            path,
            format!(
                "{} arms is too many: a study has at most {MAX_ARMS} (each arm is a group of people to compare)",
                items.len()
            ),
        );
        return None;
    }
    let mut out = Vec::with_capacity(items.len());
    let mut seen = BTreeSet::new();
    for (i, item) in items.iter().enumerate() {
        let p = path.index(i);
        let Some(o) = r.object(item, &p, "an arm", ARM_FIELDS) else {
            continue;
        };
        let name = r.req_string(
            &o,
            "name",
            "every arm needs a name like \"control\" or \"new-bar\"",
        );
        if let Some(n) = &name {
            if !is_name(n, 64) {
                r.error(&p.key("name"), format!("{} is not a valid arm name: use 1 to 64 lowercase letters, digits, `.`, `_` and `-`", quote(n)));
            } else if !seen.insert(n.clone()) {
                r.error(
                    &p.key("name"),
                    format!("two arms are named {}: arm names must be unique", quote(n)),
                );
            }
        }
        let ratio = match o.map.get("ratio") {
            None => Some(1),
            Some(x) => r.integer(x, &p.key("ratio"), 0).filter(|n| {
                let ok = *n <= MAX_RATIO;
                if !ok {
                    r.error(
                        &p.key("ratio"),
                        format!(
                            "ratio {n} is too large: ratios are relative weights up to {MAX_RATIO}"
                        ),
                    );
                }
                ok
            }),
        };
        let hint = if i == 0 {
            "say which features the control changes: `{}` for none"
        } else {
            "say which features this arm changes, like {\"browser.search.bar\": {\"v2\": true}}"
        };
        let features = r
            .required(&o, "features", hint)
            .and_then(|f| features(r, f, &p.key("features"), i));
        if let (Some(name), Some(ratio), Some(features)) = (name, ratio, features) {
            out.push(CopilotArm {
                name,
                ratio,
                features,
            });
        }
    }
    if out.len() == items.len() && out.iter().map(|a| a.ratio).sum::<u64>() == 0 {
        r.error(path, "every arm has ratio 0, so nobody could take part: give at least one arm a ratio above 0");
    }
    (out.len() == items.len()).then_some(out)
}

/// An arm's features: feature id → value (an object). The control (arm 0) may change none;
/// any other arm must change at least one, or it would be a second control.
fn features(
    r: &mut Reader,
    v: &Value,
    path: &JsonPath,
    arm: usize,
) -> Option<BTreeMap<String, Map<String, Value>>> {
    let Some(map) = v.as_object() else {
        r.error(
            path,
            format!(
                "expected the arm's features (an object of feature ids to values), found {}",
                type_name(v)
            ),
        );
        return None;
    };
    if map.is_empty() && arm > 0 {
        r.error(
            path,
            "this arm changes no feature, so it is a second control and its results would compare two identical groups: give it at least one feature (only the first arm, the control, may have `{}`)",
        );
        return None;
    }
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (id, value) in map {
        let p = path.key(id);
        if let Some(problem) = feature_id_problem(id) {
            r.error(&p, problem);
            ok = false;
            continue;
        }
        match value {
            Value::Object(m) => {
                out.insert(id.clone(), m.clone());
            }
            other => {
                r.error(
                    &p,
                    format!(
                        "expected the feature's value (an object, like {{\"enabled\": true}}), found {}",
                        type_name(other)
                    ),
                );
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// The watched topics. There is no registry of topics (an application may send any), so a
/// topic is checked for its form, the form the events endpoint takes, and for duplicates.
fn watch(r: &mut Reader, v: &Value, path: &JsonPath) -> Option<Vec<String>> {
    let items = r.array(v, path)?;
    if items.is_empty() {
        r.error(
            path,
            "`watch` is empty: list the event topics to record, like [\"search-bar-used\"]",
        );
        return None;
    }
    if items.len() > MAX_WATCH {
        r.error(
            path,
            format!(
                "{} topics is too many: a study watches at most {MAX_WATCH}",
                items.len()
            ),
        );
        return None;
    }
    let mut out = Vec::with_capacity(items.len());
    let mut seen = BTreeSet::new();
    for (i, item) in items.iter().enumerate() {
        let p = path.index(i);
        let Some(t) = r.string(item, &p) else {
            continue;
        };
        if !is_name(&t, MAX_TOPIC) {
            let fixed = t.trim().to_ascii_lowercase().replace(' ', "-");
            let msg = if fixed != t && is_name(&fixed, MAX_TOPIC) {
                format!(
                    "{} is not a valid topic; did you mean `{fixed}`?",
                    quote(&t)
                )
            } else {
                format!("{} is not a valid topic: use 1 to {MAX_TOPIC} lowercase letters, digits, `.`, `_` and `-`, starting with a letter or digit", quote(&t))
            };
            r.error(&p, msg);
        } else if !seen.insert(t.clone()) {
            r.error(
                &p,
                format!("topic {} is listed twice: list each topic once", quote(&t)),
            );
        }
        out.push(t);
    }
    (out.len() == items.len() && out.len() == seen.len()).then_some(out)
}

fn surveys(r: &mut Reader, v: &Value, path: &JsonPath) -> Option<Surveys> {
    let o = r.object(v, path, "`surveys`", SURVEYS_FIELDS)?;
    let before = match o.map.get("before") {
        None => Some(None),
        Some(x) => survey(r, x, &path.key("before")).map(Some),
    };
    let after = match o.map.get("after") {
        None => Some(None),
        Some(x) => survey(r, x, &path.key("after")).map(Some),
    };
    Some(Surveys {
        before: before?,
        after: after?,
    })
}

fn survey(r: &mut Reader, v: &Value, path: &JsonPath) -> Option<Survey> {
    let o = r.object(v, path, "a survey", SURVEY_FIELDS)?;
    let title = nonempty(
        r,
        &o,
        "title",
        "the survey's title, shown in the message center",
    );
    if let Some(t) = &title {
        check_length(r, t, &path.key("title"), MAX_SURVEY_TITLE_CHARS);
        check_template(r, t, &path.key("title"));
    }
    let text = nonempty(
        r,
        &o,
        "text",
        "a sentence that says what the survey asks and how long it takes",
    );
    if let Some(t) = &text {
        check_length(r, t, &path.key("text"), MAX_SURVEY_TEXT_CHARS);
        check_template(r, t, &path.key("text"));
    }
    let url = r.req_string(
        &o,
        "url",
        "a survey needs the address of its questions (https)",
    );
    if let Some(u) = &url {
        check_template(r, u, &path.key("url"));
        if let Err(e) = check_url(u, &["https"]) {
            r.error(&path.key("url"), e);
        }
    }
    let expires = match o.map.get("expires") {
        None => Some(None),
        Some(x) => read_duration(r, x, &path.key("expires")).map(Some),
    };
    Some(Survey {
        title: title?,
        text: text?,
        url: url?,
        expires: expires?,
    })
}

/// A survey's title or text is at most `max` characters: it is shown in a message center.
fn check_length(r: &mut Reader, text: &str, path: &JsonPath, max: usize) {
    let n = text.chars().count();
    if n > max {
        r.error(
            path,
            format!("{n} characters is too long: at most {max}; say it in fewer words"),
        );
    }
}

/// A survey's texts are templates of the expanded flight: a copilot document has no
/// `variables`, so a name must be a built-in or `person.KEY`.
fn check_template(r: &mut Reader, text: &str, path: &JsonPath) {
    let parts = match template::parse(text) {
        Ok(parts) => parts,
        Err(e) => {
            r.error(path, e);
            return;
        }
    };
    for part in parts {
        let template::Part::Var(n) = part else {
            continue;
        };
        if BUILTIN_VARIABLES.contains(&n.as_str()) || (n.starts_with("person.") && n.len() > 7) {
            continue;
        }
        let msg = match did_you_mean(&n, BUILTIN_VARIABLES) {
            Some(s) => {
                format!("unknown template variable `{{{{{n}}}}}`; did you mean `{{{{{s}}}}}`?")
            }
            None => format!(
                "unknown template variable `{{{{{n}}}}}`: use a built-in ({}) or `person.KEY`",
                BUILTIN_VARIABLES.join(", ")
            ),
        };
        r.error(path, msg);
    }
}
