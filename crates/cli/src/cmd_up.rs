//! `testpilot up`. Owned by the tower work; the pilot joins it once it exists.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct UpArgs {}

pub fn run(_a: UpArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`testpilot up` needs the control tower, which is not built yet. Meanwhile try `testpilot flight validate examples/*.json`.")
}
