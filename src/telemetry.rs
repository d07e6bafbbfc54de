//! Prometheus metrics and the health listener (`/metrics`, `/healthz`, `/readyz`).
//!
//! Labels are fixed and low-cardinality: rule ids, severities, dead-letter
//! reasons, output names, topic and partition. Never a tenant, an actor or any
//! event content.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

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
        Arc::new(Metrics {
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
            ready: AtomicBool::new(false),
            checkpoint_failing: AtomicBool::new(false),
            registry,
        })
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
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("text encoding");
        String::from_utf8(buf).expect("metrics are UTF-8")
    }
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
        "/readyz" if !metrics.ready.load(Ordering::Relaxed) => text(StatusCode::SERVICE_UNAVAILABLE, "starting\n".into(), "text/plain"),
        "/readyz" if metrics.checkpoint_failing.load(Ordering::Relaxed) => {
            text(StatusCode::SERVICE_UNAVAILABLE, "the last checkpoint failed; offsets are not being committed\n".into(), "text/plain")
        }
        "/readyz" => text(StatusCode::OK, "ready\n".into(), "text/plain"),
        _ => text(StatusCode::NOT_FOUND, "not found: try /metrics, /healthz or /readyz\n".into(), "text/plain"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

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
