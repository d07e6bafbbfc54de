//! The `aiwatch` command line: flags are parsed here, then each subcommand in
//! `cli/` resolves them into a validated setup and runs it.

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand, ValueEnum};

// The engine allocates many small strings (ids) per batch; glibc's allocator
// spent a fifth of a scan in malloc/free and consolidation, mimalloc a fraction.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Streaming SOC 2 monitoring for AI features: which vendors get customer data,
/// cross-tenant leaks, retention, unreviewed config changes and logging gaps,
/// checked continuously by SQL rules over your AI request logs.
#[derive(Parser)]
#[command(name = "aiwatch", version = aiwatch::telemetry::LONG_VERSION, propagate_version = true)]
struct Cli {
    /// Log lines on stderr as text, or as one JSON object each (for log collectors).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "AIWATCH_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Monitor Kafka continuously: alerts to on-call outputs, metrics for Prometheus.
    Run(cli::run::Args),
    /// Check JSON Lines event files against the policy and print the violations.
    Scan(cli::scan::Args),
    /// Run ad hoc SQL over events and the policy tables.
    Query(cli::query::Args),
    /// Upkeep of the Parquet evidence archive (see `scan --archive`).
    #[command(subcommand)]
    Archive(cli::archive::Command),
    /// The SOC 2 evidence report over a period of the archive (HTML or JSON).
    Report(cli::report::Args),
    /// List, check or test the rule pack.
    #[command(subcommand)]
    Rules(cli::rules::Command),
    /// Stream built-in synthetic AI traffic through the engine and print alerts as they fire.
    Demo(cli::demo::Args),
    /// Write synthetic AI audit events as JSON Lines (seeded, reproducible).
    Generate(cli::generate::Args),
    /// Check a run configuration: the file, its policy, rules, secrets and
    /// outputs; with --connect, the brokers, topics and outputs too.
    #[command(subcommand)]
    Config(cli::config::Command),
    /// Print a completion script for a shell, e.g. `aiwatch completions bash > /etc/bash_completion.d/aiwatch`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Logs go to stderr; `AIWATCH_LOG` filters them (default `info`).
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AIWATCH_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter).with_target(false);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_ansi(false).with_current_span(false).init(),
    }
}

fn main() -> ExitCode {
    aiwatch::allocator::configure();
    let cli = Cli::parse();
    let log_format = cli.log_format;
    init_logging(log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("start the tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(a) => cli::run::run(a).await,
            Command::Scan(a) => cli::scan::run(a).await,
            Command::Query(a) => cli::query::run(a).await,
            Command::Archive(c) => cli::archive::run(c).await,
            Command::Report(a) => cli::report::run(a).await,
            Command::Rules(c) => cli::rules::run(c).await,
            Command::Demo(a) => cli::demo::run(a).await,
            Command::Generate(a) => cli::generate::run(a),
            Command::Config(c) => cli::config::run(c).await,
            Command::Completions { shell } => {
                clap_complete::generate(shell, &mut Cli::command(), "aiwatch", &mut std::io::stdout());
                Ok(ExitCode::SUCCESS)
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            // A closed pipe (`aiwatch scan ... | head`) is a normal way to stop.
            if e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)) {
                return ExitCode::SUCCESS;
            }
            if matches!(log_format, LogFormat::Json) {
                // A log collector reads stderr line by line: the error is one JSON line too.
                let causes: Vec<String> = e.chain().skip(1).map(ToString::to_string).collect();
                tracing::error!(error = %e, causes = ?causes, "aiwatch stopped on an error");
                return ExitCode::from(2);
            }
            eprintln!("aiwatch: error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(2)
        }
    }
}
