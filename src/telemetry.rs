//! Prometheus metrics and the health listener (`/metrics`, `/healthz`, `/readyz`).
//!
//! Labels are fixed and low-cardinality: rule ids, severities, dead-letter
//! reasons, output names, topic and partition. Never a tenant, an actor or any
//! event content.
//!
//! Series that alerts and `rate()` need exist from the start at 0: every
//! dead-letter reason at once, every loaded rule and configured output once
//! [`Metrics::preregister`] is called. The standard `process_*` metrics (RSS,
//! CPU seconds, open fds, start time) come from `/proc` on Linux.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::engine::StepReport;

/// The crate version, the git commit it was built from (`unknown` without
/// git) and the compiler, as `build.rs` found them.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const COMMIT: &str = env!("AIWATCH_COMMIT");
pub const RUSTC: &str = env!("AIWATCH_RUSTC");
/// What `aiwatch --version` prints after the name.
pub const LONG_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("AIWATCH_COMMIT"), ", rustc ", env!("AIWATCH_RUSTC"), ")");

/// Every reason the decoder gives a dead letter (`aiwatch_dead_letters_total{reason}`),
/// so each series exists at 0 from the start.
pub const DEAD_LETTER_REASONS: &[&str] = &[
    "invalid_json",
    "not_object",
    "missing_field",
    "empty_field",
    "wrong_type",
    "bad_time",
    "time_out_of_range",
    "time_in_future",
    "event_too_large",
    "field_too_long",
    "list_too_long",
];

