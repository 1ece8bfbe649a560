//! Differences between two revisions of a flight, path by path, with paths written like the
//! validator's (`flightplan[3].url`).

use serde::Serialize;
use serde_json::Value;
use testpilot_flight::JsonPath;

/// One difference between two JSON documents.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Change {
    /// Where: `$` for the whole document, else a path like `flightplan[3].url`.
    pub path: String,
    /// `added`, `removed` or `changed`.
    pub op: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<Value>,
}

/// Every difference from `a` to `b`, in document order. Objects are compared member by
/// member, arrays index by index; anything else is compared whole.
pub fn diff(a: &Value, b: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    walk(&JsonPath::root(), a, b, &mut out);
    out
}

fn walk(path: &JsonPath, a: &Value, b: &Value, out: &mut Vec<Change>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                match y.get(k) {
                    Some(vb) => walk(&path.key(k), va, vb, out),
                    None => out.push(change(&path.key(k), "removed", Some(va), None)),
                }
            }
            for (k, vb) in y {
                if !x.contains_key(k) {
                    out.push(change(&path.key(k), "added", None, Some(vb)));
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            for i in 0..x.len().max(y.len()) {
                match (x.get(i), y.get(i)) {
                    (Some(va), Some(vb)) => walk(&path.index(i), va, vb, out),
                    (Some(va), None) => out.push(change(&path.index(i), "removed", Some(va), None)),
                    (None, Some(vb)) => out.push(change(&path.index(i), "added", None, Some(vb))),
                    (None, None) => {}
                }
            }
        }
        _ if a == b => {}
        _ => out.push(change(path, "changed", Some(a), Some(b))),
    }
}

fn change(path: &JsonPath, op: &'static str, from: Option<&Value>, to: Option<&Value>) -> Change {
    Change {
        path: path.to_string(),
        op,
        from: from.cloned(),
        to: to.cloned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(a: Value, b: Value, expected: &[(&str, &str)]) {
        let got: Vec<(String, &str)> = diff(&a, &b).into_iter().map(|c| (c.path, c.op)).collect();
        let want: Vec<(String, &str)> = expected.iter().map(|(p, o)| (p.to_string(), *o)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn paths_and_ops() {
        check(json!({"a": 1}), json!({"a": 1}), &[]);
        check(json!({"a": 1}), json!({"a": 2}), &[("a", "changed")]);
        check(
            json!({"a": 1}),
            json!({"b": 1}),
            &[("a", "removed"), ("b", "added")],
        );
        check(
            json!({"flightplan": [{"url": "x"}, [{"t": 1}]]}),
            json!({"flightplan": [{"url": "y"}, [{"t": 1}, {"t": 2}]]}),
            &[
                ("flightplan[0].url", "changed"),
                ("flightplan[1][1]", "added"),
            ],
        );
        check(json!(1), json!("1"), &[("$", "changed")]);
    }
}
