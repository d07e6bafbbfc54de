//! The `aiwatch run` configuration file (TOML). Parsed strictly, like the
//! policy: unknown keys are errors naming the line. Secrets are never written
//! here in clear: a librdkafka option or an HTTP header takes its value from an
//! environment variable or a file, resolved at start and never logged.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole configuration of `aiwatch run`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Policy file; relative paths are relative to the config file.
    pub policy: PathBuf,
    /// Folder of user rules added to the built-in pack.
    pub rules: Option<PathBuf>,
    /// Where checkpoints live; one running aiwatch per folder.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Allowed lateness, seconds.
    #[serde(default = "default_lateness")]
    pub lateness_seconds: u64,
    /// Seconds between checkpoints; offsets are committed at each one.
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval_seconds: u64,
    pub kafka: KafkaConfig,
    #[serde(default)]
    pub dead_letter: Option<DeadLetterConfig>,
    /// Alert outputs; every alert goes to all of them.
    #[serde(default, rename = "output")]
    pub outputs: Vec<OutputConfig>,
    #[serde(default)]
    pub metrics: MetricsConfig,
}

/// The Kafka source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    pub topics: Vec<String>,
    #[serde(default = "default_group")]
    pub group_id: String,
    /// Events per engine step at most.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// A step runs at least this often while events arrive (milliseconds).
    #[serde(default = "default_batch_wait")]
    pub max_batch_wait_ms: u64,
    /// A partition that gave no message for this long (milliseconds, wall
    /// clock) and has no known backlog stops holding back the watermark.
    #[serde(default = "default_idle_partition")]
    pub idle_partition_ms: u64,
    /// Any librdkafka option, passed as is (`security.protocol`, `ssl.ca.location`, ...).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// librdkafka options whose values are secrets: `{ env = "VAR" }` or `{ file = "/path" }`.
    #[serde(default)]
    pub secret_options: BTreeMap<String, SecretRef>,
}

/// Where a secret is read from: never the config file itself, never argv.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    pub env: Option<String>,
    pub file: Option<PathBuf>,
}

impl SecretRef {
    /// Reads the secret; the error names the variable or file, never the value.
    pub fn resolve(&self, what: &str) -> anyhow::Result<String> {
        match (&self.env, &self.file) {
            (Some(var), None) => std::env::var(var).map_err(|_| anyhow::anyhow!("{what}: environment variable {var} is not set")),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| anyhow::anyhow!("{what}: cannot read secret file {}: {e}", path.display())),
            _ => anyhow::bail!("{what}: give exactly one of `env` or `file`"),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "snake_case")]
pub enum DeadLetterConfig {
    /// Original bytes as the message value; origin and reason as headers.
    Kafka { topic: String },
    /// JSON Lines with origin, reason and the original bytes.
    File { path: PathBuf },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "snake_case")]
pub enum OutputConfig {
    Stdout,
    File {
        path: PathBuf,
    },
    /// One message per alert, keyed by `alert_id`.
    Kafka {
        topic: String,
    },
    /// JSON POST of each alert.
    Webhook {
        url: String,
        /// An HTTP header carrying a secret, e.g. `Authorization`.
        auth_header: Option<String>,
        /// Where the header's value comes from.
        auth_value: Option<SecretRef>,
        #[serde(default = "default_retries")]
        max_retries: u32,
        #[serde(default = "default_timeout")]
        timeout_ms: u64,
    },
    /// Alertmanager API v2: POST {url}/api/v2/alerts.
    Alertmanager {
        url: String,
        /// Link placed in each alert's generatorURL (e.g. a runbook or dashboard).
        #[serde(default = "default_generator_url")]
        generator_url: String,
        #[serde(default = "default_retries")]
        max_retries: u32,
        #[serde(default = "default_timeout")]
        timeout_ms: u64,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the `/metrics`, `/healthz` and `/readyz` listener; loopback by default.
    #[serde(default = "default_metrics_listen")]
    pub listen: SocketAddr,
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { listen: default_metrics_listen(), enabled: true }
    }
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("aiwatch-state")
}
fn default_lateness() -> u64 {
    60
}
fn default_checkpoint_interval() -> u64 {
    5
}
fn default_group() -> String {
    "aiwatch".into()
}
fn default_batch_size() -> usize {
    32_768
}
fn default_batch_wait() -> u64 {
    500
}
fn default_idle_partition() -> u64 {
    10_000
}
fn default_retries() -> u32 {
    3
}
fn default_timeout() -> u64 {
    5000
}
fn default_generator_url() -> String {
    "https://github.com/aiwatch/aiwatch#rules".into()
}
fn default_metrics_listen() -> SocketAddr {
    "127.0.0.1:9464".parse().expect("valid address")
}
fn default_true() -> bool {
    true
}

impl RunConfig {
    /// Reads and validates a config file; relative paths in it are taken from its folder.
    pub fn load(path: &Path) -> anyhow::Result<RunConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
        let mut c: RunConfig =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("invalid config file {}: {}", path.display(), e.to_string().trim_end()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let rebase = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        rebase(&mut c.policy);
        if let Some(r) = c.rules.as_mut() {
            rebase(r);
        }
        rebase(&mut c.state_dir);
        if let Some(DeadLetterConfig::File { path }) = c.dead_letter.as_mut() {
            rebase(path);
        }
        for o in &mut c.outputs {
            if let OutputConfig::File { path } = o {
                rebase(path);
            }
        }
        if c.kafka.topics.is_empty() {
            anyhow::bail!("invalid config file {}: field `kafka.topics` is empty; name at least one topic", path.display());
        }
        if c.kafka.batch_size == 0 {
            anyhow::bail!("invalid config file {}: field `kafka.batch_size` must be at least 1", path.display());
        }
        for key in c.kafka.options.keys() {
            if c.kafka.secret_options.contains_key(key) {
                anyhow::bail!("invalid config file {}: `{key}` is in both kafka.options and kafka.secret_options", path.display());
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_in_deploy_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/aiwatch.toml");
        let c = RunConfig::load(&path).unwrap();
        assert!(c.policy.is_absolute() || c.policy.starts_with(path.parent().unwrap()));
        assert_eq!(c.metrics.listen.ip().to_string(), "127.0.0.1");
    }

    #[test]
    fn compose_config_is_valid() {
        RunConfig::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/aiwatch-compose.toml")).unwrap();
    }

    #[test]
    fn unknown_key_is_refused_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "policy = \"p.toml\"\n[kafka]\nbootstrap_servers = \"x\"\ntopics = [\"t\"]\nbatch = 3\n").unwrap();
        let e = RunConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("line 5") && e.contains("batch"), "{e}");
    }

    #[test]
    fn secrets_come_from_env_or_file_and_errors_do_not_show_them() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s");
        std::fs::write(&f, "hunter2\n").unwrap();
        assert_eq!(SecretRef { env: None, file: Some(f) }.resolve("x").unwrap(), "hunter2");
        let e = SecretRef { env: Some("AIWATCH_TEST_UNSET_VAR".into()), file: None }.resolve("sasl.password").unwrap_err();
        assert!(e.to_string().contains("AIWATCH_TEST_UNSET_VAR"));
    }
}
