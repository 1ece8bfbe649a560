//! What `testpilot up` needs from the tower: a single-user tower on SQLite in a data
//! directory, a token kept in that directory, and the example flights loaded and live.
//! The CLI prints; this module does the work and says what it did.

use crate::actions;
use crate::api::{ApiConfig, AppState};
use crate::error::{Error, Result};
use crate::lifecycle::{Actor, FlightState, RevisionState};
use crate::server::{self, RunningTower};
use crate::store::Store;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use testpilot_flight::{copilot, Clock, Flight};

/// Where and how to run the local tower.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// Holds `tower.db` and `local-token` (created if missing).
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// A directory of example flights (`*.json`; `*.person.json` are person contexts and
    /// are skipped) and copilot documents (`copilot/*.json`), or none.
    pub examples: Option<PathBuf>,
    /// The populations offered to simulate a revision under review (`--populations`).
    pub simulate: crate::simulate::SimConfig,
}

/// What happened to one example file.
#[derive(Debug, Clone, PartialEq)]
pub struct ExampleLoad {
    pub file: PathBuf,
    pub studyname: Option<String>,
    /// `Some(version)` when the flight is live after loading.
    pub live_version: Option<u64>,
    /// In words: "now live", "already live", or why it was skipped.
    pub note: String,
}

/// A local tower, running.
pub struct LocalTower {
    pub tower: RunningTower,
    /// An admin token for the person at the keyboard (kept in `DATA/local-token`).
    pub token: String,
    pub db_url: String,
    pub examples: Vec<ExampleLoad>,
}

/// The SQLite URL of the database in a data directory.
pub fn sqlite_url(data_dir: &Path) -> String {
    format!("sqlite://{}", data_dir.join("tower.db").display())
}

/// Starts (or resumes) a single-user tower on SQLite in `opts.data_dir`, with the examples
/// loaded and live. The seam for `testpilot up`: the caller gets the URL and public key in
/// `tower`, and may start a local pilot against them.
pub async fn start_local(opts: LocalOptions, clock: Arc<dyn Clock>) -> Result<LocalTower> {
    crate::private::create_dir(&opts.data_dir)?;
    let db_url = sqlite_url(&opts.data_dir);
    let store = Store::open(&db_url).await?;
    let config = ApiConfig {
        single_user: true,
        simulate: opts.simulate.clone(),
        ..ApiConfig::default()
    };
    let state = AppState::new(store, clock, config).await?;
    let (token, actor) = local_token(&state, &opts.data_dir).await?;
    let examples = match &opts.examples {
        Some(dir) if dir.is_dir() => load_examples(&state, dir, &actor).await?,
        _ => Vec::new(),
    };
    state.refresh_index().await?;
    let tower = server::serve(state, opts.listen, 1000).await?;
    Ok(LocalTower {
        tower,
        token,
        db_url,
        examples,
    })
}

/// The admin token kept in `DATA/local-token`, made on the first run.
pub async fn local_token(state: &AppState, data_dir: &Path) -> Result<(String, Actor)> {
    let path = data_dir.join("local-token");
    crate::private::warn_if_loose(&path);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let token = text.trim().to_string();
        if let Some(actor) = state.store.actor_for_token(&token).await? {
            return Ok((token, actor));
        }
    }
    let token = crate::auth::new_secret()?;
    let info = state
        .store
        .create_token(
            crate::Role::Admin,
            Some("local"),
            &token,
            "testpilot up",
            state.clock.now(),
        )
        .await?;
    // Created 0600 from its first byte: never readable by others, not even for an instant.
    crate::private::write_new(&path, &format!("{token}\n"))?;
    Ok((token, Actor::new(info.name, info.role)))
}

/// Pushes, reviews and approves every valid flight in `dir` and every valid copilot
/// document in `dir/copilot` (sorted by path), as `actor` on a single-user tower, through
/// [`crate::actions`] as any other caller. Already-live identical flights are left alone;
/// killed or ended ones are not revived.
pub async fn load_examples(
    state: &AppState,
    dir: &Path,
    actor: &Actor,
) -> Result<Vec<ExampleLoad>> {
    let json_files = |dir: &Path| -> Result<Vec<PathBuf>> {
        Ok(std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                p.is_file() && name.ends_with(".json") && !name.ends_with(".person.json")
            })
            .collect())
    };
    let mut files = json_files(dir)?;
    let copilot_dir = dir.join("copilot");
    if copilot_dir.is_dir() {
        files.extend(json_files(&copilot_dir)?);
    }
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let skip = |note: String, studyname: Option<String>| ExampleLoad {
            file: file.clone(),
            studyname,
            live_version: None,
            note,
        };
        let value: serde_json::Value = match std::fs::read_to_string(&file)
            .map_err(|e| e.to_string())
            .and_then(|t| {
                testpilot_flight::json::from_str(&t).map_err(|e| format!("not JSON: {e}"))
            }) {
            Ok(v) => v,
            Err(e) => {
                out.push(skip(format!("skipped: {e}"), None));
                continue;
            }
        };
        let (flight, what) = if copilot::is_copilot(&value) {
            (
                copilot::expand_json(&value).map(|(_, f)| f),
                "copilot document",
            )
        } else {
            (Flight::from_json(&value), "flight")
        };
        let flight = match flight {
            Ok(f) => f,
            Err(d) => {
                let command = if what == "flight" {
                    "flight"
                } else {
                    "copilot"
                };
                out.push(skip(format!("skipped: not a valid {what} ({} problems; `testpilot {command} validate` lists them)", d.len()), None));
                continue;
            }
        };
        let name = flight.studyname.clone();
        out.push(match make_live(state, &value, &flight, actor).await {
            Ok((version, note)) => ExampleLoad {
                file: file.clone(),
                studyname: Some(name),
                live_version: Some(version),
                note,
            },
            Err(Error::Conflict(m)) => skip(format!("skipped: {m}"), Some(name)),
            Err(e) => return Err(e),
        });
    }
    Ok(out)
}

/// Makes `doc` (a flight or a copilot document, whose flight is `flight`) live.
async fn make_live(
    state: &AppState,
    doc: &serde_json::Value,
    flight: &Flight,
    actor: &Actor,
) -> Result<(u64, String)> {
    let pushed = actions::push_document(state, actor, doc).await?;
    let name = &flight.studyname;
    if pushed.unchanged && pushed.revision_state == RevisionState::Live {
        return Ok((pushed.version, "already live".into()));
    }
    if pushed.revision_state == RevisionState::Draft {
        actions::review(state, actor, name, Some(pushed.version)).await?;
    }
    let approved = actions::approve(state, actor, name, Some(pushed.version)).await?;
    debug_assert_eq!(approved.state, FlightState::Live);
    // An example that says `"kill": true` shows a killed flight: kill it, so the tower's
    // state says so too (not "live" with a kill switch inside).
    if flight.kill {
        actions::kill(
            state,
            actor,
            name,
            Some("the example's spec says \"kill\": true"),
        )
        .await?;
        return Ok((
            approved.version,
            "killed (its spec says \"kill\": true)".into(),
        ));
    }
    Ok((approved.version, "now live".into()))
}
