//! Starting a tower: open the store, build the state, serve HTTP, and keep the in-memory
//! index in step with the database (PostgreSQL LISTEN/NOTIFY, plus polling as a backstop
//! and for SQLite shared by several processes).

use crate::api::{ApiConfig, AppState, Served};
use crate::connections::ConnectionLimits;
use crate::error::{Error, Result};
use crate::keys::KeyRing;
use crate::store::{Engine, Store, NOTIFY_CHANNEL};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use testpilot_flight::Clock;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use crate::api::ClientLimits;

/// What `testpilot tower serve` configures.
#[derive(Debug, Clone)]
pub struct TowerConfig {
    /// `sqlite://PATH` or `postgres://...`.
    pub db_url: String,
    /// Where to listen; port 0 picks a free one.
    pub listen: SocketAddr,
    pub api: ApiConfig,
    /// How often to check the database for index changes made elsewhere, in ms.
    pub poll_ms: u64,
    /// Signing keys kept outside the database (`--signing-key-file`; `docs/keys.md`).
    pub keys: KeyRing,
    /// Timeouts and connection counts.
    pub connections: ConnectionLimits,
    /// Raw reports and events older than this are pruned, at start and hourly (`None`:
    /// never; `store::prune`).
    pub retention: Option<Duration>,
}

impl TowerConfig {
    pub fn new(db_url: impl Into<String>, listen: SocketAddr) -> Self {
        TowerConfig {
            db_url: db_url.into(),
            listen,
            api: ApiConfig::default(),
            poll_ms: 1000,
            keys: KeyRing::default(),
            connections: ConnectionLimits::default(),
            retention: Some(crate::store::DEFAULT_RETENTION),
        }
    }
}

/// A tower serving HTTP in the background.
pub struct RunningTower {
    /// `http://ADDR`, for clients.
    pub url: String,
    pub addr: SocketAddr,
    /// The public key pilots pin (standard base64).
    pub public_key: String,
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<()>>,
}

impl RunningTower {
    /// Stops accepting requests, finishes the ones in flight, and closes the database.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.wait().await
    }

    /// Waits until the server ends (after [`RunningTower::stop`] or an error).
    pub async fn wait(&mut self) -> Result<()> {
        (&mut self.task)
            .await
            .map_err(|e| Error::Internal(format!("the server task failed: {e}")))?
    }
}

/// Opens the database at `config.db_url` (migrating it), and serves the tower on
/// `config.listen` until [`RunningTower::stop`].
pub async fn start(config: TowerConfig, clock: Arc<dyn Clock>) -> Result<RunningTower> {
    let store = Store::open(&config.db_url).await?;
    let state = AppState::with_keys(store, clock, config.api, config.keys).await?;
    let (listen, limits) = (config.listen, config.connections);
    serve_with(state, listen, config.poll_ms, limits, config.retention).await
}

/// Serves an already opened tower with the default connection limits.
pub async fn serve(state: AppState, listen: SocketAddr, poll_ms: u64) -> Result<RunningTower> {
    serve_with(state, listen, poll_ms, ConnectionLimits::default(), None).await
}

/// Serves an already opened tower, pruning raw rows older than `retention` (if any).
pub async fn serve_with(
    state: AppState,
    listen: SocketAddr,
    poll_ms: u64,
    limits: ConnectionLimits,
    retention: Option<Duration>,
) -> Result<RunningTower> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = oneshot::channel::<()>();
    let mut background = vec![tokio::spawn(poll_index(state.clone(), poll_ms))];
    if state.store.engine() == Engine::Postgres {
        background.push(tokio::spawn(listen_for_changes(state.clone())));
    }
    if let Some(keep) = retention {
        background.push(tokio::spawn(prune_on_schedule(state.clone(), keep)));
    }
    let service = Served::new(state.clone());
    let st = state.clone();
    let task = tokio::spawn(async move {
        crate::connections::serve(listener, service, limits, async {
            let _ = rx.await;
        })
        .await;
        for b in background {
            b.abort();
        }
        st.store.close().await;
        Ok(())
    });
    tracing::info!(%addr, "tower listening");
    Ok(RunningTower {
        url: format!("http://{addr}"),
        addr,
        public_key: state.public_key(),
        state,
        shutdown: Some(tx),
        task,
    })
}

/// Rebuilds the index when the stored serial moved or the validity window rolled over.
async fn poll_index(state: AppState, poll_ms: u64) {
    let mut failing = false;
    loop {
        tokio::time::sleep(Duration::from_millis(poll_ms.max(10))).await;
        let checked = async {
            let (serial, _) = state.store.index_serial().await?;
            if state.index.is_stale(serial, state.clock.now()) {
                state.refresh_index().await?;
            }
            Ok::<_, Error>(())
        }
        .await;
        match checked {
            Ok(()) => failing = false,
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "cannot check the index for changes; serving the last one");
            }
            Err(_) => {}
        }
    }
}

/// PostgreSQL: rebuilds the index as soon as any tower on the database announces a change.
async fn listen_for_changes(state: AppState) {
    loop {
        let listened: Result<(), Error> = async {
            let mut listener = sqlx::postgres::PgListener::connect(state.store.url()).await?;
            listener.listen(NOTIFY_CHANNEL).await?;
            // Catch up on anything missed while not listening.
            state.refresh_index().await?;
            loop {
                listener.recv().await?;
                state.refresh_index().await?;
            }
        }
        .await;
        if let Err(e) = listened {
            tracing::warn!(error = %e, "index change listener failed; reconnecting");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// How often the tower prunes raw reports and events.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Prunes raw reports and events older than `keep`, at start and then hourly. A failure is
/// logged and tried again at the next round; the tower keeps serving.
async fn prune_on_schedule(state: AppState, keep: Duration) {
    loop {
        let now = state.clock.now();
        match state.store.prune(now, keep).await {
            Ok(p) if p.reports + p.events > 0 => tracing::info!(
                reports = p.reports,
                events = p.events,
                "pruned raw reports and events older than the retention ({} days)",
                keep.as_secs() / 86_400
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "pruning old reports and events failed; trying again in an hour")
            }
        }
        tokio::time::sleep(PRUNE_EVERY).await;
    }
}
