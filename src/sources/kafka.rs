//! Kafka intake with at-least-once offsets: the consumer, and the task that
//! takes its messages into raw batches ([`intake_loop`]). Auto-commit and auto offset
//! store are off; the stream loop commits only offsets whose events are
//! durable in a checkpoint and whose alerts every output has taken. On a
//! revoke the durable offsets of the revoked partitions are committed
//! synchronously, and those partitions leave the commit set and forget their
//! durable offset.
//!
//! Commits never go backwards: a partition assigned (again) is committed only
//! past the first offset the consumer delivered from it since the assignment
//! (its floor, where the group's committed offset had it start). While another
//! member held it, that member may have committed further than this process
//! ever read; an offset from before the revoke, or from a batch still in
//! flight, is at or below that floor and is never committed.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::message::Message;
use tokio::sync::{mpsc, watch};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, FromClientConfigAndContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaConfRes;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::config::KafkaConfig;
use crate::event::{Origin, RawBatch};
use crate::telemetry::Metrics;

pub type TopicPartition = (String, i32);

/// Offsets shared between the stream loop and the librdkafka callbacks.
#[derive(Default)]
pub struct Offsets {
    /// Partitions this consumer holds now.
    pub assigned: HashSet<TopicPartition>,
    /// Next offset to read per partition, for events already durable and delivered.
    pub durable: HashMap<TopicPartition, i64>,
    /// The latest known end (high watermark) of each partition: fetched at
    /// start, refreshed by librdkafka statistics.
    pub high: HashMap<TopicPartition, i64>,
    /// Partitions the consumer read to their end (partition EOF) with no
    /// message since: the next offset after the last message taken before it.
    pub at_end: HashMap<TopicPartition, i64>,
    /// Per assigned partition, the offset of the first message delivered since
    /// it was assigned: only offsets past it are committed. Absent until then.
    pub floor: HashMap<TopicPartition, i64>,
    /// Partitions revoked since the intake last looked (see [`Context::revokes`]).
    pub revoked: Vec<TopicPartition>,
    /// Next offset the engine will process per partition (where it starts,
    /// then past what it processed): the consumer lag is `high` minus this.
    pub next: HashMap<TopicPartition, i64>,
}

impl Offsets {
    /// The offset to commit for `tp`, if any: assigned, and past its floor.
    fn committable(&self, tp: &TopicPartition) -> Option<i64> {
        let next = *self.durable.get(tp)?;
        (self.assigned.contains(tp) && self.floor.get(tp).is_some_and(|floor| next > *floor)).then_some(next)
    }
}

/// librdkafka callbacks: rebalances and statistics (consumer lag).
pub struct Context {
    pub offsets: Arc<Mutex<Offsets>>,
    pub metrics: Arc<Metrics>,
    /// Counts revokes, so the intake can tell cheaply (once per message) that
    /// it must forget what it took from [`Offsets::revoked`] partitions.
    pub revokes: AtomicU64,
}

impl Context {
    pub fn new(offsets: Arc<Mutex<Offsets>>, metrics: Arc<Metrics>) -> Context {
        Context { offsets, metrics, revokes: AtomicU64::new(0) }
    }
}

