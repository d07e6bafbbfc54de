//! One module per subcommand: its flags, then `run`.

pub mod archive;
pub mod config;
pub mod demo;
pub mod generate;
pub mod query;
pub mod report;
pub mod rules;
pub mod run;
pub mod scan;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use aiwatch::decode::Formats;
use aiwatch::engine::{Engine, EngineConfig};
use aiwatch::formats::{Adapter, AdapterConfig, Format};
use aiwatch::policy::Policy;

/// The format of the inputs and the adapter mapping: `--format`, `--adapter`.
#[derive(clap::Args, Debug, Clone)]
pub struct FormatArgs {
    /// The inputs' format: aiwatch (events.md, the default), litellm (LiteLLM
    /// standard logging payloads), otlp_json (one OTLP/JSON request a line) or
    /// otlp_proto (OTLP protobuf requests, each preceded by its varint length).
    #[arg(long, value_name = "NAME", default_value = "aiwatch")]
    pub format: Format,
    /// A TOML file with an `[adapter]` table: how litellm and OTLP records map (see the README).
    #[arg(long, value_name = "FILE")]
    pub adapter: Option<PathBuf>,
}

/// Every input in `format`, mapped with the adapter file's `[adapter]` (or the defaults).
pub fn formats(format: Format, adapter: Option<&Path>) -> anyhow::Result<Formats> {
    let config = match adapter {
        Some(p) => AdapterConfig::load(p)?,
        None => AdapterConfig::default(),
    };
    Ok(Formats::one(format, Adapter::new(&config)))
}

/// Flags shared by every command that evaluates rules.
#[derive(clap::Args, Debug, Clone)]
pub struct RuleArgs {
    /// Policy file (TOML, see the README).
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,
    /// Folder of user rule files (*.sql) added to the built-in pack; an id equal
    /// to a built-in's replaces it.
    #[arg(long, value_name = "DIR")]
    pub rules: Option<PathBuf>,
    /// Allowed lateness in seconds: how far behind the newest event time an event may arrive.
    #[arg(long, default_value_t = 60, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(0..=604_800))]
    pub lateness: u64,
}

pub fn load_policy(path: &Path) -> anyhow::Result<Arc<Policy>> {
    Ok(Arc::new(Policy::load(path)?))
}

/// An engine over `policy` and the rule pack; `state_memory_limit` and `state_shards` as in the run config (`None`: their defaults).
pub async fn build_engine(
    policy: Arc<Policy>,
    rules_dir: Option<&Path>,
    lateness: u64,
    (state_memory_limit, state_shards): (Option<usize>, Option<usize>),
) -> anyhow::Result<Engine> {
    let rules = aiwatch::rules::pack(rules_dir)?;
    let mut config = EngineConfig { lateness_seconds: lateness, ..Default::default() };
    if let Some(limit) = state_memory_limit {
        config.spill.memory_limit = limit;
    }
    if let Some(shards) = state_shards {
        config.shards = shards;
    }
    Engine::new(policy, rules, &config).await.context("the rule pack cannot be used")
}
