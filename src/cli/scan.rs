//! `aiwatch scan`: files in, alerts out, a summary on stderr.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use aiwatch::decode::{self, DecodeOptions};
use aiwatch::outputs::JsonLines;
use aiwatch::pipeline::{self, DeadLetterSink, ScanInputs};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub rules: super::RuleArgs,
    #[command(flatten)]
    pub input: super::FormatArgs,
    /// Write alerts (JSON Lines) to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub alerts: Option<PathBuf>,
    /// Write malformed events (original bytes, origin, reason) to this JSON Lines file.
    #[arg(long, value_name = "FILE")]
    pub dead_letter: Option<PathBuf>,
    /// Events per engine step. Results do not depend on it; larger is faster.
    #[arg(long, default_value_t = 65_536)]
    pub batch_size: usize,
    /// Make an event whose time is more than SECONDS ahead of the wall clock a
    /// dead letter (`time_in_future`), as `aiwatch run` does (max_future_seconds).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(0..=31_536_000))]
    pub max_future: Option<u64>,
    /// A record longer than this is a dead letter (`event_too_large`).
    #[arg(long, value_name = "BYTES", default_value_t = decode::DEFAULT_MAX_EVENT_BYTES as u64,
        value_parser = clap::value_parser!(u64).range(1024..=268_435_456))]
    pub max_event_bytes: u64,
    /// A string field, or a list entry, longer than this is a dead letter (`field_too_long`).
    #[arg(long, value_name = "BYTES", default_value_t = decode::DEFAULT_MAX_FIELD_BYTES as u64,
        value_parser = clap::value_parser!(u64).range(16..=1_048_576))]
    pub max_field_bytes: u64,
    /// A list field with more entries than this is a dead letter (`list_too_long`).
    #[arg(long, value_name = "N", default_value_t = decode::DEFAULT_MAX_LIST_ITEMS as u64,
        value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub max_list_items: u64,
    /// A dead letter keeps at most this many bytes of its record (0 keeps only
    /// its length, hash, origin and reason). Raw bytes may hold prompt text.
    #[arg(long, value_name = "BYTES", default_value_t = decode::DEFAULT_MAX_RAW_BYTES as u64,
        value_parser = clap::value_parser!(u64).range(0..=268_435_456))]
    pub dead_letter_max_raw: u64,
    /// Estimated bytes of event-time state past which open obligations move to
    /// a scratch store on disk (in TMPDIR, removed at exit), as `aiwatch run`
    /// does (state_memory_limit; default 512 MiB).
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(0..=1_099_511_627_776))]
    pub state_memory_limit: Option<u64>,
    /// Key-hash shards of the event-time state, as `aiwatch run`'s state_shards
    /// (default 8); the alerts are the same for any count.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=256))]
    pub state_shards: Option<u64>,
    /// Exit with status 1 when an alert of this severity or a higher one is
    /// found (critical > high > medium > low > info), for CI gates. Errors still exit 2.
    #[arg(long, value_name = "SEVERITY", value_parser = clap::builder::PossibleValuesParser::new(aiwatch::rules::SEVERITIES))]
    pub fail_on: Option<String>,
    /// Also keep every valid event, alert and dead letter's metadata (never its
    /// bytes) as Parquet in this directory or object store URL (s3://BUCKET/PATH,
    /// gs://, az://; credentials from the environment). See docs/archive.md.
    #[arg(long, value_name = "DIR_OR_URL")]
    pub archive: Option<String>,
    /// Inputs, plain or gzip: JSON Lines, or length-delimited records for
    /// otlp_proto; `-` reads standard input.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<String>,
}

/// Rank of a severity: 0 is critical, the most severe; unknown ones rank last.
fn rank(severity: &str) -> usize {
    aiwatch::rules::SEVERITIES.iter().position(|s| *s == severity).unwrap_or(usize::MAX)
}

pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    let decode_options = DecodeOptions {
        max_future_seconds: a.max_future,
        max_event_bytes: a.max_event_bytes as usize,
        max_field_bytes: a.max_field_bytes as usize,
        max_list_items: a.max_list_items as usize,
        max_raw_bytes: a.dead_letter_max_raw as usize,
        include_raw: a.dead_letter_max_raw > 0,
    };
    let formats = super::formats(a.input.format, a.input.adapter.as_deref())?;
    let policy = super::load_policy(&a.rules.policy)?;
    let mut engine = super::build_engine(
        policy,
        a.rules.rules.as_deref(),
        a.rules.lateness,
        (a.state_memory_limit.map(|b| b as usize), a.state_shards.map(|n| n as usize)),
    ).await?;
    let mut alerts = JsonLines::create(a.alerts.as_deref())
        .map_err(|e| anyhow::anyhow!("cannot write alerts to {}: {e}", a.alerts.as_ref().unwrap().display()))?;
    let mut dead = match &a.dead_letter {
        Some(p) => DeadLetterSink::File(JsonLines::create(Some(p)).map_err(|e| anyhow::anyhow!("cannot write dead letters to {}: {e}", p.display()))?),
        None => DeadLetterSink::Warn,
    };
    let bar = if std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new_spinner();
        b.set_style(indicatif::ProgressStyle::with_template("{spinner} {msg} [{elapsed}]").expect("valid template"));
        Some(b)
    } else {
        None
    };
    let mut worst = usize::MAX;
    let mut archive = match &a.archive {
        Some(location) => Some(aiwatch::archive::ArchiveWriter::new(aiwatch::archive::Target::open(location)?)),
        None => None,
    };
    let totals = pipeline::scan_archived(
        &mut engine,
        ScanInputs { paths: a.inputs, batch_size: a.batch_size.max(1), decode: decode_options, formats },
        &mut dead,
        archive.as_mut(),
        |batch| {
            worst = batch.iter().map(|a| rank(&a.severity)).fold(worst, usize::min);
            Ok(alerts.write_alerts(batch)?)
        },
        |t| {
            if let Some(b) = &bar {
                b.set_message(format!("{} events, {} dead letters, {} alerts", t.events, t.dead_letters, t.alerts()));
                b.tick();
            }
        },
    )
    .await?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    eprint!("{}", totals.render());
    if let Some(threshold) = &a.fail_on {
        if worst <= rank(threshold) {
            eprintln!("failing: found alerts of severity {}, at or above --fail-on {threshold}", aiwatch::rules::SEVERITIES[worst]);
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}
