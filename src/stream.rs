//! `aiwatch run`: Kafka in, the same engine as `scan`, alerts out to every
//! output, at least once.
//!
//! The loop takes messages into a raw batch until it is full or the batch
//! wait passes, then: decode; dead letters out; engine step; alerts to every
//! output ([`crate::outputs::Delivery`]: an output that fails is retried with
//! backoff while consumption waits, so memory stays bounded and nothing is
//! dropped; an alert refused for good goes to the alert dead letter); and, every
//! checkpoint interval, the engine state is written with the offsets it covers
//! and those offsets are committed. A restart restores the checkpoint and
//! skips messages it already covers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use arrow::array::Array as _;
use rdkafka::consumer::CommitMode;
use rdkafka::producer::FutureProducer;
use tokio::sync::{mpsc, watch};

use crate::config::{DeadLetterDestination, OutputConfig, RunConfig};
use crate::decode::{DeadLetter, DecodeOptions, Decoded, Decoder, Formats};
use crate::archive::run::RunArchive;
use crate::engine::{Engine, EngineConfig, SpillConfig, StepReport};
use crate::event::{Origin, RawBatch};
use crate::outputs::http::{Alertmanager, Webhook};
use crate::outputs::kafka::{send_dead_letters, KafkaAlerts};
use crate::outputs::{AlertDeadLetters, AlertOutput, Delivery, JsonLines, Route};
use crate::pipeline::{self, Evaluate, Totals};
use crate::policy::Policy;
use crate::sources::kafka::{self, Context, Intake, IntakeLoop, Offsets, TopicPartition};
use crate::state_dir::StateDir;
use crate::telemetry::Metrics;

/// Flags of `aiwatch run` that are not in the config file.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Read up to the end offsets present at start, settle the watermark, flush and exit.
    pub until_end: bool,
}

enum DeadLetters {
    Kafka { producer: FutureProducer, topic: String },
    File(JsonLines),
    Warn,
}

impl DeadLetters {
    /// Sends dead letters; ones the topic refuses for their size are logged and counted, not fatal.
    async fn send(&mut self, dead: &[DeadLetter], metrics: &Metrics) -> anyhow::Result<()> {
        if dead.is_empty() {
            return Ok(());
        }
        match self {
            DeadLetters::Kafka { producer, topic } => {
                let left_out = send_dead_letters(producer, topic, dead).await?;
                metrics.output_errors.with_label_values(&["dead_letter"]).inc_by(left_out as u64);
                Ok(())
            }
            DeadLetters::File(f) => Ok(f.write_dead_letters(dead)?),
            DeadLetters::Warn => {
                for d in dead {
                    tracing::warn!(origin = %d.origin, reason = %d.reason, "malformed event (configure [dead_letter] to keep its bytes)");
                }
                Ok(())
            }
        }
    }
}

/// Builds every configured output and the alert dead letter; secrets are resolved here and never logged.
fn build_delivery(config: &RunConfig, producer: &Option<FutureProducer>, rules: &[crate::rules::Rule]) -> anyhow::Result<Delivery> {
    let mut routes = Vec::new();
    for o in &config.outputs {
        let output: Box<dyn AlertOutput> = match o {
            OutputConfig::Stdout => Box::new(JsonLines::append(None)?),
            OutputConfig::File { path } => {
                Box::new(JsonLines::append(Some(path)).with_context(|| format!("cannot open alert file {}", path.display()))?)
            }
            OutputConfig::Kafka { topic, .. } => {
                Box::new(KafkaAlerts { producer: producer.clone().expect("producer built for kafka outputs"), topic: topic.clone() })
            }
            OutputConfig::Webhook { url, auth_header, auth_value, max_retries, timeout_ms, .. } => {
                let auth = match (auth_header, auth_value) {
                    (Some(h), Some(v)) => Some((h.clone(), v.resolve("output.webhook.auth_value")?)),
                    (None, None) => None,
                    _ => anyhow::bail!("a webhook output needs both `auth_header` and `auth_value`, or neither"),
                };
                Box::new(Webhook::new(url.clone(), auth, *max_retries, *timeout_ms)?)
            }
            OutputConfig::Alertmanager { .. } => Box::new(Alertmanager::from_config(o, rules)?),
        };
        routes.push(Route { output, on_permanent_error: o.on_permanent_error() });
    }
    if routes.is_empty() {
        tracing::warn!("no [[output]] configured; alerts go to stdout");
        routes.push(Route { output: Box::new(JsonLines::append(None)?), on_permanent_error: Default::default() });
    }
    let dead = match config.alert_dead_letter.as_ref().map(|d| d.destination()) {
        Some(DeadLetterDestination::Kafka { topic }) => {
            AlertDeadLetters::Kafka { producer: producer.clone().expect("producer built for the alert dead letter"), topic }
        }
        Some(DeadLetterDestination::File { path }) => AlertDeadLetters::File(
            JsonLines::append(Some(&path)).with_context(|| format!("cannot open the alert dead-letter file {}", path.display()))?,
        ),
        None => AlertDeadLetters::Log,
    };
    Ok(Delivery { routes, dead })
}

