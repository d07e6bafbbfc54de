//! `aiwatch generate`: synthetic AI audit events as JSON Lines.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use aiwatch::generate::{Generator, GeneratorConfig, DEMO_POLICY};
use anyhow::Context as _;

/// Writes realistic AI gateway traffic (requests, responses, stored and deleted
/// artifacts, config changes) with injected violations of every built-in rule.
/// The same flags always give the same bytes. Scan the output with the demo
/// policy: `aiwatch generate --print-policy > demo-policy.toml`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Number of lines to write (duplicates and malformed lines included).
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub events: u64,
    /// Random seed; the same seed and flags give byte-identical output.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Mean events per second of event time. The default spreads 10,000 events over
    /// about 8 minutes, so the 300 s response timeout and zero-day retention rules
    /// have time to fire; use a higher rate for denser traffic.
    #[arg(long, default_value_t = 20.0, value_name = "EVENTS_PER_SECOND")]
    pub rate: f64,
    /// Event time of the first event (RFC 3339) [default: 2026-11-01T00:00:00Z].
    #[arg(long, value_name = "TIME")]
    pub start: Option<String>,
    /// Share of flows (an AI call with its response and artifacts, or a config change)
    /// that carry one injected violation.
    #[arg(long, default_value_t = 0.02, value_name = "RATE")]
    pub violation_rate: f64,
    /// Deliver events out of event-time order by up to this many seconds.
    #[arg(long, default_value_t = 0.0, value_name = "SECONDS")]
    pub disorder: f64,
    /// Share of events delivered twice (same bytes), as retrying producers do.
    #[arg(long, default_value_t = 0.0, value_name = "RATE")]
    pub duplicates: f64,
    /// Share of lines that are malformed (dead letters: broken JSON, missing or
    /// mistyped fields, bad times).
    #[arg(long, default_value_t = 0.0, value_name = "RATE")]
    pub malformed: f64,
    /// Write to this file instead of standard output; gzip when it ends in `.gz`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print the demo policy that matches the generated traffic, and exit.
    #[arg(long)]
    pub print_policy: bool,
}

fn share(name: &str, v: f64) -> anyhow::Result<f64> {
    anyhow::ensure!(v.is_finite() && (0.0..=1.0).contains(&v), "--{name} must be between 0 and 1, not {v}");
    Ok(v)
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    if a.print_policy {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(DEMO_POLICY.as_bytes())?;
        stdout.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    anyhow::ensure!(a.rate.is_finite() && a.rate > 0.0, "--rate must be a positive number of events per second, not {}", a.rate);
    anyhow::ensure!(a.disorder.is_finite() && a.disorder >= 0.0, "--disorder must be zero or more seconds, not {}", a.disorder);
    anyhow::ensure!(a.malformed < 1.0, "--malformed must be below 1, or no event would ever be written");
    let mut config = GeneratorConfig {
        seed: a.seed,
        events_per_second: a.rate,
        violation_rate: share("violation-rate", a.violation_rate)?,
        max_disorder_seconds: a.disorder,
        duplicate_rate: share("duplicates", a.duplicates)?,
        malformed_rate: share("malformed", a.malformed)?,
        ..GeneratorConfig::default()
    };
    if let Some(s) = &a.start {
        let t = chrono::DateTime::parse_from_rfc3339(s).with_context(|| format!("--start {s:?} is not an RFC 3339 time such as 2026-11-01T00:00:00Z"))?;
        config.start_time_ns = t.timestamp_nanos_opt().context("--start is out of range")?;
    }

    let mut g = Generator::new(config);
    let n = a.events;
    let (first, last) = match &a.out {
        None => {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
            let span = emit(&mut g, n, &mut w)?;
            w.flush()?;
            span
        }
        Some(p) => {
            let f = std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?;
            if p.extension().is_some_and(|e| e == "gz") {
                let mut w = std::io::BufWriter::with_capacity(1 << 20, flate2::write::GzEncoder::new(f, flate2::Compression::fast()));
                let span = emit(&mut g, n, &mut w)?;
                w.into_inner().map_err(|e| e.into_error())?.finish()?;
                span
            } else {
                let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
                let span = emit(&mut g, n, &mut w)?;
                w.flush()?;
                span
            }
        }
    };

    if let Some(p) = &a.out {
        let fmt = |t: i64| chrono::DateTime::from_timestamp_nanos(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        if a.events > 0 {
            let span = (last - first) as f64 / 1e9;
            eprintln!("wrote {} events to {} (event time {} to {}, {:.0} s); scan with the policy from `aiwatch generate --print-policy`", a.events, p.display(), fmt(first), fmt(last), span);
        } else {
            eprintln!("wrote 0 events to {}", p.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `n` lines; returns the smallest and largest event time written.
fn emit(g: &mut Generator, n: u64, w: &mut impl Write) -> std::io::Result<(i64, i64)> {
    let mut line = Vec::with_capacity(4096);
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    for _ in 0..n {
        line.clear();
        let t = g.next_into(&mut line);
        first = first.min(t);
        last = last.max(t);
        line.push(b'\n');
        w.write_all(&line)?;
    }
    Ok((first, last))
}
