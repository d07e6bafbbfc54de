//! The `aiwatch run` configuration file (TOML). Parsed strictly, like the
//! policy: unknown keys are errors naming the line. Secrets are never written
//! here in clear: a librdkafka option or an HTTP header takes its value from an
//! environment variable or a file, resolved at start and never logged.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use crate::decode::{DecodeOptions, Formats};
use crate::formats::{Adapter, AdapterConfig, Format};
use crate::outputs::http::UrlTemplate;

/// The whole configuration of `aiwatch run`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Policy file; relative paths are relative to the config file.
    pub policy: PathBuf,
    /// Folder of user rules added to the built-in pack.
    pub rules: Option<PathBuf>,
    /// Where checkpoints live; one running aiwatch per folder (a lock file enforces it).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Allowed lateness, seconds (0 to 7 days).
    #[serde(default = "default_lateness", deserialize_with = "lateness")]
    pub lateness_seconds: u64,
    /// Estimated bytes of event-time state past which open obligations (stored
    /// artifacts owed a deletion, requests owed a response) move to a store on
    /// disk in `state_dir` (0 to 1 TiB; default 512 MiB).
    #[serde(default = "default_state_memory_limit", deserialize_with = "state_memory_limit")]
    pub state_memory_limit: usize,
    /// Key-hash shards of the event-time state (1 to 256; default 8): each is
    /// checkpointed on its own and incrementally, and large steps work on them
    /// in parallel. An existing state_dir keeps the count its checkpoint has.
    #[serde(default = "default_state_shards", deserialize_with = "state_shards")]
    pub state_shards: usize,
    /// Seconds between checkpoints; offsets are committed at each one (1 s to 1 day).
    #[serde(default = "default_checkpoint_interval", deserialize_with = "checkpoint_interval")]
    pub checkpoint_interval_seconds: u64,
    /// An event whose time is further than this ahead of the wall clock is a
    /// dead letter (`time_in_future`), so it cannot move the watermark (0 s to 1 year).
    #[serde(default = "default_max_future", deserialize_with = "max_future")]
    pub max_future_seconds: u64,
    /// A record longer than this is a dead letter; unknown fields count (1 KiB to 256 MiB).
    #[serde(default = "default_max_event_bytes", deserialize_with = "max_event_bytes")]
    pub max_event_bytes: usize,
    /// A string field, or a list entry, longer than this is a dead letter (16 B to 1 MiB).
    #[serde(default = "default_max_field_bytes", deserialize_with = "max_field_bytes")]
    pub max_field_bytes: usize,
    /// A list field with more entries than this is a dead letter (1 to 65,536).
    #[serde(default = "default_max_list_items", deserialize_with = "max_list_items")]
    pub max_list_items: usize,
    pub kafka: KafkaConfig,
    #[serde(default)]
    pub dead_letter: Option<DeadLetterConfig>,
    /// Where alerts an output refused for good go (with the output's answer).
    #[serde(default)]
    pub alert_dead_letter: Option<AlertDeadLetterConfig>,
    /// Alert outputs; every alert goes to all of them.
    #[serde(default, rename = "output")]
    pub outputs: Vec<OutputConfig>,
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// How the adapter formats (`litellm`, `otlp_json`, `otlp_proto`) map their records.
    #[serde(default)]
    pub adapter: AdapterConfig,
    /// The evidence archive (docs/archive.md), written at each checkpoint.
    #[serde(default)]
    pub archive: Option<ArchiveConfig>,
}

/// `[archive]`: where `aiwatch run` keeps every valid event, alert and dead letter's metadata as Parquet.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveConfig {
    /// A directory (relative to the config file's folder), or an object store
    /// URL (`s3://BUCKET/PATH`, `gs://`, `az://`; credentials from the environment).
    pub location: String,
}

/// The Kafka source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// Topics of `format` (default: none, when `[[kafka.source]]` names them all).
    #[serde(default)]
    pub topics: Vec<String>,
    /// The format of the records of `topics` (default `aiwatch`).
    #[serde(default)]
    pub format: Format,
    /// More topics, each group in a format of its own, read by the same consumer.
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceConfig>,
    #[serde(default = "default_group")]
    pub group_id: String,
    /// Events per engine step at most (1 to 1,048,576).
    #[serde(default = "default_batch_size", deserialize_with = "batch_size")]
    pub batch_size: usize,
    /// A step runs at least this often while events arrive (milliseconds, 1 ms to 1 hour).
    #[serde(default = "default_batch_wait", deserialize_with = "batch_wait")]
    pub max_batch_wait_ms: u64,
    /// A partition that gave no message for this long (milliseconds, wall
    /// clock) and has no known backlog stops holding back the watermark (0 to 1 day).
    #[serde(default = "default_idle_partition", deserialize_with = "idle_partition")]
    pub idle_partition_ms: u64,
    /// Any librdkafka option, passed as is (`security.protocol`, `ssl.ca.location`, ...).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// librdkafka options whose values are secrets: `{ env = "VAR" }` or `{ file = "/path" }`.
    #[serde(default)]
    pub secret_options: BTreeMap<String, SecretRef>,
}