/// Position JSON of a checkpoint: `[[topic, partition, next_offset], ...]`.
/// What a checkpoint covers: the next offset per partition, and how many
/// archive flushes it makes durable (see [`crate::archive::run`]).
fn position_json(next: &HashMap<TopicPartition, i64>, archive_seq: u64) -> serde_json::Value {
    let mut v: Vec<_> = next.iter().map(|((t, p), o)| serde_json::json!([t, p, o])).collect();
    v.sort_by_key(|x| x.to_string());
    serde_json::json!({ "offsets": v, "archive_seq": archive_seq })
}

/// Reads [`position_json`]; a checkpoint of a release before the archive holds the offsets alone.
fn parse_position(v: &serde_json::Value) -> (HashMap<TopicPartition, i64>, u64) {
    let offsets = v.get("offsets").unwrap_or(v);
    let next = offsets
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Some(((e.get(0)?.as_str()?.to_string(), e.get(1)?.as_i64()? as i32), e.get(2)?.as_i64()?)))
        .collect();
    (next, v.get("archive_seq").and_then(|s| s.as_u64()).unwrap_or(0))
}

/// Stops the loop on SIGINT or SIGTERM: the current batch is finished, flushed and committed.
fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("install SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutdown requested: finishing the current batch, then flushing and committing");
        let _ = tx.send(true);
    });
    rx
}

struct Loop {
    engine: Engine,
    /// The evidence archive, flushed at each checkpoint.
    archive: Option<RunArchive>,
    delivery: Delivery,
    dead: DeadLetters,
    metrics: Arc<Metrics>,
    offsets: Arc<Mutex<Offsets>>,
    /// Next offset per partition of what the engine has processed.
    processed: HashMap<TopicPartition, i64>,
    /// Where each partition started in this run (checkpoint, commit or log start).
    start: HashMap<TopicPartition, i64>,
    /// Newest event time seen per partition, for the watermark hold.
    newest: HashMap<TopicPartition, i64>,
    /// When each partition last gave a message (wall clock), and how long until it counts as idle.
    last_message: HashMap<TopicPartition, Instant>,
    idle_after: Duration,
    checkpoint_path: PathBuf,
    totals: Totals,
    stop: watch::Receiver<bool>,
}

impl Loop {
    /// The watermark hold of [`crate::engine::Engine::step_held`]: the smallest
    /// newest event time among the partitions that are still delivering, so
    /// one partition read ahead of another does not make the other's events
    /// late. A partition counts while it has unprocessed messages or gave a
    /// message within the idle timeout; one that has given nothing yet but has
    /// a backlog holds the watermark where it is (`i64::MIN`). An idle
    /// partition does not hold it, so absence rules still come due when some
    /// partitions go quiet. A partition at its end (EOF) has a backlog only
    /// until what was taken before the EOF is processed; otherwise its end
    /// offset says (a transactional partition's last offset is a commit
    /// marker that is never processed, so only EOF can say it is read).
    fn hold(&self) -> Option<i64> {
        let offsets = self.offsets.lock().expect("offsets lock");
        let parts: Vec<&TopicPartition> =
            if offsets.assigned.is_empty() { offsets.high.keys().collect() } else { offsets.assigned.iter().collect() };
        parts
            .into_iter()
            .filter(|tp| {
                let next = self.processed.get(*tp).or_else(|| self.start.get(*tp)).copied().unwrap_or(0);
                let backlog = match offsets.at_end.get(*tp) {
                    Some(end) => next < *end,
                    None => offsets.high.get(*tp).is_some_and(|high| next < *high),
                };
                backlog || self.last_message.get(*tp).is_some_and(|t| t.elapsed() < self.idle_after)
            })
            .map(|tp| self.newest.get(tp).copied().unwrap_or(i64::MIN))
            .min()
    }

