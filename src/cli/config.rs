//! `aiwatch config check [--connect]`: everything `aiwatch run` checks at
//! start, without starting. The config file, its policy and rules (parsed and
//! planned), the secrets it names (read, never shown) and the output settings;
//! with `--connect`, also the brokers and topics, the HTTP outputs and the
//! state directory, each within a timeout.
//!
//! Exit codes: 0 all good; 1 the configuration is invalid; 3 it is valid but
//! `--connect` could not reach or use something; 2 the check itself could not
//! run (a usage error).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use aiwatch::config::{DeadLetterDestination, OutputConfig, RunConfig};
use aiwatch::engine::{Engine, EngineConfig};
use aiwatch::outputs::http::{Alertmanager, Webhook};
use aiwatch::policy::Policy;
use aiwatch::rules::Rule;
use aiwatch::sources::kafka;

/// The configuration is invalid.
const INVALID: u8 = 1;
/// The configuration is valid, but something it names cannot be reached or used.
const UNREACHABLE: u8 = 3;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Check a run configuration without running it.
    ///
    /// Exit status: 0 valid (and, with --connect, everything reached); 1 the
    /// config, policy, rules, a secret or an output setting is invalid; 3 valid,
    /// but --connect could not reach a broker, topic or output, or use the
    /// state directory; 2 the command line is wrong.
    Check(CheckArgs),
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The run configuration (TOML), as `aiwatch run --config` takes it.
    #[arg(long, value_name = "FILE", env = "AIWATCH_CONFIG")]
    pub config: PathBuf,
    /// Also reach the brokers (and check that every topic exists), the HTTP
    /// outputs, and check that the state directory can be used.
    #[arg(long)]
    pub connect: bool,
    /// With --connect, how long to wait for each broker or output.
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub timeout: u64,
}

/// Prints one line per check and remembers the worst outcome.
struct Report {
    code: u8,
}

impl Report {
    fn ok(&self, what: &str) {
        println!("ok    {what}");
    }

    fn fail(&mut self, code: u8, what: &str, e: impl std::fmt::Display) {
        println!("FAIL  {what}: {e}");
        // Invalid outranks unreachable: fix the files first.
        if self.code == 0 || code == INVALID {
            self.code = code;
        }
    }

    fn check<T>(&mut self, code: u8, what: &str, r: anyhow::Result<T>) -> Option<T> {
        match r {
            Ok(v) => {
                self.ok(what);
                Some(v)
            }
            Err(e) => {
                self.fail(code, what, e);
                None
            }
        }
    }
}

pub async fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    let Command::Check(a) = cmd;
    let mut report = Report { code: 0 };
    let Some(config) = report.check(INVALID, &format!("config {}", a.config.display()), RunConfig::load(&a.config)) else {
        return Ok(ExitCode::from(INVALID));
    };
    let rules = check_files(&config, &mut report).await;
    check_settings(&config, &rules, &mut report);
    if a.connect {
        let timeout = Duration::from_secs(a.timeout);
        check_kafka(&config, timeout, &mut report).await;
        check_outputs(&config, timeout, &mut report).await;
        report.check(UNREACHABLE, &format!("state_dir {}", config.state_dir.display()), usable_dir(&config.state_dir));
    }
    if report.code == 0 {
        println!("the configuration is valid{}", if a.connect { " and everything it names was reached" } else { "" });
    }
    Ok(ExitCode::from(report.code))
}

/// The policy and the rule pack, planned against it as `run` does. Returns the pack.
async fn check_files(config: &RunConfig, report: &mut Report) -> Vec<Rule> {
    let policy = report.check(INVALID, &format!("policy {}", config.policy.display()), Policy::load(&config.policy).map_err(Into::into));
    let what = match &config.rules {
        Some(dir) => format!("rules (built-in and {})", dir.display()),
        None => "rules (built-in)".to_string(),
    };
    let rules = match aiwatch::rules::pack(config.rules.as_deref()) {
        Ok(rules) => rules,
        Err(e) => {
            report.fail(INVALID, &what, e);
            return Vec::new();
        }
    };
    // Against an empty policy when the policy is broken: the tables are the same.
    let policy = policy.unwrap_or_else(Policy::empty);
    let engine_config = EngineConfig { lateness_seconds: config.lateness_seconds, ..Default::default() };
    let planned = Engine::new(Arc::new(policy), rules.clone(), &engine_config).await.map(|_| ()).map_err(Into::into);
    report.check(INVALID, &format!("{what}: {} parse and plan", rules.len()), planned);
    rules
}

