//! The JSON Schema of the flight spec, generated from the model.
//!
//! It matches what validation accepts field by field (names, types, enums, patterns, ranges,
//! no unknown fields). Rules that tie fields together (a `wait` takes exactly one of `until`
//! and `for`; `sha256` goes with `url`; template variables must be defined) are checked by
//! validation only, which says exactly what is wrong.

use serde_json::{json, Value};

/// The JSON Schema (2020-12) of a flight, as `testpilot flight schema` prints it.
pub fn flight_schema() -> Value {
    let mut schema =
        serde_json::to_value(schemars::schema_for!(crate::spec::Flight)).unwrap_or_default();
    drop_null(&mut schema);
    close_directives(&mut schema);
    schema
}

/// The JSON Schema (2020-12) of a copilot document, as `testpilot copilot schema` prints it.
/// Like the flight's, it holds every rule about one field; validation adds the rules that
/// tie fields together (only the control may change no feature, `uploadEvery` is at most
/// the duration, template variables must exist).
pub fn copilot_schema() -> Value {
    let mut schema =
        serde_json::to_value(schemars::schema_for!(crate::copilot::Copilot)).unwrap_or_default();
    drop_null(&mut schema);
    if let Some(p) = schema.pointer_mut("/properties/copilot") {
        *p = json!({"description": "The format's version: 1.", "const": 1});
    }
    if let Some(Value::Object(p)) = schema.pointer_mut("/properties/sample") {
        p.insert("exclusiveMinimum".into(), json!(0));
        p.insert("maximum".into(), json!(1));
    }
    if let Some(Value::Object(p)) = schema.pointer_mut("/properties/watch") {
        p.insert(
            "items".into(),
            json!({"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,63}$"}),
        );
        p.insert("uniqueItems".into(), json!(true));
    }
    if let Some(Value::Object(p)) = schema.pointer_mut("/$defs/CopilotArm/properties/features") {
        p.insert(
            "propertyNames".into(),
            json!({"pattern": "^[A-Za-z0-9._-]{1,200}$"}),
        );
    }
    if let Some(Value::Object(p)) = schema.pointer_mut("/$defs/CopilotArm/properties/ratio") {
        p.insert("maximum".into(), json!(1_000_000));
    }
    schema
}

/// Optional fields are absent, never `null`: validation refuses `null` for them.
fn drop_null(v: &mut Value) {
    match v {
        Value::Object(o) => {
            if let Some(Value::Array(types)) = o.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let t = types.remove(0);
                    o.insert("type".into(), t);
                }
            }
            if let Some(Value::Array(any)) = o.get_mut("anyOf") {
                any.retain(|s| s.get("type") != Some(&json!("null")));
                if any.len() == 1 {
                    let only = any.remove(0);
                    o.remove("anyOf");
                    if let Value::Object(m) = only {
                        o.extend(m);
                    }
                }
            }
            o.values_mut().for_each(drop_null);
        }
        Value::Array(a) => a.iter_mut().for_each(drop_null),
        _ => {}
    }
}

/// A directive is `{"action": ..., fields}`: the variant adds `action` beside a `$ref` to the
/// fields, so "no other fields" must be said where both are seen (`unevaluatedProperties`),
/// not inside the referenced definition. `external` also answers to its alias `ui`.
fn close_directives(schema: &mut Value) {
    let mut closed = Vec::new();
    if let Some(Value::Array(variants)) = schema.pointer_mut("/$defs/Directive/oneOf") {
        for v in variants.iter_mut() {
            if let Some(r) = v.get("$ref").and_then(Value::as_str) {
                closed.push(r.trim_start_matches("#/$defs/").to_string());
            }
            if let Some(o) = v.as_object_mut() {
                o.insert("unevaluatedProperties".into(), json!(false));
            }
            if v.pointer("/properties/action/const") == Some(&json!("external")) {
                if let Some(a) = v.pointer_mut("/properties/action") {
                    *a = json!({"type": "string", "enum": ["external", "ui"]});
                }
            }
        }
    }
    for name in closed {
        if let Some(Value::Object(def)) = schema.pointer_mut(&format!("/$defs/{name}")) {
            def.remove("additionalProperties");
        }
    }
}
