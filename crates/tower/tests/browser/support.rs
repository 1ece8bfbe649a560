//! A tower for dashboard tests: a fresh database, tokens for an author (`alice`), an
//! approver (`bob`) and an admin (`root`), and helpers that act as a signed-in browser
//! through the router (cookie, same-origin headers, the CSRF field).

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use std::sync::Arc;
use testpilot_flight::Timestamp;
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
    pub author: String,
    pub approver: String,
    pub admin: String,
}

pub struct Page {
    pub status: StatusCode,
    pub location: Option<String>,
    pub set_cookie: Option<String>,
    pub csp: Option<String>,
    pub body: String,
}

impl Page {
    /// The CSRF field of the page's forms.
    pub fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("a form with a CSRF field in {}", self.body));
        let rest = &self.body[at + 19..];
        rest[..rest.find('"').unwrap()].to_string()
    }
}

impl Tower {
    pub async fn new(engine: Engine) -> Tower {
        Tower::with(engine, ApiConfig::default()).await
    }

    pub async fn with(engine: Engine, config: ApiConfig) -> Tower {
        let db = TestDb::new(engine).await.expect("a test database");
        let store = Store::open(&db.url).await.expect("open the store");
        let clock = Arc::new(ManualClock::new(Timestamp(T0)));
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
            .create_token(role, Some(name), &secret, "test", Timestamp(T0))
            .await
            .unwrap();
        secret
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    pub async fn send(&self, req: Request<Body>) -> Page {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let h = |n: &str| {
            res.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        };
        let (status, location, set_cookie, csp) = (
            res.status(),
            h("location"),
            h("set-cookie"),
            h("content-security-policy"),
        );
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        Page {
            status,
            location,
            set_cookie,
            csp,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// GET a page as the holder of `token` (or nobody).
    pub async fn get(&self, path: &str, token: Option<&str>) -> Page {
        let mut req = Request::builder().uri(path).header("host", "tower.test");
        if let Some(t) = token {
            req = req.header("cookie", format!("tp_dashboard={t}"));
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    /// POST a form as a page of the dashboard would: same origin, with the CSRF field of
    /// the page at `from` added unless `fields` has one.
    pub async fn post(&self, path: &str, token: &str, from: &str, fields: &[(&str, &str)]) -> Page {
        let mut fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if !fields.iter().any(|(k, _)| k == "csrf") {
            let csrf = self.get(from, Some(token)).await.csrf();
            fields.push(("csrf".into(), csrf));
        }
        self.post_raw(
            path,
            Some(token),
            &[("origin", "http://tower.test")],
            &fields,
        )
        .await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        fields: &[(String, String)],
    ) -> Page {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("host", "tower.test")
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(t) = token {
            req = req.header("cookie", format!("tp_dashboard={t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let body = serde_urlencoded::to_string(fields).unwrap();
        self.send(req.body(Body::from(body)).unwrap()).await
    }

    /// A live flight from a spec, pushed by alice and approved by bob.
    pub async fn live(&self, spec: &Value) {
        testpilot_tower::dashboard::fixtures::live_flight(self.store(), spec, Timestamp(T0))
            .await
            .unwrap();
        self.state.refresh_index().await.unwrap();
    }

    pub async fn cleanup(mut self) {
        if let Some(db) = self.db.take() {
            self.state.store.close().await;
            db.cleanup().await;
        }
    }
}

/// Where screenshots go: `target/dashboard-screenshots/` of the workspace.
pub fn screenshot_dir() -> std::path::PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).expect("the screenshot folder");
    dir
}

/// The fixture's flight JSON with a studyname and description.
pub fn flight(name: &str, description: &str) -> Value {
    testpilot_tower::dashboard::fixtures::flight_json(name, description)
}
