//! `aiwatch rules list | check | test`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use aiwatch::engine::{Engine, EngineConfig};
use aiwatch::policy::Policy;
use aiwatch::rules::fixtures::FixtureSet;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// List the rules in force with their metadata.
    List {
        /// Folder of user rule files added to the built-in pack.
        #[arg(long, value_name = "DIR")]
        rules: Option<PathBuf>,
        /// One JSON object per rule instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Parse every rule file and plan its query against the engine's tables.
    Check {
        /// Folder of user rule files added to the built-in pack.
        #[arg(long, value_name = "DIR")]
        rules: Option<PathBuf>,
        /// Plan against this policy (default: an empty policy; the tables are the same).
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
    },
    /// Run every rule's fixtures (built-in ones, and DIR/fixtures/*.toml of --rules).
    Test {
        /// Folder of user rule files (and their fixtures/).
        #[arg(long, value_name = "DIR")]
        rules: Option<PathBuf>,
        /// The format of the events in DIR's fixtures (a fixture file's `format` key wins), and the adapter mapping.
        #[command(flatten)]
        input: super::FormatArgs,
    },
}

pub async fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::List { rules, json } => {
            let pack = aiwatch::rules::pack(rules.as_deref())?;
            if json {
                for r in &pack {
                    println!(
                        "{}",
                        serde_json::json!({"id": r.id, "title": r.title, "category": r.category, "severity": r.severity,
                            "controls": r.controls, "description": r.description, "remediation": r.remediation, "runbook_url": r.runbook_url, "file": r.file})
                    );
                }
            } else {
                println!("{:<26} {:<9} {:<10} {:<20} TITLE", "ID", "SEVERITY", "CATEGORY", "CONTROLS");
                for r in &pack {
                    println!("{:<26} {:<9} {:<10} {:<20} {}", r.id, r.severity, r.category, r.controls.join(","), r.title);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { rules, policy } => {
            let pack = aiwatch::rules::pack(rules.as_deref())?;
            let policy = match policy {
                Some(p) => Arc::new(Policy::load(&p)?),
                None => Arc::new(Policy::empty()),
            };
            let n = pack.len();
            Engine::new(policy, pack, &EngineConfig::default()).await?;
            println!("ok: {n} rules parse and plan");
            Ok(ExitCode::SUCCESS)
        }
        Command::Test { rules, input } => {
            let pack = aiwatch::rules::pack(rules.as_deref())?;
            let adapter = super::formats(input.format, input.adapter.as_deref())?.adapter;
            let mut set = FixtureSet::builtin();
            if let Some(dir) = &rules {
                set.merge(FixtureSet::load_dir(dir)?.with_format(input.format, (*adapter).clone()));
            }
            let results = set.run(&pack).await;
            let failed = results.iter().filter(|r| r.failure.is_some()).count();
            for r in &results {
                match &r.failure {
                    None => println!("ok      {:<26} {}", r.rule, r.case),
                    Some(why) => println!("FAILED  {:<26} {} ({})\n        {why}", r.rule, r.case, r.file),
                }
            }
            let untested: Vec<&str> =
                pack.iter().filter(|rule| !results.iter().any(|r| r.rule == rule.id)).map(|r| r.id.as_str()).collect();
            if !untested.is_empty() {
                println!("note: no fixtures for {}", untested.join(", "));
            }
            println!("{} passed, {} failed", results.len() - failed, failed);
            Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}
