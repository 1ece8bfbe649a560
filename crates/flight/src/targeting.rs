//! Targeting (DESIGN §5): who a flight's `filter` lets in, and why.

use crate::person::Person;
use crate::sampling;
use crate::spec::Filter;
use crate::time::{parse_dateish, Timestamp};
use crate::version;
use jexl_eval::Evaluator;
use jexl_parser::ast::Expression;
use serde_json::{json, Value};
use std::sync::LazyLock;

/// Canonical OS names.
pub const OS_NAMES: &[&str] = &["linux", "macos", "windows", "android", "ios"];

/// The canonical name of an OS, accepting the usual aliases.
pub fn normalize_os(s: &str) -> Option<&'static str> {
    Some(match s.trim().to_ascii_lowercase().as_str() {
        "linux" => "linux",
        "macos" | "darwin" | "mac" | "macosx" | "osx" => "macos",
        "windows" | "win" | "win32" | "win64" | "winnt" => "windows",
        "android" => "android",
        "ios" => "ios",
        _ => return None,
    })
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

/// What an expression sees as `flight`.
pub struct FlightContext<'a> {
    pub studyname: &'a str,
    pub version: Option<u64>,
}

/// Evaluates every criterion of `filter` (all of them, so that `explain` can say everything).
pub fn evaluate(filter: &Filter, flight: &FlightContext, person: &Person, now: Timestamp) -> FilterOutcome {
    let mut passed = true;
    let mut reasons = Vec::new();
    let mut check = |ok: bool, reason: String| {
        passed &= ok;
        reasons.push(reason);
    };
    if !filter.channels.is_empty() {
        let ch = person.text("channel");
        let ok = ch.as_ref().is_some_and(|c| filter.channels.iter().any(|x| x.eq_ignore_ascii_case(c)));
        check(ok, describe("channel", ch.as_deref(), ok, &filter.channels));
    }
    if !filter.oses.is_empty() {
        let os = person.text("os");
        let canon = os.as_deref().map(|o| normalize_os(o).map(str::to_string).unwrap_or_else(|| o.to_ascii_lowercase()));
        let ok = canon.as_ref().is_some_and(|c| filter.oses.iter().any(|x| normalize_os(x) == Some(c.as_str())));
        check(ok, describe("os", os.as_deref(), ok, &filter.oses));
    }
    if !filter.locales.is_empty() {
        let loc = person.text("locale");
        let ok = loc.as_ref().is_some_and(|l| filter.locales.iter().any(|x| locale_matches(x, l)));
        check(ok, describe("locale", loc.as_deref(), ok, &filter.locales));
    }
    if let Some(req) = &filter.versions {
        let av = person.text("appversion");
        let (ok, why) = match (version::parse_requirement(req), &av) {
            (Err(e), _) => (false, e),
            (_, None) => (false, format!("appversion is unknown, so it cannot satisfy `{req}`")),
            (Ok(r), Some(v)) => match version::lenient_version(v) {
                None => (false, format!("appversion `{v}` is not a version number")),
                Some(sv) if r.matches(&sv) => (true, format!("appversion `{v}` satisfies `{req}`")),
                Some(_) => (false, format!("appversion `{v}` does not satisfy `{req}`")),
            },
        };
        check(ok, why);
    }
    if let Some(expr) = &filter.expression {
        let (ok, why) = match eval_expression(expr, flight, person, now) {
            Ok(Value::Bool(true)) => (true, format!("expression `{expr}` is true")),
            Ok(Value::Bool(false)) => (false, format!("expression `{expr}` is false")),
            Ok(other) => (false, format!("expression `{expr}` gave {other}, not true or false, so it does not match")),
            Err(e) => (false, format!("expression `{expr}` failed: {e}")),
        };
        check(ok, why);
    }
    FilterOutcome { passed, reasons }
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
pub const TRANSFORMS: &[&str] = &[
    "stableSample", "bucketSample", "versionCompare", "date", "regExpMatch", "keys", "length",
];

fn arg<'v>(args: &'v [Value], i: usize, name: &str) -> anyhow::Result<&'v Value> {
    args.get(i).ok_or_else(|| anyhow::anyhow!("{name} is missing an argument"))
}

fn num(args: &[Value], i: usize, name: &str) -> anyhow::Result<f64> {
    arg(args, i, name)?.as_f64().ok_or_else(|| anyhow::anyhow!("{name}: argument {i} must be a number"))
}

fn whole(args: &[Value], i: usize, name: &str) -> anyhow::Result<u64> {
    let f = num(args, i, name)?;
    if f < 0.0 || f.fract() != 0.0 || f > 9.0e15 {
        anyhow::bail!("{name}: argument {i} must be a whole number, 0 or more");
    }
    Ok(f as u64)
}

