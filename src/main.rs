//! The `aiwatch` command line: flags are parsed here, then each subcommand in
//! `cli/` resolves them into a validated setup and runs it.

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// The engine allocates many small strings (ids) per batch; glibc's allocator
// spent a fifth of a scan in malloc/free and consolidation, mimalloc a fraction.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Streaming SOC 2 monitoring for AI features: which vendors get customer data,
/// cross-tenant leaks, retention, unreviewed config changes and logging gaps,
/// checked continuously by SQL rules over your AI request logs.
#[derive(Parser)]
#[command(name = "aiwatch", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
}

fn main() -> ExitCode {
    aiwatch::allocator::keep_freed_memory();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AIWATCH_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .init();
    let cli = Cli::parse();
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
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            // A closed pipe (`aiwatch scan ... | head`) is a normal way to stop.
            if e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)) {
                return ExitCode::SUCCESS;
            }
            eprintln!("aiwatch: error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(2)
        }
    }
}
