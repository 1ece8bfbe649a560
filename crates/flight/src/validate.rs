//! Validation: JSON in, a [`Flight`] out, or every problem with its path.
//!
//! This file reads the flight's own fields (names, filter, `randomDeploy`, variables, arms);
//! `plan.rs` reads flightplans and checks their templates, `directives.rs` reads each
//! directive's fields.

use crate::diagnostic::{quote, Diagnostics, JsonPath};
use crate::reader::{type_name, Obj, Reader};
use crate::spec::*;
use crate::template::{self, BUILTIN_VARIABLES};
use crate::time::{parse_dateish, parse_duration};
use crate::{targeting, version};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

const FLIGHT_FIELDS: &[&str] = &[
    "studyname",
    "author",
    "description",
    "infourl",
    "version",
    "filter",
    "randomDeploy",
    "arms",
    "flightplan",
    "endBy",
    "fuse",
    "kill",
    "variables",
];
const FILTER_FIELDS: &[&str] = &["channels", "oses", "locales", "versions", "expression"];
const RANDOM_FIELDS: &[&str] = &["keyname", "ge", "lt"];
const ARM_FIELDS: &[&str] = &["name", "ratio", "variables", "flightplan"];

mod directives;
mod plan;

/// The largest arm ratio: weights, not counts, so a million is more than enough.
const MAX_RATIO: u64 = 1_000_000;

impl Flight {
    /// Validates a flight spec and builds it, or returns every problem with its JSON path.
    pub fn from_json(v: &Value) -> Result<Flight, Diagnostics> {
        validate(v)
    }
}

/// Which template variables a piece of a plan may use.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// The flight's own flightplan: the variables of every arm.
    Flight,
    /// Arm `i`'s flightplan: that arm's variables.
    Arm(usize),
}

struct TemplateUse {
    path: JsonPath,
    name: String,
    scope: Scope,
}

struct V {
    r: Reader,
    uses: Vec<TemplateUse>,
}

/// Validates a flight spec: see [`Flight::from_json`].
pub fn validate(v: &Value) -> Result<Flight, Diagnostics> {
    let mut s = V {
        r: Reader::default(),
        uses: Vec::new(),
    };
    let flight = s.flight(v);
    match flight {
        Some(f) if s.r.diags.is_empty() => Ok(f),
        _ => {
            if s.r.diags.is_empty() {
                // Defensive: a missing value without a message must never pass as valid.
                s.r.error(&JsonPath::root(), "the flight could not be read");
            }
            Err(s.r.diags)
        }
    }
}

pub(crate) fn is_name(s: &str, max: usize) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= max
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
        })
}

/// Checks that a URL (or URL template) starts with one of `schemes` written literally and
/// names a host.
pub(crate) fn check_url(s: &str, schemes: &[&str]) -> Result<(), String> {
    let list = schemes
        .iter()
        .map(|s| format!("{s}://"))
        .collect::<Vec<_>>()
        .join(" or ");
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(format!(
            "{} is not a URL: it must start with {list}",
            quote(s)
        ));
    };
    if !schemes.iter().any(|x| x.eq_ignore_ascii_case(scheme)) {
        return Err(format!(
            "URL scheme {} is not allowed here: use {list}",
            quote(scheme)
        ));
    }
    if scheme.eq_ignore_ascii_case("file") {
        if !rest.starts_with('/') {
            return Err("a file:// URL needs an absolute path, like file:///srv/pkg.zip".into());
        }
        return Ok(());
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() {
        return Err(format!("{} has no host", quote(s)));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(
            "a URL cannot contain spaces or control characters; templates encode values for you"
                .into(),
        );
    }
    Ok(())
}

/// Why `id` cannot be a feature id, or `None` when it can: the one rule, for `feature`
/// directives and the copilot's `features`.
pub(crate) fn feature_id_problem(id: &str) -> Option<String> {
    let ok = !id.is_empty()
        && id.len() <= 200
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
    (!ok).then(|| {
        format!(
            "{} is not a valid feature id: use letters, digits, `.`, `_` and `-`",
            quote(id)
        )
    })
}

/// Reads a `filter` with the flight's rules, for documents that hold one (the copilot).
pub(crate) fn read_filter(r: &mut Reader, v: &Value, path: &JsonPath) -> Option<Filter> {
    let mut s = V {
        r: std::mem::take(r),
        uses: Vec::new(),
    };
    let f = s.filter(v, path);
    *r = s.r;
    f
}

