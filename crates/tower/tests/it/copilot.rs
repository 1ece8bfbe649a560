//! `POST /api/v1/flights` with a copilot document (docs/copilot.md): validated with every
//! problem's path, expanded, stored as the revision with the document beside it, served in
//! the flight's revisions and, once live, in the index as the ordinary flight it is.

use crate::both;
use crate::support::Tower;
use axum::http::StatusCode;
use serde_json::{json, Value};
use testpilot_flight::copilot::Copilot;
use testpilot_tower::store::Engine;

fn example() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/copilot/search-bar-2027.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

both!(a_copilot_document_is_stored_with_its_expansion);
async fn a_copilot_document_is_stored_with_its_expansion(engine: Engine) {
    let t = Tower::new(engine).await;
    let doc = example();
    let expanded = Copilot::from_json(&doc).unwrap().expand().to_json();

    let r = t.post("/api/v1/flights", &t.author, doc.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_eq!(r.json["studyname"], "search-bar-2027");
    assert_eq!(r.json["version"], 1);

    let d = t.get("/api/v1/flights/search-bar-2027", &t.author).await;
    assert_eq!(d.status, StatusCode::OK);
    let rev = &d.json["revisions"][0];
    assert_eq!(rev["copilot"], doc, "the document, as pushed");
    let mut spec = rev["spec"].clone();
    assert_eq!(spec["version"], 1);
    spec.as_object_mut().unwrap().remove("version");
    assert_eq!(spec, expanded, "the revision is the expansion");
    assert_eq!(
        d.json["audit"][0]["detail"],
        json!({"created": true, "copilot": true})
    );

    // The same document again changes nothing.
    let again = t.post("/api/v1/flights", &t.author, doc.clone()).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json["unchanged"], true);

    // The same flight pushed as a flight is a new revision: its source changed (none now).
    let plain = t.post("/api/v1/flights", &t.author, expanded.clone()).await;
    assert_eq!(plain.status, StatusCode::CREATED, "{}", plain.json);
    let d = t.get("/api/v1/flights/search-bar-2027", &t.author).await;
    assert!(d.json["revisions"][1].get("copilot").is_none());

    // A changed document is a new revision whose changes are the flight's.
    let mut longer = doc.clone();
    longer["duration"] = json!("21d");
    let r = t.post("/api/v1/flights", &t.author, longer.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_eq!(r.json["version"], 3);
    let paths: Vec<&str> = r.json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"fuse"), "{paths:?}");
    assert!(paths.iter().any(|p| p.ends_with(".for")), "{paths:?}");

    // Live: the index serves the expanded flight, not the document.
    let name = "search-bar-2027";
    let r = t
        .post(
            &format!("/api/v1/flights/{name}/review"),
            &t.author,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let r = t
        .post(
            &format!("/api/v1/flights/{name}/approve"),
            &t.approver,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let index = t
        .call(axum::http::Method::GET, "/control/index.json", None, None)
        .await;
    let payload: Value = serde_json::from_str(index.json["payload"].as_str().unwrap()).unwrap();
    let served = payload["flights"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["studyname"] == name)
        .expect("the flight is in the index");
    assert!(served.get("copilot").is_none());
    assert_eq!(served["arms"][1]["flightplan"][2]["for"], "21d");
    assert!(testpilot_flight::Flight::from_json(served).is_ok());
    t.finish().await;
}

both!(a_bad_copilot_document_is_refused_with_every_path);
async fn a_bad_copilot_document_is_refused_with_every_path(engine: Engine) {
    let t = Tower::new(engine).await;
    let mut doc = example();
    doc["watch"] = json!(["Search-Bar-Used"]);
    doc["arms"][1]["features"] = json!({});
    doc["surveys"]["before"]["url"] = json!("http://example.com/s");
    doc["durration"] = json!("1d");
    let r = t.post("/api/v1/flights", &t.author, doc).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        r.json["error"],
        "the copilot document is not valid (4 problems)"
    );
    let paths: Vec<&str> = r.json["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "durration",
            "arms[1].features",
            "watch[0]",
            "surveys.before.url"
        ]
    );
    assert!(r.json["problems"][0]["message"]
        .as_str()
        .unwrap()
        .contains("did you mean `duration`?"));
    // Nothing was stored.
    let d = t.get("/api/v1/flights/search-bar-2027", &t.author).await;
    assert_eq!(d.status, StatusCode::NOT_FOUND);
    // A role that may not push learns that first.
    let r = t.post("/api/v1/flights", &t.approver, example()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    t.finish().await;
}