impl ClientContext for Context {
    /// As librdkafka's default, except that partition EOF (asked for, see
    /// [`consumer`]) is no error.
    fn error(&self, error: KafkaError, reason: &str) {
        match error {
            KafkaError::PartitionEOF(_) | KafkaError::Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF) => {
                tracing::trace!(reason, "partition EOF")
            }
            _ => tracing::error!("librdkafka: {error}: {reason}"),
        }
    }

    fn stats(&self, statistics: Statistics) {
        let mut offsets = self.offsets.lock().expect("offsets lock");
        for (name, topic) in &statistics.topics {
            for (id, p) in &topic.partitions {
                if *id < 0 {
                    continue; // librdkafka's internal "unassigned" partition
                }
                let tp = (name.clone(), *id);
                if !offsets.assigned.is_empty() && !offsets.assigned.contains(&tp) {
                    self.metrics.forget_partition(name, *id);
                    continue;
                }
                if p.hi_offset >= 0 {
                    let high = offsets.high.entry(tp.clone()).or_insert(0);
                    *high = (*high).max(p.hi_offset);
                    let high = *high;
                    // Lag from what the engine processed, not from the last commit
                    // (which waits for outputs and checkpoints).
                    if let Some(next) = offsets.next.get(&tp) {
                        self.metrics.observe_lag(name, *id, high, *next);
                    }
                }
            }
        }
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut offsets = self.offsets.lock().expect("offsets lock");
            let mut commit = TopicPartitionList::new();
            for e in tpl.elements() {
                let tp = (e.topic().to_string(), e.partition());
                if let Some(next) = offsets.committable(&tp) {
                    let _ = commit.add_partition_offset(&tp.0, tp.1, Offset::Offset(next));
                }
                // Another member may commit further while it holds the partition: forget ours.
                offsets.assigned.remove(&tp);
                offsets.durable.remove(&tp);
                offsets.floor.remove(&tp);
                offsets.at_end.remove(&tp);
                offsets.next.remove(&tp);
                self.metrics.forget_partition(&tp.0, tp.1);
                offsets.revoked.push(tp);
            }
            self.revokes.fetch_add(1, Ordering::Release);
            if commit.count() > 0 {
                match consumer.commit(&commit, CommitMode::Sync) {
                    Ok(()) => tracing::info!(partitions = commit.count(), "committed durable offsets of revoked partitions"),
                    Err(e) => tracing::warn!(error = %e, "could not commit offsets on revoke; the next owner re-reads from the last commit"),
                }
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let mut offsets = self.offsets.lock().expect("offsets lock");
            for e in tpl.elements() {
                offsets.assigned.insert((e.topic().to_string(), e.partition()));
            }
            tracing::info!(partitions = tpl.count(), "partitions assigned");
        }
    }
}

/// librdkafka settings shared by consumer and producer: bootstrap, user options and resolved secrets.
///
/// Each secret option is tried alone first: librdkafka's own error for a
/// misspelt key or a refused value quotes the value, so ours names the key only.
pub fn client_config(k: &KafkaConfig) -> anyhow::Result<ClientConfig> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.bootstrap_servers);
    for (key, value) in &k.options {
        c.set(key, value);
    }
    for (key, secret) in &k.secret_options {
        let value = secret.resolve(&format!("kafka.secret_options.{key}"))?;
        if let Err(e) = ClientConfig::new().set(key, &value).create_native_config() {
            let why = match e {
                KafkaError::ClientConfig(RDKafkaConfRes::RD_KAFKA_CONF_UNKNOWN, ..) => "librdkafka has no option of that name; check its spelling",
                _ => "librdkafka refused its value (not shown)",
            };
            anyhow::bail!("kafka.secret_options: `{key}`: {why}");
        }
        c.set(key, value);
    }
    Ok(c)
}

/// Creates a consumer or producer from `c`. librdkafka's errors can quote
/// option values, so the error is rebuilt as plain text with the value of
/// every secret option replaced, and keeps no source that could print it.
pub fn create<T, C>(c: &ClientConfig, k: &KafkaConfig, context: C) -> anyhow::Result<T>
where
    C: ClientContext,
    T: FromClientConfigAndContext<C>,
{
    c.create_with_context(context).map_err(|e| {
        let message = match &e {
            KafkaError::ClientConfig(_, _, key, _) if k.secret_options.contains_key(key) => {
                format!("librdkafka refused secret option `{key}` (its value is not shown)")
            }
            _ => redact(&e.to_string(), k.secret_options.keys().filter_map(|key| c.get(key))),
        };
        anyhow::anyhow!(message)
    })
}