/// Topics whose records are in one format: `[[kafka.source]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub topics: Vec<String>,
    /// `aiwatch`, `litellm`, `otlp_json` or `otlp_proto`.
    pub format: Format,
}

impl KafkaConfig {
    /// Every topic read, with its format: `topics`, then each `[[kafka.source]]`.
    pub fn topic_formats(&self) -> Vec<(String, Format)> {
        let mut out: Vec<(String, Format)> = self.topics.iter().map(|t| (t.clone(), self.format)).collect();
        for s in &self.sources {
            out.extend(s.topics.iter().map(|t| (t.clone(), s.format)));
        }
        out
    }

    /// Every topic read.
    pub fn all_topics(&self) -> Vec<String> {
        self.topic_formats().into_iter().map(|(t, _)| t).collect()
    }
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

/// Where malformed records go, and how much of them is kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// `kafka` (needs `topic`) or `file` (needs `path`).
    pub kind: DeadLetterKind,
    /// Kafka: kept bytes as the message value; origin, reason, length and hash as headers.
    pub topic: Option<String>,
    /// File: JSON Lines with origin, reason, length, hash and the kept bytes.
    pub path: Option<PathBuf>,
    /// At most this many bytes of a record are kept (0 to 256 MiB). The
    /// length and SHA-256 of the whole record are always kept.
    #[serde(default = "default_max_raw_bytes", deserialize_with = "max_raw_bytes")]
    pub max_raw_bytes: usize,
    /// `false` keeps metadata only. Raw bytes may hold prompt text.
    #[serde(default = "default_true")]
    pub include_raw: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterKind {
    Kafka,
    File,
}

/// Where dead letters go, resolved from [`DeadLetterConfig`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetterDestination {
    Kafka { topic: String },
    File { path: PathBuf },
}

impl DeadLetterConfig {
    /// The destination; [`RunConfig::load`] has checked that the right key is there.
    pub fn destination(&self) -> DeadLetterDestination {
        match (self.kind, &self.topic, &self.path) {
            (DeadLetterKind::Kafka, Some(topic), _) => DeadLetterDestination::Kafka { topic: topic.clone() },
            (DeadLetterKind::File, _, Some(path)) => DeadLetterDestination::File { path: path.clone() },
            _ => unreachable!("checked by RunConfig::load"),
        }
    }
}

/// Where alerts an output refused for good go: a topic or a file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertDeadLetterConfig {
    /// `kafka` (needs `topic`) or `file` (needs `path`).
    pub kind: DeadLetterKind,
    /// Kafka: the record as JSON, keyed by `alert_id`; output, status and reason as headers too.
    pub topic: Option<String>,
    /// File: one JSON line per refused alert.
    pub path: Option<PathBuf>,
}

impl AlertDeadLetterConfig {
    /// The destination; [`RunConfig::load`] has checked that the right key is there.
    pub fn destination(&self) -> DeadLetterDestination {
        match (self.kind, &self.topic, &self.path) {
            (DeadLetterKind::Kafka, Some(topic), _) => DeadLetterDestination::Kafka { topic: topic.clone() },
            (DeadLetterKind::File, _, Some(path)) => DeadLetterDestination::File { path: path.clone() },
            _ => unreachable!("checked by RunConfig::load"),
        }
    }
}