impl V {
    fn flight(&mut self, v: &Value) -> Option<Flight> {
        let root = JsonPath::root();
        let o = self.r.object(v, &root, "a flight", FLIGHT_FIELDS)?;

        let studyname = self.r.req_string(
            &o,
            "studyname",
            "every flight needs a unique name like \"pref-flip-search-1\"",
        );
        if let Some(n) = &studyname {
            if !is_name(n, 128) {
                self.r.error(
                    &root.key("studyname"),
                    format!("{} is not a valid studyname: use 1 to 128 lowercase letters, digits, `.`, `_` and `-`, starting with a letter or digit", quote(n)),
                );
            }
        }
        let author = self.nonempty(
            &o,
            "author",
            "say who runs this study (a team or an email address)",
        );
        let description = self.nonempty(
            &o,
            "description",
            "say in plain words what this study does; people see it in their flight log",
        );
        let infourl = self.r.opt_string(&o, "infourl");
        if let Some(u) = &infourl {
            if let Err(e) = check_url(u, &["https", "http"]) {
                self.r.error(&root.key("infourl"), e);
            }
        }
        let version = o
            .map
            .get("version")
            .and_then(|v| self.r.integer(v, &root.key("version"), 1));
        let filter = match o.map.get("filter") {
            Some(f) => self.filter(f, &root.key("filter")).unwrap_or_default(),
            None => Filter::default(),
        };
        let random_deploy = o
            .map
            .get("randomDeploy")
            .and_then(|r| self.random_deploy(r, &root.key("randomDeploy")));
        let variables = match o.map.get("variables") {
            Some(x) => self.variables(x, &root.key("variables")),
            None => BTreeMap::new(),
        };
        let arms = match o.map.get("arms") {
            Some(a) => self.arms(a, &root.key("arms")),
            None => Vec::new(),
        };
        let flightplan = match o.map.get("flightplan") {
            Some(p) => self
                .plan(p, &root.key("flightplan"), Scope::Flight, 0)
                .unwrap_or_default(),
            None => {
                if arms.is_empty() || arms.iter().any(|a| a.flightplan.is_none()) {
                    let hint = if arms.is_empty() {
                        "say what happens during the flight, as a list of directives"
                    } else {
                        "some arms have no flightplan of their own, so the flight needs one"
                    };
                    self.r
                        .error(&root, format!("missing field `flightplan`: {hint}"));
                }
                Vec::new()
            }
        };
        let end_by = o.map.get("endBy").and_then(|x| match parse_dateish(x) {
            Ok(d) => Some(d),
            Err(e) => {
                self.r.error(&root.key("endBy"), e);
                None
            }
        });
        let fuse = o
            .map
            .get("fuse")
            .and_then(|x| self.duration(x, &root.key("fuse")));
        let kill = self.r.opt_bool(&o, "kill").unwrap_or(false);

        self.check_templates(&variables, &arms);

        Some(Flight {
            studyname: studyname?,
            author: author?,
            description: description?,
            infourl,
            version,
            filter,
            random_deploy,
            arms,
            flightplan,
            end_by,
            fuse,
            kill,
            variables,
        })
    }

    fn nonempty(&mut self, o: &Obj, key: &str, hint: &str) -> Option<String> {
        let s = self.r.req_string(o, key, hint)?;
        if s.trim().is_empty() {
            self.r
                .error(&o.path.key(key), format!("`{key}` is empty: {hint}"));
        }
        Some(s)
    }

    fn duration(&mut self, v: &Value, path: &JsonPath) -> Option<crate::time::DurationSpec> {
        match parse_duration(v) {
            Ok(d) => Some(d),
            Err(e) => {
                self.r.error(path, e);
                None
            }
        }
    }

    fn filter(&mut self, v: &Value, path: &JsonPath) -> Option<Filter> {
        let o = self.r.object(v, path, "a filter", FILTER_FIELDS)?;
        let mut f = Filter::default();
        if let Some(x) = o.map.get("channels") {
            f.channels = self.nonempty_strings(x, &path.key("channels"), "channel");
        }
        if let Some(x) = o.map.get("oses") {
            let p = path.key("oses");
            f.oses = self.nonempty_strings(x, &p, "OS");
            for (i, os) in f.oses.iter().enumerate() {
                if targeting::normalize_os(os).is_none() {
                    let msg = match crate::diagnostic::did_you_mean(os, targeting::OS_NAMES) {
                        Some(s) => format!("unknown OS {}; did you mean `{s}`?", quote(os)),
                        None => {
                            format!(
                                "unknown OS {}: use linux, macos, windows, android or ios",
                                quote(os)
                            )
                        }
                    };
                    self.r.error(&p.index(i), msg);
                }
            }
        }
        if let Some(x) = o.map.get("locales") {
            let p = path.key("locales");
            f.locales = self.nonempty_strings(x, &p, "locale");
            for (i, l) in f.locales.iter().enumerate() {
                if !targeting::is_locale(l) {
                    self.r.error(&p.index(i), format!("{} is not a locale: write a language like `en` or a language and region like `en-US`", quote(l)));
                }
            }
        }
        if let Some(s) = self.r.opt_string(&o, "versions") {
            if let Err(e) = version::parse_requirement(&s) {
                self.r.error(&path.key("versions"), e);
            }
            f.versions = Some(s);
        }
        if let Some(s) = self.r.opt_string(&o, "expression") {
            for e in targeting::check_expression(&s) {
                self.r.error(&path.key("expression"), e);
            }
            f.expression = Some(s);
        }
        Some(f)
    }

    fn nonempty_strings(&mut self, v: &Value, path: &JsonPath, what: &str) -> Vec<String> {
        let list = self.r.string_list(v, path).unwrap_or_default();
        if v.as_array().is_some_and(|a| a.is_empty()) {
            self.r.error(path, format!("the list is empty: it would match no {what} at all; leave it out to match every {what}"));
        }
        list
    }

