//! `aiwatch report`: the SOC 2 evidence report over a period of the archive,
//! as one HTML page (and the change population as CSV beside it) or as JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use aiwatch::archive::Target;
use aiwatch::report::{self, ReportInput};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Html,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The archive made by `scan --archive`: a directory or an object store URL.
    #[arg(long, value_name = "DIR_OR_URL")]
    pub archive: String,
    /// First day of the period (YYYY-MM-DD, UTC).
    #[arg(long, value_name = "DATE", value_parser = super::archive::parse_date)]
    pub from: String,
    /// Last day of the period, included (YYYY-MM-DD, UTC).
    #[arg(long, value_name = "DATE", value_parser = super::archive::parse_date)]
    pub to: String,
    /// The policy the period was monitored against (its SHA-256 goes in the report).
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,
    /// Folder of user rule files added to the built-in pack, as given to scan or run.
    #[arg(long, value_name = "DIR")]
    pub rules: Option<PathBuf>,
    /// Where to write the report. For HTML, the change population goes beside
    /// it as `NAME-changes.csv`.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Html)]
    pub format: Format,
    /// Tenants drawn one by one in the data-flow diagram; the others are grouped.
    #[arg(long, value_name = "N", default_value_t = 12, value_parser = clap::value_parser!(u64).range(2..=200))]
    pub max_tenants: u64,
}

pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    let date = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("checked by the parser");
    let input = ReportInput {
        archive: Target::open_existing(&a.archive)?,
        from: date(&a.from),
        to: date(&a.to),
        policy_path: a.policy.clone(),
        rules: aiwatch::rules::pack(a.rules.as_deref())?,
        max_tenants: a.max_tenants as usize,
    };
    let started = std::time::Instant::now();
    let r = report::build(&input).await?;
    let write = |path: &PathBuf, text: &str| std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()));
    match a.format {
        Format::Json => write(&a.out, &serde_json::to_string_pretty(&r)?)?,
        Format::Html => {
            let stem = a.out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "report".into());
            let csv_name = format!("{stem}-changes.csv");
            let csv_path = a.out.with_file_name(&csv_name);
            write(&csv_path, &report::figures::changes_csv(&r.changes))?;
            write(&a.out, &report::html::render(&r, Some(&csv_name)))?;
        }
    }
    eprintln!(
        "aiwatch: report {} to {}: {} events, {} violations, {} changes, written to {} in {:.2} s",
        a.from,
        a.to,
        r.coverage.events,
        r.findings.iter().map(|f| f.alerts).sum::<u64>(),
        r.changes.len(),
        a.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