/// Every metric aiwatch exports.
pub struct Metrics {
    pub registry: Registry,
    pub events: IntCounter,
    pub bytes: IntCounter,
    pub dead_letters: IntCounterVec,
    pub skipped_records: IntCounterVec,
    pub duplicates: IntCounter,
    pub late: IntCounter,
    pub batches: IntCounter,
    pub batch_seconds: Histogram,
    pub rule_seconds: HistogramVec,
    pub alerts: IntCounterVec,
    pub consumer_lag: IntGaugeVec,
    pub watermark: Gauge,
    pub state_entries: IntGaugeVec,
    pub state_bytes: IntGauge,
    pub output_errors: IntCounterVec,
    pub rule_errors: IntCounterVec,
    pub output_up: IntGaugeVec,
    pub alerts_dead_lettered: IntCounterVec,
    pub checkpoints: IntCounter,
    pub checkpoint_seconds: Histogram,
    pub checkpoint_failures: IntCounter,
    pub commits: IntCounter,
    /// Unix time at which the state on disk last covered everything processed:
    /// a checkpoint was written, or one was due and nothing new needed it.
    /// The process start time until then.
    pub last_checkpoint: Gauge,
    /// Bytes on disk of the latest checkpoint file and its history segment folder.
    pub checkpoint_bytes: IntGauge,
    /// `aiwatch_ready`: what `/readyz` answers, as 1 or 0 (set at each scrape).
    pub ready_gauge: IntGauge,
    /// Set once the engine runs and the consumer is subscribed.
    pub ready: AtomicBool,
    /// Set while the last checkpoint failed (`/readyz` answers 503).
    pub checkpoint_failing: AtomicBool,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("unique metric");
            c
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("unique metric");
            c
        };
        let histogram = |name: &str, help: &str| {
            let buckets = prometheus::exponential_buckets(0.0005, 2.0, 16).expect("valid buckets");
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("valid metric");
            registry.register(Box::new(h.clone())).expect("unique metric");
            h
        };
        let rule_seconds = HistogramVec::new(
            HistogramOpts::new("aiwatch_rule_evaluation_seconds", "Time to evaluate one rule on one step.")
                .buckets(prometheus::exponential_buckets(0.0001, 2.0, 16).expect("valid buckets")),
            &["rule"],
        )
        .expect("valid metric");
        registry.register(Box::new(rule_seconds.clone())).expect("unique metric");
        let consumer_lag = IntGaugeVec::new(Opts::new("aiwatch_consumer_lag", "Messages behind the partition end."), &["topic", "partition"])
            .expect("valid metric");
        registry.register(Box::new(consumer_lag.clone())).expect("unique metric");
        let watermark = Gauge::new("aiwatch_watermark_seconds", "Event-time watermark, Unix seconds.").expect("valid metric");
        registry.register(Box::new(watermark.clone())).expect("unique metric");
        let state_entries =
            IntGaugeVec::new(Opts::new("aiwatch_state_entries", "Entries held in event-time state, by kind."), &["kind"]).expect("valid metric");
        registry.register(Box::new(state_entries.clone())).expect("unique metric");
        let state_bytes = IntGauge::new("aiwatch_state_bytes", "Estimated heap bytes of event-time state.").expect("valid metric");
        registry.register(Box::new(state_bytes.clone())).expect("unique metric");
        let output_up = IntGaugeVec::new(Opts::new("aiwatch_output_up", "1 when the output took its last alerts, 0 while it fails."), &["output"])
            .expect("valid metric");
        registry.register(Box::new(output_up.clone())).expect("unique metric");
        let gauge = |name: &str, help: &str| {
            let g = Gauge::new(name, help).expect("valid metric");
            registry.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        let int_gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        let build_info = IntGaugeVec::new(
            Opts::new("aiwatch_build_info", "Always 1; the labels say which build runs."),
            &["version", "commit", "rustc"],
        )
        .expect("valid metric");
        registry.register(Box::new(build_info.clone())).expect("unique metric");
        build_info.with_label_values(&[VERSION, COMMIT, RUSTC]).set(1);
        #[cfg(target_os = "linux")]
        registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self())).expect("unique metric");
        let last_checkpoint = gauge(
            "aiwatch_last_checkpoint_timestamp_seconds",
            "Unix time at which the state on disk last covered everything processed (a checkpoint was written, or was due with nothing new); the process start until then.",
        );
        last_checkpoint.set(unix_now());
        let checkpoint_bytes = int_gauge("aiwatch_checkpoint_bytes", "Bytes on disk of the latest checkpoint: its manifest, its history segment and shard folders, and the spill stores.");
        let ready_gauge = int_gauge("aiwatch_ready", "1 when /readyz answers 200 (running, subscribed, last checkpoint written), else 0.");
        let metrics = Metrics {
            events: counter("aiwatch_events_consumed_total", "Valid events consumed."),
            bytes: counter("aiwatch_bytes_consumed_total", "Bytes of records consumed."),
            dead_letters: counter_vec("aiwatch_dead_letters_total", "Malformed records sent to the dead-letter output.", &["reason"]),
            skipped_records: counter_vec(
                "aiwatch_skipped_records_total",
                "Records, or parts of one (OTLP spans that are not GenAI spans), a format skips as not its own.",
                &["format", "reason"],
            ),
            duplicates: counter("aiwatch_duplicate_events_total", "Retried events dropped (same event_id)."),
            late: counter("aiwatch_late_events_total", "Events older than the watermark when they arrived."),
            batches: counter("aiwatch_batches_total", "Engine steps."),
            batch_seconds: histogram("aiwatch_batch_duration_seconds", "Time to evaluate one step, all rules."),
            rule_seconds,
            alerts: counter_vec("aiwatch_alerts_total", "Alerts emitted.", &["rule", "severity"]),
            consumer_lag,
            watermark,
            state_entries,
            state_bytes,
            rule_errors: counter_vec("aiwatch_rule_errors_total", "Steps on which a rule failed (each raised an aiwatch.rule_error alert).", &["rule"]),
            output_errors: counter_vec("aiwatch_output_errors_total", "Failed hand-offs to an output.", &["output"]),
            output_up,
            alerts_dead_lettered: counter_vec(
                "aiwatch_alerts_dead_lettered_total",
                "Alerts an output refused for good, sent to the alert dead letter.",
                &["output"],
            ),
            checkpoints: counter("aiwatch_checkpoints_total", "Checkpoints written."),
            checkpoint_seconds: histogram("aiwatch_checkpoint_duration_seconds", "Time to write one checkpoint."),
            checkpoint_failures: counter(
                "aiwatch_checkpoint_failures_total",
                "Checkpoints that could not be written (full disk, ...); their offsets were not committed.",
            ),
            commits: counter("aiwatch_offset_commits_total", "Offset commits to Kafka."),
            last_checkpoint,
            checkpoint_bytes,
            ready_gauge,
            ready: AtomicBool::new(false),
            checkpoint_failing: AtomicBool::new(false),
            registry,
        };
        for reason in DEAD_LETTER_REASONS {
            metrics.dead_letters.with_label_values(&[reason]).inc_by(0);
        }
        Arc::new(metrics)
    }

    /// Makes the series of every loaded rule and configured output exist at 0
    /// (an output counts as up until it fails), so `rate()` and absence alerts
    /// work before the first alert or failure. Rules are `(id, severity)`: an
    /// alert of a rule always carries the rule's own severity.
    pub fn preregister<'a>(&self, rules: impl IntoIterator<Item = (&'a str, &'a str)>, outputs: impl IntoIterator<Item = &'a str>) {
        let rule_error = [(crate::engine::RULE_ERROR, "high")];
        for (id, severity) in rules.into_iter().chain(rule_error) {
            self.alerts.with_label_values(&[id, severity]).inc_by(0);
            if id != crate::engine::RULE_ERROR {
                self.rule_errors.with_label_values(&[id]).inc_by(0);
            }
        }
        // `dead_letter` and `alert_dead_letter` count failed writes of the two dead-letter destinations.
        for name in outputs.into_iter().chain(["dead_letter", "alert_dead_letter"]) {
            self.output_errors.with_label_values(&[name]).inc_by(0);
            if !matches!(name, "dead_letter" | "alert_dead_letter") {
                self.alerts_dead_lettered.with_label_values(&[name]).inc_by(0);
                self.output_up.with_label_values(&[name]).set(1);
            }
        }
    }

    /// `aiwatch_consumer_lag{topic,partition}`: messages between what the engine
    /// has processed (`next`, the next offset to process) and the partition's
    /// high watermark; never below 0.
    pub fn observe_lag(&self, topic: &str, partition: i32, high: i64, next: i64) {
        self.consumer_lag.with_label_values(&[topic, &partition.to_string()]).set((high - next).max(0));
    }

    /// Drops the lag series of a partition this process no longer owns (revoked),
    /// so a dashboard does not show a frozen value for it.
    pub fn forget_partition(&self, topic: &str, partition: i32) {
        let _ = self.consumer_lag.remove_label_values(&[topic, &partition.to_string()]);
    }

    /// Records a checkpoint written to `path` in `took`: counts it, and sets
    /// its time and its size on disk (the file and `PATH.history/`).
    pub fn observe_checkpoint(&self, path: &Path, took: Duration) {
        self.checkpoints.inc();
        self.checkpoint_seconds.observe(took.as_secs_f64());
        self.last_checkpoint.set(unix_now());
        self.checkpoint_bytes.set(checkpoint_size(path) as i64);
    }

    /// A checkpoint restored at start: its size, and its file's time as the last checkpoint's.
    pub fn observe_restored_checkpoint(&self, path: &Path) {
        if let Ok(modified) = std::fs::metadata(path).and_then(|m| m.modified()) {
            if let Ok(since) = modified.duration_since(std::time::UNIX_EPOCH) {
                self.last_checkpoint.set(since.as_secs_f64());
            }
        }
        self.checkpoint_bytes.set(checkpoint_size(path) as i64);
    }

    /// A checkpoint was due and the state on disk already covers everything processed.
    pub fn checkpoint_up_to_date(&self) {
        self.last_checkpoint.set(unix_now());
    }

    /// What `/readyz` answers: `Err` with the reason while not ready.
    pub fn readiness(&self) -> Result<(), &'static str> {
        if !self.ready.load(Ordering::Relaxed) {
            Err("starting\n")
        } else if self.checkpoint_failing.load(Ordering::Relaxed) {
            Err("the last checkpoint failed; offsets are not being committed\n")
        } else {
            Ok(())
        }
    }

    /// Records what one decoded batch read: bytes, dead letters by kind, skipped parts by format.
    pub fn observe_decoded(&self, d: &crate::decode::Decoded) {
        self.bytes.inc_by(d.bytes as u64);
        for dead in &d.dead_letters {
            self.dead_letters.with_label_values(&[dead.kind]).inc();
        }
        for ((format, reason), n) in &d.skipped {
            self.skipped_records.with_label_values(&[format, reason]).inc_by(*n as u64);
        }
    }

    /// Records one engine step.
    pub fn observe_step(&self, r: &StepReport, seconds: f64) {
        self.batches.inc();
        self.batch_seconds.observe(seconds);
        self.observe_report(r);
    }

    /// Records what a report holds: events, rule times, alerts, the watermark.
    pub fn observe_report(&self, r: &StepReport) {
        self.events.inc_by(r.events as u64);
        self.duplicates.inc_by(r.duplicates as u64);
        self.late.inc_by(r.late as u64);
        for (rule, took) in &r.rule_times {
            self.rule_seconds.with_label_values(&[rule.as_str()]).observe(took.as_secs_f64());
        }
        for rule in &r.rule_errors {
            self.rule_errors.with_label_values(&[rule.as_str()]).inc();
        }
        for a in &r.alerts {
            self.alerts.with_label_values(&[a.rule_id.as_str(), a.severity.as_str()]).inc();
        }
        if let Some(w) = r.watermark {
            self.watermark.set(w as f64 / 1e9);
        }
    }

    pub fn observe_state(&self, s: &crate::engine::state::StateStats) {
        for (kind, n) in &s.entries {
            self.state_entries.with_label_values(&[kind]).set(*n as i64);
        }
        self.state_bytes.set(s.bytes as i64);
    }

    pub fn render(&self) -> String {
        self.ready_gauge.set(i64::from(self.readiness().is_ok()));
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("text encoding");
        String::from_utf8(buf).expect("metrics are UTF-8")
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Bytes of a checkpoint's manifest and of the files in its `PATH.history/`
/// and `PATH.shards/` folders (files the previous checkpoint still names
/// included); 0 for what is missing.
fn checkpoint_size(path: &Path) -> u64 {
    let file = std::fs::metadata(path).map_or(0, |m| m.len());
    let folder = |suffix: &str| -> u64 {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        std::fs::read_dir(&name)
            .map(|dir| dir.filter_map(|e| e.ok()?.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum())
            .unwrap_or(0)
    };
    let segments = folder(".history") + folder(".shards");
    // Open obligations spilled past state_memory_limit, beside the checkpoint (src/engine/spill.rs).
    let spilled = crate::engine::spill::stores_bytes(&path.with_file_name(crate::engine::spill::SPILL_FILE));
    file + segments + spilled
}

/// Limits of the health listener: it serves a scraper or a probe, not the world.
mod listener {
    use std::time::Duration;

    /// A client must send its request headers within this.
    pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
    /// A connection, idle or not, is closed (gracefully) after this.
    pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
    /// Connections served at once; more wait in the accept queue.
    pub const MAX_CONNECTIONS: usize = 64;
    /// After an accept error (out of file descriptors, ...), wait this long, doubling up to a second.
    pub const FIRST_BACKOFF: Duration = Duration::from_millis(10);
    pub const MAX_BACKOFF: Duration = Duration::from_secs(1);
}

/// Serves `/metrics`, `/healthz` and `/readyz` until the process ends.
///
/// Each connection gets a header read timeout and a lifetime; at most
/// [`listener::MAX_CONNECTIONS`] are served at once, and an accept error
/// backs off instead of spinning.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let slots = Arc::new(tokio::sync::Semaphore::new(listener::MAX_CONNECTIONS));
    tokio::spawn(async move {
        let mut backoff = listener::FIRST_BACKOFF;
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else { return };
            let stream = match listener.accept().await {
                Ok((stream, _)) => {
                    backoff = listener::FIRST_BACKOFF;
                    stream
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "metrics listener cannot accept a connection");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(listener::MAX_BACKOFF);
                    continue;
                }
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let metrics = metrics.clone();
                    async move { Ok::<_, Infallible>(route(&req, &metrics)) }
                });
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(listener::HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    _ = tokio::time::sleep(listener::CONNECTION_TIMEOUT) => {
                        // Let a request in flight finish, briefly; an idle connection closes at once.
                        conn.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(listener::HEADER_READ_TIMEOUT, conn).await;
                    }
                }
            });
        }
    });
    Ok(bound)
}