    fn random_deploy(&mut self, v: &Value, path: &JsonPath) -> Option<RandomDeploy> {
        let o = self.r.object(v, path, "randomDeploy", RANDOM_FIELDS)?;
        let keyname = self.r.opt_string(&o, "keyname");
        if keyname.as_deref().is_some_and(|k| k.is_empty()) {
            self.r.error(
                &path.key("keyname"),
                "`keyname` is empty: leave it out to use the studyname",
            );
        }
        let read = |key: &str, s: &mut Self| -> Option<f64> {
            let x = s.r.required(&o, key, "randomDeploy takes a range [ge, lt) of the population, like {\"ge\": 0, \"lt\": 0.05}")?;
            let f = s.r.number(x, &path.key(key))?;
            if !(0.0..=1.0).contains(&f) {
                s.r.error(&path.key(key), format!("`{key}` is {f}, but it must be between 0 and 1 (a share of the population)"));
                return None;
            }
            Some(f)
        };
        let ge = read("ge", self);
        let lt = read("lt", self);
        let (ge, lt) = (ge?, lt?);
        if ge >= lt {
            self.r.error(
                path,
                format!("the range is empty: `ge` ({ge}) must be less than `lt` ({lt})"),
            );
            return None;
        }
        Some(RandomDeploy { keyname, ge, lt })
    }

    fn variables(&mut self, v: &Value, path: &JsonPath) -> Variables {
        let mut out = BTreeMap::new();
        let Some(map) = v.as_object() else {
            self.r.error(path, format!("expected variables (an object of names to strings, numbers or booleans), found {}", type_name(v)));
            return out;
        };
        for (k, x) in map {
            let p = path.key(k);
            if !template::is_variable_name(k) || k.starts_with("person.") {
                self.r.error(&p, format!("{} is not a usable variable name: use letters, digits, `_` and `-`, starting with a letter", quote(k)));
                continue;
            }
            if BUILTIN_VARIABLES.contains(&k.as_str()) || k == "person" {
                self.r.error(
                    &p,
                    format!(
                        "{} is a built-in variable and cannot be redefined",
                        quote(k)
                    ),
                );
                continue;
            }
            let val = match x {
                Value::String(s) => VarValue::String(s.clone()),
                Value::Bool(b) => VarValue::Bool(*b),
                Value::Number(n) => VarValue::Number(n.as_f64().unwrap_or(0.0)),
                other => {
                    self.r.error(
                        &p,
                        format!(
                            "a variable must be a string, number or boolean, found {}",
                            type_name(other)
                        ),
                    );
                    continue;
                }
            };
            out.insert(k.clone(), val);
        }
        out
    }

    fn arms(&mut self, v: &Value, path: &JsonPath) -> Vec<Arm> {
        let Some(items) = self.r.array(v, path) else {
            return Vec::new();
        };
        if items.is_empty() {
            self.r.error(
                path,
                "`arms` is empty: leave it out for a flight without arms, or list at least one arm",
            );
            return Vec::new();
        }
        let mut arms = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, item) in items.iter().enumerate() {
            let p = path.index(i);
            let Some(o) = self.r.object(item, &p, "an arm", ARM_FIELDS) else {
                continue;
            };
            let name = self.r.req_string(
                &o,
                "name",
                "every arm needs a name like \"control\" or \"treatment\"",
            );
            if let Some(n) = &name {
                if !is_name(n, 64) {
                    self.r.error(&p.key("name"), format!("{} is not a valid arm name: use 1 to 64 lowercase letters, digits, `.`, `_` and `-`", quote(n)));
                } else if !seen.insert(n.clone()) {
                    self.r.error(
                        &p.key("name"),
                        format!("two arms are named {}: arm names must be unique", quote(n)),
                    );
                }
            }
            let ratio = self
                .r
                .required(&o, "ratio", "every arm needs a ratio, a whole number weight like 1")
                .and_then(|x| self.r.integer(x, &p.key("ratio"), 0))
                .filter(|r| {
                    let ok = *r <= MAX_RATIO;
                    if !ok {
                        self.r.error(&p.key("ratio"), format!("ratio {r} is too large: ratios are relative weights up to {MAX_RATIO}"));
                    }
                    ok
                });
            let variables = match o.map.get("variables") {
                Some(x) => self.variables(x, &p.key("variables")),
                None => BTreeMap::new(),
            };
            let flightplan = o
                .map
                .get("flightplan")
                .and_then(|x| self.plan(x, &p.key("flightplan"), Scope::Arm(i), 0));
            if let (Some(name), Some(ratio)) = (name, ratio) {
                arms.push(Arm {
                    name,
                    ratio,
                    variables,
                    flightplan,
                });
            }
        }
        if arms.len() == items.len() && arms.iter().map(|a| a.ratio).sum::<u64>() == 0 {
            self.r.error(path, "every arm has ratio 0, so nobody could be enrolled: give at least one arm a ratio above 0");
        }
        arms
    }
}
