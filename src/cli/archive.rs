//! `aiwatch archive`: upkeep of the Parquet archive (`compact`).

use std::process::ExitCode;

use aiwatch::archive::{compact, Target};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Merge each day's small files into one file per table and day (idempotent, safe to rerun).
    Compact(CompactArgs),
}

#[derive(clap::Args, Debug)]
pub struct CompactArgs {
    /// The archive: a directory or an object store URL (s3://BUCKET/PATH, gs://, az://).
    #[arg(long, value_name = "DIR_OR_URL")]
    pub archive: String,
    /// Compact days up to and including this one (YYYY-MM-DD). Default:
    /// yesterday (UTC), so files a writer is still adding today are left alone.
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    pub through: Option<String>,
}

/// A `YYYY-MM-DD` date, checked.
pub fn parse_date(s: &str) -> Result<String, String> {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(|d| d.format("%Y-%m-%d").to_string())
        .map_err(|_| format!("{s:?} is not a date: write YYYY-MM-DD, e.g. 2026-01-31"))
}

pub async fn run(c: Command) -> anyhow::Result<ExitCode> {
    match c {
        Command::Compact(a) => {
            let target = Target::open_existing(&a.archive)?;
            let through = a.through.unwrap_or_else(|| (chrono::Utc::now().date_naive() - chrono::Days::new(1)).format("%Y-%m-%d").to_string());
            let done = compact::compact(&target, &through).await?;
            eprintln!(
                "aiwatch: compacted {} partitions through {through}: {} files, {} rows in, {} rows out ({} repeated rows dropped); {} partitions already compact",
                done.partitions,
                done.files_in,
                done.rows_in,
                done.rows_out,
                done.rows_in - done.rows_out,
                done.unchanged
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
