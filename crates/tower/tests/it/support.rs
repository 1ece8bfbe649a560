//! The harness: a tower on a fresh database, called through its router without a socket,
//! with a manual clock and one token per role.

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::sync::Arc;
use testpilot_tower::api::ApiConfig;
use testpilot_tower::store::Engine;
use testpilot_tower::testing::TestDb;
use testpilot_tower::{app, AppState, ManualClock, Role, Store};
use tower::ServiceExt;

/// Runs an async test body once on SQLite and once on PostgreSQL, as two tests.
#[macro_export]
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(testpilot_tower::store::Engine::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(testpilot_tower::store::Engine::Postgres).await
            }
        }
    };
}

/// 2026-04-23T00:00:00Z.
pub const T0: i64 = 1_776_902_400_000;

pub struct Tower {
    pub db: Option<TestDb>,
    pub state: AppState,
    pub app: Router,
    pub clock: Arc<ManualClock>,
    /// Tokens: an author `alice`, an approver `bob`, an admin `root`.
    pub author: String,
    pub approver: String,
    pub admin: String,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub bytes: Vec<u8>,
    pub json: Value,
}

impl Tower {
    pub async fn new(engine: Engine) -> Tower {
        Tower::with(engine, ApiConfig::default()).await
    }

    pub async fn with(engine: Engine, config: ApiConfig) -> Tower {
        let db = TestDb::new(engine).await.expect("a test database");
        let store = Store::open(&db.url).await.expect("open the store");
        let clock = Arc::new(ManualClock::new(testpilot_flight::Timestamp(T0)));
        let state = AppState::new(store, clock.clone(), config)
            .await
            .expect("the tower state");
        let mut t = Tower {
            db: Some(db),
            app: app(state.clone()),
            state,
            clock,
            author: String::new(),
            approver: String::new(),
            admin: String::new(),
        };
        t.author = t.token(Role::Author, "alice").await;
        t.approver = t.token(Role::Approver, "bob").await;
        t.admin = t.token(Role::Admin, "root").await;
        t
    }

    pub async fn token(&self, role: Role, name: &str) -> String {
        let secret = testpilot_tower::auth::new_secret().unwrap();
        self.state
            .store
            .create_token(role, Some(name), &secret, "test", self.clock_now())
            .await
            .unwrap();
        secret
    }

    pub fn clock_now(&self) -> testpilot_flight::Timestamp {
        use testpilot_flight::Clock;
        self.clock.now()
    }

    pub async fn send(&self, req: Request<Body>) -> Resp {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes().to_vec();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            bytes,
            json,
        }
    }

    /// Calls the API with an optional token and JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let body = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        self.send(req.body(body).unwrap()).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.call(Method::GET, path, Some(token), None).await
    }

    /// Pushes, reviews (as the author) and approves (as the approver) a flight.
    pub async fn make_live(&self, flight: Value) -> u64 {
        let name = flight["studyname"].as_str().unwrap().to_string();
        let pushed = self.post("/api/v1/flights", &self.author, flight).await;
        assert!(pushed.status.is_success(), "{}", pushed.json);
        let r = self
            .post(
                &format!("/api/v1/flights/{name}/review"),
                &self.author,
                json!({}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        let a = self
            .post(
                &format!("/api/v1/flights/{name}/approve"),
                &self.approver,
                json!({}),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.json);
        a.json["version"].as_u64().unwrap()
    }

    pub async fn finish(mut self) {
        self.state.store.close().await;
        if let Some(db) = self.db.take() {
            db.cleanup().await;
        }
    }
}

/// A small valid flight.
pub fn flight(name: &str) -> Value {
    json!({
        "studyname": name,
        "author": "study-team@example.com",
        "description": "says hello",
        "flightplan": [{"action": "log", "text": "hello {{os}}"}]
    })
}

/// A valid flight with two arms.
pub fn flight_with_arms(name: &str) -> Value {
    json!({
        "studyname": name,
        "author": "study-team@example.com",
        "description": "two layouts",
        "arms": [{"name": "control", "ratio": 1}, {"name": "treatment", "ratio": 1}],
        "flightplan": [{"action": "log", "text": "one"}, {"action": "log", "text": "two"}]
    })
}
