//! Validation: JSON in, a [`Flight`] out, or every problem with its path.

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
const ACTIONS: &[&str] = &[
    "wait",
    "ping",
    "external",
    "ui",
    "addon",
    "feature",
    "observe",
    "notify",
    "instrument",
    "log",
    "status",
    "message",
];

/// The longest flightplan nesting accepted; deeper lists are certainly a mistake, and the
/// limit keeps recursion bounded on hostile input.
const MAX_DEPTH: usize = 16;

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

    fn plan(
        &mut self,
        v: &Value,
        path: &JsonPath,
        scope: Scope,
        depth: usize,
    ) -> Option<Vec<Entry>> {
        let items = self.r.array(v, path)?;
        if items.is_empty() {
            let msg = if depth == 0 {
                "the flightplan is empty: it would do nothing; list at least one directive"
            } else {
                "this parallel list is empty: list at least one directive in it"
            };
            self.r.error(path, msg);
            return None;
        }
        if depth >= MAX_DEPTH {
            self.r.error(
                path,
                format!("parallel lists are nested more than {MAX_DEPTH} deep"),
            );
            return None;
        }
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let p = path.index(i);
            let entry = match item {
                Value::Array(_) => self.plan(item, &p, scope, depth + 1).map(|l| {
                    self.check_parallel(&l, &p);
                    Entry::Parallel(l)
                }),
                Value::Object(_) => self.directive(item, &p, scope).map(Entry::Directive),
                other => {
                    self.r.error(&p, format!("expected a directive (an object with `action`) or a list of directives run in parallel, found {}", type_name(other)));
                    None
                }
            };
            if let Some(e) = entry {
                out.push(e);
            }
        }
        Some(out)
    }

    /// Directives in one parallel list must not fight over the same add-on or feature.
    fn check_parallel(&mut self, list: &[Entry], path: &JsonPath) {
        let mut addons = BTreeSet::new();
        let mut features = BTreeSet::new();
        let mut all = Vec::new();
        fn walk<'a>(l: &'a [Entry], out: &mut Vec<&'a Directive>) {
            for e in l {
                match e {
                    Entry::Directive(d) => out.push(d),
                    Entry::Parallel(p) => walk(p, out),
                }
            }
        }
        walk(list, &mut all);
        for d in all {
            match d {
                Directive::Addon(a) if !addons.insert(a.id.clone()) => {
                    self.r.error(path, format!("add-on {} appears twice in one parallel list; the two would race: put them in sequence", quote(&a.id)));
                }
                Directive::Feature(f) if !features.insert(f.id.clone()) => {
                    self.r.error(path, format!("feature {} is set twice in one parallel list; the two would race: put them in sequence", quote(&f.id)));
                }
                _ => {}
            }
        }
    }

    fn template(&mut self, text: &str, path: &JsonPath, scope: Scope) {
        match template::parse(text) {
            Err(e) => self.r.error(path, e),
            Ok(parts) => {
                for p in parts {
                    if let template::Part::Var(name) = p {
                        self.uses.push(TemplateUse {
                            path: path.clone(),
                            name,
                            scope,
                        });
                    }
                }
            }
        }
    }

    fn url_template(&mut self, text: &str, path: &JsonPath, scope: Scope, schemes: &[&str]) {
        self.template(text, path, scope);
        if let Err(e) = check_url(text, schemes) {
            self.r.error(path, e);
        }
    }

    fn json_templates(&mut self, data: &Value, path: &JsonPath, scope: Scope) {
        let mut strings = Vec::new();
        template::json_strings(data, path, &mut strings);
        for (p, s) in strings {
            self.template(s, &p, scope);
        }
    }

    fn directive(&mut self, v: &Value, path: &JsonPath, scope: Scope) -> Option<Directive> {
        let map = v.as_object()?;
        let Some(action_v) = map.get("action") else {
            self.r.error(
                path,
                format!(
                    "missing field `action`: say what this step does ({})",
                    ACTIONS.join(", ")
                ),
            );
            return None;
        };
        let action = self.r.choice(action_v, &path.key("action"), ACTIONS)?;
        let fields: &[&str] = match action {
            "wait" => &["action", "until", "for"],
            "ping" => &["action", "url", "method", "data"],
            "external" | "ui" => &[
                "action", "type", "title", "text", "url", "waitFor", "expires",
            ],
            "addon" => &[
                "action",
                "do",
                "id",
                "url",
                "path",
                "sha256",
                "permission",
                "msg",
            ],
            "feature" => &["action", "id", "value"],
            "observe" => &["action", "topic", "subject", "count"],
            "notify" => &["action", "topic", "subject", "data"],
            "instrument" => &["action", "watch", "for", "upload", "uploadEvery"],
            _ => &["action", "text"],
        };
        let what = format!("a `{action}` directive");
        let o = self.r.object(v, path, &what, fields)?;
        match action {
            "wait" => self.wait(&o).map(Directive::Wait),
            "ping" => self.ping(&o, scope).map(Directive::Ping),
            "external" | "ui" => self.external(&o, scope).map(Directive::External),
            "addon" => self.addon(&o, scope).map(Directive::Addon),
            "feature" => self.feature(&o).map(Directive::Feature),
            "observe" => self.observe(&o, scope).map(Directive::Observe),
            "notify" => self.notify(&o, scope).map(Directive::Notify),
            "instrument" => self.instrument(&o, scope).map(Directive::Instrument),
            a => {
                let text = self
                    .r
                    .req_string(&o, "text", "the text to write (a template)");
                if let Some(t) = &text {
                    self.template(t, &o.path.key("text"), scope);
                }
                let t = Text { text: text? };
                Some(match a {
                    "log" => Directive::Log(t),
                    "status" => Directive::Status(t),
                    _ => Directive::Message(t),
                })
            }
        }
    }

    fn wait(&mut self, o: &Obj) -> Option<Wait> {
        let until = o
            .map
            .get("until")
            .map(|x| parse_dateish(x).map_err(|e| self.r.error(&o.path.key("until"), e)));
        let for_ = o
            .map
            .get("for")
            .map(|x| self.duration(x, &o.path.key("for")).ok_or(()));
        match (until, for_) {
            (None, None) => {
                self.r.error(
                    &o.path,
                    "a `wait` needs `until` (a date) or `for` (a duration like \"7d\")",
                );
                None
            }
            (Some(_), Some(_)) => {
                self.r
                    .error(&o.path, "a `wait` takes `until` or `for`, not both");
                None
            }
            (Some(u), None) => Some(Wait {
                until: Some(u.ok()?),
                for_: None,
            }),
            (None, Some(f)) => Some(Wait {
                until: None,
                for_: Some(f.ok()?),
            }),
        }
    }

    fn ping(&mut self, o: &Obj, scope: Scope) -> Option<Ping> {
        let url = self.r.req_string(
            o,
            "url",
            "the address to request (http or https; a template)",
        );
        if let Some(u) = &url {
            self.url_template(u, &o.path.key("url"), scope, &["https", "http"]);
        }
        let method = self.r.opt_enum(
            o,
            "method",
            &[
                ("GET", Method::Get),
                ("POST", Method::Post),
                ("PUT", Method::Put),
            ],
            Method::Get,
        );
        let data = o.map.get("data").cloned();
        if let Some(d) = &data {
            if method == Some(Method::Get) {
                self.r.error(
                    &o.path.key("data"),
                    "a GET request has no body: use \"method\": \"POST\" or \"PUT\" to send `data`",
                );
            }
            self.json_templates(d, &o.path.key("data"), scope);
        }
        Some(Ping {
            url: url?,
            method: method?,
            data,
        })
    }

    fn external(&mut self, o: &Obj, scope: Scope) -> Option<External> {
        let kind = self.r.req_enum(
            o,
            "type",
            &[
                ("survey", PromptType::Survey),
                ("message", PromptType::Message),
            ],
            "say whether this is a \"survey\" or a \"message\"",
        );
        let title = self.r.req_string(
            o,
            "title",
            "the prompt's title, shown in the message center",
        );
        if let Some(t) = &title {
            self.template(t, &o.path.key("title"), scope);
        }
        let text = self.r.opt_string(o, "text").unwrap_or_default();
        self.template(&text, &o.path.key("text"), scope);
        let url = self.r.opt_string(o, "url");
        if let Some(u) = &url {
            self.url_template(u, &o.path.key("url"), scope, &["https", "http"]);
        } else if kind == Some(PromptType::Survey) {
            self.r.error(
                &o.path,
                "missing field `url`: a survey needs the address of its questions",
            );
        }
        let wait_for = match o.map.get("waitFor") {
            None => Some(None),
            Some(w) => self
                .r
                .enum_value(w, &o.path.key("waitFor"), &[("ok", WaitFor::Ok)])
                .map(Some),
        };
        let expires = match o.map.get("expires") {
            None => Some(None),
            Some(x) => self.duration(x, &o.path.key("expires")).map(Some),
        };
        Some(External {
            kind: kind?,
            title: title?,
            text,
            url,
            wait_for: wait_for?,
            expires: expires?,
        })
    }

    fn addon(&mut self, o: &Obj, scope: Scope) -> Option<Addon> {
        let op = self.r.req_enum(
            o,
            "do",
            &[
                ("install", AddonOp::Install),
                ("uninstall", AddonOp::Uninstall),
                ("ensure", AddonOp::Ensure),
            ],
            "say what to do with the add-on: \"install\", \"uninstall\" or \"ensure\"",
        );
        let id = self
            .r
            .req_string(o, "id", "the add-on's id, like \"helper@example.com\"");
        if let Some(problem) = id.as_deref().and_then(addon_id_problem) {
            let i = id.as_deref().unwrap_or_default();
            self.r.error(
                &o.path.key("id"),
                format!("{} is not a valid add-on id: {problem}", quote(i)),
            );
        }
        let url = self.r.opt_string(o, "url");
        let path = self.r.opt_string(o, "path");
        let sha256 = self.r.opt_string(o, "sha256");
        if let Some(u) = &url {
            if let Err(e) = check_url(u, &["https", "http", "file"]) {
                self.r.error(&o.path.key("url"), e);
            }
            if sha256.is_none() && op != Some(AddonOp::Uninstall) {
                self.r.error(&o.path, "missing field `sha256`: an add-on downloaded from `url` needs the SHA-256 of its package, so the pilot can check it before installing");
            }
        }
        if let Some(p) = &path {
            let windows_drive = p.len() > 2 && p.as_bytes()[1] == b':';
            if !(p.starts_with('/') || windows_drive) {
                self.r.error(
                    &o.path.key("path"),
                    "`path` must be absolute, like /opt/addons/helper.zip",
                );
            }
        }
        if let Some(h) = &sha256 {
            if h.len() != 64 || !h.bytes().all(|c| c.is_ascii_hexdigit()) {
                self.r.error(
                    &o.path.key("sha256"),
                    "`sha256` must be 64 hex digits (the SHA-256 of the package)",
                );
            }
        }
        match op {
            Some(AddonOp::Uninstall) => {
                for k in ["url", "path", "sha256"] {
                    if o.map.contains_key(k) {
                        self.r.error(
                            &o.path.key(k),
                            format!("`{k}` has no meaning for \"do\": \"uninstall\""),
                        );
                    }
                }
            }
            Some(_) => match (&url, &path) {
                (None, None) => self.r.error(
                    &o.path,
                    "an add-on to install needs its package: give `url` (with `sha256`) or `path`",
                ),
                (Some(_), Some(_)) => self.r.error(&o.path, "give `url` or `path`, not both"),
                _ => {}
            },
            None => {}
        }
        let permission = self.r.opt_enum(
            o,
            "permission",
            &[
                ("none", Permission::None),
                ("notify", Permission::Notify),
                ("warn", Permission::Warn),
            ],
            Permission::Notify,
        );
        let msg = self.r.opt_string(o, "msg");
        if let Some(m) = &msg {
            self.template(m, &o.path.key("msg"), scope);
        }
        Some(Addon {
            op: op?,
            id: id?,
            url,
            path,
            sha256: sha256.map(|s| s.to_ascii_lowercase()),
            permission: permission?,
            msg,
        })
    }

    fn feature(&mut self, o: &Obj) -> Option<Feature> {
        let id = self
            .r
            .req_string(o, "id", "the feature's id, like \"search.newbar\"");
        if let Some(problem) = id.as_deref().and_then(feature_id_problem) {
            self.r.error(&o.path.key("id"), problem);
        }
        let value = match self
            .r
            .required(o, "value", "the feature's value, a JSON object")
        {
            Some(Value::Object(m)) => Some(m.clone()),
            Some(other) => {
                self.r.error(
                    &o.path.key("value"),
                    format!(
                        "expected the feature's value (an object), found {}",
                        type_name(other)
                    ),
                );
                None
            }
            None => None,
        };
        Some(Feature {
            id: id?,
            value: value?,
        })
    }

    fn observe(&mut self, o: &Obj, scope: Scope) -> Option<Observe> {
        let topic = self.r.req_string(o, "topic", "the event topic to wait for");
        if let Some(t) = &topic {
            if t.is_empty() {
                self.r.error(&o.path.key("topic"), "`topic` is empty");
            }
            self.template(t, &o.path.key("topic"), scope);
        }
        let subject = self.r.opt_string(o, "subject");
        if let Some(s) = &subject {
            self.template(s, &o.path.key("subject"), scope);
        }
        let count = match o.map.get("count") {
            None => Some(1),
            Some(c) => self.r.integer(c, &o.path.key("count"), 1),
        };
        Some(Observe {
            topic: topic?,
            subject,
            count: count?,
        })
    }

    fn notify(&mut self, o: &Obj, scope: Scope) -> Option<Notify> {
        let topic = self
            .r
            .req_string(o, "topic", "the topic the application listens for");
        if let Some(t) = &topic {
            if t.is_empty() {
                self.r.error(&o.path.key("topic"), "`topic` is empty");
            }
            self.template(t, &o.path.key("topic"), scope);
        }
        let subject = self.r.opt_string(o, "subject");
        if let Some(s) = &subject {
            self.template(s, &o.path.key("subject"), scope);
        }
        let data = o.map.get("data").cloned();
        if let Some(d) = &data {
            self.json_templates(d, &o.path.key("data"), scope);
        }
        Some(Notify {
            topic: topic?,
            subject,
            data,
        })
    }

    fn instrument(&mut self, o: &Obj, scope: Scope) -> Option<Instrument> {
        let watch = self
            .r
            .required(o, "watch", "the list of event topics to record")
            .and_then(|w| self.r.string_list(w, &o.path.key("watch")));
        if watch.as_ref().is_some_and(|w| w.is_empty()) {
            self.r.error(
                &o.path.key("watch"),
                "`watch` is empty: list the topics to record",
            );
        }
        let for_ = self
            .r
            .required(o, "for", "how long to record, like \"7d\"")
            .and_then(|f| self.duration(f, &o.path.key("for")));
        let has_upload = o.map.contains_key("upload");
        if let (false, Some(w)) = (has_upload, &watch) {
            // Streamed to the tower: only topics its events endpoint takes (docs/api.md).
            for (i, t) in w.iter().enumerate() {
                if !crate::event::is_topic(t) {
                    self.r.error(
                        &o.path.key("watch").index(i),
                        format!(
                            "{} is not an event topic: a recording streamed to the tower (no `upload`) watches topics of 1 to {} lowercase letters, digits, `.`, `-` and `_`",
                            quote(t),
                            crate::event::MAX_TOPIC_LENGTH
                        ),
                    );
                }
            }
        }
        let upload = if has_upload {
            self.r
                .req_string(o, "upload", "the address the recording is sent to (https)")
        } else {
            None
        };
        if let Some(u) = &upload {
            self.url_template(u, &o.path.key("upload"), scope, &["https", "http"]);
        }
        let upload_every = o.map.get("uploadEvery").map(|v| {
            let path = o.path.key("uploadEvery");
            if has_upload {
                self.r.error(
                    &path,
                    "`uploadEvery` applies only to a recording streamed to the tower: \
                     remove it, or remove `upload`",
                );
                None
            } else {
                self.duration(v, &path)
            }
        });
        if has_upload && upload.is_none() {
            return None;
        }
        Some(Instrument {
            watch: watch?,
            for_: for_?,
            upload,
            upload_every: match upload_every {
                None => None,
                Some(d) => Some(d?),
            },
        })
    }

    /// Every `{{name}}` must be a built-in, a flight variable, `person.KEY`, or (in a flight
    /// with arms) defined by every arm that runs the plan it is in.
    fn check_templates(&mut self, flight_vars: &Variables, arms: &[Arm]) {
        let uses = std::mem::take(&mut self.uses);
        for u in uses {
            let n = u.name.as_str();
            if BUILTIN_VARIABLES.contains(&n)
                || flight_vars.contains_key(n)
                || (n.starts_with("person.") && n.len() > 7)
            {
                continue;
            }
            let missing: Vec<&str> = match u.scope {
                Scope::Arm(i) => match arms.get(i) {
                    Some(a) if a.variables.contains_key(n) => continue,
                    Some(a) => vec![a.name.as_str()],
                    None => continue, // the arm itself was invalid and already reported
                },
                Scope::Flight => {
                    let runs: Vec<&Arm> = arms.iter().filter(|a| a.flightplan.is_none()).collect();
                    let lacking: Vec<&str> = runs
                        .iter()
                        .filter(|a| !a.variables.contains_key(n))
                        .map(|a| a.name.as_str())
                        .collect();
                    if !runs.is_empty() && lacking.is_empty() {
                        continue;
                    }
                    lacking
                }
            };
            let defined_somewhere = arms.iter().any(|a| a.variables.contains_key(n));
            let msg = if defined_somewhere && !missing.is_empty() {
                format!("`{{{{{n}}}}}` is not defined by arm {}: every arm that runs this plan must define it in its `variables`", missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", "))
            } else {
                let mut known: Vec<&str> = BUILTIN_VARIABLES.to_vec();
                known.extend(flight_vars.keys().map(String::as_str));
                match crate::diagnostic::did_you_mean(n, &known) {
                    Some(s) => format!("unknown template variable `{{{{{n}}}}}`; did you mean `{{{{{s}}}}}`?"),
                    None => format!("unknown template variable `{{{{{n}}}}}`: define it in `variables`, or use a built-in ({}) or `person.KEY`", BUILTIN_VARIABLES.join(", ")),
                }
            };
            self.r.error(&u.path, msg);
        }
    }
}
