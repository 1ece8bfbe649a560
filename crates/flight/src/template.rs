//! `{{name}}` templates: strict variables, percent-encoding in URLs, JSON-safe in data.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;

/// Everything but RFC 3986's unreserved characters is encoded in a substituted value, so a
/// value can never add a path segment, a query parameter or a fragment to a URL.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The variables every flight may use, whatever its person and arms.
pub const BUILTIN_VARIABLES: &[&str] = &[
    "studyname",
    "version",
    "arm",
    "starttime",
    "status",
    "step",
    "personid",
    "os",
    "channel",
    "locale",
    "appversion",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    Var(String),
}

/// Splits a template into text and variables, or says what is malformed.
pub fn parse(template: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            parts.push(Part::Text(rest[..open].to_string()));
        }
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            return Err(format!(
                "`{{{{` at character {} is never closed with `}}}}`",
                template.len() - rest.len() + open + 1
            ));
        };
        let name = after[..close].trim();
        if name.is_empty() {
            return Err("empty `{{}}`: put a variable name inside, like `{{os}}`".into());
        }
        if !is_variable_name(name) {
            return Err(format!("{} is not a variable name: use letters, digits, `_`, `-` and `.` (as in `person.KEY`)", crate::diagnostic::quote(&format!("{{{{{name}}}}}"))));
        }
        parts.push(Part::Var(name.to_string()));
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_string()));
    }
    Ok(parts)
}

pub(crate) fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// The names a template uses (empty when it is malformed).
pub fn variables(template: &str) -> Vec<String> {
    parse(template)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| match p {
            Part::Var(v) => Some(v),
            Part::Text(_) => None,
        })
        .collect()
}

/// How substituted values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// As they are (flight log text, prompt text, strings inside JSON data: the JSON
    /// serializer escapes them when the data is written).
    None,
    /// Percent-encoded, for URLs.
    Url,
}

/// The result of rendering: the text, and the variables that had no value (rendered empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    pub missing: Vec<String>,
}

/// Renders `template`, asking `lookup` for each variable. A malformed template renders as
/// written (validation refuses those before any flight runs).
pub fn render(template: &str, lookup: &dyn Fn(&str) -> Option<String>, escape: Escape) -> Rendered {
    let Ok(parts) = parse(template) else {
        return Rendered {
            text: template.to_string(),
            missing: Vec::new(),
        };
    };
    let mut text = String::with_capacity(template.len());
    let mut missing = Vec::new();
    for p in parts {
        match p {
            Part::Text(t) => text.push_str(&t),
            Part::Var(name) => match lookup(&name) {
                Some(v) => match escape {
                    Escape::None => text.push_str(&v),
                    Escape::Url => text.extend(utf8_percent_encode(&v, COMPONENT)),
                },
                None => missing.push(name),
            },
        }
    }
    Rendered { text, missing }
}

/// Renders every string (not keys) inside a JSON value.
pub fn render_json(
    data: &Value,
    lookup: &dyn Fn(&str) -> Option<String>,
    missing: &mut Vec<String>,
) -> Value {
    match data {
        Value::String(s) => {
            let r = render(s, lookup, Escape::None);
            missing.extend(r.missing);
            Value::String(r.text)
        }
        Value::Array(a) => {
            Value::Array(a.iter().map(|v| render_json(v, lookup, missing)).collect())
        }
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), render_json(v, lookup, missing)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Every string inside a JSON value, with its path, for validation.
pub(crate) fn json_strings<'a>(
    data: &'a Value,
    path: &crate::JsonPath,
    out: &mut Vec<(crate::JsonPath, &'a str)>,
) {
    match data {
        Value::String(s) => out.push((path.clone(), s)),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, v)| json_strings(v, &path.index(i), out)),
        Value::Object(o) => o
            .iter()
            .for_each(|(k, v)| json_strings(v, &path.key(k), out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "os" => Some("linux".into()),
            "q" => Some("a b/c?d=e&f#g".into()),
            "person.country" => Some("Ísland".into()),
            _ => None,
        }
    }

    #[test]
    fn renders_and_escapes() {
        let r = render("https://x.test/{{os}}/{{ q }}", &vars, Escape::Url);
        assert_eq!(r.text, "https://x.test/linux/a%20b%2Fc%3Fd%3De%26f%23g");
        let r = render(
            "hello {{person.country}} {{person.nope}}!",
            &vars,
            Escape::None,
        );
        assert_eq!(r.text, "hello Ísland !");
        assert_eq!(r.missing, vec!["person.nope".to_string()]);
        let mut missing = vec![];
        let data = render_json(
            &serde_json::json!({"q": "\"{{q}}\"", "n": [1, "{{os}}"]}),
            &vars,
            &mut missing,
        );
        assert_eq!(
            data.to_string(),
            r#"{"n":[1,"linux"],"q":"\"a b/c?d=e&f#g\""}"#
        );
    }

    #[test]
    fn malformed() {
        assert!(parse("a {{os").is_err());
        assert!(parse("a {{}}").is_err());
        assert!(parse("a {{ o s }}").is_err());
        assert!(parse("a }} b").is_ok());
        assert_eq!(variables("{{a}}{{b.c}}x"), vec!["a", "b.c"]);
    }
}
