//! `testpilot pilot ...`, `log`, `later`, `optout`: the client side.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum PilotCmd {
    /// Run the pilot agent (not built yet).
    Run,
}

#[derive(clap::Args)]
pub struct LogArgs {
    #[arg(long)]
    pub profile: PathBuf,
}

#[derive(clap::Args)]
pub struct LaterArgs {
    #[arg(long)]
    pub profile: PathBuf,
}

#[derive(clap::Args)]
pub struct OptoutArgs {
    #[arg(long)]
    pub profile: PathBuf,
}

pub fn run(_c: PilotCmd) -> anyhow::Result<ExitCode> {
    anyhow::bail!("the pilot is not built yet")
}
pub fn log(_a: LogArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("the pilot is not built yet")
}
pub fn later(_a: LaterArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("the pilot is not built yet")
}
pub fn optout(_a: OptoutArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("the pilot is not built yet")
}
