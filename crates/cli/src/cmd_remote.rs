//! `testpilot flight push|review|approve|kill|end|status`: talking to a tower.

use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum RemoteCmd {
    /// Push a flight file to a tower (not built yet).
    Push { file: std::path::PathBuf },
}

pub fn run(_c: RemoteCmd) -> anyhow::Result<ExitCode> {
    anyhow::bail!("the control tower is not built yet")
}
