//! A small WebDriver client over reqwest: enough to drive headless Chromium through
//! chromedriver (navigate, find, click, type, read, run a script, screenshot).
//!
//! [`Browser::start`] runs chromedriver on a free port with a fresh profile and fails —
//! never skips — when chromium or chromedriver is missing. Dropping the browser ends the
//! session and kills chromedriver (and with it chromium).

use base64::Engine as _;
use serde_json::{json, Value};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    http: reqwest::Client,
    base: String,
    session: String,
    driver: Child,
    profile: std::path::PathBuf,
}

#[derive(Debug, Clone)]
pub struct Element(String);

fn find_program(names: &[&str]) -> String {
    for n in names {
        for dir in ["/usr/bin", "/usr/local/bin", "/usr/lib/chromium"] {
            let p = Path::new(dir).join(n);
            if p.exists() {
                return p.display().to_string();
            }
        }
    }
    panic!(
        "none of {names:?} is installed: the browser tests need Debian's chromium and chromium-driver \
         (apt-get install chromium chromium-driver; .ci/run does it)"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a `width`×`height` window.
    pub async fn start(width: u32, height: u32) -> Browser {
        let chromium = find_program(&["chromium", "chromium-browser"]);
        let driver_bin = find_program(&["chromedriver"]);
        let port = free_port();
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            // Its own process group, so that the chromium it starts can be ended with it.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await {
                if let Ok(v) = r.json::<Value>().await {
                    if v["value"]["ready"] == json!(true) {
                        break;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not start in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = testpilot_tower::testing::temp_dir("testpilot-chromium");
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            &format!("--window-size={width},{height}"),
            &format!("--user-data-dir={}", profile.display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args}
        }}});
        let mut b = Browser {
            http,
            base,
            session: String::new(),
            driver,
            profile,
        };
        let v = b.call("POST", "/session", Some(caps)).await;
        b.session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {v}"))
            .to_string();
        b
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{}", self.base, path);
        let req = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self.http.post(&url).json(&body.unwrap_or(json!({}))),
        };
        let res = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"));
        let v: Value = res.json().await.unwrap_or(Value::Null);
        if v["value"].get("error").is_some() {
            panic!("WebDriver {method} {path}: {}", v["value"]);
        }
        v
    }

    async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{}", self.session, path);
        self.call(method, &path, body).await["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({"url": url}))).await;
    }

    pub async fn url(&self) -> String {
        self.cmd("GET", "/url", None)
            .await
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    pub async fn source(&self) -> String {
        self.cmd("GET", "/source", None)
            .await
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// The element matching a CSS selector, waiting up to 10 s for it to appear.
    pub async fn find(&self, css: &str) -> Element {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(e) = self.try_find(css).await {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no element matches `{css}` on {}",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn try_find(&self, css: &str) -> Option<Element> {
        let path = format!("/session/{}/element", self.session);
        let url = format!("{}{}", self.base, path);
        let v: Value = self
            .http
            .post(&url)
            .json(&json!({"using": "css selector", "value": css}))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v["value"][ELEMENT].as_str().map(|s| Element(s.to_string()))
    }

    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.cmd("POST", &format!("/element/{}/click", e.0), None)
            .await;
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.cmd("POST", &format!("/element/{}/clear", e.0), None)
            .await;
        self.cmd(
            "POST",
            &format!("/element/{}/value", e.0),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// The rendered text of the element matching `css` (waiting for it), read in one
    /// script so that a live region replaced meanwhile cannot make it stale.
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await;
        self.text_now(css).await.unwrap_or_default()
    }

    async fn text_now(&self, css: &str) -> Option<String> {
        let v = self
            .eval(
                "var e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
                json!([css]),
            )
            .await;
        v.as_str().map(str::to_string)
    }

    /// Runs a script in the page and returns its result.
    pub async fn eval(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Waits (up to `secs`) until `css`'s text satisfies `ok`; returns the text.
    pub async fn wait_text(&self, css: &str, secs: u64, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let t = self.text_now(css).await.unwrap_or_default();
            if ok(&t) {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "`{css}` never became as expected within {secs} s; last text: {t:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Resizes the window to `width`×`height` CSS pixels.
    pub async fn resize(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    /// Makes the page see `prefers-color-scheme: dark` (or light again), through
    /// chromedriver's DevTools bridge.
    pub async fn color_scheme(&self, scheme: &str) {
        let params = json!({"cmd": "Emulation.setEmulatedMedia",
            "params": {"features": [{"name": "prefers-color-scheme", "value": scheme}]}});
        self.cmd("POST", "/goog/cdp/execute", Some(params)).await;
    }

    /// Saves a PNG of the window to `dir/name.png`, and one of the whole page to
    /// `dir/name-full.png`.
    pub async fn screenshot(&self, dir: &Path, name: &str) {
        let save = |v: Value, file: String| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap_or(""))
                .expect("a base64 screenshot");
            std::fs::write(dir.join(file), bytes).expect("write the screenshot");
        };
        save(
            self.cmd("GET", "/screenshot", None).await,
            format!("{name}.png"),
        );
        let rect = self.cmd("GET", "/window/rect", None).await;
        let h = self
            .eval("return document.documentElement.scrollHeight;", json!([]))
            .await
            .as_u64()
            .unwrap_or(768)
            .min(6000);
        self.cmd(
            "POST",
            "/window/rect",
            Some(json!({"width": rect["width"], "height": h})),
        )
        .await;
        save(
            self.cmd("GET", "/screenshot", None).await,
            format!("{name}-full.png"),
        );
        self.cmd(
            "POST",
            "/window/rect",
            Some(json!({"width": rect["width"], "height": rect["height"]})),
        )
        .await;
    }

    /// Ends the session and chromedriver.
    pub async fn quit(mut self) {
        let path = format!("/session/{}", self.session);
        let _ = self
            .http
            .delete(format!("{}{}", self.base, path))
            .send()
            .await;
        let _ = std::fs::remove_dir_all(&self.profile);
        self.session.clear();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A failed test never reaches quit(): end chromedriver's process group (it and the
        // chromium it started), by the group id of the process this test started.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
