//! The OpenAPI 3.1 document served at `/api/openapi.json`.
//!
//! utoipa derives paths and response types from the handlers (`api::ApiDoc`); this module
//! completes it with what the derive cannot say, so that the document is true of every
//! answer (a test drives the real router and checks each body against it):
//! - the flight's JSON Schema (`testpilot_flight::schema`) as the component `Flight`, its
//!   definitions as `Flight.<Name>`, the copilot document's likewise as `Copilot` (a push
//!   takes either), the report batch as `ReportBatch` and the event batch as `EventBatch`,
//!   referenced by the request bodies that take them;
//! - the bodies of answers built as JSON by hand (the index envelope, a diff, `/healthz`);
//! - the errors every route of a kind can give, in the shape `ErrorBody`: 401 and 403
//!   where a token is needed, 400 for a path or query string that does not parse, 404
//!   where a flight is named, and 400, 408, 413, 415 and 422 where a body is read.

use serde_json::{json, Map, Value};
use std::sync::OnceLock;
use testpilot_flight::event::{MAX_ARM_BYTES, MAX_SEQ, MAX_SUBJECT_BYTES, MAX_TOPIC_LENGTH};
use testpilot_flight::report::{Status, AT_RANGE, MAX_NUMBER};

/// The document, built once.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        use utoipa::OpenApi;
        complete(serde_json::to_value(crate::api::ApiDoc::openapi()).unwrap_or_default())
    })
}

/// The flight's arm-name rule (`validate::is_name`), as a JSON Schema pattern.
const ARM_PATTERN: &str = "^[a-z0-9][a-z0-9._-]*$";
const ERROR: &str = "#/components/schemas/ErrorBody";

fn complete(mut doc: Value) -> Value {
    let schemas = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut);
    if let Some(schemas) = schemas {
        add_schema(schemas, "Flight", testpilot_flight::schema::flight_schema());
        add_schema(
            schemas,
            "Copilot",
            testpilot_flight::schema::copilot_schema(),
        );
        schemas.extend(hand_written_schemas());
    }
    let body = |r: &str| json!({"required": true, "content": {"application/json": {"schema": {"$ref": r}}}});
    let json_answer = |r: Value| json!({"application/json": {"schema": r}});
    let fixes: [(&str, &str, &str, Value); 7] = [
        (
            "/api/v1/flights",
            "post",
            "requestBody",
            json!({"required": true, "description": "A flight spec (docs/flight-spec.md), or a copilot document (docs/copilot.md), which has a top-level `copilot` key and is expanded into a flight",
                   "content": {"application/json": {"schema": {"oneOf": [
                       {"$ref": "#/components/schemas/Flight"},
                       {"$ref": "#/components/schemas/Copilot"}]}}}}),
        ),
        (
            "/api/v1/reports",
            "post",
            "requestBody",
            body("#/components/schemas/ReportBatch"),
        ),
        (
            "/api/v1/events",
            "post",
            "requestBody",
            body("#/components/schemas/EventBatch"),
        ),
        (
            "/control/index.json",
            "get",
            "responses/200/content",
            json_answer(json!({"$ref": "#/components/schemas/IndexEnvelope"})),
        ),
        (
            "/api/v1/flights/{studyname}/diff",
            "get",
            "responses/200/content",
            json_answer(json!({"$ref": "#/components/schemas/Diff"})),
        ),
        (
            "/healthz",
            "get",
            "responses/200/content",
            json_answer(json!({"$ref": "#/components/schemas/Health"})),
        ),
        (
            "/healthz",
            "get",
            "responses/503/content",
            json_answer(json!({"$ref": "#/components/schemas/Health"})),
        ),
    ];
    for (path, method, at, value) in fixes {
        let op = format!(
            "/paths/{}/{method}",
            path.replace('~', "~0").replace('/', "~1")
        );
        if let Some(op) = doc.pointer_mut(&op) {
            set(op, at, value);
        }
    }
    if let Some(spec) = doc.pointer_mut("/components/schemas/Revision/properties/spec") {
        *spec = json!({"$ref": "#/components/schemas/Flight"});
    }
    if let Some(source) = doc.pointer_mut("/components/schemas/Revision/properties/copilot") {
        *source = json!({"$ref": "#/components/schemas/Copilot",
                         "description": "The copilot document the spec was expanded from, as pushed; absent for a revision pushed as a flight."});
    }
    if let Some(m) = doc.pointer_mut("/paths/~1metrics/get/responses/200") {
        set(
            m,
            "content",
            json!({"text/plain": {"schema": {"type": "string"}}}),
        );
    }
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (_, op) in item.iter_mut() {
                add_errors(path, op);
            }
        }
    }
    doc
}

