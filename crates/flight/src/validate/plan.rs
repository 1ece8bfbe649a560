//! Flightplans: lists of directives and parallel lists, nesting, races in a parallel list,
//! and the template variables a plan uses (checked against the flight's and arms' variables).

use super::{check_url, Scope, TemplateUse, V};
use crate::diagnostic::{quote, JsonPath};
use crate::reader::type_name;
use crate::spec::*;
use crate::template::{self, BUILTIN_VARIABLES};
use serde_json::Value;
use std::collections::BTreeSet;

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

impl V {
    pub(super) fn plan(
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
    pub(super) fn check_parallel(&mut self, list: &[Entry], path: &JsonPath) {
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

    pub(super) fn template(&mut self, text: &str, path: &JsonPath, scope: Scope) {
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

    pub(super) fn url_template(
        &mut self,
        text: &str,
        path: &JsonPath,
        scope: Scope,
        schemes: &[&str],
    ) {
        self.template(text, path, scope);
        if let Err(e) = check_url(text, schemes) {
            self.r.error(path, e);
        }
    }

    pub(super) fn json_templates(&mut self, data: &Value, path: &JsonPath, scope: Scope) {
        let mut strings = Vec::new();
        template::json_strings(data, path, &mut strings);
        for (p, s) in strings {
            self.template(s, &p, scope);
        }
    }

    pub(super) fn directive(
        &mut self,
        v: &Value,
        path: &JsonPath,
        scope: Scope,
    ) -> Option<Directive> {
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

    /// Every `{{name}}` must be a built-in, a flight variable, `person.KEY`, or (in a flight
    /// with arms) defined by every arm that runs the plan it is in.
    pub(super) fn check_templates(&mut self, flight_vars: &Variables, arms: &[Arm]) {
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
