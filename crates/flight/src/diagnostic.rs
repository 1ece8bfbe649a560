//! Problems found in author input, each with the JSON path where it is.

use serde::Serialize;
use serde_json::Value;
use std::borrow::Cow;
use std::fmt;

/// The longest part of a value a message echoes, in characters.
const ECHO_CHARS: usize = 40;

/// How a message shows a string the author (or a client) wrote: as a JSON string, cut after
/// 40 characters, so quotes, newlines and terminal escape codes appear escaped and a problem
/// stays one line. Every diagnostic that echoes input goes through this (or [`quote_value`]).
pub fn quote(s: &str) -> String {
    let cut: String = s.chars().take(ECHO_CHARS).collect();
    let mut q = one_line(&Value::String(cut).to_string()).into_owned();
    if s.chars().nth(ECHO_CHARS).is_some() {
        q.push('…');
    }
    q
}

/// [`quote`] for any JSON value: its compact JSON text, cut after 40 characters.
pub fn quote_value(v: &Value) -> String {
    let s = v.to_string();
    let cut: String = s.chars().take(ECHO_CHARS).collect();
    let mut q = one_line(&cut).into_owned();
    if s.chars().nth(ECHO_CHARS).is_some() {
        q.push('…');
    }
    q
}

/// `s` with every control character written as an escape (`\n`, `\u001b`, …): what JSON
/// quoting leaves (DEL, the C1 controls) and what a message might hold unquoted. Every
/// diagnostic passes through it, so whatever the input, one problem is one line.
pub fn one_line(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A JSON path such as `flightplan[3][1].url`; the empty path is the document itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct JsonPath(String);

impl JsonPath {
    pub fn root() -> Self {
        JsonPath(String::new())
    }

    /// The path of the member `key` of the object at this path.
    pub fn key(&self, key: &str) -> Self {
        let simple = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let mut s = self.0.clone();
        if simple {
            if !s.is_empty() {
                s.push('.');
            }
            s.push_str(key);
        } else {
            s.push('[');
            s.push_str(&serde_json::to_string(key).unwrap_or_default());
            s.push(']');
        }
        JsonPath(s)
    }

    /// The path of element `i` of the array at this path.
    pub fn index(&self, i: usize) -> Self {
        JsonPath(format!("{}[{i}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("$")
        } else {
            f.write_str(&self.0)
        }
    }
}

/// One problem: where it is and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Diagnostic {
    pub path: JsonPath,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.to_string();
        write!(f, "{}: {}", one_line(&path), one_line(&self.message))
    }
}

/// Every problem found in one document, in document order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Adds a problem. Control characters in `message` are escaped here, so that whoever
    /// prints `path: message` prints one line.
    pub fn push(&mut self, path: &JsonPath, message: impl Into<String>) {
        let message = message.into();
        let message = match one_line(&message) {
            Cow::Borrowed(_) => message,
            Cow::Owned(escaped) => escaped,
        };
        self.0.push(Diagnostic {
            path: path.clone(),
            message,
        });
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo: a few
/// edits away (case ignored), or nearly the same by Jaro-Winkler similarity.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    let max_edits = (lower.chars().count() / 4).max(1);
    candidates
        .iter()
        .filter_map(|c| {
            let cl = c.to_ascii_lowercase();
            let edits = strsim::osa_distance(&lower, &cl);
            let jw = strsim::jaro_winkler(&lower, &cl);
            let prefix = lower.len() >= 2 && (cl.starts_with(&lower) || lower.starts_with(&cl));
            (edits <= max_edits || jw >= 0.9 || prefix).then_some((edits, *c))
        })
        .min_by_key(|(edits, _)| *edits)
        .map(|(_, c)| c)
}
