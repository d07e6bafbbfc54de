//! `aiwatch query` (written below).
use std::process::ExitCode;
#[derive(clap::Args, Debug)]
pub struct Args {}
pub async fn run(_a: Args) -> anyhow::Result<ExitCode> { anyhow::bail!("not yet") }
