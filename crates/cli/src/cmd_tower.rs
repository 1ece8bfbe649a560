//! `testpilot tower ...`.

use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum TowerCmd {
    /// Serve the control tower (not built yet).
    Serve,
}

pub fn run(_c: TowerCmd) -> anyhow::Result<ExitCode> {
    anyhow::bail!("the control tower is not built yet")
}
