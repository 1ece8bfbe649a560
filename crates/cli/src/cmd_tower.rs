//! `testpilot tower serve|token|pubkey|export|key`.

use crate::term::{self, errln, outln};
use anyhow::Context;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use testpilot_flight::Clock;
use testpilot_tower::api::{ApiConfig, ClientLimits, PushLimits};
use testpilot_tower::connections::ConnectionLimits;
use testpilot_tower::index::IndexTiming;
use testpilot_tower::keys::KeyRing;
use testpilot_tower::{Role, Store, SystemClock, TowerConfig};

#[derive(clap::Subcommand)]
pub enum TowerCmd {
    /// Serve the control tower: the management API, the signed index, reports and progress.
    Serve(ServeArgs),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Print the public key (standard base64) that pilots pin to verify the index.
    Pubkey {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Write the signed index to DIR/control/index.json, for a static host or CDN.
    Export {
        /// The directory to write into.
        #[arg(long)]
        out: PathBuf,
        /// How long the exported index stays valid (`7d`, `36h`, ...).
        #[arg(long, default_value = "7d")]
        index_ttl: String,
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// The index signing key: make a key file, show the keys, rotate (two people; docs/keys.md).
    #[command(subcommand)]
    Key(KeyCmd),
}

#[derive(clap::Subcommand)]
pub enum KeyCmd {
    /// Make a new key file (mode 600) holding a fresh seed, and print its public key. For
    /// --signing-key-file, or a successor kept out of the database (`key rotate --key-file`).
    Generate {
        /// The file to create; an existing file is never overwritten.
        #[arg(long)]
        out: PathBuf,
    },
    /// Show the signing key and, during a rotation, the announced successor.
    Status {
        #[command(flatten)]
        to: crate::cmd_remote::TowerArgs,
    },
    /// Propose a rotation (approver or admin): the index announces a successor key as
    /// `nextKey`, and pilots pin it. Someone else completes it with `tower key complete`.
    Rotate {
        /// A key file holding the successor's seed, kept out of the database (only its public
        /// key is sent; put the file in every tower's --signing-key-file before completing).
        /// Without it, the tower makes the successor and keeps it in its database.
        #[arg(long)]
        key_file: Option<PathBuf>,
        #[command(flatten)]
        to: crate::cmd_remote::TowerArgs,
    },
    /// Complete the pending rotation (approver or admin, not the person who proposed it): the
    /// tower signs the index with the successor from now on.
    Complete {
        #[command(flatten)]
        to: crate::cmd_remote::TowerArgs,
    },
}

/// Where the index signing key's seed is, when not in the database.
#[derive(clap::Args, Clone)]
pub struct KeyArgs {
    /// A file holding the index signing key's seed, so that it is not kept in the database
    /// (one seed per line: base64 of 32 bytes; docs/keys.md). Only its owner may read it
    /// (chmod 600). The seed itself may be given in TESTPILOT_SIGNING_KEY instead.
    #[arg(long, env = "TESTPILOT_SIGNING_KEY_FILE")]
    pub signing_key_file: Option<PathBuf>,
}

impl KeyArgs {
    pub fn ring(&self) -> anyhow::Result<KeyRing> {
        let seed = std::env::var(testpilot_tower::keys::KEY_ENV).ok();
        Ok(KeyRing::from_sources(
            self.signing_key_file.as_deref(),
            seed.as_deref(),
        )?)
    }
}

#[derive(clap::Subcommand)]
pub enum TokenCmd {
    /// Make a token and print it (alone, on standard output). It is shown only this once.
    Create {
        /// What the token may do: author (push, review), approver (approve, kill, end), admin (all, tokens).
        #[arg(long, value_parser = ["author", "approver", "admin"])]
        role: String,
        /// The holder's identity; a revision's author cannot approve it. Default: ROLE-<6 hex>.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List tokens (never their secrets).
    List(DbArgs),
}

/// Where the tower's database is.
#[derive(clap::Args, Clone)]
pub struct DbArgs {
    /// The database: sqlite://PATH or postgres://USER@HOST:PORT/DB. Default: a SQLite file in the data directory.
    #[arg(long, env = "TESTPILOT_DB")]
    pub db: Option<String>,
    /// The data directory (holds the default SQLite database).
    #[arg(long, default_value = "testpilot-data")]
    pub data: PathBuf,
}

impl DbArgs {
    pub fn url(&self) -> anyhow::Result<String> {
        match &self.db {
            Some(u) => Ok(u.clone()),
            None => {
                // 0700: it holds the database, with tokens and (by default) the signing key.
                testpilot_tower::private::create_dir(&self.data).with_context(|| {
                    format!("creating the data directory {}", self.data.display())
                })?;
                Ok(testpilot_tower::local::sqlite_url(&self.data))
            }
        }
    }
}

#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8470")]
    pub listen: SocketAddr,
    /// One person runs this tower: a revision's author may approve it. Said in /healthz and the audit log.
    #[arg(long)]
    pub single_user: bool,
    /// Report requests per second allowed per client address (0: no limit); event batches
    /// (`POST /api/v1/events`) have a bucket of their own with the same rate.
    #[arg(long, default_value_t = 20.0)]
    pub report_rate: f64,
    /// Report requests (and, apart, event batches) a client address may send in a burst.
    #[arg(long, default_value_t = 60.0)]
    pub report_burst: f64,
    /// A reverse proxy (network `10.0.0.0/8`, `fd00::/8`, or one address) whose
    /// `X-Forwarded-For` / `Forwarded: for=` name the client for rate limits; repeatable.
    /// Without it, forwarding headers are ignored.
    #[arg(long = "trusted-proxy", value_name = "CIDR", value_parser = testpilot_tower::client_addr::parse_network)]
    pub trusted_proxies: Vec<testpilot_tower::client_addr::IpNet>,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body: usize,
    /// Most reports in one batch.
    #[arg(long, default_value_t = 1000)]
    pub max_reports: usize,
    /// How long a served index stays valid (`7d`, `36h`, ...).
    #[arg(long, default_value = "7d")]
    pub index_ttl: String,
    /// Cache-Control max-age of the index, in seconds.
    #[arg(long, default_value_t = 60)]
    pub index_max_age: u32,
    /// How long raw reports and events are kept ("400d", "2w", ...), or "never" to keep
    /// them forever. Pruned at start and hourly; progress and results keep counting them
    /// (docs/api.md, Retention).
    #[arg(long, default_value = "400d")]
    pub retention: String,
    #[command(flatten)]
    pub connections: ConnectionArgs,
    /// Push streams (`GET /control/stream`, which tells pilots the index changed) one client
    /// address may hold; more are answered 429.
    #[arg(long, default_value_t = PushLimits::default().per_address as u64, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_streams_per_address: u64,
    /// Push streams open in all; more are answered 503. Each is also a connection, so
    /// --max-connections (and `ulimit -n`) must allow as many.
    #[arg(long, default_value_t = PushLimits::default().total as u64, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_streams: u64,
    /// A folder of population files (`*.json`, docs/simulate.md) that the review page and
    /// `POST /api/v1/flights/{name}/simulate` offer beside the built-in one, each by its
    /// file name; a file that is not a valid population stops the start, naming the field.
    #[arg(long, value_name = "DIR")]
    pub populations: Option<PathBuf>,
}

/// The populations a tower offers to simulate a revision under review: the built-in one,
/// and those in `--populations DIR`, read and validated before the tower starts.
pub fn populations(dir: Option<&Path>) -> anyhow::Result<testpilot_tower::simulate::SimConfig> {
    let populations = match dir {
        None => testpilot_tower::simulate::Populations::default(),
        Some(d) => testpilot_tower::simulate::Populations::load(d)?,
    };
    Ok(testpilot_tower::simulate::SimConfig {
        populations: Arc::new(populations),
        ..Default::default()
    })
}

/// Time and count limits on clients' connections, so slow or numerous clients cannot hold
/// the tower.
#[derive(clap::Args)]
pub struct ConnectionArgs {
    /// Seconds a client has to send a request's headers, from connecting or from the previous
    /// answer (so also how long an idle keep-alive connection stays open).
    #[arg(long, default_value_t = ConnectionLimits::default().header_timeout.as_secs(), value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout: u64,
    /// Seconds a client has to send a request's whole body once its headers are in (else 408).
    #[arg(long, default_value_t = ConnectionLimits::default().body_timeout.as_secs(), value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout: u64,
    /// Seconds without a byte moving, while the tower waits on the client, before the
    /// connection is closed (a client that stops reading an answer, a stalled body).
    #[arg(long, default_value_t = ConnectionLimits::default().idle_timeout.as_secs(), value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout: u64,
    /// Connections one IP address may hold open; more are answered 503 and closed.
    #[arg(long, default_value_t = ConnectionLimits::default().per_address as u64, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections_per_address: u64,
    /// Connections open in all; more are answered 503 and closed. Keep it under the
    /// process's open-file limit (`ulimit -n`).
    #[arg(long, default_value_t = ConnectionLimits::default().total as u64, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,
}

impl ConnectionArgs {
    fn limits(&self) -> ConnectionLimits {
        let secs = std::time::Duration::from_secs;
        ConnectionLimits {
            header_timeout: secs(self.header_timeout),
            body_timeout: secs(self.body_timeout),
            idle_timeout: secs(self.idle_timeout),
            per_address: usize::try_from(self.max_connections_per_address).unwrap_or(usize::MAX),
            total: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
        }
    }
}

/// Logs to standard error; `RUST_LOG` overrides `default`.
pub fn init_logs(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a terminal: a log file or a pipe gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// `--retention`: a duration of at least a day, or `never`.
fn retention(text: &str) -> anyhow::Result<Option<std::time::Duration>> {
    if text.trim() == "never" {
        return Ok(None);
    }
    let v = serde_json::Value::String(text.to_string());
    let d = testpilot_flight::parse_duration(&v)
        .map_err(|e| anyhow::anyhow!("--retention: {e}, or \"never\""))?;
    if d.ms < 86_400_000 {
        anyhow::bail!(
            "--retention {text}: give at least one day (\"1d\"); raw rows are pruned by whole days"
        );
    }
    Ok(Some(std::time::Duration::from_millis(d.ms)))
}

fn timing(ttl: &str, max_age: u32) -> anyhow::Result<IndexTiming> {
    let v = serde_json::Value::String(ttl.to_string());
    let ttl =
        testpilot_flight::parse_duration(&v).map_err(|e| anyhow::anyhow!("--index-ttl: {e}"))?;
    let ttl_ms = i64::try_from(ttl.ms).unwrap_or(i64::MAX).max(60_000);
    // Re-sign well before expiry: at a seventh of the lifetime, at most daily.
    Ok(IndexTiming {
        ttl_ms,
        refresh_ms: (ttl_ms / 7).clamp(1_000, 86_400_000),
        max_age_s: max_age,
    })
}

pub fn run(c: TowerCmd) -> anyhow::Result<ExitCode> {
    // Warnings (a data directory or key file others can read) reach the terminal.
    if !matches!(c, TowerCmd::Serve(_)) {
        init_logs("warn,sqlx=warn");
    }
    match c {
        TowerCmd::Serve(a) => serve(a),
        TowerCmd::Token(TokenCmd::Create { role, name, db }) => runtime()?.block_on(async {
            let store = open(&db).await?;
            let role = Role::parse(&role).context("unknown role")?;
            let token = testpilot_tower::auth::new_secret()?;
            let info = store
                .create_token(role, name.as_deref(), &token, "cli", SystemClock.now())
                .await?;
            errln!(
                "made an {} token for `{}` (shown only this once)",
                info.role,
                info.name
            );
            outln!("{token}");
            Ok(ExitCode::SUCCESS)
        }),
        TowerCmd::Token(TokenCmd::List(db)) => runtime()?.block_on(async {
            let store = open(&db).await?;
            for t in store.list_tokens().await? {
                term::out_row(&[&t.id, &t.role, &t.name, &t.created_at]);
            }
            Ok(ExitCode::SUCCESS)
        }),
        TowerCmd::Pubkey { db, keys } => runtime()?.block_on(async {
            let ring = keys.ring()?;
            let store = open(&db).await?;
            let keys = store
                .init_signing_key(
                    &ring,
                    testpilot_tower::auth::random_bytes()?,
                    SystemClock.now(),
                )
                .await?;
            outln!(
                "{}",
                testpilot_flight::index::public_key_to_base64(&keys.current.public)
            );
            if let Some(next) = &keys.next {
                errln!(
                    "a rotation is pending: the index announces the successor {} ({})",
                    testpilot_flight::index::public_key_to_base64(&next.public),
                    next.key_id()
                );
            }
            Ok(ExitCode::SUCCESS)
        }),
        TowerCmd::Export {
            out,
            index_ttl,
            db,
            keys,
        } => runtime()?.block_on(async {
            let ring = keys.ring()?;
            let store = open(&db).await?;
            let now = SystemClock.now();
            store
                .init_signing_key(&ring, testpilot_tower::auth::random_bytes()?, now)
                .await?;
            let timing = timing(&index_ttl, 60)?;
            let doc = testpilot_tower::index::export(&store, &ring, timing, now, &out).await?;
            errln!(
                "wrote {} (serial {}, {} flights, expires {})",
                out.join("control").join("index.json").display(),
                doc.serial,
                doc.flights,
                doc.expires_at
            );
            Ok(ExitCode::SUCCESS)
        }),
        TowerCmd::Key(k) => key(k),
    }
}

fn key(c: KeyCmd) -> anyhow::Result<ExitCode> {
    use crate::cmd_remote::{refused, Client};
    use reqwest::Method;
    let (to, method, path, body, what) = match c {
        KeyCmd::Generate { out } => {
            let key = testpilot_tower::keys::generate_file(&out)?;
            errln!(
                "wrote a new signing key {} to {} (mode 600); its public key:",
                testpilot_flight::index::key_id(&key.verifying_key()),
                out.display()
            );
            outln!(
                "{}",
                testpilot_flight::index::public_key_to_base64(&key.verifying_key())
            );
            return Ok(ExitCode::SUCCESS);
        }
        KeyCmd::Status { to } => (to, Method::GET, "/api/v1/keys", None, "key status"),
        KeyCmd::Rotate { key_file, to } => {
            let body = match key_file {
                Some(f) => {
                    let ring = KeyRing::from_file(&f)?;
                    let k = ring.first().context("the key file holds no key")?;
                    serde_json::json!({"publicKey": testpilot_flight::index::public_key_to_base64(&k.verifying_key())})
                }
                None => serde_json::json!({}),
            };
            (
                to,
                Method::POST,
                "/api/v1/keys/rotate",
                Some(body),
                "key rotate",
            )
        }
        KeyCmd::Complete { to } => (
            to,
            Method::POST,
            "/api/v1/keys/rotate/complete",
            None,
            "key complete",
        ),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = Client::new(&to)?;
        let a = client.send(method, path, body.as_ref()).await?;
        if !a.status.is_success() {
            return Ok(refused(&a, what, "key"));
        }
        let field = |k: &str, f: &str| {
            a.body
                .get(k)
                .and_then(|v| v.get(f))
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
        };
        let current = field("current", "keyId").unwrap_or_default();
        let serial = a.body.get("serial").and_then(serde_json::Value::as_u64);
        match (what, field("next", "keyId")) {
            ("key rotate", Some(next)) => outln!(
                "proposed: the index (serial {}) announces key {next} as the successor of {current}; pilots pin it when they next sync. Someone else completes the rotation: testpilot tower key complete",
                serial.unwrap_or(0)
            ),
            ("key complete", _) => outln!(
                "completed: the index (serial {}) is signed by key {current}; the old key is retired",
                serial.unwrap_or(0)
            ),
            (_, next) => {
                outln!(
                    "current  {current}  {}  (secret: {})",
                    field("current", "publicKey").unwrap_or_default(),
                    field("current", "secret").unwrap_or_default()
                );
                if let Some(next) = next {
                    outln!(
                        "next     {next}  {}  (secret: {}; proposed by {})",
                        field("next", "publicKey").unwrap_or_default(),
                        field("next", "secret").unwrap_or_default(),
                        field("next", "proposedBy").unwrap_or_default()
                    );
                }
            }
        }
        if let Some(w) = a.body.get("warning").and_then(serde_json::Value::as_str) {
            errln!("warning: {}", w);
        }
        Ok(ExitCode::SUCCESS)
    })
}

async fn open(db: &DbArgs) -> anyhow::Result<Store> {
    let url = db.url()?;
    Store::open(&url)
        .await
        .with_context(|| format!("opening the database {}", redact(&url)))
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

fn serve(a: ServeArgs) -> anyhow::Result<ExitCode> {
    init_logs("info,sqlx=warn");
    let retention = retention(&a.retention)?;
    let url = a.db.url()?;
    let mut config = TowerConfig::new(url.clone(), a.listen);
    config.keys = a.keys.ring()?;
    config.api = ApiConfig {
        single_user: a.single_user,
        limits: ClientLimits {
            max_body_bytes: a.max_body,
            max_reports: a.max_reports,
            rate_per_sec: a.report_rate,
            burst: a.report_burst,
            ..ClientLimits::default()
        },
        index: timing(&a.index_ttl, a.index_max_age)?,
        trusted_proxies: testpilot_tower::client_addr::TrustedProxies(a.trusted_proxies.clone()),
        push: PushLimits {
            per_address: usize::try_from(a.max_streams_per_address).unwrap_or(usize::MAX),
            total: usize::try_from(a.max_streams).unwrap_or(usize::MAX),
            ..PushLimits::default()
        },
        simulate: populations(a.populations.as_deref())?,
    };
    config.connections = a.connections.limits();
    config.retention = retention;
    runtime()?.block_on(async move {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let tower = testpilot_tower::start(config, clock)
            .await
            .with_context(|| format!("starting the tower on {} with {}", a.listen, redact(&url)))?;
        errln!(
            "tower listening on {}  (database {})",
            tower.url,
            redact(&url)
        );
        errln!("public key (pilots pin it): {}", tower.public_key);
        let keys = tower.state.store.key_status().await?;
        if keys.current.secret == "database" {
            errln!("the signing key's seed is kept in the database; to keep it out (PostgreSQL setups), see docs/keys.md (--signing-key-file)");
        }
        if let Some(next) = &keys.next {
            errln!(
                "a key rotation is pending: the index announces {} ({}), proposed by {}",
                next.public_key,
                next.key_id,
                next.proposed_by.as_deref().unwrap_or("?")
            );
        }
        if a.single_user {
            errln!(
                "SINGLE-USER MODE: a revision's own author may approve it. Not for shared towers."
            );
        }
        shutdown_signal().await;
        errln!("stopping…");
        tower.stop().await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The data directory's default database, for messages.
pub fn describe_data(data: &Path) -> String {
    format!(
        "{} (SQLite: {})",
        data.display(),
        data.join("tower.db").display()
    )
}
