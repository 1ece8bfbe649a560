//! Targeting (docs/flight-spec.md): who a flight's `filter` lets in, and why.

pub use crate::expression::FlightContext;
use crate::expression::{self, Context};
use crate::person::Person;
use crate::spec::Filter;
use crate::time::Timestamp;
use crate::version;
use serde_json::Value;
use std::ops::ControlFlow;

/// Canonical OS names.
pub const OS_NAMES: &[&str] = &["linux", "macos", "windows", "android", "ios"];

/// The usual names of each OS, and its canonical name.
const OS_ALIASES: &[(&str, &str)] = &[
    ("linux", "linux"),
    ("macos", "macos"),
    ("darwin", "macos"),
    ("mac", "macos"),
    ("macosx", "macos"),
    ("osx", "macos"),
    ("windows", "windows"),
    ("win", "windows"),
    ("win32", "windows"),
    ("win64", "windows"),
    ("winnt", "windows"),
    ("android", "android"),
    ("ios", "ios"),
];

/// The canonical name of an OS, accepting the usual aliases, in any case (without
/// allocating: the pilot asks this for every flight).
pub fn normalize_os(s: &str) -> Option<&'static str> {
    let s = s.trim();
    OS_ALIASES
        .iter()
        .find(|(alias, _)| alias.eq_ignore_ascii_case(s))
        .map(|(_, canonical)| *canonical)
}

/// `en`, `en-US`, `zh-Hant-TW`, `es-419`: a language of 2–3 letters and optional subtags.
pub fn is_locale(s: &str) -> bool {
    let mut parts = s.split('-');
    let lang = parts.next().unwrap_or("");
    (2..=3).contains(&lang.len())
        && lang.bytes().all(|c| c.is_ascii_alphabetic())
        && parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|c| c.is_ascii_alphanumeric()))
}

/// `en-US` matches exactly; `en` matches `en` and every `en-*`. Case is ignored.
pub fn locale_matches(entry: &str, locale: &str) -> bool {
    let (e, l) = (entry.to_ascii_lowercase(), locale.to_ascii_lowercase());
    if e.contains('-') {
        e == l
    } else {
        l == e || l.strip_prefix(&e).is_some_and(|rest| rest.starts_with('-'))
    }
}

/// The result of a filter: whether it passed and a sentence per criterion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterOutcome {
    pub passed: bool,
    pub reasons: Vec<String>,
}

/// Evaluates every criterion of `filter` (all of them, so that `explain` can say everything).
pub fn evaluate(
    filter: &Filter,
    flight: &FlightContext,
    person: &Person,
    now: Timestamp,
) -> FilterOutcome {
    let mut passed = true;
    let mut reasons = Vec::new();
    criteria(filter, flight, person, now, &mut |ok, why| {
        passed &= ok;
        reasons.push(why());
        ControlFlow::Continue(())
    });
    FilterOutcome { passed, reasons }
}

/// Whether `filter` passes, stopping at the first criterion that fails and writing no
/// reasons: the pilot's hot path. Cheap criteria come before the expression.
pub fn matches(filter: &Filter, flight: &FlightContext, person: &Person, now: Timestamp) -> bool {
    let mut passed = true;
    criteria(filter, flight, person, now, &mut |ok, _| {
        passed = ok;
        if ok {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        }
    });
    passed
}

type Visit<'a> = dyn FnMut(bool, &dyn Fn() -> String) -> ControlFlow<()> + 'a;

/// Checks each present criterion in order and tells `visit` the result, with a way to say why.
fn criteria(
    filter: &Filter,
    flight: &FlightContext,
    person: &Person,
    now: Timestamp,
    visit: &mut Visit,
) {
    if !filter.channels.is_empty() {
        let ch = person.as_map().get("channel").and_then(Value::as_str);
        let ok = ch.is_some_and(|c| filter.channels.iter().any(|x| x.eq_ignore_ascii_case(c)));
        if visit(ok, &|| describe("channel", ch, ok, &filter.channels)).is_break() {
            return;
        }
    }
    if !filter.oses.is_empty() {
        let os = person.as_map().get("os").and_then(Value::as_str);
        // An OS we do not know matches nothing: every entry of the filter is a known one.
        let ok = os
            .and_then(normalize_os)
            .is_some_and(|c| filter.oses.iter().any(|x| normalize_os(x) == Some(c)));
        if visit(ok, &|| describe("os", os, ok, &filter.oses)).is_break() {
            return;
        }
    }
    if !filter.locales.is_empty() {
        let loc = person.as_map().get("locale").and_then(Value::as_str);
        let ok = loc.is_some_and(|l| filter.locales.iter().any(|x| locale_matches(x, l)));
        if visit(ok, &|| describe("locale", loc, ok, &filter.locales)).is_break() {
            return;
        }
    }
    if let Some(req) = &filter.versions {
        let av = person.as_map().get("appversion").and_then(Value::as_str);
        let parsed = version::parse_requirement(req);
        let lenient = av.and_then(version::lenient_version);
        let ok = matches!((&parsed, &lenient), (Ok(r), Some(v)) if r.matches(v));
        let why = || match (&parsed, av, &lenient) {
            (Err(e), _, _) => e.clone(),
            (_, None, _) => format!("appversion is unknown, so it cannot satisfy `{req}`"),
            (_, Some(v), None) => format!("appversion `{v}` is not a version number"),
            (_, Some(v), Some(_)) if ok => format!("appversion `{v}` satisfies `{req}`"),
            (_, Some(v), Some(_)) => format!("appversion `{v}` does not satisfy `{req}`"),
        };
        if visit(ok, &why).is_break() {
            return;
        }
    }
    if let Some(expr) = &filter.expression {
        let result = eval_expression(expr, flight, person, now);
        let ok = matches!(result, Ok(Value::Bool(true)));
        let why = || match &result {
            Ok(Value::Bool(true)) => format!("expression `{expr}` is true"),
            Ok(Value::Bool(false)) => format!("expression `{expr}` is false"),
            Ok(other) => {
                format!("expression `{expr}` gave {other}, not true or false, so it does not match")
            }
            Err(e) => format!("expression `{expr}` failed: {e}"),
        };
        let _ = visit(ok, &why);
    }
}

fn describe(what: &str, value: Option<&str>, ok: bool, list: &[String]) -> String {
    let list = list.join(", ");
    match (value, ok) {
        (None, _) => format!("{what} is unknown, so it is not one of [{list}]"),
        (Some(v), true) => format!("{what} `{v}` matches [{list}]"),
        (Some(v), false) => format!("{what} `{v}` is not in [{list}]"),
    }
}

/// Transforms that expressions may use, with Normandy's meaning.
pub use crate::expression::TRANSFORMS;

/// Evaluates an expression against a person, a flight and the time.
pub fn eval_expression(
    expr: &str,
    flight: &FlightContext,
    person: &Person,
    now: Timestamp,
) -> Result<Value, String> {
    expression::eval(
        expr,
        &Context {
            person,
            flight,
            now,
        },
    )
}

/// Checks an expression without running it: syntax, known transforms, known names.
pub fn check_expression(expr: &str) -> Vec<String> {
    expression::check(expr)
}
