//! JSON text as authors write it, read strictly: an object that names the same key twice is
//! refused with the key and where it is, instead of the last one silently winning (a flight
//! with `"sample": 0.05` and, further down, `"sample": 1` would otherwise ship to everyone).
//!
//! Every reader of a document a person wrote — flight files, copilot documents, population
//! files, configuration, the tower's API and dashboard bodies — parses through here
//! (docs/flight-spec.md, "The flight"). Depth is bounded by `serde_json`'s own recursion limit
//! (128), sizes by each caller before it parses.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};
use std::fmt;

/// Parses `text` as JSON, refusing duplicate keys. The error carries the line and column
/// (`serde_json::Error::line`, `column`) as any syntax error does; for a duplicate key, the
/// place just after the key (its `:`), which in the usual layout is the key's own line.
pub fn from_str(text: &str) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let v = Strict.deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

/// [`from_str`] over bytes (a request body).
pub fn from_slice(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = Strict.deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

/// Builds a [`Value`] as `serde_json` does, but an object's second use of a key is an error.
#[derive(Clone, Copy)]
struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Value, E> {
        // serde_json's parser never gives a non-finite number.
        Number::from_f64(n)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element_seed(Strict)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            match out.entry(key) {
                Entry::Vacant(slot) => {
                    slot.insert(map.next_value_seed(Strict)?);
                }
                Entry::Occupied(slot) => {
                    return Err(de::Error::custom(format!(
                        "the key `{}` appears twice in one object; keep one",
                        slot.key().escape_debug()
                    )));
                }
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_serde_json_reads() {
        for text in [
            r#"{"a": [1, -2, 3.5, 1e300, 18446744073709551615, "x\u0000", null, true, {}], "b": {"c": []}}"#,
            "  42 ",
            r#""\ud83d\ude00""#,
        ] {
            assert_eq!(
                from_str(text).unwrap(),
                serde_json::from_str::<Value>(text).unwrap()
            );
            assert_eq!(
                from_slice(text.as_bytes()).unwrap(),
                from_str(text).unwrap()
            );
        }
    }

    /// One deliberate difference: with serde_json's `raw_value` feature (which axum and sqlx
    /// turn on), its own `Value` reads this object as the raw text's value, parsed again
    /// (last key wins there); here it is an ordinary object, which validation then refuses
    /// as an unknown field.
    #[test]
    fn a_raw_value_marker_is_an_ordinary_key() {
        let text = r#"{"$serde_json::private::RawValue": "{\"a\": 1}"}"#;
        let v = from_str(text).unwrap();
        assert_eq!(
            v["$serde_json::private::RawValue"],
            Value::String("{\"a\": 1}".into())
        );
    }

    #[test]
    fn a_key_twice_is_refused_with_where() {
        let text = "{\n  \"sample\": 0.05,\n  \"arms\": {\"a\": 1, \"b\": 2},\n  \"sample\": 1\n}";
        let e = from_str(text).unwrap_err();
        assert!(e.to_string().contains("`sample` appears twice"), "{e}");
        assert_eq!(e.line(), 4);
        // Nested, and keys that differ only by an escape are the same key.
        let e = from_str(r#"{"a": {"x": 1, "\u0078": 2}}"#).unwrap_err();
        assert!(e.to_string().contains("`x` appears twice"), "{e}");
        // The same key in two different objects is fine.
        assert!(from_str(r#"[{"x": 1}, {"x": 2}]"#).is_ok());
    }

    #[test]
    fn syntax_errors_and_trailing_text_still_fail() {
        assert!(from_str("{").is_err());
        assert!(from_str("{} x").is_err());
        assert!(from_slice(b"\xff").is_err());
        // serde_json's recursion limit holds.
        let deep = "[".repeat(10_000);
        assert!(from_str(&deep).is_err());
    }
}