/// What `aiwatch run` does with an alert an output refuses for good.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnPermanentError {
    /// After a few tries, to the alert dead letter, and the stream goes on.
    #[default]
    DeadLetter,
    /// Retry for ever: offsets are held until the output takes it.
    Block,
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
        #[serde(default)]
        on_permanent_error: OnPermanentError,
    },
    /// JSON POST of each alert.
    Webhook {
        url: String,
        /// An HTTP header carrying a secret, e.g. `Authorization`.
        auth_header: Option<String>,
        /// Where the header's value comes from.
        auth_value: Option<SecretRef>,
        #[serde(default = "default_retries", deserialize_with = "retries")]
        max_retries: u32,
        #[serde(default = "default_timeout", deserialize_with = "timeout")]
        timeout_ms: u64,
        #[serde(default)]
        on_permanent_error: OnPermanentError,
    },
    /// Alertmanager API v2: POST {url}/api/v2/alerts.
    Alertmanager {
        url: String,
        /// Template of each alert's `generatorURL` (see [`UrlTemplate`]); omitted when not set.
        #[serde(default, deserialize_with = "url_template")]
        generator_url: Option<String>,
        /// Template of the `dashboard_url` annotation; omitted when not set.
        #[serde(default, deserialize_with = "url_template")]
        dashboard_url: Option<String>,
        /// Template of the `runbook_url` annotation for rules without a `-- runbook:` header.
        #[serde(default, deserialize_with = "url_template")]
        runbook_url: Option<String>,
        /// `endsAt` is this far after the post, so Alertmanager keeps the page
        /// open instead of resolving it after its `resolve_timeout` (60 s to 30 days).
        #[serde(default = "default_expires_after", deserialize_with = "expires_after")]
        expires_after_seconds: u64,
        /// The `severity` label for each rule severity (`[output.severity_map]`);
        /// the rule's own severity is the `priority` label. Merged over
        /// critical -> critical, high -> error, medium -> warning, low -> info, info -> info.
        #[serde(default = "default_severity_map", deserialize_with = "severity_map")]
        severity_map: BTreeMap<String, String>,
        #[serde(default = "default_retries", deserialize_with = "retries")]
        max_retries: u32,
        #[serde(default = "default_timeout", deserialize_with = "timeout")]
        timeout_ms: u64,
        #[serde(default)]
        on_permanent_error: OnPermanentError,
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
    PathBuf::from("/var/lib/aiwatch")
}
fn default_max_future() -> u64 {
    300
}
fn default_max_event_bytes() -> usize {
    crate::decode::DEFAULT_MAX_EVENT_BYTES
}
fn default_max_field_bytes() -> usize {
    crate::decode::DEFAULT_MAX_FIELD_BYTES
}
fn default_max_list_items() -> usize {
    crate::decode::DEFAULT_MAX_LIST_ITEMS
}
fn default_max_raw_bytes() -> usize {
    crate::decode::DEFAULT_MAX_RAW_BYTES
}
fn default_state_memory_limit() -> usize {
    crate::engine::state::DEFAULT_STATE_MEMORY_LIMIT
}
fn default_state_shards() -> usize {
    crate::engine::state::DEFAULT_SHARDS
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
fn default_expires_after() -> u64 {
    DAY_SECONDS
}
/// Rule severities as on-call routing trees and PagerDuty know them.
pub fn default_severity_map() -> BTreeMap<String, String> {
    [("critical", "critical"), ("high", "error"), ("medium", "warning"), ("low", "info"), ("info", "info")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
fn default_metrics_listen() -> SocketAddr {
    "127.0.0.1:9464".parse().expect("valid address")
}
fn default_true() -> bool {
    true
}

/// Reads a number and checks it lies in `lo..=hi`. The message names the key;
/// the TOML error around it names the file and the line. The ranges keep every
/// later sum and product of these values far from overflow.
fn in_range<'de, D: Deserializer<'de>, T>(d: D, key: &str, lo: T, hi: T) -> Result<T, D::Error>
where
    T: Deserialize<'de> + PartialOrd + std::fmt::Display,
{
    let v = T::deserialize(d)?;
    if v < lo || v > hi {
        return Err(D::Error::custom(format!("`{key}` must be from {lo} to {hi}, found {v}")));
    }
    Ok(v)
}

const DAY_SECONDS: u64 = 86_400;

fn lateness<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    in_range(d, "lateness_seconds", 0, 7 * DAY_SECONDS)
}
fn state_memory_limit<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    in_range(d, "state_memory_limit", 0, 1 << 40)
}
fn state_shards<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    in_range(d, "state_shards", 1, crate::engine::state::MAX_SHARDS)
}
fn checkpoint_interval<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    in_range(d, "checkpoint_interval_seconds", 1, DAY_SECONDS)
}
fn max_future<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    in_range(d, "max_future_seconds", 0, 365 * DAY_SECONDS)
}
fn max_event_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    in_range(d, "max_event_bytes", 1 << 10, 256 << 20)
}
fn max_field_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    in_range(d, "max_field_bytes", 16, 1 << 20)
}
fn max_list_items<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    in_range(d, "max_list_items", 1, 65_536)
}
fn max_raw_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    in_range(d, "dead_letter.max_raw_bytes", 0, 256 << 20)
}
fn batch_size<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    in_range(d, "kafka.batch_size", 1, 1 << 20)
}
fn batch_wait<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    in_range(d, "kafka.max_batch_wait_ms", 1, 3_600_000)
}
fn idle_partition<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    in_range(d, "kafka.idle_partition_ms", 0, DAY_SECONDS * 1000)
}
fn expires_after<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    in_range(d, "output.expires_after_seconds", 60, 30 * DAY_SECONDS)
}
fn url_template<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let t = String::deserialize(d)?;
    UrlTemplate::parse(&t).map_err(|e| D::Error::custom(format!("URL template `{t}`: {e}")))?;
    Ok(Some(t))
}
fn severity_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let given = BTreeMap::<String, String>::deserialize(d)?;
    let mut map = default_severity_map();
    for (k, v) in given {
        if !crate::rules::SEVERITIES.contains(&k.as_str()) {
            return Err(D::Error::custom(format!(
                "`output.severity_map` has `{k}`, which is not a rule severity ({})",
                crate::rules::SEVERITIES.join(", ")
            )));
        }
        if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
            return Err(D::Error::custom(format!("`output.severity_map.{k}` must be a non-empty label value of letters, digits, '_', '-' or '.', found {v:?}")));
        }
        map.insert(k, v);
    }
    Ok(map)
}
fn retries<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    in_range(d, "output.max_retries", 0, 100)
}
fn timeout<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    in_range(d, "output.timeout_ms", 1, 600_000)
}

