//! Issue 8, item 12: the OpenAPI document was invalid (`limit`, `from`, `to` declared as
//! path parameters), documented no 401, declared `ErrorReport.detail` and `Progress.byStep`
//! with schemas the answers violated, and left request bodies as bare objects.
//!
//! Two tests hold it: `openapi-spec-validator` (from PyPI; `.ci/run` installs it) must accept
//! the document, and every answer the real router gives in a scenario — a flight's whole
//! life, reports, and errors of each kind — must be declared for its path, method and status
//! and match the declared schema (boon). The scenario ends by calling every operation the
//! document lists with wrong input, so routes added later are checked without editing it.

use crate::both;
use crate::support::{flight_with_arms, Resp, Tower, T0};
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use testpilot_tower::api::ApiConfig;
use testpilot_tower::store::Engine;
use testpilot_tower::ClientLimits;

const DOC_URL: &str = "http://tower.test/openapi.json";

#[tokio::test]
async fn the_document_passes_openapi_spec_validator() {
    let t = Tower::new(Engine::Sqlite).await;
    let r = t.call(Method::GET, "/api/openapi.json", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let dir = std::env::temp_dir().join(format!("tp-openapi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("openapi.json");
    std::fs::write(&file, &r.bytes).unwrap();
    let out = std::process::Command::new("openapi-spec-validator")
        .arg("--schema=3.1")
        .arg(&file)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run openapi-spec-validator ({e}); install it with \
                 `pip install openapi-spec-validator` (.ci/run does)"
            )
        });
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the document is not valid:\n{said}");
    assert!(said.contains("OK"), "{said}");
    let _ = std::fs::remove_dir_all(&dir);
    t.finish().await;
}

/// Checks answers against the document, and remembers which operations were called.
struct Conformance {
    doc: Value,
    compiler: Mutex<(
        boon::Compiler,
        boon::Schemas,
        HashMap<String, boon::SchemaIndex>,
    )>,
    called: Mutex<BTreeSet<(String, String)>>,
}

fn escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

impl Conformance {
    fn new(doc: Value) -> Conformance {
        let mut compiler = boon::Compiler::new();
        compiler.add_resource(DOC_URL, doc.clone()).unwrap();
        Conformance {
            doc,
            compiler: Mutex::new((compiler, boon::Schemas::new(), HashMap::new())),
            called: Mutex::new(BTreeSet::new()),
        }
    }

    /// The document's path template that `path` (without its query) is an instance of.
    fn template(&self, path: &str) -> Option<String> {
        let parts: Vec<&str> = path.split('/').collect();
        self.doc["paths"].as_object()?.keys().find_map(|t| {
            let tp: Vec<&str> = t.split('/').collect();
            let fits = tp.len() == parts.len()
                && tp.iter().zip(&parts).all(|(a, b)| {
                    a == b || (a.starts_with('{') && a.ends_with('}') && !b.is_empty())
                });
            fits.then(|| t.clone())
        })
    }

    /// Every operation as (path template, method).
    fn operations(&self) -> Vec<(String, String)> {
        let mut ops = Vec::new();
        for (path, item) in self.doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if ["get", "put", "post", "delete", "patch", "head", "options"]
                    .contains(&method.as_str())
                {
                    ops.push((path.clone(), method.clone()));
                }
            }
        }
        ops
    }

    fn validate(&self, pointer: &str, body: &Value, what: &str) {
        let mut guard = self.compiler.lock().unwrap();
        let (compiler, schemas, cache) = &mut *guard;
        let idx = *cache.entry(pointer.to_string()).or_insert_with(|| {
            compiler
                .compile(&format!("{DOC_URL}#{pointer}"), schemas)
                .unwrap_or_else(|e| panic!("{what}: the declared schema does not compile: {e:#}"))
        });
        if let Err(e) = schemas.validate(body, idx) {
            panic!("{what}: the answer does not match the document ({pointer}):\n{e:#}\n{body:#}");
        }
    }

    /// Checks one answer to `method uri`.
    fn check(&self, method: &Method, uri: &str, r: &Resp) {
        let path = uri.split('?').next().unwrap();
        let what = format!("{method} {uri} → {}", r.status);
        let m = method.as_str().to_ascii_lowercase();
        let Some(template) = self.template(path) else {
            if path == "/api/openapi.json" {
                return;
            }
            assert_eq!(
                r.status,
                StatusCode::NOT_FOUND,
                "{what}: not in the document"
            );
            return self.validate("/components/schemas/ErrorBody", &r.json, &what);
        };
        let op = &self.doc["paths"][&template][&m];
        if op.is_null() {
            assert_eq!(
                r.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{what}: not in the document"
            );
            return self.validate("/components/schemas/ErrorBody", &r.json, &what);
        }
        self.called
            .lock()
            .unwrap()
            .insert((template.clone(), m.clone()));
        let status = r.status.as_str();
        let key = if op["responses"].get(status).is_some() {
            status
        } else {
            "default"
        };
        let declared = &op["responses"][key];
        assert!(
            !declared.is_null(),
            "{what}: status not declared for {m} {template}"
        );
        let content_type = r
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        match declared.get("content").and_then(Value::as_object) {
            None => assert!(
                r.bytes.is_empty(),
                "{what}: a body the document does not declare"
            ),
            Some(content) => {
                let media = content_type.split(';').next().unwrap_or("").trim();
                assert!(
                    content.contains_key(media),
                    "{what}: answered {media:?}, declared {:?}",
                    content.keys().collect::<Vec<_>>()
                );
                if media == "application/json" {
                    let body: Value = serde_json::from_slice(&r.bytes)
                        .unwrap_or_else(|e| panic!("{what}: not JSON: {e}"));
                    let pointer = format!(
                        "/paths/{}/{m}/responses/{key}/content/application~1json/schema",
                        escape(&template)
                    );
                    self.validate(&pointer, &body, &what);
                }
            }
        }
    }
}