/// Secrets can be read, librdkafka takes the options, outputs can be built.
fn check_settings(config: &RunConfig, rules: &[Rule], report: &mut Report) {
    let kafka = kafka::client_config(&config.kafka).and_then(|c| c.create_native_config().map(|_| ()).map_err(Into::into));
    report.check(INVALID, "kafka options and secret options", kafka);
    for (i, o) in config.outputs.iter().enumerate() {
        let what = format!("output {} ({})", i + 1, output_kind(o));
        let built = match o {
            OutputConfig::Webhook { url, auth_header, auth_value, max_retries, timeout_ms, .. } => {
                let auth = match (auth_header, auth_value) {
                    (Some(h), Some(v)) => v.resolve(&format!("output {} auth_value", i + 1)).map(|v| Some((h.clone(), v))),
                    (None, None) => Ok(None),
                    _ => Err(anyhow::anyhow!("a webhook output needs both `auth_header` and `auth_value`, or neither")),
                };
                auth.and_then(|auth| Webhook::new(url.clone(), auth, *max_retries, *timeout_ms)).and_then(|_| http_url(url).map(|_| ()))
            }
            OutputConfig::Alertmanager { url, .. } => {
                Alertmanager::from_config(o, rules).and_then(|_| http_url(url).map(|_| ()))
            }
            OutputConfig::File { path } => parent_exists(path),
            OutputConfig::Stdout | OutputConfig::Kafka { .. } => Ok(()),
        };
        report.check(INVALID, &what, built);
    }
    let dead_letter_files = [
        ("dead_letter", config.dead_letter.as_ref().map(|d| d.destination())),
        ("alert_dead_letter", config.alert_dead_letter.as_ref().map(|d| d.destination())),
    ];
    for (key, destination) in dead_letter_files {
        if let Some(DeadLetterDestination::File { path }) = destination {
            report.check(INVALID, &format!("{key} file {}", path.display()), parent_exists(&path));
        }
    }
}

/// Fetches the cluster's metadata and checks that every topic the config names exists.
async fn check_kafka(config: &RunConfig, timeout: Duration, report: &mut Report) {
    use rdkafka::consumer::BaseConsumer;
    let what = format!("kafka brokers {}", config.kafka.bootstrap_servers);
    let k = config.kafka.clone();
    let metadata = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<(String, usize)>> {
        let mut c = kafka::client_config(&k)?;
        c.set("group.id", &k.group_id);
        let consumer: BaseConsumer<Quiet> = kafka::create(&c, &k, Quiet)?;
        let m = rdkafka::consumer::Consumer::fetch_metadata(&consumer, None, timeout)
            .map_err(|e| anyhow::anyhow!("no answer within {} s ({e}); check bootstrap_servers and the security options", timeout.as_secs()))?;
        Ok(m.topics().iter().filter(|t| t.error().is_none()).map(|t| (t.name().to_string(), t.partitions().len())).collect())
    })
    .await
    .map_err(|e| anyhow::anyhow!("the metadata request failed: {e}"))
    .and_then(|r| r);
    let Some(topics) = report.check(UNREACHABLE, &what, metadata) else { return };
    let mut wanted: Vec<(String, &str)> = config.kafka.topics.iter().map(|t| (t.clone(), "input topic")).collect();
    if let Some(DeadLetterDestination::Kafka { topic }) = config.dead_letter.as_ref().map(|d| d.destination()) {
        wanted.push((topic, "dead-letter topic"));
    }
    if let Some(DeadLetterDestination::Kafka { topic }) = config.alert_dead_letter.as_ref().map(|d| d.destination()) {
        wanted.push((topic, "alert dead-letter topic"));
    }
    for o in &config.outputs {
        if let OutputConfig::Kafka { topic, .. } = o {
            wanted.push((topic.clone(), "alert topic"));
        }
    }
    for (topic, role) in wanted {
        let what = format!("{role} {topic}");
        match topics.iter().find(|(name, _)| *name == topic) {
            Some((_, n)) if *n > 0 => report.ok(&format!("{what} ({n} partitions)")),
            _ => report.fail(UNREACHABLE, &what, "the cluster has no such topic; create it (aiwatch does not)"),
        }
    }
}