impl OutputConfig {
    /// What to do with an alert this output refuses for good (files and stdout: dead letter).
    pub fn on_permanent_error(&self) -> OnPermanentError {
        match self {
            OutputConfig::Kafka { on_permanent_error, .. }
            | OutputConfig::Webhook { on_permanent_error, .. }
            | OutputConfig::Alertmanager { on_permanent_error, .. } => *on_permanent_error,
            OutputConfig::Stdout | OutputConfig::File { .. } => OnPermanentError::DeadLetter,
        }
    }
}

/// `${VAR}` and `${VAR:-default}` in the string values of a config file,
/// replaced from the environment (`$${` is a literal `${`).
///
/// Only string values are touched, never keys, comments or numbers, and each
/// replaced value stays on its line, so later errors keep their line numbers.
/// A `${VAR}` that is not set is an error naming the key, its line and the
/// variable. Returns the new text and the values put in, so an error quoting
/// a line can hide them (a variable may hold a token).
pub fn interpolate(text: &str, file: &Path) -> anyhow::Result<(String, Vec<String>)> {
    if !text.contains('$') {
        return Ok((text.to_string(), Vec::new()));
    }
    // A syntax error is left to the parse after this one, which reports it with its line.
    let Ok(doc) = toml_edit::ImDocument::parse(text) else { return Ok((text.to_string(), Vec::new())) };
    let mut strings = Vec::new();
    collect_strings(doc.as_item(), String::new(), &mut strings);
    strings.sort_by_key(|(span, ..)| span.start);
    let (mut out, mut used, mut at) = (String::with_capacity(text.len()), Vec::new(), 0);
    for (span, key, value) in strings {
        if !value.contains('$') {
            continue;
        }
        let line = text[..span.start].matches('\n').count() + 1;
        let expanded = expand(&value, &mut used).map_err(|e| anyhow::anyhow!("invalid config file {}: `{key}` (line {line}): {e}", file.display()))?;
        out.push_str(&text[at..span.start]);
        out.push_str(&toml_basic_string(&expanded));
        at = span.end;
    }
    out.push_str(&text[at..]);
    Ok((out, used))
}

/// Every string value under `item` with its span and dotted key (`output[2].url`, 1-based).
fn collect_strings(item: &toml_edit::Item, key: String, out: &mut Vec<(std::ops::Range<usize>, String, String)>) {
    let join = |k: &str| if key.is_empty() { k.to_string() } else { format!("{key}.{k}") };
    match item {
        toml_edit::Item::Table(t) => t.iter().for_each(|(k, v)| collect_strings(v, join(k), out)),
        toml_edit::Item::ArrayOfTables(a) => {
            for (i, t) in a.iter().enumerate() {
                t.iter().for_each(|(k, v)| collect_strings(v, format!("{key}[{}].{k}", i + 1), out));
            }
        }
        toml_edit::Item::Value(v) => collect_value(v, key, out),
        toml_edit::Item::None => {}
    }
}

fn collect_value(v: &toml_edit::Value, key: String, out: &mut Vec<(std::ops::Range<usize>, String, String)>) {
    match v {
        toml_edit::Value::String(s) => {
            if let Some(span) = s.span() {
                out.push((span, key, s.value().clone()));
            }
        }
        toml_edit::Value::Array(a) => a.iter().enumerate().for_each(|(i, v)| collect_value(v, format!("{key}[{}]", i + 1), out)),
        toml_edit::Value::InlineTable(t) => t.iter().for_each(|(k, v)| collect_value(v, format!("{key}.{k}"), out)),
        _ => {}
    }
}