    async fn step(&mut self, step: DecodedStep) -> anyhow::Result<()> {
        let started = Instant::now();
        let DecodedStep { decoded, next, newest, .. } = step;
        let now = Instant::now();
        {
            let mut offsets = self.offsets.lock().expect("offsets lock");
            for (tp, n) in next {
                self.last_message.insert(tp.clone(), now);
                let e = self.processed.entry(tp.clone()).or_insert(0);
                *e = (*e).max(n);
                let next = *e;
                // The end known (start, then librdkafka's statistics) may be older than what was read.
                let high = offsets.high.get(&tp).copied().unwrap_or(next).max(next);
                offsets.high.insert(tp.clone(), high);
                self.metrics.observe_lag(&tp.0, tp.1, high, next);
                offsets.next.insert(tp, next);
            }
        }
        for (tp, t) in newest {
            let e = self.newest.entry(tp).or_insert(i64::MIN);
            *e = (*e).max(t);
        }
        self.metrics.observe_decoded(&decoded);
        if let Some(a) = &mut self.archive {
            a.dead_letters(&decoded)?;
        }
        let hold = self.hold();
        let (report, dead_letters) = pipeline::step(&mut self.engine, &mut self.totals, decoded, Evaluate::Pipelined { hold }).await?;
        if let Some(a) = &mut self.archive {
            a.step(&report)?;
        }
        self.dead.send(&dead_letters, &self.metrics).await.context("cannot write dead letters")?;
        self.metrics.observe_step(&report, started.elapsed().as_secs_f64());
        self.metrics.observe_state(&self.engine.state_stats());
        // On failure the run stops before the next checkpoint, so `processed` is never made durable early.
        self.delivery.deliver(&report.alerts, &self.metrics, &self.stop).await?;
        Ok(())
    }

    /// Evaluates the pipelined step and delivers its alerts.
    async fn flush(&mut self) -> anyhow::Result<()> {
        let report = self.engine.flush().await?;
        self.finish_step(report).await
    }

    /// Counts, archives and delivers the report of a step evaluated outside [`Loop::step`].
    async fn finish_step(&mut self, report: StepReport) -> anyhow::Result<()> {
        self.totals.add_step(&report);
        self.metrics.observe_report(&report);
        if let Some(a) = &mut self.archive {
            a.step(&report)?;
        }
        self.delivery.deliver(&report.alerts, &self.metrics, &self.stop).await
    }

    /// Whether something was processed since the last checkpoint written.
    fn uncheckpointed(&self) -> bool {
        self.offsets.lock().expect("offsets lock").durable != self.processed
    }