static EVALUATOR: LazyLock<Evaluator<'static>> = LazyLock::new(|| {
    Evaluator::new()
        .with_transform("stableSample", |a: &[Value]| {
            let rate = num(a, 1, "stableSample")?;
            Ok(json!(sampling::stable_sample(arg(a, 0, "stableSample")?, rate)))
        })
        .with_transform("bucketSample", |a: &[Value]| {
            let total = whole(a, 3, "bucketSample")?;
            if total == 0 {
                anyhow::bail!("bucketSample: total must be above 0");
            }
            Ok(json!(sampling::bucket_sample(arg(a, 0, "bucketSample")?, whole(a, 1, "bucketSample")?, whole(a, 2, "bucketSample")?, total)))
        })
        .with_transform("versionCompare", |a: &[Value]| {
            let s = |i| arg(a, i, "versionCompare").map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
            Ok(json!(version::mozilla_compare(&s(0)?, &s(1)?) as i32))
        })
        .with_transform("date", |a: &[Value]| {
            let d = parse_dateish(arg(a, 0, "date")?).map_err(|e| anyhow::anyhow!("date: {e}"))?;
            Ok(json!(d.at.0))
        })
        .with_transform("regExpMatch", |a: &[Value]| {
            let Some(s) = arg(a, 0, "regExpMatch")?.as_str() else { return Ok(Value::Null) };
            let pat = arg(a, 1, "regExpMatch")?.as_str().ok_or_else(|| anyhow::anyhow!("regExpMatch: the pattern must be a string"))?;
            let flags = a.get(2).and_then(Value::as_str).unwrap_or("");
            let mut b = regex::RegexBuilder::new(pat);
            b.case_insensitive(flags.contains('i')).multi_line(flags.contains('m')).dot_matches_new_line(flags.contains('s'));
            b.size_limit(1 << 20);
            let re = b.build().map_err(|e| anyhow::anyhow!("regExpMatch: bad pattern: {e}"))?;
            // Like JavaScript's String.prototype.match without the g flag: the match and its
            // groups, or null.
            Ok(match re.captures(s) {
                Some(c) => Value::Array(c.iter().map(|m| m.map(|m| json!(m.as_str())).unwrap_or(Value::Null)).collect()),
                None => Value::Null,
            })
        })
        .with_transform("keys", |a: &[Value]| {
            Ok(match arg(a, 0, "keys")? {
                Value::Object(o) => Value::Array(o.keys().map(|k| json!(k)).collect()),
                _ => Value::Null,
            })
        })
        .with_transform("length", |a: &[Value]| {
            Ok(match arg(a, 0, "length")? {
                Value::Array(x) => json!(x.len()),
                Value::String(s) => json!(s.encode_utf16().count()),
                Value::Object(o) => json!(o.len()),
                _ => Value::Null,
            })
        })
});

/// Evaluates an expression against a person, a flight and the time.
pub fn eval_expression(expr: &str, flight: &FlightContext, person: &Person, now: Timestamp) -> Result<Value, String> {
    let ctx = json!({
        "person": person,
        "flight": {"studyname": flight.studyname, "version": flight.version},
        "now": now.0,
    });
    EVALUATOR.eval_in_context(expr, &ctx).map_err(|e| e.to_string())
}

/// Checks an expression without running it: syntax, known transforms, known names.
pub fn check_expression(expr: &str) -> Vec<String> {
    match jexl_parser::Parser::parse(expr) {
        Err(e) => vec![format!("the expression is not valid JEXL: {e}")],
        Ok(ast) => {
            let mut problems = Vec::new();
            walk(&ast, &mut problems);
            problems
        }
    }
}

fn walk(e: &Expression, out: &mut Vec<String>) {
    match e {
        Expression::Identifier(name) => {
            if !["person", "flight", "now"].contains(&name.as_str()) {
                out.push(format!("unknown name `{name}` in the expression: use `person`, `flight` or `now`"));
            }
        }
        Expression::Transform { name, subject, args } => {
            if !TRANSFORMS.contains(&name.as_str()) {
                let hint = match crate::diagnostic::did_you_mean(name, TRANSFORMS) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("known transforms are {}", TRANSFORMS.join(", ")),
                };
                out.push(format!("unknown transform `{name}`; {hint}"));
            }
            walk(subject, out);
            args.iter().flatten().for_each(|a| walk(a, out));
        }
        Expression::Array(xs) => xs.iter().for_each(|x| walk(x, out)),
        Expression::Object(items) => items.iter().for_each(|(_, x)| walk(x, out)),
        Expression::BinaryOperation { left, right, .. } => {
            walk(left, out);
            walk(right, out);
        }
        Expression::DotOperation { subject, .. } => walk(subject, out),
        Expression::IndexOperation { subject, index } => {
            walk(subject, out);
            // A filter's identifier names a member of each element, not a top-level name.
            if let Expression::Filter { right, .. } = index.as_ref() {
                walk(right, out);
            } else {
                walk(index, out);
            }
        }
        Expression::Conditional { left, truthy, falsy } => {
            walk(left, out);
            walk(truthy, out);
            walk(falsy, out);
        }
        Expression::Filter { right, .. } => walk(right, out),
        Expression::Number(_) | Expression::String(_) | Expression::Boolean(_) | Expression::Null => {}
    }
}