/// The tower under test, with every answer checked.
struct Checked<'a> {
    t: &'a Tower,
    c: &'a Conformance,
}

impl Checked<'_> {
    async fn raw(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        ct: Option<&str>,
        body: Vec<u8>,
    ) -> Resp {
        let mut req = Request::builder().method(method.clone()).uri(uri);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if let Some(ct) = ct {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let r = self.t.send(req.body(Body::from(body)).unwrap()).await;
        self.c.check(&method, uri, &r);
        r
    }

    async fn call(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let ct = (!bytes.is_empty()).then_some("application/json");
        self.raw(method, uri, token, ct, bytes).await
    }
}

/// A report on `layout`, live at version 2 (its first revision was replaced before approval).
fn report(seq: u64, status: &str, step: u64) -> Value {
    json!({"seq": seq, "flight": "layout", "version": 2, "arm": "control", "status": status, "step": step, "at": T0})
}

fn event(seq: u64, flight: &str) -> Value {
    let arm = if seq.is_multiple_of(2) {
        "treatment"
    } else {
        "control"
    };
    json!({"seq": seq, "flight": flight, "version": 1, "arm": arm, "topic": "clicked", "subject": "a,b", "value": seq, "at": "2026-04-23T00:00:00Z"})
}

/// An expected status, and the request: method, URI, token, JSON body.
type Step<'a> = (
    StatusCode,
    Method,
    &'a str,
    Option<&'a str>,
    Option<Vec<u8>>,
);

const C1: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

