//! `testpilot up`: the whole system on this machine — a single-user tower on SQLite under
//! `./testpilot-data` with the example flights live. Ctrl-C stops it; running it again
//! resumes from the same data.

use crate::cmd_tower::{describe_data, init_logs, shutdown_signal};
use crate::term::{errln, outln};
use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use testpilot_flight::Clock;
use testpilot_pilot::agent::{run_agent, AgentConfig, ProfileLock};
use testpilot_tower::local::{start_local, LocalOptions, LocalTower};
use testpilot_tower::SystemClock;

#[derive(clap::Args)]
pub struct UpArgs {
    /// Where the tower keeps its database and token.
    #[arg(long, default_value = "testpilot-data")]
    pub data: PathBuf,
    /// Address for the tower.
    #[arg(long, default_value = "127.0.0.1:8470")]
    pub listen: SocketAddr,
    /// Example flights to load and make live (`*.person.json` files are person contexts,
    /// skipped), and the copilot documents in its `copilot/` folder.
    #[arg(long, default_value = "examples")]
    pub examples: PathBuf,
    /// A folder of population files (`*.json`) the review page offers for simulating a
    /// revision, beside the built-in one (as `tower serve --populations`).
    #[arg(long, value_name = "DIR")]
    pub populations: Option<PathBuf>,
}

/// Starts the local tower: the seam where a local pilot joins (it needs
/// `tower.tower.url` and `tower.tower.public_key`).
pub async fn start_tower(a: &UpArgs) -> anyhow::Result<LocalTower> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let opts = LocalOptions {
        data_dir: a.data.clone(),
        listen: a.listen,
        examples: Some(a.examples.clone()),
        simulate: crate::cmd_tower::populations(a.populations.as_deref())?,
    };
    start_local(opts, clock).await.with_context(|| {
        format!(
            "starting the local tower on {} with data in {}",
            a.listen,
            a.data.display()
        )
    })
}

pub fn run(a: UpArgs) -> anyhow::Result<ExitCode> {
    init_logs("warn");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let profile = a.data.join("pilot");
        // One `up` per data folder: the local pilot's profile lock tells whether another
        // `up` is using it, before a second tower starts on the same database.
        if let Err(testpilot_pilot::Error::Locked { holder, .. }) = ProfileLock::acquire(&profile) {
            anyhow::bail!(
                "testpilot up is already running with data in {} ({holder}); stop it first, or give another --data",
                a.data.display()
            );
        }
        let local = start_tower(&a).await?;
        let (stop_pilot, stopped) = tokio::sync::oneshot::channel::<()>();
        let pilot = tokio::spawn(run_agent(
            local_pilot_config(&profile, &local),
            async move {
                let _ = stopped.await;
            },
        ));
        print_welcome(&a, &local, &profile);
        let mut pilot = pilot;
        let pilot_result = tokio::select! {
            _ = shutdown_signal() => None,
            // The pilot stopping by itself means something is wrong; say so at once and keep
            // the tower up, since it is the main job.
            r = &mut pilot => Some(r),
        };
        if let Some(r) = &pilot_result {
            report_pilot_end(r);
            shutdown_signal().await;
        }
        outln!();
        outln!("stopping… (run `testpilot up` again to resume)");
        let _ = stop_pilot.send(());
        if pilot_result.is_none() {
            report_pilot_end(&pilot.await);
        }
        local.tower.stop().await?;
        Ok(ExitCode::SUCCESS)
    })
}

fn report_pilot_end(r: &Result<Result<(), testpilot_pilot::Error>, tokio::task::JoinError>) {
    match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => errln!("the local pilot stopped: {e}"),
        Err(e) => errln!("the local pilot stopped abnormally: {e}"),
    }
}

/// The local pilot: a profile under the data folder, pinned to this tower's key, polling
/// often (it is a demonstration), as a beta-channel person on this machine's OS.
fn local_pilot_config(profile: &std::path::Path, local: &LocalTower) -> AgentConfig {
    let os = match std::env::consts::OS {
        "macos" => "macos",
        "windows" => "windows",
        _ => "linux",
    };
    let locale = std::env::var("LANG")
        .ok()
        .and_then(|l| l.split(['.', '@']).next().map(|l| l.replace('_', "-")))
        .filter(|l| l.len() >= 2 && l != "C" && l != "POSIX")
        .unwrap_or_else(|| "en-US".into());
    let mut c = AgentConfig::new(profile, local.tower.url.clone());
    c.public_key = Some(local.tower.public_key.clone());
    c.person = Some(serde_json::json!({
        "os": os, "channel": "beta", "locale": locale, "appversion": "130.0"
    }));
    c.poll = std::time::Duration::from_secs(10);
    c
}

fn print_welcome(a: &UpArgs, local: &LocalTower, profile: &std::path::Path) {
    let url = &local.tower.url;
    outln!("Test Pilot is up — LOCAL, SINGLE-USER MODE: a flight's own author may approve it.");
    outln!();
    outln!("  tower       {url}");
    outln!("  dashboard   {url}/ui/  (sign in with the token below)");
    outln!("  index       {url}/control/index.json");
    outln!("  public key  {}", local.tower.public_key);
    outln!("  data        {}", describe_data(&a.data));
    outln!(
        "  pilot       profile {} (a beta-channel person on this machine, pinned to the key above)",
        profile.display()
    );
    outln!(
        "  token       {}  (admin; kept in {})",
        local.token,
        a.data.join("local-token").display()
    );
    if local.examples.is_empty() {
        outln!(
            "  flights     none loaded (no flights in {})",
            a.examples.display()
        );
    }
    for (i, e) in local.examples.iter().enumerate() {
        let label = if i == 0 { "flights" } else { "" };
        let name = e.studyname.as_deref().unwrap_or("-");
        let version = e.live_version.map(|v| format!(" v{v}")).unwrap_or_default();
        outln!(
            "  {label:<11} {name}{version}: {}  ({})",
            e.note,
            e.file.display()
        );
    }
    let first = local
        .examples
        .iter()
        .find_map(|e| e.live_version.and(e.studyname.clone()));
    let first = first.as_deref().unwrap_or("NAME");
    outln!();
    outln!("Try next:");
    outln!("  curl -s {url}/control/index.json");
    outln!(
        "  export TESTPILOT_TOWER={url} TESTPILOT_TOKEN={}",
        local.token
    );
    outln!("  testpilot flight status {first}");
    outln!("  testpilot flight push MY-FLIGHT.json && testpilot flight review NAME && testpilot flight approve NAME");
    outln!("  testpilot flight kill {first}");
    outln!(
        "  testpilot log --profile {}            # what the local pilot did",
        profile.display()
    );
    outln!(
        "  testpilot later --profile {}          # prompts waiting for an answer",
        profile.display()
    );
    outln!(
        "  testpilot pilot observe page-opened --profile {}   # counted at {url}/ui/flights/page-visits within a minute",
        profile.display()
    );
    outln!(
        "  testpilot pilot run --tower {url} --profile ./my-profile --public-key {}",
        local.tower.public_key
    );
    outln!();
    outln!("Ctrl-C stops it; `testpilot up` again resumes where it was.");
}
