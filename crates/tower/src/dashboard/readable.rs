//! A flight spec as a person reads it: who may run it, what share of them, which arms, and
//! the flightplan step by step — with the raw JSON one click away.

use super::charts::n;
use maud::{html, Markup};
use serde_json::Value;
use std::collections::BTreeMap;
use testpilot_flight::template::{self, Part};
use testpilot_flight::{Directive, Entry, Flight};

/// A scalar or small JSON value as text: strings without quotes.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn json_of<T: serde::Serialize>(x: &T) -> Value {
    serde_json::to_value(x).unwrap_or(Value::Null)
}

/// The template variables whose value every client of a funnel shares, as text: the
/// flight's `variables` overlaid with `arm`'s, or for all arms together only those no arm
/// overrides; and the studyname (and the arm's name). Other variables (`{{os}}`,
/// `{{person.KEY}}`, ...) differ from client to client.
pub fn known_variables(f: &Flight, arm: Option<&str>) -> BTreeMap<String, String> {
    let mut known: BTreeMap<String, String> = f
        .variables
        .iter()
        .map(|(k, v)| (k.clone(), v.render()))
        .collect();
    match arm.and_then(|a| f.arms.iter().find(|x| x.name == a)) {
        Some(a) => {
            known.extend(a.variables.iter().map(|(k, v)| (k.clone(), v.render())));
            known.insert("arm".into(), a.name.clone());
        }
        None => {
            for a in &f.arms {
                for k in a.variables.keys() {
                    known.remove(k);
                }
            }
        }
    }
    known.insert("studyname".into(), f.studyname.clone());
    known
}

/// `text` with every `{{name}}` replaced by its value from `known`, or by `«name»` where the
/// value differs from client to client: a label never shows raw template syntax. A
/// malformed template (validation refuses those) shows with its braces as `«…»` too.
pub fn untemplate(text: &str, known: &BTreeMap<String, String>) -> String {
    match template::parse(text) {
        Ok(parts) => parts
            .into_iter()
            .map(|p| match p {
                Part::Text(t) => t,
                Part::Var(v) => known.get(&v).cloned().unwrap_or_else(|| format!("«{v}»")),
            })
            .collect(),
        Err(_) => text.replace("{{", "«").replace("}}", "»"),
    }
}

/// The one phrase that says what a step does, for the funnel's labels: its action and what
/// it acts on, e.g. `message: Welcome, «personid»` or `survey: How is the new tab?`.
pub fn step_label(e: &Entry, known: &BTreeMap<String, String>) -> String {
    let label = match e {
        Entry::Parallel(list) => format!("{} steps in parallel", list.len()),
        Entry::Directive(d) => {
            let what = match d {
                Directive::Wait(w) => match (&w.until, &w.for_) {
                    (Some(u), _) => format!("until {}", text(&json_of(u))),
                    (_, Some(f)) => format!("for {}", text(&json_of(f))),
                    _ => String::new(),
                },
                Directive::Ping(p) => p.url.clone(),
                Directive::External(x) => {
                    return untemplate(&format!("{}: {}", x.kind.as_str(), x.title), known)
                }
                Directive::Addon(a) => format!("{} {}", text(&json_of(&a.op)), a.id),
                Directive::Feature(f) => f.id.clone(),
                Directive::Observe(o) => o.topic.clone(),
                Directive::Notify(x) => x.topic.clone(),
                Directive::Instrument(i) => i.watch.join(", "),
                Directive::Log(t) | Directive::Status(t) | Directive::Message(t) => t.text.clone(),
            };
            format!("{}: {}", d.action(), what)
        }
    };
    untemplate(&label, known)
}

/// Labels of every top-level step of a plan.
pub fn step_labels(plan: &[Entry], known: &BTreeMap<String, String>) -> Vec<String> {
    plan.iter().map(|e| step_label(e, known)).collect()
}

fn directive(d: &Directive) -> Markup {
    let mut fields: Vec<(String, String)> = Vec::new();
    if let Value::Object(o) = json_of(d) {
        for (k, v) in o {
            if k != "action" {
                let shown = match &v {
                    Value::Object(_) | Value::Array(_) => {
                        serde_json::to_string(&v).unwrap_or_default()
                    }
                    other => text(other),
                };
                fields.push((k, shown));
            }
        }
    }
    html! {
        span.action { (d.action()) }
        @for (k, v) in &fields {
            " "
            span.field { span.key { (k) } " " span.val { (v) } }
        }
    }
}

