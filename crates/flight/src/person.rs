//! The person context ("peopleconfig") that targeting and templates read.

use crate::diagnostic::{Diagnostics, JsonPath};
use crate::reader::{type_name, Reader};
use serde::Serialize;
use serde_json::{Map, Value};

/// `{"personid": "<uuid>", "os", "channel", "locale", "appversion", ...any extra keys}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Person(Map<String, Value>);

impl Person {
    /// Reads a person context; `personid` is required and the well-known keys must be strings.
    pub fn from_json(v: &Value) -> Result<Person, Diagnostics> {
        let mut r = Reader::default();
        let root = JsonPath::root();
        let Some(map) = v.as_object() else {
            r.error(&root, format!("expected a person (an object with `personid`, `os`, `channel`, `locale`, `appversion`), found {}", type_name(v)));
            return Err(r.diags);
        };
        match map.get("personid") {
            None => r.error(
                &root,
                "missing field `personid`: the person's stable random id",
            ),
            Some(Value::String(s)) if s.is_empty() => {
                r.error(&root.key("personid"), "`personid` is empty")
            }
            Some(Value::String(_)) => {}
            Some(other) => r.error(
                &root.key("personid"),
                format!("expected a string, found {}", type_name(other)),
            ),
        }
        for key in ["os", "channel", "locale", "appversion"] {
            if let Some(x) = map.get(key) {
                if !x.is_string() {
                    r.error(
                        &root.key(key),
                        format!("expected a string, found {}", type_name(x)),
                    );
                }
            }
        }
        if r.diags.is_empty() {
            Ok(Person(map.clone()))
        } else {
            Err(r.diags)
        }
    }

    /// A person with just an id, for tests and simulations; add keys with [`Person::with`].
    pub fn new(personid: &str) -> Person {
        let mut m = Map::new();
        m.insert("personid".into(), Value::String(personid.into()));
        Person(m)
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Person {
        self.0.insert(key.into(), value.into());
        self
    }

    pub fn personid(&self) -> &str {
        self.0.get("personid").and_then(Value::as_str).unwrap_or("")
    }

    /// A key as text: strings as they are, other scalars as JSON, absent or null as `None`.
    pub fn text(&self, key: &str) -> Option<String> {
        match self.0.get(key)? {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }

    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }
}