/// `text` with each non-empty secret replaced by `<redacted>`.
fn redact<'a>(text: &str, secrets: impl Iterator<Item = &'a str>) -> String {
    let mut out = text.to_string();
    for s in secrets.filter(|s| !s.is_empty()) {
        out = out.replace(s, "<redacted>");
    }
    out
}

/// A subscribed consumer with at-least-once settings.
pub fn consumer(k: &KafkaConfig, context: Context) -> anyhow::Result<BaseConsumer<Context>> {
    let mut c = client_config(k)?;
    c.set("group.id", &k.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("statistics.interval.ms", "5000")
        // The end of a partition is known from EOF and the position, not the high
        // watermark (a transactional partition ends with a marker never handed over).
        .set("enable.partition.eof", "true");
    // librdkafka pauses a partition's fetches for `fetch.queue.backoff.ms`
    // (1 s by default) whenever its local queue is full; a consumer that does
    // real work per message then idles most of each second. A short pause
    // keeps the queue fed (measured: 185,000 -> see docs/benchmarks.md).
    if !k.options.contains_key("fetch.queue.backoff.ms") {
        c.set("fetch.queue.backoff.ms", "20");
    }
    let consumer: BaseConsumer<Context> = create(&c, k, context)?;
    let all = k.all_topics();
    let topics: Vec<&str> = all.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    Ok(consumer)
}

/// The end offset of every partition of `topics` now: where `--until-end` stops.
pub fn end_offsets(consumer: &BaseConsumer<Context>, topics: &[String]) -> anyhow::Result<HashMap<TopicPartition, (i64, i64)>> {
    let mut out = HashMap::new();
    for t in topics {
        let md = consumer.fetch_metadata(Some(t), Duration::from_secs(30))?;
        let topic = md.topics().first().ok_or_else(|| anyhow::anyhow!("topic {t} not found"))?;
        if let Some(e) = topic.error() {
            anyhow::bail!("topic {t}: {e:?}; create it first (scripts/kafka.sh topics --create --topic {t})");
        }
        for p in topic.partitions() {
            let (low, high) = consumer.fetch_watermarks(t, p.id(), Duration::from_secs(30))?;
            out.insert((t.clone(), p.id()), (low, high));
        }
    }
    Ok(out)
}

/// The group's committed offsets for the given partitions (absent when none).
pub fn committed(consumer: &BaseConsumer<Context>, parts: &[TopicPartition]) -> anyhow::Result<HashMap<TopicPartition, i64>> {
    let mut tpl = TopicPartitionList::new();
    for (t, p) in parts {
        tpl.add_partition(t, *p);
    }
    // Right after start the group coordinator may not be known yet: retry briefly.
    let mut attempt = 0;
    let got = loop {
        match consumer.committed_offsets(tpl.clone(), Duration::from_secs(10)) {
            Ok(got) => break got,
            Err(e) if attempt < 20 => {
                tracing::debug!(error = %e, "committed offsets not available yet; retrying");
                attempt += 1;
                std::thread::sleep(Duration::from_millis(250 * attempt.min(8)));
            }
            Err(e) => return Err(anyhow::Error::new(e).context("cannot read the group's committed offsets")),
        }
    };
    Ok(got
        .elements()
        .into_iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some(((e.topic().to_string(), e.partition()), o)),
            _ => None,
        })
        .collect())
}

/// Commits the durable offsets of the partitions still assigned, each past its floor.
pub fn commit(consumer: &BaseConsumer<Context>, offsets: &Mutex<Offsets>, mode: CommitMode) -> anyhow::Result<usize> {
    let o = offsets.lock().expect("offsets lock");
    let mut tpl = TopicPartitionList::new();
    for tp in o.durable.keys() {
        if let Some(next) = o.committable(tp) {
            tpl.add_partition_offset(&tp.0, tp.1, Offset::Offset(next))?;
        }
    }
    drop(o);
    if tpl.count() == 0 {
        return Ok(0);
    }
    consumer.commit(&tpl, mode)?;
    Ok(tpl.count())
}