fn route(req: &Request<hyper::body::Incoming>, metrics: &Metrics) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: String, ctype: &'static str| {
        Response::builder().status(status).header("content-type", ctype).body(Full::new(Bytes::from(body))).expect("valid response")
    };
    match req.uri().path() {
        "/metrics" => text(StatusCode::OK, metrics.render(), "text/plain; version=0.0.4"),
        "/healthz" => text(StatusCode::OK, "ok\n".into(), "text/plain"),
        "/readyz" => match metrics.readiness() {
            Ok(()) => text(StatusCode::OK, "ready\n".into(), "text/plain"),
            Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, why.into(), "text/plain"),
        },
        _ => text(StatusCode::NOT_FOUND, "not found: try /metrics, /healthz or /readyz\n".into(), "text/plain"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// The value of the sample `name{labels}` exactly as rendered, if present.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
    }

    #[test]
    fn build_info_and_process_metrics_are_present() {
        let text = Metrics::new().render();
        let info = format!("aiwatch_build_info{{commit=\"{COMMIT}\",rustc=\"{RUSTC}\",version=\"{VERSION}\"}}");
        assert_eq!(sample(&text, &info), Some(1.0), "{text}");
        assert!(!COMMIT.is_empty() && RUSTC.chars().next().is_some_and(|c| c.is_ascii_digit()), "{COMMIT} {RUSTC}");
        assert!(LONG_VERSION.starts_with(VERSION) && LONG_VERSION.contains(COMMIT) && LONG_VERSION.contains(RUSTC));
        if cfg!(target_os = "linux") {
            let rss = sample(&text, "process_resident_memory_bytes").expect("process_resident_memory_bytes");
            assert!(rss > 1e6, "an RSS of {rss} bytes is not this test process's");
            assert!(sample(&text, "process_open_fds").is_some_and(|n| n >= 3.0), "{text}");
            assert!(sample(&text, "process_cpu_seconds_total").is_some(), "{text}");
            let started = sample(&text, "process_start_time_seconds").expect("process_start_time_seconds");
            assert!((unix_now() - started).abs() < 3600.0, "start time {started}");
        }
    }

    #[test]
    fn every_rule_output_and_dead_letter_reason_has_a_series_at_zero() {
        let m = Metrics::new();
        let rules = crate::rules::builtin();
        m.preregister(rules.iter().map(|r| (r.id.as_str(), r.severity.as_str())), ["alertmanager", "kafka"]);
        let text = m.render();
        for r in &rules {
            let alerts = format!("aiwatch_alerts_total{{rule=\"{}\",severity=\"{}\"}}", r.id, r.severity);
            assert_eq!(sample(&text, &alerts), Some(0.0), "{alerts} missing");
            assert_eq!(sample(&text, &format!("aiwatch_rule_errors_total{{rule=\"{}\"}}", r.id)), Some(0.0), "{}", r.id);
        }
        assert_eq!(sample(&text, "aiwatch_alerts_total{rule=\"aiwatch.rule_error\",severity=\"high\"}"), Some(0.0));
        for o in ["alertmanager", "kafka"] {
            assert_eq!(sample(&text, &format!("aiwatch_output_errors_total{{output=\"{o}\"}}")), Some(0.0), "{o}");
            assert_eq!(sample(&text, &format!("aiwatch_alerts_dead_lettered_total{{output=\"{o}\"}}")), Some(0.0), "{o}");
            assert_eq!(sample(&text, &format!("aiwatch_output_up{{output=\"{o}\"}}")), Some(1.0), "{o}");
        }
        assert_eq!(sample(&text, "aiwatch_output_errors_total{output=\"alert_dead_letter\"}"), Some(0.0));
        assert_eq!(sample(&text, "aiwatch_output_errors_total{output=\"dead_letter\"}"), Some(0.0));
        assert!(!text.contains("aiwatch_output_up{output=\"dead_letter\"}") && !text.contains("aiwatch_alerts_dead_lettered_total{output=\"alert_dead_letter\"}"));
        for reason in DEAD_LETTER_REASONS {
            assert_eq!(sample(&text, &format!("aiwatch_dead_letters_total{{reason=\"{reason}\"}}")), Some(0.0), "{reason}");
        }
        // A real alert then counts from 0.
        m.alerts.with_label_values(&["vendor.unapproved", "high"]).inc();
        assert_eq!(sample(&m.render(), "aiwatch_alerts_total{rule=\"vendor.unapproved\",severity=\"high\"}"), Some(1.0));
    }

    #[test]
    fn lag_is_high_watermark_minus_processed_and_a_revoked_partition_leaves() {
        let m = Metrics::new();
        m.observe_lag("ai-audit", 0, 120, 100);
        m.observe_lag("ai-audit", 1, 50, 60);
        let text = m.render();
        assert_eq!(sample(&text, "aiwatch_consumer_lag{partition=\"0\",topic=\"ai-audit\"}"), Some(20.0), "{text}");
        assert_eq!(sample(&text, "aiwatch_consumer_lag{partition=\"1\",topic=\"ai-audit\"}"), Some(0.0));
        m.forget_partition("ai-audit", 0);
        m.forget_partition("ai-audit", 7);
        let text = m.render();
        assert_eq!(sample(&text, "aiwatch_consumer_lag{partition=\"0\",topic=\"ai-audit\"}"), None);
        assert_eq!(sample(&text, "aiwatch_consumer_lag{partition=\"1\",topic=\"ai-audit\"}"), Some(0.0));
    }

    #[test]
    fn checkpoint_time_size_and_readiness() {
        let m = Metrics::new();
        let text = m.render();
        let at_start = sample(&text, "aiwatch_last_checkpoint_timestamp_seconds").unwrap();
        assert!((unix_now() - at_start).abs() < 60.0, "{at_start}");
        assert_eq!(sample(&text, "aiwatch_checkpoint_bytes"), Some(0.0));
        assert_eq!(sample(&text, "aiwatch_ready"), Some(0.0), "not ready before the engine runs");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.aiwatch");
        std::fs::write(&path, vec![0u8; 1000]).unwrap();
        std::fs::create_dir(dir.path().join("checkpoint.aiwatch.history")).unwrap();
        std::fs::write(dir.path().join("checkpoint.aiwatch.history/1.arrow"), vec![0u8; 234]).unwrap();
        m.observe_checkpoint(&path, Duration::from_millis(20));
        m.ready.store(true, Ordering::Relaxed);
        let text = m.render();
        assert_eq!(sample(&text, "aiwatch_checkpoint_bytes"), Some(1234.0));
        assert_eq!(sample(&text, "aiwatch_checkpoints_total"), Some(1.0));
        assert!(sample(&text, "aiwatch_last_checkpoint_timestamp_seconds").unwrap() >= at_start);
        assert_eq!(sample(&text, "aiwatch_ready"), Some(1.0));
        m.checkpoint_failing.store(true, Ordering::Relaxed);
        assert_eq!(sample(&m.render(), "aiwatch_ready"), Some(0.0), "a failing checkpoint makes it unready");

        let restored = Metrics::new();
        let old = std::time::SystemTime::now() - Duration::from_secs(7200);
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(old).unwrap();
        restored.observe_restored_checkpoint(&path);
        let t = sample(&restored.render(), "aiwatch_last_checkpoint_timestamp_seconds").unwrap();
        assert!((unix_now() - 7200.0 - t).abs() < 5.0, "the restored checkpoint's own time, not now: {t}");
    }

    #[tokio::test]
    async fn the_listener_answers_and_drops_a_client_that_sends_no_request() {
        let addr = serve("127.0.0.1:0".parse().unwrap(), Metrics::new()).await.unwrap();
        let mut ok = tokio::net::TcpStream::connect(addr).await.unwrap();
        ok.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
        let mut answer = String::new();
        ok.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok\n"), "{answer}");

        // Half a request line, then silence: closed once the header read timeout passes.
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /metr").await.unwrap();
        let started = std::time::Instant::now();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(listener::HEADER_READ_TIMEOUT * 3, slow.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the connection was still open after {:?}", started.elapsed());
        assert!(started.elapsed() >= listener::HEADER_READ_TIMEOUT / 2);
    }
}
