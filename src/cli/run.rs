//! `aiwatch run`: continuous monitoring from Kafka.

use std::path::PathBuf;
use std::process::ExitCode;

use aiwatch::config::RunConfig;
use aiwatch::stream::{self, RunOptions};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The run configuration (TOML); see deploy/aiwatch.toml.
    #[arg(long, value_name = "FILE", env = "AIWATCH_CONFIG")]
    pub config: PathBuf,
    /// Read up to the end offsets present at start, move the watermark to the
    /// largest event time seen, flush, commit and exit (backfill, replay).
    #[arg(long)]
    pub until_end: bool,
}

pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    let config = RunConfig::load(&a.config)?;
    let totals = stream::run(config, RunOptions { until_end: a.until_end }).await?;
    eprint!("{}", totals.render());
    Ok(ExitCode::SUCCESS)
}