/// Maps looked up for every message: a fast keyed hash (topic names are not secret).
type Fast<K, V> = crate::engine::state::HashMap<K, V>;

/// Turns consumed messages into raw records, skipping what a restored
/// checkpoint already covers (and what this process took before a partition
/// was revoked and assigned back), and notes where each partition ends.
/// Lookups go by `(&str, partition)`, so a message costs no allocation.
///
/// The end of a partition comes from partition EOF and the consumer's
/// position, not from the high watermark: the last offset of a partition
/// written by a transactional producer is a commit marker, which the consumer
/// skips and is never handed, so the last message taken can end one short of
/// the high watermark for ever.
pub(crate) struct Intake {
    topics: Fast<String, Arc<str>>,
    /// Per partition, the offset below which messages are already in the
    /// engine: the restored checkpoint's, then raised to what was taken when a
    /// partition is revoked (see [`Intake::forget_revoked`]).
    covered: Fast<String, Fast<i32, i64>>,
    /// `--until-end`: partitions not read to their end offset at start yet.
    remaining: Fast<String, Fast<i32, i64>>,
    /// Next offset after the last message taken, per partition.
    taken: Fast<String, Fast<i32, i64>>,
    /// Partitions at their end (EOF) with no message since; mirrored in [`Offsets::at_end`].
    at_end: Fast<String, HashSet<i32>>,
    offsets: Arc<Mutex<Offsets>>,
    /// [`Context::revokes`] when the intake last forgot revoked partitions.
    revokes: u64,
    /// The partition of the last message taken, with what [`Intake::take`]
    /// looks up for it: messages come in long runs per partition, so most
    /// take no map lookup. Its `next` is written back to `taken` before
    /// anything else reads or changes the maps ([`Intake::cool`]).
    hot: Option<Hot>,
}

/// See [`Intake::hot`].
struct Hot {
    topic: Arc<str>,
    partition: i32,
    /// Next offset after the last message taken (`taken`'s entry).
    next: i64,
    /// Offsets below this are in the engine already (`covered`'s entry, or `i64::MIN`).
    covered: i64,
    /// `--until-end`: the end offset still to reach (`remaining`'s entry).
    high: Option<i64>,
}

impl Intake {
    pub(crate) fn new(covered: &HashMap<TopicPartition, i64>, remaining: &HashMap<TopicPartition, i64>, offsets: Arc<Mutex<Offsets>>) -> Intake {
        let nest = |m: &HashMap<TopicPartition, i64>| {
            let mut out: Fast<String, Fast<i32, i64>> = Fast::default();
            for ((t, p), o) in m {
                out.entry(t.clone()).or_default().insert(*p, *o);
            }
            out
        };
        Intake {
            topics: Fast::default(),
            covered: nest(covered),
            remaining: nest(remaining),
            taken: Fast::default(),
            at_end: Fast::default(),
            offsets,
            revokes: 0,
            hot: None,
        }
    }

    /// Writes the hot partition's progress back to `taken` and forgets it.
    fn cool(&mut self) {
        if let Some(h) = self.hot.take() {
            if let Some(next) = self.taken.get_mut(&*h.topic).and_then(|parts| parts.get_mut(&h.partition)) {
                *next = h.next;
            }
        }
    }

