//! `aiwatch demo`: the embedded default. Synthetic AI traffic, generated live
//! with event time running faster than the clock, streamed through the same
//! engine as `scan` and `run`; alerts print as they fire.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aiwatch::alert::Alert;
use aiwatch::decode::Decoder;
use aiwatch::event::{Origin, RawBatch};
use aiwatch::generate::{Generator, GeneratorConfig, DEMO_POLICY};
use aiwatch::pipeline::{self, Evaluate, Totals};
use aiwatch::policy::Policy;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<u64>,
    /// Events generated per second of wall-clock time.
    #[arg(long, default_value_t = 500.0)]
    pub rate: f64,
    /// Seconds of event time per second of wall-clock time, so deadlines
    /// (response timeouts, retention) come due while you watch.
    #[arg(long, default_value_t = 120.0)]
    pub speed: f64,
    /// Share of traffic flows carrying an injected violation.
    #[arg(long, default_value_t = 0.02)]
    pub violation_rate: f64,
    /// Random seed of the traffic.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Use this policy instead of the embedded demo policy (`aiwatch generate --print-policy` shows it).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Print alerts as JSON Lines instead of one readable line each.
    #[arg(long)]
    pub json: bool,
}

fn print_alerts(alerts: &[Alert], json: bool) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    for a in alerts {
        if json {
            writeln!(out, "{}", a.to_json_line())?;
        } else {
            writeln!(out, "{} {:<8} {:<26} {}", &a.time[..19.min(a.time.len())], a.severity, a.rule_id, a.summary)?;
        }
    }
    out.flush()
}

pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(a.rate > 0.0 && a.speed > 0.0, "--rate and --speed must be positive");
    let policy = match &a.policy {
        Some(p) => Arc::new(Policy::load(p)?),
        None => Arc::new(Policy::parse(DEMO_POLICY, "<embedded demo policy>").map_err(|e| anyhow::anyhow!(e))?),
    };
    let mut engine = super::build_engine(policy, None, 60, (None, None)).await?;
    let start_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let mut generator = Generator::new(GeneratorConfig {
        seed: a.seed,
        start_time_ns: start_ns,
        events_per_second: a.rate / a.speed,
        violation_rate: a.violation_rate,
        max_disorder_seconds: 10.0,
        duplicate_rate: 0.002,
        malformed_rate: 0.001,
    });
    if std::io::stderr().is_terminal() {
        eprintln!(
            "aiwatch demo: {} events/s, event time at {}x; alerts below as they fire (Ctrl-C to stop)",
            a.rate, a.speed
        );
    }

    let started = Instant::now();
    let stop_at = a.duration.map(|d| started + Duration::from_secs(d));
    let mut decoder = Decoder::new();
    let mut totals = Totals::default();
    let mut seq = 0u64;
    let mut line = Vec::with_capacity(1024);
    let mut pending: Option<(Vec<u8>, i64)> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        if stop_at.is_some_and(|t| Instant::now() >= t) {
            break;
        }
        // Everything whose event time the accelerated clock has reached.
        let now_event = start_ns + (started.elapsed().as_secs_f64() * a.speed * 1e9) as i64;
        let mut raw = RawBatch::default();
        loop {
            let (bytes, t) = match pending.take() {
                Some(p) => p,
                None => {
                    line.clear();
                    let t = generator.next_into(&mut line);
                    (line.clone(), t)
                }
            };
            if t > now_event {
                pending = Some((bytes, t));
                break;
            }
            seq += 1;
            raw.push(&bytes, Origin::Generated { seq });
        }
        let (report, _dead) = pipeline::step(&mut engine, &mut totals, decoder.decode(&raw), Evaluate::Now).await?;
        print_alerts(&report.alerts, a.json)?;
    }
    totals.elapsed = started.elapsed();
    eprint!("{}", totals.render());
    Ok(ExitCode::SUCCESS)
}