    /// Makes what was processed durable, then commits it: the pipelined step
    /// is evaluated and its alerts delivered first, so the state written never
    /// covers events whose alerts were not handed to every output.
    ///
    /// A checkpoint that cannot be written (a full disk, a read-only folder)
    /// commits nothing: it is logged, counted, `/readyz` answers 503, and the
    /// next interval tries again. Returns whether it was written.
    async fn checkpoint(&mut self, consumer: &rdkafka::consumer::BaseConsumer<Context>, mode: CommitMode) -> anyhow::Result<bool> {
        self.flush().await?;
        let started = Instant::now();
        // The archive first: a checkpoint covers the files flushed before it.
        let archive_seq = match &mut self.archive {
            Some(a) => a.flush().await.context("cannot write the archive; aiwatch stops, and resumes from its last checkpoint")?,
            None => 0,
        };
        if let Err(e) = self.engine.write_checkpoint(&self.checkpoint_path, position_json(&self.processed, archive_seq)) {
            self.metrics.checkpoint_failures.inc();
            self.metrics.checkpoint_failing.store(true, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(error = %e, "checkpoint failed; offsets are not committed, retrying at the next interval");
            return Ok(false);
        }
        self.metrics.checkpoint_failing.store(false, std::sync::atomic::Ordering::Relaxed);
        self.metrics.observe_checkpoint(&self.checkpoint_path, started.elapsed());
        tracing::debug!(seconds = started.elapsed().as_secs_f64(), state_entries = self.engine.state().size(), "checkpoint written");
        self.offsets.lock().expect("offsets lock").durable = self.processed.clone();
        match kafka::commit(consumer, &self.offsets, mode) {
            Ok(n) if n > 0 => self.metrics.commits.inc(),
            Ok(_) => {}
            // The checkpoint holds the truth; a failed commit only means a restart skips by checkpoint instead.
            Err(e) => tracing::warn!(error = %e, "offset commit failed; the checkpoint still covers these events"),
        }
        Ok(true)
    }
}

/// When the next checkpoint is due. A checkpoint writes what changed since
/// the last one, and rewrites at most one shard whole; when even that takes
/// long (a large state on a slow disk), they are spaced so that writing takes
/// at most a tenth of the time (a restart then re-reads more).
struct Schedule {
    every: Duration,
    last: Instant,
    took: Duration,
}

impl Schedule {
    fn due(&self) -> Instant {
        self.last + self.every.max(self.took * 10)
    }
}

/// A decoded batch with what it says about its partitions.
struct DecodedStep {
    decoded: Decoded,
    /// Next offset per partition after this batch.
    next: Vec<(TopicPartition, i64)>,
    /// Newest event time per partition in this batch.
    newest: Vec<(TopicPartition, i64)>,
    /// The batch was full: there is a backlog, and the next one is coming.
    full: bool,
}

/// Decodes raw batches on a thread of its own, so decoding batch N+1 overlaps
/// the engine's step on batch N (as `scan` does). Raw buffers go back to the
/// intake through `pool`, so at most a few batches are ever in flight.
fn spawn_decoder(
    options: DecodeOptions,
    formats: Formats,
    mut raw_rx: mpsc::Receiver<RawBatch>,
    decoded_tx: mpsc::Sender<DecodedStep>,
    pool: mpsc::UnboundedSender<RawBatch>,
    batch_size: usize,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("aiwatch-decoder".into())
        .spawn(move || {
            let mut decoder = Decoder::with_formats(options, formats);
            while let Some(mut raw) = raw_rx.blocking_recv() {
                // The raw batches of one step (more than one when records are
                // large, see `RawBatch::ends_step`) are joined; each goes back
                // to the intake as soon as it is decoded.
                let mut next: Vec<(TopicPartition, i64)> = Vec::new();
                loop {
                    decoder.append(&raw);
                    let mut seen = PerPartition::default();
                    for (_, origin) in raw.iter() {
                        if let Origin::Kafka { topic, partition, offset } = origin {
                            seen.max(topic, *partition, offset + 1);
                        }
                    }
                    seen.max_into(&mut next);
                    let ends_step = raw.ends_step;
                    raw.clear();
                    let _ = pool.send(raw);
                    if ends_step {
                        break;
                    }
                    match raw_rx.blocking_recv() {
                        Some(more) => raw = more,
                        None => break,
                    }
                }
                // A full step: there is a backlog, and the next one is coming.
                let full = decoder.pending_records() >= batch_size;
                let decoded = decoder.finish();
                let c = crate::engine::state::Cols::of(&decoded.events);
                let mut newest = PerPartition::default();
                for i in 0..decoded.events.num_rows() {
                    if c.origin_partition.is_valid(i) {
                        newest.max(c.origin_source.value(i), c.origin_partition.value(i), c.time.value(i));
                    }
                }
                let step = DecodedStep { next, newest: newest.owned(), decoded, full };
                if decoded_tx.blocking_send(step).is_err() {
                    return;
                }
            }
        })
        .expect("spawn decoder thread")
}

/// The largest value seen per partition of a batch. A batch holds few
/// partitions, mostly in runs, so a short list with the last hit first costs
/// less per message than a hash map.
#[derive(Default)]
struct PerPartition<'a> {
    seen: Vec<((&'a str, i32), i64)>,
    last: usize,
}

impl<'a> PerPartition<'a> {
    fn max(&mut self, topic: &'a str, partition: i32, value: i64) {
        let hit = |e: &((&str, i32), i64)| e.0 .1 == partition && e.0 .0 == topic;
        if !self.seen.get(self.last).is_some_and(hit) {
            match self.seen.iter().position(hit) {
                Some(i) => self.last = i,
                None => {
                    self.seen.push(((topic, partition), value));
                    self.last = self.seen.len() - 1;
                }
            }
        }
        let e = &mut self.seen[self.last].1;
        *e = (*e).max(value);
    }

    fn owned(self) -> Vec<(TopicPartition, i64)> {
        self.seen.into_iter().map(|((t, p), v)| ((t.to_string(), p), v)).collect()
    }

    /// Raises `into`'s value of each partition seen here to this one's (the
    /// raw batches of one step, read in turn).
    fn max_into(&self, into: &mut Vec<(TopicPartition, i64)>) {
        for ((t, p), v) in &self.seen {
            match into.iter_mut().find(|((u, q), _)| u == t && q == p) {
                Some((_, m)) => *m = (*m).max(*v),
                None => into.push(((t.to_string(), *p), *v)),
            }
        }
    }
}

/// How far `run --until-end` is: records processed of those between where
/// each partition starts and its end offset at start. A bar on a terminal,
/// else a log line every 10 s.
struct Progress {
    /// (start, end) per partition with records to read.
    span: HashMap<TopicPartition, (i64, i64)>,
    total: u64,
    bar: Option<indicatif::ProgressBar>,
    logged: Instant,
}

impl Progress {
    fn new(start: &HashMap<TopicPartition, i64>, remaining: &HashMap<TopicPartition, i64>) -> Progress {
        let span: HashMap<TopicPartition, (i64, i64)> =
            remaining.iter().map(|(tp, end)| (tp.clone(), (start.get(tp).copied().unwrap_or(0), *end))).collect();
        let total = span.values().map(|(s, e)| (e - s).max(0) as u64).sum();
        let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
            let b = indicatif::ProgressBar::new(total);
            b.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} records ({percent}%) [{elapsed} < {eta}]").expect("valid template"),
            );
            b
        });
        Progress { span, total, bar, logged: Instant::now() }
    }

    fn update(&mut self, processed: &HashMap<TopicPartition, i64>) {
        let done: u64 =
            self.span.iter().map(|(tp, (s, e))| (processed.get(tp).copied().unwrap_or(*s).min(*e) - s).max(0) as u64).sum();
        match &self.bar {
            Some(b) => b.set_position(done),
            None if self.logged.elapsed() >= Duration::from_secs(10) => {
                self.logged = Instant::now();
                let percent = if self.total == 0 { 100.0 } else { done as f64 * 100.0 / self.total as f64 };
                tracing::info!(records = done, of = self.total, percent = format!("{percent:.1}"), "reading to the end offsets");
            }
            None => {}
        }
    }

    fn finish(self) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}

