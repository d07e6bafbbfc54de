//! `aiwatch rules` (written below).
use std::process::ExitCode;
#[derive(clap::Subcommand, Debug)]
pub enum Command { List }
pub async fn run(_a: Command) -> anyhow::Result<ExitCode> { anyhow::bail!("not yet") }