/// Sets `at` (a `/`-separated path of object keys) inside `v`, making objects on the way.
fn set(v: &mut Value, at: &str, value: Value) {
    let mut here = v;
    for key in at.split('/') {
        if !here.is_object() {
            *here = json!({});
        }
        let Value::Object(o) = here else { return };
        here = o.entry(key).or_insert(Value::Null);
    }
    *here = value;
}

/// The errors a route gives by its kind, where the derive did not already declare them.
fn add_errors(path: &str, op: &mut Value) {
    let needs_token = op
        .get("security")
        .and_then(Value::as_array)
        .is_some_and(|s| !s.is_empty());
    let params = op.get("parameters").and_then(Value::as_array);
    let has_query = params.is_some_and(|p| p.iter().any(|p| p["in"] == "query"));
    let reads_body = op.get("requestBody").is_some();
    let mut errors: Vec<(u16, &str)> = Vec::new();
    if needs_token {
        errors.push((
            401,
            "No token, or one this tower does not know (`WWW-Authenticate: Bearer`)",
        ));
        errors.push((
            403,
            "The token's role may not do this, or the two-person rule forbids it",
        ));
    }
    if path.contains('{') {
        errors.push((
            400,
            "The request is not valid: a path, query string or body that does not parse",
        ));
        errors.push((404, "No such flight or revision"));
    }
    if has_query {
        errors.push((
            400,
            "The request is not valid: a path, query string or body that does not parse",
        ));
    }
    if reads_body {
        errors.push((
            400,
            "The request is not valid: a path, query string or body that does not parse",
        ));
        errors.push((408, "The body did not arrive in time"));
        errors.push((413, "The body is larger than this tower accepts"));
        errors.push((415, "The body is not sent as `application/json`"));
        errors.push((
            422,
            "The body is JSON but not valid; every problem with its path",
        ));
    }
    let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
        return;
    };
    for (status, description) in errors {
        responses.entry(status.to_string()).or_insert_with(|| {
            json!({"description": description, "content": {"application/json": {"schema": {"$ref": ERROR}}}})
        });
    }
}

/// The flight's JSON Schema as components: its root as `Flight`, each of its `$defs` as
/// `Flight.<Name>`, with references rewritten to match.
/// A JSON Schema document as the component `name`, its definitions as `name.<Def>`.
fn add_schema(schemas: &mut Map<String, Value>, name: &str, mut schema: Value) {
    let defs = schema
        .as_object_mut()
        .and_then(|o| {
            o.remove("$schema");
            o.remove("$defs")
        })
        .unwrap_or_default();
    rewrite_refs(&mut schema, name);
    if let Value::Object(defs) = defs {
        for (def_name, mut def) in defs {
            rewrite_refs(&mut def, name);
            schemas.insert(format!("{name}.{def_name}"), def);
        }
    }
    schemas.insert(name.into(), schema);
}

fn rewrite_refs(v: &mut Value, prefix: &str) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(r)) = o.get_mut("$ref") {
                if let Some(name) = r.strip_prefix("#/$defs/") {
                    *r = format!("#/components/schemas/{prefix}.{name}");
                }
            }
            o.values_mut().for_each(|x| rewrite_refs(x, prefix));
        }
        Value::Array(a) => a.iter_mut().for_each(|x| rewrite_refs(x, prefix)),
        _ => {}
    }
}