    fn take(&mut self, consumer: &BaseConsumer<Context>, msg: rdkafka::error::KafkaResult<rdkafka::message::BorrowedMessage<'_>>, raw: &mut RawBatch) {
        let msg = match msg {
            Ok(m) => m,
            Err(rdkafka::error::KafkaError::PartitionEOF(partition)) => return self.reached_end(consumer, partition),
            Err(e) => {
                tracing::warn!(error = %e, "Kafka consumer error; continuing");
                return;
            }
        };
        let (name, partition, offset) = (msg.topic(), msg.partition(), msg.offset());
        let revokes = rdkafka::consumer::Consumer::context(consumer).revokes.load(std::sync::atomic::Ordering::Acquire);
        if revokes != self.revokes {
            self.forget_revoked(revokes);
        }
        let hot = match &mut self.hot {
            Some(h) if h.partition == partition && *h.topic == *name => h,
            _ => self.heat(name, partition, offset),
        };
        hot.next = offset + 1;
        if offset < hot.covered {
            return; // already in the restored state
        }
        raw.push(msg.payload().unwrap_or_default(), Origin::Kafka { topic: hot.topic.clone(), partition, offset });
        if hot.high.is_some_and(|high| offset + 1 >= high) {
            self.cool();
            self.finished(name, partition);
        }
    }

    /// Makes the partition of a message at `offset` the hot one, after the
    /// bookkeeping of a partition's first message since it was assigned, or
    /// since it was at its end.
    fn heat(&mut self, name: &str, partition: i32, offset: i64) -> &mut Hot {
        self.cool();
        if !self.at_end.is_empty() && self.at_end.get(name).is_some_and(|parts| parts.contains(&partition)) {
            self.at_end.get_mut(name).expect("checked").remove(&partition);
            self.offsets.lock().expect("offsets lock").at_end.remove(&(name.to_string(), partition));
        }
        let next = match self.taken.get(name).and_then(|parts| parts.get(&partition)) {
            Some(next) => *next,
            None => {
                // The first message since the partition was assigned: where the group had it start.
                self.taken.entry(name.to_string()).or_default().insert(partition, offset);
                self.offsets.lock().expect("offsets lock").floor.insert((name.to_string(), partition), offset);
                offset
            }
        };
        let topic = match self.topics.get(name) {
            Some(t) => t.clone(),
            None => self.topics.entry(name.to_string()).or_insert_with(|| Arc::from(name)).clone(),
        };
        self.hot.insert(Hot {
            topic,
            partition,
            next,
            covered: self.covered.get(name).and_then(|m| m.get(&partition)).copied().unwrap_or(i64::MIN),
            high: self.remaining.get(name).and_then(|parts| parts.get(&partition)).copied(),
        })
    }

    /// Partition EOF for `partition` of some topic (librdkafka does not say
    /// which): every assigned partition of that number whose position has
    /// reached its latest known end is at its end. For `--until-end` it is
    /// read; for the watermark hold it has no backlog beyond what was taken.
    fn reached_end(&mut self, consumer: &BaseConsumer<Context>, partition: i32) {
        use rdkafka::consumer::Consumer as _;
        self.cool();
        let positions = match consumer.position() {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(error = %e, "no consumer position at partition EOF");
                return;
            }
        };
        let shared = self.offsets.clone();
        let mut offsets = shared.lock().expect("offsets lock");
        for e in positions.elements().iter().filter(|e| e.partition() == partition) {
            let rdkafka::Offset::Offset(position) = e.offset() else { continue };
            let tp = (e.topic().to_string(), partition);
            if offsets.high.get(&tp).is_some_and(|high| position < *high) {
                continue; // another topic's partition of that number, with more to read
            }
            let next = self.taken.get(e.topic()).and_then(|parts| parts.get(&partition)).copied().unwrap_or(i64::MIN);
            offsets.at_end.insert(tp, next);
            self.at_end.entry(e.topic().to_string()).or_default().insert(partition);
            if self.remaining.get(e.topic()).and_then(|parts| parts.get(&partition)).is_some_and(|high| position >= *high) {
                self.finished(e.topic(), partition);
            }
        }
    }

    /// Forgets what was taken from partitions revoked since the last look, so
    /// the first message after they are assigned again sets their floor.
    ///
    /// What was taken stays covered, though: a partition assigned back
    /// restarts at the group's committed offset, which can be well behind what
    /// this process already took. That is what happens when the broker is down
    /// for longer than the session timeout: librdkafka revokes everything, the
    /// commit on revoke fails, and after the broker is back every partition is
    /// read again from the last commit that went through. Those messages are
    /// in the engine already (a taken batch is always processed, revoke or
    /// not), so they are skipped as a restored checkpoint's are, instead of
    /// going through the engine again as duplicates, late events and a second
    /// copy of each dead letter.
    fn forget_revoked(&mut self, revokes: u64) {
        self.cool();
        self.revokes = revokes;
        let revoked = std::mem::take(&mut self.offsets.lock().expect("offsets lock").revoked);
        for (t, p) in revoked {
            if let Some(next) = self.taken.get_mut(&t).and_then(|parts| parts.remove(&p)) {
                let covered = self.covered.entry(t.clone()).or_default().entry(p).or_insert(next);
                *covered = (*covered).max(next);
                tracing::debug!(topic = %t, partition = p, next, "partition revoked; if assigned back, offsets below `next` are already processed and skipped");
            }
            if let Some(parts) = self.at_end.get_mut(&t) {
                parts.remove(&p);
            }
        }
    }

    fn finished(&mut self, topic: &str, partition: i32) {
        if let Some(parts) = self.remaining.get_mut(topic) {
            parts.remove(&partition);
            if parts.is_empty() {
                self.remaining.remove(topic);
            }
        }
    }
}