fn plan(entries: &[Entry]) -> Markup {
    html! {
        ol.plan {
            @for e in entries {
                li {
                    @match e {
                        Entry::Directive(d) => (directive(d)),
                        Entry::Parallel(list) => {
                            span.action { "in parallel" }
                            ul.parallel {
                                @for x in list {
                                    li {
                                        @match x {
                                            Entry::Directive(d) => (directive(d)),
                                            Entry::Parallel(inner) => (plan(inner)),
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// An `http(s)` URL may be a link; anything else (`javascript:` ...) is shown as text.
fn link(url: &str) -> Markup {
    let safe = url.starts_with("https://") || url.starts_with("http://");
    html! {
        @if safe { a href=(url) rel="noopener noreferrer" { (url) } } @else { code { (url) } }
    }
}

/// The whole spec, readable.
pub fn spec(f: &Flight, raw: &Value) -> Markup {
    let total_ratio: u64 = f.arms.iter().map(|a| a.ratio).sum();
    html! {
        dl.spec {
            dt { "Studyname" } dd { code { (f.studyname) } }
            dt { "Author" } dd { (f.author) }
            dt { "Description" } dd.description { (f.description) }
            @if let Some(u) = &f.infourl { dt { "More information" } dd { (link(u)) } }
            dt { "Who" }
            dd {
                @if f.filter.is_empty() { "everyone" } @else {
                    ul.filter {
                        @if !f.filter.channels.is_empty() { li { "channels: " (f.filter.channels.join(", ")) } }
                        @if !f.filter.oses.is_empty() { li { "operating systems: " (f.filter.oses.join(", ")) } }
                        @if !f.filter.locales.is_empty() { li { "locales: " (f.filter.locales.join(", ")) } }
                        @if let Some(v) = &f.filter.versions { li { "app versions: " code { (v) } } }
                        @if let Some(x) = &f.filter.expression { li { "expression: " code { (x) } } }
                    }
                }
            }
            dt { "Share" }
            dd {
                @match &f.random_deploy {
                    None => "all who match",
                    Some(r) => {
                        (format!("{:.1}", (r.lt - r.ge) * 100.0)) "% of those who match (buckets "
                        (r.ge) " to " (r.lt) " of key " code { (f.deploy_key()) } ")"
                    }
                }
            }
            @if let Some(e) = &f.end_by { dt { "Ends by" } dd { (text(&json_of(e))) } }
            @if let Some(x) = &f.fuse { dt { "Fuse" } dd { (text(&json_of(x))) " after a client starts" } }
            @if !f.variables.is_empty() {
                dt { "Variables" }
                dd { @for (k, v) in &f.variables { span.field { span.key { (k) } " " span.val { (v.render()) } } " " } }
            }
        }
        @if !f.arms.is_empty() {
            h3 { "Arms" }
            table.arms {
                thead { tr { th { "Arm" } th { "Share" } th { "Variables" } th { "Flightplan" } } }
                tbody {
                    @for a in &f.arms {
                        tr {
                            td { code { (a.name) } }
                            td.num { ((a.ratio * 100).checked_div(total_ratio).unwrap_or(0)) "% (ratio " (n(a.ratio)) ")" }
                            td { @for (k, v) in &a.variables { span.field { span.key { (k) } " " span.val { (v.render()) } } " " } }
                            td { @if a.flightplan.is_some() { "its own (below)" } @else { "the flight's" } }
                        }
                    }
                }
            }
        }
        @if !f.flightplan.is_empty() {
            h3 { "Flightplan" }
            (plan(&f.flightplan))
        }
        @for a in &f.arms {
            @if let Some(p) = &a.flightplan {
                h3 { "Flightplan of arm " code { (a.name) } }
                (plan(p))
            }
        }
        details.raw {
            summary { "The spec as JSON" }
            pre { (serde_json::to_string_pretty(raw).unwrap_or_default()) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn flight() -> Flight {
        Flight::from_json(&json!({
            "studyname": "welcome",
            "author": "a@example.com",
            "description": "d",
            "variables": {"layout": "list", "greeting": "Welcome"},
            "arms": [{"name": "control", "ratio": 1}, {"name": "grid", "ratio": 1, "variables": {"layout": "grid"}}],
            "flightplan": [
                {"action": "message", "text": "{{greeting}}, {{personid}}: the {{layout}} layout"},
                {"action": "external", "type": "survey", "title": "How is {{layout}}?", "url": "https://example.com/s?l={{layout}}&os={{os}}", "waitFor": "ok"},
                {"action": "ping", "url": "https://example.com/{{studyname}}/{{arm}}"},
                {"action": "log", "text": "done"}
            ]
        }))
        .unwrap()
    }

    #[test]
    fn labels_show_the_step_not_its_templates() {
        let f = flight();
        let all = step_labels(&f.flightplan, &known_variables(&f, None));
        assert_eq!(
            all,
            [
                "message: Welcome, «personid»: the «layout» layout",
                "survey: How is «layout»?",
                "ping: https://example.com/welcome/«arm»",
                "log: done",
            ]
        );
        let grid = step_labels(f.plan_for(Some("grid")), &known_variables(&f, Some("grid")));
        assert_eq!(grid[0], "message: Welcome, «personid»: the grid layout");
        assert_eq!(grid[2], "ping: https://example.com/welcome/grid");
        let control = step_labels(
            f.plan_for(Some("control")),
            &known_variables(&f, Some("control")),
        );
        assert_eq!(control[1], "survey: How is list?");
        for l in all.iter().chain(&grid).chain(&control) {
            assert!(!l.contains("{{") && !l.contains("}}"), "{l}");
        }
    }

    #[test]
    fn malformed_templates_show_no_braces() {
        let known = BTreeMap::new();
        assert_eq!(untemplate("a {{b", &known), "a «b");
        assert_eq!(untemplate("no templates", &known), "no templates");
    }
}
