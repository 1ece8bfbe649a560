//! Reading untrusted JSON into typed values while collecting every problem.
//!
//! Serde stops at the first error; authors want all of them, each with its path. A
//! [`Reader`] walks a `serde_json::Value`, records a [`Diagnostic`] for each problem and
//! keeps going, so validation reports everything in one pass and never panics.

use crate::diagnostic::{did_you_mean, quote, quote_value, Diagnostics, JsonPath};
use serde_json::{Map, Value};

/// The JSON type name a person would use in a message.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Collects diagnostics for one document.
#[derive(Default)]
pub(crate) struct Reader {
    pub diags: Diagnostics,
}

/// An object being read: its fields, its path and the names it may have.
pub(crate) struct Obj<'v> {
    pub map: &'v Map<String, Value>,
    pub path: JsonPath,
}

impl Reader {
    pub fn error(&mut self, path: &JsonPath, message: impl Into<String>) {
        self.diags.push(path, message);
    }

    /// Reads `v` as an object whose members must all be in `fields`.
    pub fn object<'v>(
        &mut self,
        v: &'v Value,
        path: &JsonPath,
        what: &str,
        fields: &[&str],
    ) -> Option<Obj<'v>> {
        let Some(map) = v.as_object() else {
            self.error(
                path,
                format!("expected {what} (an object), found {}", type_name(v)),
            );
            return None;
        };
        for key in map.keys() {
            if !fields.contains(&key.as_str()) {
                let msg = match did_you_mean(key, fields) {
                    Some(s) => format!("unknown field {}; did you mean `{s}`?", quote(key)),
                    None => format!(
                        "unknown field {}; {what} takes {}",
                        quote(key),
                        fields
                            .iter()
                            .map(|f| format!("`{f}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                self.error(&path.key(key), msg);
            }
        }
        Some(Obj {
            map,
            path: path.clone(),
        })
    }

    pub fn required<'v>(&mut self, o: &Obj<'v>, key: &str, hint: &str) -> Option<&'v Value> {
        match o.map.get(key) {
            Some(v) => Some(v),
            None => {
                let msg = if hint.is_empty() {
                    format!("missing field `{key}`")
                } else {
                    format!("missing field `{key}`: {hint}")
                };
                self.error(&o.path, msg);
                None
            }
        }
    }

    pub fn string(&mut self, v: &Value, path: &JsonPath) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            _ => {
                self.error(path, format!("expected a string, found {}", type_name(v)));
                None
            }
        }
    }

    pub fn opt_string(&mut self, o: &Obj, key: &str) -> Option<String> {
        let v = o.map.get(key)?;
        self.string(v, &o.path.key(key))
    }

    pub fn req_string(&mut self, o: &Obj, key: &str, hint: &str) -> Option<String> {
        let v = self.required(o, key, hint)?;
        self.string(v, &o.path.key(key))
    }

    pub fn opt_bool(&mut self, o: &Obj, key: &str) -> Option<bool> {
        let v = o.map.get(key)?;
        match v {
            Value::Bool(b) => Some(*b),
            _ => {
                self.error(
                    &o.path.key(key),
                    format!("expected true or false, found {}", type_name(v)),
                );
                None
            }
        }
    }

    pub fn number(&mut self, v: &Value, path: &JsonPath) -> Option<f64> {
        match v.as_f64() {
            Some(f) if v.is_number() => Some(f),
            _ => {
                self.error(path, format!("expected a number, found {}", type_name(v)));
                None
            }
        }
    }

    /// A whole number in `[min, u64::MAX]`.
    pub fn integer(&mut self, v: &Value, path: &JsonPath, min: u64) -> Option<u64> {
        let n = match v {
            Value::Number(n) => n.as_u64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 9.0e15)
                    .map(|f| f as u64)
            }),
            _ => None,
        };
        match n {
            Some(n) if n >= min => Some(n),
            _ => {
                let what = if min == 0 {
                    "a whole number, 0 or more"
                } else {
                    "a whole number, 1 or more"
                };
                self.error(path, format!("expected {what}, found {}", quote_value(v)));
                None
            }
        }
    }

    pub fn array<'v>(&mut self, v: &'v Value, path: &JsonPath) -> Option<&'v Vec<Value>> {
        match v {
            Value::Array(a) => Some(a),
            _ => {
                self.error(path, format!("expected a list, found {}", type_name(v)));
                None
            }
        }
    }

    /// A list of strings; bad elements are reported and skipped.
    pub fn string_list(&mut self, v: &Value, path: &JsonPath) -> Option<Vec<String>> {
        let items = self.array(v, path)?;
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            if let Some(s) = self.string(item, &path.index(i)) {
                out.push(s);
            }
        }
        Some(out)
    }

    /// An enum field: one of the names in `table`, mapped to its value.
    pub fn enum_value<T: Copy>(
        &mut self,
        v: &Value,
        path: &JsonPath,
        table: &[(&'static str, T)],
    ) -> Option<T> {
        let names: Vec<&'static str> = table.iter().map(|(n, _)| *n).collect();
        let name = self.choice(v, path, &names)?;
        table.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
    }

    /// An optional enum field; absent means `default`.
    pub fn opt_enum<T: Copy>(
        &mut self,
        o: &Obj,
        key: &str,
        table: &[(&'static str, T)],
        default: T,
    ) -> Option<T> {
        match o.map.get(key) {
            None => Some(default),
            Some(v) => self.enum_value(v, &o.path.key(key), table),
        }
    }

    /// A required enum field.
    pub fn req_enum<T: Copy>(
        &mut self,
        o: &Obj,
        key: &str,
        table: &[(&'static str, T)],
        hint: &str,
    ) -> Option<T> {
        let v = self.required(o, key, hint)?;
        self.enum_value(v, &o.path.key(key), table)
    }

    /// One of `choices`, exactly as written; otherwise reported with a suggestion (which
    /// ignores case, so `"post"` gets "did you mean `POST`?").
    pub fn choice(
        &mut self,
        v: &Value,
        path: &JsonPath,
        choices: &[&'static str],
    ) -> Option<&'static str> {
        let s = self.string(v, path)?;
        if let Some(c) = choices.iter().find(|c| **c == s) {
            return Some(c);
        }
        let list = choices
            .iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let msg = match did_you_mean(&s, choices) {
            Some(c) => format!("{} is not one of {list}; did you mean `{c}`?", quote(&s)),
            None => format!("{} is not one of {list}", quote(&s)),
        };
        self.error(path, msg);
        None
    }
}

/// A value as a message echoes it: [`quote_value`] (kept under this name for its callers).
pub(crate) fn short(v: &Value) -> String {
    quote_value(v)
}