/// Settings of the intake task.
pub(crate) struct IntakeLoop {
    pub batch_size: usize,
    pub wait: Duration,
    pub until_end: bool,
    pub stop: watch::Receiver<bool>,
    pub raw_tx: mpsc::Sender<RawBatch>,
    pub pool: mpsc::UnboundedReceiver<RawBatch>,
}

/// Runs [`intake_loop`] on a thread of its own, so consuming goes on while the
/// rules of a step keep the runtime's workers busy, as `scan`'s reader does.
pub(crate) fn spawn_intake(consumer: Arc<BaseConsumer<Context>>, intake: Intake, l: IntakeLoop) -> std::thread::JoinHandle<Option<Instant>> {
    std::thread::Builder::new()
        .name("aiwatch-intake".into())
        .spawn(move || intake_loop(&consumer, intake, l))
        .expect("spawn the Kafka intake thread")
}

/// Takes messages into raw batches and hands a batch on when it is full or
/// the batch wait passes; ends on shutdown or, with `--until-end`, at the end
/// offsets. Dropping its sender is what ends the decoder and the engine loop.
///
/// A plain loop of blocking polls: what librdkafka already holds is taken
/// with polls that do not wait, so a message costs one call into librdkafka
/// and no future, waker or timer (the stream consumer's cost a message was
/// about half the intake's). The polls also serve librdkafka's callbacks
/// (rebalances, statistics), as the consumer's only poller must.
///
/// A step is `batch_size` records, or what came within the batch wait. Its
/// records go out in raw batches of at most [`RawBatch::MAX_BYTES`]; all but
/// the last have [`RawBatch::ends_step`] cleared, and the decoder joins them.
///
/// Returns when the first message was taken (`run`'s steady rate is timed from it).
fn intake_loop(consumer: &BaseConsumer<Context>, mut intake: Intake, mut l: IntakeLoop) -> Option<Instant> {
    /// The longest one poll blocks, so a shutdown is seen promptly on a quiet topic.
    const TICK: Duration = Duration::from_millis(100);
    let Some(mut raw) = l.pool.blocking_recv() else { return None };
    let mut first: Option<Instant> = None;
    let mut flush_at = Instant::now() + l.wait;
    // Records of this step already handed on, in raw batches full by their bytes.
    let mut step_records = 0;
    let done = |intake: &Intake| l.until_end && intake.remaining.is_empty();
    while !done(&intake) && !l.stop.has_changed().unwrap_or(true) {
        let wanted = l.batch_size - step_records;
        if let Some(msg) = consumer.poll(flush_at.saturating_duration_since(Instant::now()).min(TICK)) {
            let polled = first.is_none().then(Instant::now);
            intake.take(consumer, msg, &mut raw);
            while !raw.is_full(wanted) && !done(&intake) {
                match consumer.poll(Duration::ZERO) {
                    Some(msg) => intake.take(consumer, msg, &mut raw),
                    None => break,
                }
            }
            if first.is_none() && !raw.is_empty() {
                first = polled;
            }
        }
        let step_full = raw.len() >= wanted;
        let waited = Instant::now() >= flush_at;
        if step_full || waited || raw.is_full_by_bytes() {
            raw.ends_step = step_full || waited;
            // An empty batch still ends a step that earlier batches began.
            if !raw.is_empty() || (raw.ends_step && step_records > 0) {
                step_records = if raw.ends_step { 0 } else { step_records + raw.len() };
                if l.raw_tx.blocking_send(raw).is_err() {
                    return first;
                }
                let Some(next) = l.pool.blocking_recv() else { return first };
                raw = next;
            }
            if step_records == 0 {
                flush_at = Instant::now() + l.wait;
            }
        }
    }
    if !raw.is_empty() || step_records > 0 {
        raw.ends_step = true;
        let _ = l.raw_tx.blocking_send(raw);
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecretRef;

    fn config_with_secret(key: &str, file: &std::path::Path) -> KafkaConfig {
        let mut k: KafkaConfig = toml::from_str("bootstrap_servers = \"127.0.0.1:1\"\ntopics = [\"t\"]\n").unwrap();
        k.secret_options.insert(key.into(), SecretRef { env: None, file: Some(file.to_path_buf()) });
        k
    }

    #[test]
    fn only_assigned_partitions_past_their_floor_are_committed() {
        let tp = ("t".to_string(), 0);
        let mut o = Offsets::default();
        o.durable.insert(tp.clone(), 10);
        assert_eq!(o.committable(&tp), None, "not assigned");
        o.assigned.insert(tp.clone());
        assert_eq!(o.committable(&tp), None, "assigned, but nothing delivered since: the group's offset may be ahead");
        o.floor.insert(tp.clone(), 25);
        assert_eq!(o.committable(&tp), None, "an offset from before the assignment, below where the group had it start");
        o.durable.insert(tp.clone(), 26);
        assert_eq!(o.committable(&tp), Some(26));
    }

    #[test]
    fn a_misspelt_secret_option_is_named_without_its_value() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("s");
        std::fs::write(&secret, "CANARY-hunter2\n").unwrap();
        let e = client_config(&config_with_secret("sasl.pasword", &secret)).unwrap_err();
        let text = format!("{e:#} {e:?}");
        assert!(text.contains("`sasl.pasword`") && text.contains("spelling"), "{text}");
        assert!(!text.contains("CANARY"), "{text}");
        let e = client_config(&config_with_secret("session.timeout.ms", &secret)).unwrap_err();
        let text = format!("{e:#} {e:?}");
        assert!(text.contains("`session.timeout.ms`") && !text.contains("CANARY"), "{text}");
        // A correct key passes.
        client_config(&config_with_secret("sasl.password", &secret)).unwrap();
    }

    #[test]
    fn client_creation_errors_never_carry_secret_values() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("s");
        std::fs::write(&secret, "CANARY-hunter2").unwrap();
        let k = config_with_secret("sasl.password", &secret);
        let mut c = client_config(&k).unwrap();
        // An option that only fails when the client is made, quoting a value.
        c.set("compression.codec", "CANARY-hunter2");
        let e = create::<rdkafka::producer::FutureProducer, _>(&c, &k, rdkafka::client::DefaultClientContext).err().expect("refused");
        let text = format!("{e:#} {e:?}");
        assert!(!text.contains("CANARY"), "{text}");
        assert_eq!(e.chain().count(), 1, "no source that could print the value");
        assert_eq!(redact("a s3cr3t b", ["s3cr3t", ""].into_iter()), "a <redacted> b");
    }
}