both!(a_copilot_document_that_would_expand_too_far_is_refused);
/// One document must not expand to a flight many times its size: too many arms, and
/// surveys repeated in every arm past the expanded-size cap, are refused with their paths
/// before anything is expanded or stored.
async fn a_copilot_document_that_would_expand_too_far_is_refused(engine: Engine) {
    let t = Tower::new(engine).await;
    let mut many = example();
    let arms: Vec<Value> = (0..33)
        .map(|i| json!({"name": format!("arm-{i}"), "features": {"f": {"v": i}}}))
        .collect();
    many["arms"] = json!(arms);
    let r = t.post("/api/v1/flights", &t.author, many).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.json);
    assert_eq!(r.json["problems"][0]["path"], "arms");

    let mut large = example();
    let arms: Vec<Value> = (0..32)
        .map(|i| json!({"name": format!("arm-{i}"), "features": {"f": {"v": i}}}))
        .collect();
    large["arms"] = json!(arms);
    let url = format!("https://example.com/{}", "a".repeat(20_000));
    large["surveys"]["before"]["url"] = json!(url);
    large["surveys"]["after"]["url"] = json!(url);
    let r = t.post("/api/v1/flights", &t.author, large).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.json);
    assert_eq!(r.json["problems"][0]["path"], "arms");
    assert!(r.json["problems"][0]["message"]
        .as_str()
        .unwrap()
        .contains("expanded flight"));
    let d = t.get("/api/v1/flights/search-bar-2027", &t.author).await;
    assert_eq!(d.status, StatusCode::NOT_FOUND);
    t.finish().await;
}

/// The OpenAPI document's request body for a push takes a flight or a copilot document, and
/// nothing that is neither.
#[test]
fn the_push_body_schema_takes_a_flight_or_a_copilot_document() {
    let doc = testpilot_tower::openapi::document().clone();
    let mut compiler = boon::Compiler::new();
    compiler
        .add_resource("http://tower.test/openapi.json", doc)
        .unwrap();
    let mut schemas = boon::Schemas::new();
    let idx = compiler
        .compile(
            "http://tower.test/openapi.json#/paths/~1api~1v1~1flights/post/requestBody/content/application~1json/schema",
            &mut schemas,
        )
        .unwrap();
    let expanded = Copilot::from_json(&example()).unwrap().expand().to_json();
    assert!(schemas.validate(&example(), idx).is_ok());
    assert!(schemas.validate(&expanded, idx).is_ok());
    let mut both = example();
    both["flightplan"] = json!([{"action": "log", "text": "x"}]);
    assert!(schemas.validate(&both, idx).is_err());
    assert!(schemas.validate(&json!({"copilot": 1}), idx).is_err());
}

// The dashboard's flight page shows the document, folded, beside the expanded spec; a
// flight pushed as a flight has no such block.
both!(the_flight_page_shows_the_document);
async fn the_flight_page_shows_the_document(engine: Engine) {
    use axum::body::Body;
    use axum::http::{header, Request};
    let t = Tower::new(engine).await;
    let r = t.post("/api/v1/flights", &t.author, example()).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = t
        .post(
            "/api/v1/flights",
            &t.author,
            crate::support::flight("plain"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let form =
        serde_urlencoded::to_string([("token", t.admin.as_str()), ("next", "/ui/")]).unwrap();
    let signin = t
        .send(
            Request::post("/ui/signin")
                .header("sec-fetch-site", "same-origin")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(form))
                .unwrap(),
        )
        .await;
    let cookie = signin.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = |path: &str| {
        Request::get(path)
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap()
    };
    let html = t.send(page("/ui/flights/search-bar-2027")).await;
    assert_eq!(html.status, StatusCode::OK);
    let text = String::from_utf8(html.bytes).unwrap();
    let block = text
        .find("id=\"copilot-source\"")
        .expect("the document's block");
    let spec = text.find("id=\"spec\"").unwrap();
    assert!(spec < block, "inside the spec section");
    assert!(
        text[block..].contains("&quot;copilot&quot;: 1"),
        "the document, pretty"
    );
    let plain = t.send(page("/ui/flights/plain")).await;
    let text = String::from_utf8(plain.bytes).unwrap();
    assert!(!text.contains("copilot-source"));
    t.finish().await;
}

/// `testpilot up`'s tower loads the copilot examples (`examples/copilot/*.json`) live, beside
/// the flights, each with its document; loading again changes nothing.
#[tokio::test]
async fn the_local_tower_loads_the_copilot_examples_live() {
    let base = testpilot_tower::testing::temp_dir("testpilot-copilot-examples");
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let clock = std::sync::Arc::new(testpilot_tower::ManualClock::new(
        testpilot_flight::Timestamp(crate::support::T0),
    ));
    for round in 0..2 {
        let local = testpilot_tower::local::start_local(
            testpilot_tower::local::LocalOptions {
                data_dir: base.join("data"),
                listen: "127.0.0.1:0".parse().unwrap(),
                examples: Some(examples.clone()),
                simulate: Default::default(),
            },
            clock.clone(),
        )
        .await
        .unwrap();
        for name in ["search-bar-2027", "page-visits"] {
            let e = local
                .examples
                .iter()
                .find(|e| e.studyname.as_deref() == Some(name))
                .unwrap_or_else(|| panic!("{name} loaded: {:?}", local.examples));
            assert!(e.file.ends_with(format!("copilot/{name}.json")));
            assert_eq!(e.live_version, Some(1), "{e:?}");
            let note = if round == 0 {
                "now live"
            } else {
                "already live"
            };
            assert_eq!(e.note, note);
        }
        let store = &local.tower.state.store;
        let d = store.flight("page-visits").await.unwrap().unwrap();
        assert_eq!(d.revisions[0].copilot.as_ref().unwrap()["copilot"], 1);
        local.tower.stop().await.unwrap();
    }
    let _ = std::fs::remove_dir_all(base);
}