/// Runs until shutdown (or, with `until_end`, until the end offsets present at start).
pub async fn run(config: RunConfig, options: RunOptions) -> anyhow::Result<Totals> {
    let started = Instant::now();
    // First, so a second process on the same state_dir stops before it touches anything.
    let _state_dir = StateDir::open(&config.state_dir)?;
    let metrics = Metrics::new();
    if config.metrics.enabled {
        let bound = crate::telemetry::serve(config.metrics.listen, metrics.clone())
            .await
            .with_context(|| format!("cannot listen on {} for metrics (set [metrics] listen)", config.metrics.listen))?;
        tracing::info!(address = %bound, "metrics and health on http://{bound}/metrics");
    }
    let policy = Arc::new(Policy::load(&config.policy)?);
    let rules = crate::rules::pack(config.rules.as_deref())?;
    let checkpoint_path = config.state_dir.join("checkpoint.aiwatch");
    let engine_config = EngineConfig {
        lateness_seconds: config.lateness_seconds,
        // Beside the checkpoint, which names the store's savepoint it was taken with.
        spill: SpillConfig {
            memory_limit: config.state_memory_limit,
            path: Some(config.state_dir.join(crate::engine::spill::SPILL_FILE)),
            ..Default::default()
        },
        shards: config.state_shards,
        ..Default::default()
    };
    let mut engine = Engine::new(policy, rules, &engine_config).await.context("the rule pack cannot be used")?;
    let (covered, archive_seq) = match engine.restore_checkpoint(&checkpoint_path)? {
        Some(pos) => {
            let covered = parse_position(&pos);
            tracing::info!(path = %checkpoint_path.display(), partitions = covered.0.len(), "restored engine state from checkpoint");
            metrics.observe_restored_checkpoint(&checkpoint_path);
            covered
        }
        None => (HashMap::new(), 0),
    };
    let archive = match &config.archive {
        Some(a) => Some(
            RunArchive::open(&a.location, &config.kafka.group_id, archive_seq)
                .await
                .with_context(|| format!("cannot use the archive {}", a.location))?,
        ),
        None => None,
    };

    let dead_destination = config.dead_letter.as_ref().map(|d| d.destination());
    let needs_producer = matches!(dead_destination, Some(DeadLetterDestination::Kafka { .. }))
        || matches!(config.alert_dead_letter.as_ref().map(|d| d.destination()), Some(DeadLetterDestination::Kafka { .. }))
        || config.outputs.iter().any(|o| matches!(o, OutputConfig::Kafka { .. }));
    let producer: Option<FutureProducer> = if needs_producer {
        let mut c = kafka::client_config(&config.kafka)?;
        c.set("enable.idempotence", "true").set("linger.ms", "5");
        Some(kafka::create(&c, &config.kafka, rdkafka::client::DefaultClientContext).context("cannot create the Kafka producer")?)
    } else {
        None
    };
    let dead = match dead_destination {
        Some(DeadLetterDestination::Kafka { topic }) => DeadLetters::Kafka { producer: producer.clone().expect("built above"), topic },
        Some(DeadLetterDestination::File { path }) => DeadLetters::File(JsonLines::append(Some(&path))?),
        None => DeadLetters::Warn,
    };
    let rules: Vec<crate::rules::Rule> = engine.rules().cloned().collect();
    let delivery = build_delivery(&config, &producer, &rules)?;
    // Every rule's and output's series at 0 from the start, so rate() and absence alerts work.
    metrics.preregister(rules.iter().map(|r| (r.id.as_str(), r.severity.as_str())), delivery.routes.iter().map(|r| r.output.name()));

    let offsets = Arc::new(Mutex::new(Offsets::default()));
    let consumer = kafka::consumer(&config.kafka, Context::new(offsets.clone(), metrics.clone()))
        .context("cannot create the Kafka consumer")?;

    // Where each partition starts and ends now: the ends bound `--until-end`,
    // and both say which partitions have a backlog (the watermark hold).
    let ends = kafka::end_offsets(&consumer, &config.kafka.all_topics())?;
    let parts: Vec<TopicPartition> = ends.keys().cloned().collect();
    let committed = kafka::committed(&consumer, &parts)?;
    let mut start = HashMap::new();
    let mut remaining: HashMap<TopicPartition, i64> = HashMap::new();
    for (tp, (low, high)) in ends {
        let from = covered.get(&tp).copied().unwrap_or(0).max(committed.get(&tp).copied().unwrap_or(0)).max(low);
        if options.until_end && from < high {
            remaining.insert(tp.clone(), high);
        }
        {
            let mut offsets = offsets.lock().expect("offsets lock");
            offsets.high.insert(tp.clone(), high);
            offsets.next.insert(tp.clone(), from);
        }
        // Lag from the start, before the first message (or commit) of a partition.
        metrics.observe_lag(&tp.0, tp.1, high, from);
        start.insert(tp, from);
    }
    if options.until_end {
        tracing::info!(partitions = remaining.len(), "reading up to the end offsets present at start");
    }
    let mut progress = options.until_end.then(|| Progress::new(&start, &remaining));

    let stop = shutdown_signal();
    let mut lp = Loop {
        engine,
        delivery,
        dead,
        metrics: metrics.clone(),
        offsets: offsets.clone(),
        processed: covered.clone(),
        start,
        newest: HashMap::new(),
        last_message: HashMap::new(),
        idle_after: Duration::from_millis(config.kafka.idle_partition_ms),
        checkpoint_path,
        totals: Totals::default(),
        stop: stop.clone(),
        archive,
    };
    metrics.ready.store(true, std::sync::atomic::Ordering::Relaxed);

    let batch_size = config.kafka.batch_size;
    let wait = Duration::from_millis(config.kafka.max_batch_wait_ms);
    let checkpoint_every = Duration::from_secs(config.checkpoint_interval_seconds.max(1));
    let consumer = Arc::new(consumer);

    // intake (its own thread) -> decoder (its own thread) -> engine (below), bounded at each hop.
    let (raw_tx, raw_rx) = mpsc::channel::<RawBatch>(1);
    let (decoded_tx, mut decoded_rx) = mpsc::channel::<DecodedStep>(1);
    let (pool_tx, pool_rx) = mpsc::unbounded_channel::<RawBatch>();
    for _ in 0..3 {
        let _ = pool_tx.send(RawBatch::with_capacity(batch_size, batch_size * 512));
    }
    let decoder = spawn_decoder(config.decode_options(), config.formats(), raw_rx, decoded_tx, pool_tx, batch_size);
    let intake = kafka::spawn_intake(
        consumer.clone(),
        Intake::new(&covered, &remaining, offsets.clone()),
        IntakeLoop { batch_size, wait, until_end: options.until_end, stop: stop.clone(), raw_tx, pool: pool_rx },
    );

    let mut schedule = Schedule { every: checkpoint_every, last: Instant::now(), took: Duration::ZERO };
    let mut backlog = false;
    loop {
        // Under load (the last batch was full) the next batch is on its way and
        // the engine stays pipelined: the state of one step overlaps the rules
        // of the one before, as in `scan`. When caught up, or when no batch
        // comes within the batch wait, the last step is evaluated and its
        // alerts delivered now rather than when the next batch comes. A quiet
        // stream still checkpoints (and commits) what it processed once the
        // interval passes, and retries a checkpoint that failed.
        let ready = match decoded_rx.try_recv() {
            Err(mpsc::error::TryRecvError::Empty) if backlog => match tokio::time::timeout(wait, decoded_rx.recv()).await {
                Ok(Some(step)) => Ok(step),
                Ok(None) => Err(mpsc::error::TryRecvError::Disconnected),
                Err(_) => Err(mpsc::error::TryRecvError::Empty),
            },
            other => other,
        };
        let step = match ready {
            Ok(step) => Some(step),
            Err(mpsc::error::TryRecvError::Empty) => {
                lp.flush().await?;
                tokio::select! {
                    step = decoded_rx.recv() => match step {
                        Some(step) => Some(step),
                        None => break,
                    },
                    _ = tokio::time::sleep_until(schedule.due().into()) => None,
                }
            }
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        };
        if let Some(step) = step {
            backlog = step.full;
            lp.step(step).await?;
            if let Some(p) = &mut progress {
                p.update(&lp.processed);
            }
        }
        if Instant::now() >= schedule.due() {
            if lp.uncheckpointed() {
                let t = Instant::now();
                lp.checkpoint(&consumer, CommitMode::Async).await?;
                schedule.took = t.elapsed();
            } else {
                // Nothing new since the last checkpoint: the durable state is current.
                lp.metrics.checkpoint_up_to_date();
            }
            schedule.last = Instant::now();
        }
    }
    let first_message = intake.join().map_err(|_| anyhow::anyhow!("the Kafka intake thread panicked"))?;
    decoder.join().map_err(|_| anyhow::anyhow!("the decoder thread panicked"))?;
    if let Some(p) = progress {
        p.finish();
    }

    if options.until_end {
        let report = lp.engine.finish().await?;
        lp.totals.add_step(&report);
        lp.metrics.observe_step(&report, 0.0);
        if let Some(a) = &mut lp.archive {
            a.step(&report)?;
        }
        lp.delivery.deliver(&report.alerts, &lp.metrics, &lp.stop).await?;
    }
    lp.flush().await?;
    lp.totals.processing = first_message.map_or(Duration::ZERO, |t| t.elapsed());
    if !lp.checkpoint(&consumer, CommitMode::Sync).await? {
        anyhow::bail!("the last checkpoint could not be written (see the error above); offsets since the last good one stay uncommitted and are read again at the next start");
    }
    if let Some(p) = &producer {
        use rdkafka::producer::Producer;
        p.flush(Duration::from_secs(30)).context("cannot flush the Kafka producer")?;
    }
    lp.totals.elapsed = started.elapsed();
    Ok(lp.totals)
}
