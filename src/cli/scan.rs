//! `aiwatch scan`: files in, alerts out, a summary on stderr.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use aiwatch::outputs::JsonLines;
use aiwatch::pipeline::{self, DeadLetterSink};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub rules: super::RuleArgs,
    /// Write alerts (JSON Lines) to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub alerts: Option<PathBuf>,
    /// Write malformed events (original bytes, origin, reason) to this JSON Lines file.
    #[arg(long, value_name = "FILE")]
    pub dead_letter: Option<PathBuf>,
    /// Events per engine step. Results do not depend on it; larger is faster.
    #[arg(long, default_value_t = 65_536)]
    pub batch_size: usize,
    /// JSON Lines inputs, plain or gzip; `-` reads standard input.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<String>,
}

pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    let policy = super::load_policy(&a.rules.policy)?;
    let mut engine = super::build_engine(policy, a.rules.rules.as_deref(), a.rules.lateness).await?;
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
    let totals = pipeline::scan(
        &mut engine,
        a.inputs,
        a.batch_size.max(1),
        &mut dead,
        |batch| Ok(alerts.write_alerts(batch)?),
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
    Ok(ExitCode::SUCCESS)
}
