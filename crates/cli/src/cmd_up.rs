//! `testpilot up`: the whole system on this machine — a single-user tower on SQLite under
//! `./testpilot-data` with the example flights live. Ctrl-C stops it; running it again
//! resumes from the same data.

use crate::cmd_tower::{describe_data, init_logs, shutdown_signal};
use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use testpilot_flight::Clock;
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
    /// Example flights to load and make live (`*.person.json` files are person contexts, skipped).
    #[arg(long, default_value = "examples")]
    pub examples: PathBuf,
}

/// Starts the local tower: the seam where a local pilot joins (it needs
/// `tower.tower.url` and `tower.tower.public_key`).
pub async fn start_tower(a: &UpArgs) -> anyhow::Result<LocalTower> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let opts = LocalOptions {
        data_dir: a.data.clone(),
        listen: a.listen,
        examples: Some(a.examples.clone()),
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
        let local = start_tower(&a).await?;
        print_welcome(&a, &local);
        // A local pilot joins here (lead engineer): run it against local.tower.url, pinning
        // local.tower.public_key, and stop it before the tower below.
        shutdown_signal().await;
        println!("\nstopping… (run `testpilot up` again to resume)");
        local.tower.stop().await?;
        Ok(ExitCode::SUCCESS)
    })
}

fn print_welcome(a: &UpArgs, local: &LocalTower) {
    let url = &local.tower.url;
    println!("Test Pilot is up — LOCAL, SINGLE-USER MODE: a flight's own author may approve it.");
    println!();
    println!("  tower       {url}");
    println!("  index       {url}/control/index.json");
    println!("  public key  {}", local.tower.public_key);
    println!("  data        {}", describe_data(&a.data));
    println!(
        "  token       {}  (admin; kept in {})",
        local.token,
        a.data.join("local-token").display()
    );
    if local.examples.is_empty() {
        println!(
            "  flights     none loaded (no flights in {})",
            a.examples.display()
        );
    }
    for (i, e) in local.examples.iter().enumerate() {
        let label = if i == 0 { "flights" } else { "" };
        let name = e.studyname.as_deref().unwrap_or("-");
        let version = e.live_version.map(|v| format!(" v{v}")).unwrap_or_default();
        println!(
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
    println!();
    println!("Try next:");
    println!("  curl -s {url}/control/index.json");
    println!(
        "  export TESTPILOT_TOWER={url} TESTPILOT_TOKEN={}",
        local.token
    );
    println!("  testpilot flight status {first}");
    println!("  testpilot flight push MY-FLIGHT.json && testpilot flight review NAME && testpilot flight approve NAME");
    println!("  testpilot flight kill {first}");
    println!(
        "  testpilot pilot run --tower {url} --profile ./my-profile --public-key {}",
        local.tower.public_key
    );
    println!();
    println!("Ctrl-C stops it; `testpilot up` again resumes where it was.");
}