/// A client context that keeps librdkafka's own logs and errors out of the
/// report: a broker that is down would log every reconnect, and the check
/// says so once.
struct Quiet;

impl rdkafka::client::ClientContext for Quiet {
    fn log(&self, _: rdkafka::config::RDKafkaLogLevel, _: &str, _: &str) {}
    fn error(&self, _: rdkafka::error::KafkaError, _: &str) {}
}

impl rdkafka::consumer::ConsumerContext for Quiet {}

/// Alertmanager answers its readiness endpoint; a webhook's host accepts a
/// connection (nothing is posted to it).
async fn check_outputs(config: &RunConfig, timeout: Duration, report: &mut Report) {
    for (i, o) in config.outputs.iter().enumerate() {
        let what = format!("output {} ({}) reached", i + 1, output_kind(o));
        let reached = match o {
            OutputConfig::Alertmanager { url, .. } => alertmanager_ready(url, timeout).await,
            OutputConfig::Webhook { url, .. } => tcp_reach(url, timeout).await,
            _ => continue,
        };
        report.check(UNREACHABLE, &what, reached);
    }
}

async fn alertmanager_ready(url: &str, timeout: Duration) -> anyhow::Result<()> {
    let ready = format!("{}/-/ready", url.trim_end_matches('/'));
    let client = reqwest::Client::builder().timeout(timeout).redirect(reqwest::redirect::Policy::none()).build()?;
    let resp = client.get(&ready).send().await.map_err(|e| {
        let kind = if e.is_timeout() { "timed out" } else if e.is_connect() { "connection failed" } else { "request failed" };
        anyhow::anyhow!("GET {}/-/ready: {kind}", redacted(url))
    })?;
    anyhow::ensure!(resp.status().is_success(), "GET {}/-/ready answered HTTP {}", redacted(url), resp.status());
    Ok(())
}

async fn tcp_reach(url: &str, timeout: Duration) -> anyhow::Result<()> {
    let u = http_url(url)?;
    let host = u.host_str().unwrap_or_default().to_string();
    let port = u.port_or_known_default().unwrap_or(80);
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host.as_str(), port))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => anyhow::bail!("cannot connect to {host}:{port}: {e}"),
        Err(_) => anyhow::bail!("no connection to {host}:{port} within {} s", timeout.as_secs()),
    }
}

fn http_url(url: &str) -> anyhow::Result<reqwest::Url> {
    let u = reqwest::Url::parse(url).map_err(|e| anyhow::anyhow!("url {} is not a URL: {e}", redacted(url)))?;
    anyhow::ensure!(matches!(u.scheme(), "http" | "https") && u.host_str().is_some(), "url {} is not an http:// or https:// URL", redacted(url));
    Ok(u)
}

/// A URL as it may be shown: scheme, host and port only (its path or query may hold a token).
fn redacted(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!("{}://{}{}", u.scheme(), u.host_str().unwrap_or_default(), u.port().map(|p| format!(":{p}")).unwrap_or_default()),
        Err(_) => "(not shown)".into(),
    }
}

fn parent_exists(path: &Path) -> anyhow::Result<()> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    anyhow::ensure!(parent.is_dir(), "the folder of {} does not exist", path.display());
    Ok(())
}

/// The state directory exists and takes a file, or its nearest existing parent does (aiwatch creates it).
fn usable_dir(dir: &Path) -> anyhow::Result<()> {
    let mut at = dir;
    while !at.exists() {
        at = at.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    }
    anyhow::ensure!(at.is_dir(), "{} is not a folder", at.display());
    let probe = at.join(format!(".aiwatch-config-check-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| anyhow::anyhow!("cannot write in {}: {e}", at.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

fn output_kind(o: &OutputConfig) -> &'static str {
    match o {
        OutputConfig::Stdout => "stdout",
        OutputConfig::File { .. } => "file",
        OutputConfig::Kafka { .. } => "kafka",
        OutputConfig::Webhook { .. } => "webhook",
        OutputConfig::Alertmanager { .. } => "alertmanager",
    }
}