/// One string's references replaced; the values put in are added to `used`.
fn expand(value: &str, used: &mut Vec<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(after) = rest.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
            continue;
        }
        let Some(body) = rest.strip_prefix("${") else {
            out.push('$');
            rest = &rest[1..];
            continue;
        };
        let end = body.find('}').ok_or_else(|| "`${` without its `}` (write `$${` for a literal `${`)".to_string())?;
        let (name, default) = match body[..end].split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (&body[..end], None),
        };
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!("`${{{}}}` is not a variable reference: use ${{NAME}} or ${{NAME:-default}} with NAME of letters, digits and '_'", &body[..end]));
        }
        let v = match (std::env::var(name), default) {
            (Ok(v), Some(d)) if v.is_empty() => d.to_string(),
            (Ok(v), _) => {
                used.push(v.clone());
                v
            }
            (Err(_), Some(d)) => d.to_string(),
            (Err(_), None) => {
                return Err(format!("environment variable {name} is not set (used as ${{{name}}}); set it, or give a default with ${{{name}:-default}}"))
            }
        };
        out.push_str(&v);
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `s` as a one-line TOML basic string.
fn toml_basic_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `text` (a TOML error, which quotes the line and the value) with each
/// value from the environment replaced, as written and as escaped.
fn hide(text: &str, values: &[String]) -> String {
    let mut out = text.to_string();
    for v in values.iter().filter(|v| v.len() >= 3) {
        let toml = toml_basic_string(v);
        let debug = format!("{v:?}");
        for form in [&toml[1..toml.len() - 1], &debug[1..debug.len() - 1], v.as_str()] {
            out = out.replace(form, "<from the environment>");
        }
    }
    out
}

impl RunConfig {
    /// What the decoder of `aiwatch run` accepts and keeps.
    pub fn decode_options(&self) -> DecodeOptions {
        DecodeOptions {
            max_future_seconds: Some(self.max_future_seconds),
            max_event_bytes: self.max_event_bytes,
            max_field_bytes: self.max_field_bytes,
            max_list_items: self.max_list_items,
            max_raw_bytes: self.dead_letter.as_ref().map_or(crate::decode::DEFAULT_MAX_RAW_BYTES, |d| d.max_raw_bytes),
            include_raw: self.dead_letter.as_ref().is_none_or(|d| d.include_raw && d.max_raw_bytes > 0),
        }
    }

    /// The format of each topic, and the adapter mapping.
    pub fn formats(&self) -> Formats {
        Formats { default: self.kafka.format, by_topic: self.kafka.topic_formats().into_iter().collect(), adapter: std::sync::Arc::new(Adapter::new(&self.adapter)) }
    }