both!(every_answer_matches_the_document);
async fn every_answer_matches_the_document(engine: Engine) {
    let config = ApiConfig {
        limits: ClientLimits {
            max_body_bytes: 16 * 1024,
            rate_per_sec: 0.001,
            burst: 8.0,
            ..ClientLimits::default()
        },
        ..ApiConfig::default()
    };
    let t = Tower::with(engine, config).await;
    // The push stream never ends by itself; closed (as at shutdown), it answers its head and
    // ends, so its answer can be read whole and checked like any other.
    t.state.push.close();
    let doc = t
        .call(Method::GET, "/api/openapi.json", None, None)
        .await
        .json;
    let c = Conformance::new(doc);
    let x = Checked { t: &t, c: &c };
    let (author, approver, admin) = (
        Some(t.author.as_str()),
        Some(t.approver.as_str()),
        Some(t.admin.as_str()),
    );
    use Method as M;
    use StatusCode as S;

    // Operations and the index.
    let index = x.call(M::GET, "/control/index.json", None, None).await;
    assert_eq!(index.status, S::OK);
    let etag = index.headers[header::ETAG].to_str().unwrap().to_string();
    let req = Request::get("/control/index.json").header(header::IF_NONE_MATCH, &etag);
    let r = t.send(req.body(Body::empty()).unwrap()).await;
    c.check(&M::GET, "/control/index.json", &r);
    assert_eq!(r.status, S::NOT_MODIFIED);

    // A flight's life, reports and what they make, and errors of each kind.
    // It streams `clicked`: the tower takes events only on topics the flight watches.
    let mut f = flight_with_arms("layout");
    f["flightplan"]
        .as_array_mut()
        .unwrap()
        .push(json!({"action": "instrument", "watch": ["clicked"], "for": "7d"}));
    let mut v2 = f.clone();
    v2["description"] = json!("two layouts, better said");
    let mut failed = report(3, "failed", 1);
    failed["detail"] = json!("the ping answered 503");
    let batch = json!({"client": C1, "reports": [report(1, "running", 0), report(2, "running", 1), failed]});
    let events = json!({"client": C1, "events": [event(1, "layout"), event(2, "layout"), event(3, "layout")]});
    let copilot = json!({"copilot": 1, "studyname": "copilot-study", "author": "a@example.com",
        "description": "counts", "arms": [{"name": "control", "features": {}},
        {"name": "new", "features": {"x": {"on": true}}}], "watch": ["t"], "duration": "7d",
        "surveys": {"after": {"title": "Thanks", "text": "One question", "url": "https://example.com/s"}}});
    let json = |v: Value| Some(v.to_string().into_bytes());
    let raw = |b: &[u8]| Some(b.to_vec());
    let flights = "/api/v1/flights";
    let steps: Vec<Step> = vec![
        (S::OK, M::GET, "/healthz", None, None),
        (S::OK, M::GET, "/metrics", None, None),
        (S::UNAUTHORIZED, M::POST, flights, None, json(f.clone())),
        (
            S::UNAUTHORIZED,
            M::POST,
            flights,
            Some("tp_unknown"),
            json(f.clone()),
        ),
        (S::FORBIDDEN, M::POST, flights, approver, json(f.clone())),
        (S::CREATED, M::POST, flights, author, json(f.clone())),
        (S::OK, M::POST, flights, author, json(f)),
        (S::CREATED, M::POST, flights, author, json(v2)),
        // A copilot document: expanded, and served with its source.
        (S::CREATED, M::POST, flights, author, json(copilot.clone())),
        (S::OK, M::GET, "/api/v1/flights/copilot-study", author, None),
        (
            S::UNPROCESSABLE_ENTITY,
            M::POST,
            flights,
            author,
            json(json!({"copilot": 1, "studyname": "copilot-study"})),
        ),
        (
            S::UNPROCESSABLE_ENTITY,
            M::POST,
            flights,
            author,
            json(json!({"studyname": "Bad Name"})),
        ),
        (
            S::BAD_REQUEST,
            M::POST,
            flights,
            author,
            raw(b"{\"studyname\""),
        ),
        (
            S::PAYLOAD_TOO_LARGE,
            M::POST,
            flights,
            author,
            raw(&[b' '; 20_000]),
        ),
        (
            S::OK,
            M::POST,
            "/api/v1/flights/layout/review",
            author,
            json(json!({})),
        ),
        // The revision under review, simulated (read-only), and a parameter out of bounds.
        (
            S::OK,
            M::POST,
            "/api/v1/flights/layout/simulate",
            approver,
            json(json!({"clients": 1000, "days": 2, "runs": 5})),
        ),
        (
            S::UNPROCESSABLE_ENTITY,
            M::POST,
            "/api/v1/flights/layout/simulate",
            approver,
            json(json!({"clients": 0})),
        ),
        (
            S::FORBIDDEN,
            M::POST,
            "/api/v1/flights/layout/approve",
            author,
            json(json!({})),
        ),
        (
            S::OK,
            M::POST,
            "/api/v1/flights/layout/approve",
            approver,
            json(json!({})),
        ),
        (
            S::CONFLICT,
            M::POST,
            "/api/v1/flights/layout/approve",
            approver,
            json(json!({})),
        ),
        (
            S::CONFLICT,
            M::POST,
            "/api/v1/flights/layout/simulate",
            author,
            None,
        ),
        (
            S::UNPROCESSABLE_ENTITY,
            M::POST,
            "/api/v1/flights/layout/kill",
            approver,
            json(json!({"why": 1})),
        ),
        (S::OK, M::POST, "/api/v1/reports", None, json(batch.clone())),
        (S::OK, M::POST, "/api/v1/reports", None, json(batch)),
        (
            S::UNPROCESSABLE_ENTITY,
            M::POST,
            "/api/v1/reports",
            None,
            json(json!({"client": C1, "reports": [{"seq": -1}]})),
        ),
        (S::BAD_REQUEST, M::POST, "/api/v1/reports", None, raw(b"[")),
        (S::OK, M::POST, "/api/v1/events", None, json(events.clone())),
        (S::OK, M::POST, "/api/v1/events", None, json(events)),
        (
            S::UNPROCESSABLE_ENTITY,
            M::POST,
            "/api/v1/events",
            None,
            json(json!({"client": C1, "events": [{"seq": -1}]})),
        ),
        (
            S::UNPROCESSABLE_ENTITY,
            M::POST,
            "/api/v1/events",
            None,
            json(json!({"client": C1, "events": [event(9, "nothing")]})),
        ),
        (
            S::PAYLOAD_TOO_LARGE,
            M::POST,
            "/api/v1/events",
            None,
            raw(&[b' '; 20_000]),
        ),
        (
            S::OK,
            M::GET,
            "/api/v1/flights/layout/results",
            author,
            None,
        ),
        (
            S::OK,
            M::GET,
            "/api/v1/flights/layout/events.csv",
            approver,
            None,
        ),
        (
            S::OK,
            M::GET,
            "/api/v1/flights/layout/events.jsonl",
            admin,
            None,
        ),
        (S::OK, M::GET, flights, author, None),
        (S::OK, M::GET, "/api/v1/flights/layout", author, None),
        (S::OK, M::GET, "/api/v1/flights/layout/diff", author, None),
        (
            S::OK,
            M::GET,
            "/api/v1/flights/layout/diff?from=0&to=1",
            author,
            None,
        ),
        (
            S::NOT_FOUND,
            M::GET,
            "/api/v1/flights/layout/diff?to=9",
            author,
            None,
        ),
        (
            S::OK,
            M::GET,
            "/api/v1/flights/layout/progress",
            approver,
            None,
        ),
        (
            S::OK,
            M::GET,
            "/api/v1/flights/layout/errors",
            approver,
            None,
        ),
        (
            S::OK,
            M::GET,
            "/api/v1/flights/layout/errors?limit=1",
            approver,
            None,
        ),
        (
            S::BAD_REQUEST,
            M::GET,
            "/api/v1/flights/layout/errors?limit=many",
            author,
            None,
        ),
        (S::OK, M::GET, "/api/v1/audit?limit=5", admin, None),
        (S::OK, M::GET, "/api/v1/tokens", admin, None),
        (S::FORBIDDEN, M::GET, "/api/v1/tokens", author, None),
        (
            S::CREATED,
            M::POST,
            "/api/v1/tokens",
            admin,
            json(json!({"role": "author", "name": "carol"})),
        ),
        (
            S::NOT_FOUND,
            M::GET,
            "/api/v1/flights/nothing/progress",
            author,
            None,
        ),
        (
            S::BAD_REQUEST,
            M::GET,
            "/api/v1/flights/%FF/progress",
            author,
            None,
        ),
        (S::NOT_FOUND, M::GET, "/api/v2/anything", author, None),
        (
            S::METHOD_NOT_ALLOWED,
            M::DELETE,
            "/api/v1/flights/layout",
            admin,
            None,
        ),
        (
            S::OK,
            M::POST,
            "/api/v1/flights/layout/kill",
            approver,
            json(json!({"reason": "too slow"})),
        ),
        (
            S::OK,
            M::POST,
            "/api/v1/flights/layout/end",
            approver,
            json(json!({})),
        ),
        (
            S::CONFLICT,
            M::POST,
            "/api/v1/flights/layout/kill",
            approver,
            json(json!({})),
        ),
    ];
    for (status, method, uri, token, body) in steps {
        let ct = body.is_some().then_some("application/json");
        let r = x
            .raw(method.clone(), uri, token, ct, body.unwrap_or_default())
            .await;
        assert_eq!(r.status, status, "{method} {uri}: {}", r.json);
    }
    // The report rate limit (8 in a burst) answers 429 in the error shape.
    let mut limited = false;
    for seq in 10..30 {
        let r = x
            .call(
                M::POST,
                "/api/v1/reports",
                None,
                Some(json!({"client": C1, "reports": [report(seq, "running", 0)]})),
            )
            .await;
        if r.status == S::TOO_MANY_REQUESTS {
            limited = true;
            break;
        }
    }
    assert!(limited, "the rate limit never answered");

    // Every operation the document lists, with wrong input: no token, an unknown flight,
    // a query value that does not parse, a body that is not JSON or not valid.
    for (template, method) in c.operations() {
        let m: Method = method.to_ascii_uppercase().parse().unwrap();
        let path = template.replace("{studyname}", "no-such-flight");
        let op = &c.doc["paths"][&template][&method];
        let has_body = op.get("requestBody").is_some();
        x.call(m.clone(), &path, None, None).await;
        for token in [author, approver, admin] {
            if has_body {
                x.call(m.clone(), &path, token, Some(json!({"nothing": "useful"})))
                    .await;
                x.raw(
                    m.clone(),
                    &path,
                    token,
                    Some("application/json"),
                    b"{".to_vec(),
                )
                .await;
                x.raw(m.clone(), &path, token, Some("text/plain"), b"{}".to_vec())
                    .await;
            } else {
                x.call(m.clone(), &path, token, None).await;
            }
        }
        for p in op["parameters"].as_array().into_iter().flatten() {
            if p["in"] == "query" {
                let uri = format!("{path}?{}=not-a-number", p["name"].as_str().unwrap());
                x.call(m.clone(), &uri, admin, None).await;
            }
        }
    }
    let called = c.called.lock().unwrap().clone();
    let missing: Vec<_> = c
        .operations()
        .into_iter()
        .filter(|op| !called.contains(op))
        .collect();
    assert!(missing.is_empty(), "never called: {missing:?}");
    t.finish().await;
}