/// Schemas of bodies that are read or written as JSON by hand.
fn hand_written_schemas() -> Map<String, Value> {
    let whole = json!({"type": "integer", "minimum": 0, "maximum": MAX_NUMBER});
    let statuses: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
    let schemas = json!({
        "ReportBatch": {
            "description": "The body of `POST /api/v1/reports` (docs/reports.md).",
            "type": "object",
            "required": ["client", "reports"],
            "additionalProperties": false,
            "properties": {
                "client": {"type": "string", "description": "A random id per profile (a UUID).",
                           "pattern": "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"},
                "reports": {"type": "array", "items": {"$ref": "#/components/schemas/Report"}},
            },
        },
        "Report": {
            "description": "One status change of one flight on one machine; `(client, seq)` identifies it.",
            "type": "object",
            "required": ["seq", "flight", "version", "status", "step", "at"],
            "additionalProperties": false,
            "properties": {
                "seq": whole,
                "flight": {"type": "string", "description": "The flight's studyname."},
                "version": whole,
                "arm": {"type": ["string", "null"], "minLength": 1, "maxLength": MAX_ARM_BYTES,
                        "pattern": ARM_PATTERN, "description": "The arm's name, or null for a flight without arms."},
                "status": {"type": "string", "enum": statuses},
                "step": whole,
                "at": {"description": "An RFC 3339 date-time or date, or milliseconds since the epoch; years 1970 to 9999.",
                       "anyOf": [{"type": "string"},
                                 {"type": "integer", "minimum": AT_RANGE.start(), "maximum": AT_RANGE.end()}]},
                "detail": {"description": "Anything the pilot adds (why a flight failed, ...)."},
            },
        },
        "EventBatch": {
            "description": "The body of `POST /api/v1/events` (docs/api.md#events): at most 1,000 events and 1 MiB.",
            "type": "object",
            "required": ["client", "events"],
            "additionalProperties": false,
            "properties": {
                "client": {"type": "string", "description": "The profile's random id (a UUID).",
                           "pattern": "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"},
                "events": {"type": "array", "maxItems": 1000, "items": {"$ref": "#/components/schemas/Event"}},
            },
        },
        "Event": {
            "description": "One recorded event; `(client, seq)` identifies it.",
            "type": "object",
            "required": ["seq", "flight", "version", "topic", "at"],
            "additionalProperties": false,
            "properties": {
                "seq": {"type": "integer", "minimum": 1, "maximum": MAX_SEQ},
                "flight": {"type": "string", "description": "The flight's studyname."},
                "version": whole,
                "arm": {"type": ["string", "null"], "minLength": 1, "maxLength": MAX_ARM_BYTES,
                        "pattern": ARM_PATTERN, "description": "The arm's name, or null for a flight without arms."},
                "topic": {"type": "string", "pattern": format!("^[a-z0-9._-]{{1,{MAX_TOPIC_LENGTH}}}$")},
                "subject": {"type": ["string", "null"], "description": format!("At most {MAX_SUBJECT_BYTES} bytes.")},
                "value": {"type": ["number", "null"]},
                "at": {"type": "string", "format": "date-time", "description": "RFC 3339; years 1970 to 9999."},
            },
        },
        "IndexEnvelope": {
            "description": "The signed index (docs/index.md): `payload` is the JSON text that is signed.",
            "type": "object",
            "required": ["payload", "signature", "keyId"],
            "properties": {
                "payload": {"type": "string"},
                "signature": {"type": "string", "description": "Ed25519 over the payload's bytes, standard base64."},
                "keyId": {"type": "string"},
            },
        },
        "Diff": {
            "type": "object",
            "required": ["studyname", "from", "to", "changes"],
            "additionalProperties": false,
            "properties": {
                "studyname": {"type": "string"},
                "from": {"type": "integer", "minimum": 0, "description": "0: before the first revision."},
                "to": {"type": "integer", "minimum": 1},
                "changes": {"type": "array", "items": {
                    "type": "object",
                    "required": ["path", "op"],
                    "additionalProperties": false,
                    "properties": {
                        "path": {"type": "string"},
                        "op": {"type": "string", "enum": ["added", "removed", "changed"]},
                        "from": {},
                        "to": {},
                    },
                }},
            },
        },
        "Health": {
            "type": "object",
            "required": ["ok", "engine", "singleUser", "serial", "keyId", "publicKey"],
            "properties": {
                "ok": {"type": "boolean", "description": "Whether the database answers."},
                "engine": {"type": "string", "enum": ["sqlite", "postgres"]},
                "singleUser": {"type": "boolean"},
                "serial": {"type": "integer", "minimum": 0},
                "keyId": {"type": "string"},
                "publicKey": {"type": "string"},
            },
        },
    });
    match schemas {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}