    /// Reads and validates a config file; relative paths in it are taken from
    /// its folder, and `${VAR}` in its strings from the environment ([`interpolate`]).
    pub fn load(path: &Path) -> anyhow::Result<RunConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
        let (text, from_env) = interpolate(&text, path)?;
        let mut c: RunConfig = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("invalid config file {}: {}", path.display(), hide(e.to_string().trim_end(), &from_env)))?;
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
        if let Some(a) = c.archive.as_mut() {
            if !a.location.contains("://") {
                let mut p = PathBuf::from(&a.location);
                rebase(&mut p);
                a.location = p.display().to_string();
            }
        }
        if let Some(d) = c.dead_letter.as_mut() {
            match (d.kind, &d.topic, &d.path) {
                (DeadLetterKind::Kafka, Some(t), None) if !t.is_empty() => {}
                (DeadLetterKind::File, None, Some(_)) => {}
                (DeadLetterKind::Kafka, ..) => {
                    anyhow::bail!("invalid config file {}: `[dead_letter]` of kind \"kafka\" needs a non-empty `topic` and no `path`", path.display())
                }
                (DeadLetterKind::File, ..) => {
                    anyhow::bail!("invalid config file {}: `[dead_letter]` of kind \"file\" needs a `path` and no `topic`", path.display())
                }
            }
            if let Some(p) = d.path.as_mut() {
                rebase(p);
            }
        }
        if let Some(d) = c.alert_dead_letter.as_mut() {
            match (d.kind, &d.topic, &d.path) {
                (DeadLetterKind::Kafka, Some(t), None) if !t.is_empty() => {}
                (DeadLetterKind::File, None, Some(_)) => {}
                (DeadLetterKind::Kafka, ..) => anyhow::bail!(
                    "invalid config file {}: `[alert_dead_letter]` of kind \"kafka\" needs a non-empty `topic` and no `path`",
                    path.display()
                ),
                (DeadLetterKind::File, ..) => {
                    anyhow::bail!("invalid config file {}: `[alert_dead_letter]` of kind \"file\" needs a `path` and no `topic`", path.display())
                }
            }
            if let Some(p) = d.path.as_mut() {
                rebase(p);
            }
        }
        for o in &mut c.outputs {
            if let OutputConfig::File { path } = o {
                rebase(path);
            }
        }
        let topics = c.kafka.all_topics();
        if topics.is_empty() {
            anyhow::bail!(
                "invalid config file {}: no topic to read; name at least one in `kafka.topics` or in a `[[kafka.source]]`",
                path.display()
            );
        }
        for (i, t) in topics.iter().enumerate() {
            if topics[..i].contains(t) {
                anyhow::bail!("invalid config file {}: topic `{t}` is named twice; a topic has one format", path.display());
            }
        }
        c.adapter.check().map_err(|e| anyhow::anyhow!("invalid config file {}: {e}", path.display()))?;
        if c.max_field_bytes > c.max_event_bytes {
            anyhow::bail!("invalid config file {}: `max_field_bytes` must not be larger than `max_event_bytes`", path.display());
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

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("c.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    const MINIMAL: &str = "policy = \"p.toml\"\n[kafka]\nbootstrap_servers = \"x\"\ntopics = [\"t\"]\n";

    #[test]
    fn values_out_of_range_are_refused_naming_key_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("lateness_seconds = 99999999999\n", "lateness_seconds", 2),
            ("checkpoint_interval_seconds = 0\n", "checkpoint_interval_seconds", 2),
            ("max_future_seconds = 999999999999\n", "max_future_seconds", 2),
            ("max_event_bytes = 10\n", "max_event_bytes", 2),
            ("max_list_items = 0\n", "max_list_items", 2),
        ];
        for (line, key, at) in cases {
            let text = format!("policy = \"p.toml\"\n{line}[kafka]\nbootstrap_servers = \"x\"\ntopics = [\"t\"]\n");
            let e = RunConfig::load(&write(dir.path(), &text)).unwrap_err().to_string();
            assert!(e.contains(&format!("`{key}`")) && e.contains(&format!("line {at}")) && e.contains("c.toml"), "{e}");
        }
        let kafka = [
            ("max_batch_wait_ms = 99999999999", "kafka.max_batch_wait_ms"),
            ("batch_size = 0", "kafka.batch_size"),
            ("idle_partition_ms = 999999999999", "kafka.idle_partition_ms"),
        ];
        for (line, key) in kafka {
            let e = RunConfig::load(&write(dir.path(), &format!("{MINIMAL}{line}\n"))).unwrap_err().to_string();
            assert!(e.contains(&format!("`{key}`")) && e.contains("line 5"), "{e}");
        }
        let webhook = format!("{MINIMAL}[[output]]\nkind = \"webhook\"\nurl = \"http://x\"\ntimeout_ms = 0\n");
        let e = RunConfig::load(&write(dir.path(), &webhook)).unwrap_err().to_string();
        // An [[output]] is one tagged table: the line is the table's.
        assert!(e.contains("`output.timeout_ms`") && e.contains("line 5"), "{e}");
    }

    #[test]
    fn alert_dead_letter_and_on_permanent_error() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "{MINIMAL}[alert_dead_letter]\nkind = \"file\"\npath = \"refused.jsonl\"\n\
             [[output]]\nkind = \"webhook\"\nurl = \"http://x\"\non_permanent_error = \"block\"\n\
             [[output]]\nkind = \"kafka\"\ntopic = \"a\"\n"
        );
        let c = RunConfig::load(&write(dir.path(), &text)).unwrap();
        assert_eq!(c.alert_dead_letter.unwrap().destination(), DeadLetterDestination::File { path: dir.path().join("refused.jsonl") });
        let policies: Vec<_> = c.outputs.iter().map(OutputConfig::on_permanent_error).collect();
        assert_eq!(policies, [OnPermanentError::Block, OnPermanentError::DeadLetter]);
        let e = RunConfig::load(&write(dir.path(), &format!("{MINIMAL}[alert_dead_letter]\nkind = \"kafka\"\n"))).unwrap_err();
        assert!(e.to_string().contains("`[alert_dead_letter]`") && e.to_string().contains("`topic`"), "{e}");
        let bad = format!("{MINIMAL}[[output]]\nkind = \"webhook\"\nurl = \"http://x\"\non_permanent_error = \"drop\"\n");
        let e = RunConfig::load(&write(dir.path(), &bad)).unwrap_err();
        assert!(e.to_string().contains("drop") && e.to_string().contains("line 5"), "{e}");
    }

    #[test]
    fn variables_are_interpolated_and_a_missing_one_names_its_key_and_line() {
        // Only this test sets these names.
        std::env::set_var("AIWATCH_TEST_BROKERS", "kafka-0:9092,kafka-1:9092");
        std::env::set_var("AIWATCH_TEST_EMPTY", "");
        std::env::set_var("AIWATCH_TEST_TOKEN", "s3cr\"et-token");
        let dir = tempfile::tempdir().unwrap();
        let text = "policy = \"${AIWATCH_TEST_UNSET_DIR:-/etc/aiwatch}/p.toml\"\n[kafka]\n\
                    bootstrap_servers = \"${AIWATCH_TEST_BROKERS}\"  # ${NOT_A_VALUE}\n\
                    topics = ['${AIWATCH_TEST_EMPTY:-ai-audit}', \"cost$${literal}\"]\n\
                    group_id = \"${AIWATCH_TEST_EMPTY}g\"\n\
                    [[output]]\nkind = \"webhook\"\nurl = \"https://hooks.example/${AIWATCH_TEST_TOKEN}\"\n";
        let c = RunConfig::load(&write(dir.path(), text)).unwrap();
        assert_eq!(c.policy, PathBuf::from("/etc/aiwatch/p.toml"));
        assert_eq!(c.kafka.bootstrap_servers, "kafka-0:9092,kafka-1:9092");
        assert_eq!(c.kafka.topics, ["ai-audit", "cost${literal}"]);
        assert_eq!(c.kafka.group_id, "g");
        let OutputConfig::Webhook { url, .. } = &c.outputs[0] else { panic!() };
        assert_eq!(url, "https://hooks.example/s3cr\"et-token");

        let missing = text.replace("${AIWATCH_TEST_BROKERS}", "${AIWATCH_TEST_NEVER_SET}");
        let e = RunConfig::load(&write(dir.path(), &missing)).unwrap_err().to_string();
        assert!(
            e.contains("c.toml") && e.contains("`kafka.bootstrap_servers` (line 3)") && e.contains("AIWATCH_TEST_NEVER_SET is not set"),
            "{e}"
        );
        let in_output = text.replace("${AIWATCH_TEST_TOKEN}", "${AIWATCH_TEST_NEVER_SET}");
        let e = RunConfig::load(&write(dir.path(), &in_output)).unwrap_err().to_string();
        assert!(e.contains("`output[1].url` (line 8)"), "{e}");
        let e = RunConfig::load(&write(dir.path(), &text.replace("${AIWATCH_TEST_BROKERS}", "${9x}"))).unwrap_err().to_string();
        assert!(e.contains("not a variable reference"), "{e}");

        // Lines keep their numbers after interpolation, and a value from the environment is not quoted back.
        let bad = format!("{}max_list_items = \"${{AIWATCH_TEST_TOKEN}}\"\n", text.split("[kafka]").next().unwrap());
        let bad = format!("{bad}[kafka]{}", text.split("[kafka]").nth(1).unwrap());
        let e = RunConfig::load(&write(dir.path(), &bad)).unwrap_err().to_string();
        assert!(e.contains("line 2") && !e.contains("et-token"), "{e}");
    }

    #[test]
    fn alertmanager_conventions_are_checked_naming_key_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let am = format!("{MINIMAL}[[output]]\nkind = \"alertmanager\"\nurl = \"http://am:9093\"\n");
        let c = RunConfig::load(&write(dir.path(), &am)).unwrap();
        let OutputConfig::Alertmanager { generator_url, expires_after_seconds, severity_map, .. } = &c.outputs[0] else { panic!() };
        assert_eq!((generator_url, *expires_after_seconds), (&None, 86_400), "no placeholder generatorURL; pages last a day");
        assert_eq!(severity_map, &default_severity_map());
        let c = RunConfig::load(&write(dir.path(), &format!("{am}[output.severity_map]\nmedium = \"error\"\n"))).unwrap();
        let OutputConfig::Alertmanager { severity_map, .. } = &c.outputs[0] else { panic!() };
        assert_eq!((severity_map["medium"].as_str(), severity_map["high"].as_str()), ("error", "error"));
        let cases = [
            ("dashboard_url = \"https://g.example/{tenant}\"\n", "unknown placeholder `{tenant}`"),
            ("generator_url = \"see the wiki\"\n", "http:// or https://"),
            ("expires_after_seconds = 10\n", "`output.expires_after_seconds`"),
            ("[output.severity_map]\nurgent = \"critical\"\n", "`urgent`"),
            ("[output.severity_map]\nhigh = \"\"\n", "`output.severity_map.high`"),
        ];
        for (line, says) in cases {
            let e = RunConfig::load(&write(dir.path(), &format!("{am}{line}"))).unwrap_err().to_string();
            assert!(e.contains(says) && e.contains("c.toml") && e.contains("line "), "{line}: {e}");
        }
    }

    #[test]
    fn sources_give_each_topic_its_format_and_adapter_keys_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let text = "policy = \"p.toml\"\n[kafka]\nbootstrap_servers = \"x\"\ntopics = [\"audit\"]\n\
            [[kafka.source]]\ntopics = [\"llm\"]\nformat = \"litellm\"\n[[kafka.source]]\ntopics = [\"spans\"]\nformat = \"otlp_proto\"\n\
            [adapter]\ntenant_keys = [\"metadata.team\"]\n[adapter.regions]\n\"a.example\" = \"eu\"\n";
        let c = RunConfig::load(&write(dir.path(), text)).unwrap();
        let f = c.formats();
        assert_eq!(f.by_topic["audit"], Format::Aiwatch);
        assert_eq!(f.by_topic["llm"], Format::Litellm);
        assert_eq!(f.by_topic["spans"], Format::OtlpProto);
        assert_eq!(c.kafka.all_topics(), ["audit", "llm", "spans"]);
        assert_eq!(f.adapter.tenant_paths, [vec!["metadata".to_string(), "team".to_string()]]);
        assert_eq!(f.adapter.region_of("https://a.example/v1").as_deref(), Some("eu"));

        let only_sources = "policy = \"p.toml\"\n[kafka]\nbootstrap_servers = \"x\"\n[[kafka.source]]\ntopics = [\"llm\"]\nformat = \"litellm\"\n";
        RunConfig::load(&write(dir.path(), only_sources)).unwrap();
        let bad_format = only_sources.replace("\"litellm\"", "\"otlp\"");
        let e = RunConfig::load(&write(dir.path(), &bad_format)).unwrap_err().to_string();
        assert!(e.contains("otlp_proto") && e.contains("line 6"), "{e}");
        let twice = format!("{only_sources}[[kafka.source]]\ntopics = [\"llm\"]\nformat = \"otlp_json\"\n");
        let e = RunConfig::load(&write(dir.path(), &twice)).unwrap_err().to_string();
        assert!(e.contains("`llm`") && e.contains("twice"), "{e}");
        let unknown = format!("{MINIMAL}[adapter]\ntenant_key = [\"x\"]\n");
        let e = RunConfig::load(&write(dir.path(), &unknown)).unwrap_err().to_string();
        assert!(e.contains("tenant_key") && e.contains("line 6"), "{e}");
        let none = "policy = \"p.toml\"\n[kafka]\nbootstrap_servers = \"x\"\n";
        assert!(RunConfig::load(&write(dir.path(), none)).unwrap_err().to_string().contains("no topic"));
    }

    #[test]
    fn dead_letter_limits_and_defaults_reach_the_decoder() {
        let dir = tempfile::tempdir().unwrap();
        let c = RunConfig::load(&write(dir.path(), MINIMAL)).unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/var/lib/aiwatch"), "the default state_dir is not in /tmp");
        assert_eq!(c.decode_options(), DecodeOptions { max_future_seconds: Some(300), ..DecodeOptions::default() });
        let text = format!("max_future_seconds = 60\nmax_field_bytes = 64\n{MINIMAL}[dead_letter]\nkind = \"file\"\npath = \"d.jsonl\"\nmax_raw_bytes = 100\ninclude_raw = false\n");
        let c = RunConfig::load(&write(dir.path(), &text)).unwrap();
        let o = c.decode_options();
        assert_eq!((o.max_future_seconds, o.max_field_bytes, o.max_raw_bytes, o.include_raw), (Some(60), 64, 100, false));
        assert_eq!(c.dead_letter.unwrap().destination(), DeadLetterDestination::File { path: dir.path().join("d.jsonl") });
        let e = RunConfig::load(&write(dir.path(), &format!("{MINIMAL}[dead_letter]\nkind = \"kafka\"\npath = \"d\"\n"))).unwrap_err();
        assert!(e.to_string().contains("`topic`"), "{e}");
        let e = RunConfig::load(&write(dir.path(), &format!("{MINIMAL}[dead_letter]\nkind = \"file\"\npath = \"d\"\nmax_raw_bytes = -1\n"))).unwrap_err();
        assert!(e.to_string().contains("line 8"), "{e}");
    }
}
