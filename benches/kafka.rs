//! `run --until-end` throughput beside the raw consume rate of the same topic,
//! measured in the same run against a real broker.
//!
//! ```sh
//! scripts/kafka.sh start
//! AIWATCH_KAFKA_BOOTSTRAP=127.0.0.1:19092 cargo bench --bench kafka [-- EVENTS]
//! ```
//!
//! Fills a fresh 4-partition topic with about one million generated events,
//! then (1) drains it with a bare rdkafka consumer that only counts messages
//! and bytes, (2) drains it with a consumer that parses each message into a
//! typed struct with serde_json (what a hand-written consumer does before any
//! logic), (3) runs the whole `aiwatch run --until-end` path (consume,
//! decode, state, 13 rules, alerts to a file, checkpoint, commit), and (4)
//! scans the same events from a file (the scan benchmark's stream, which is
//! what the topic holds). `run` and `scan` each run in a fresh child process
//! of this benchmark, one after the other, as a user runs them. Figures go to
//! docs/benchmarks.md. No assertions.
//!
//! `AIWATCH_BENCH_TOPIC=NAME` fills the topic NAME only if it does not exist
//! yet and keeps it afterwards, so repeated runs (and profiles) skip the fill;
//! `AIWATCH_BENCH_ONLY_RUN=1` measures `run` alone, `AIWATCH_BENCH_ONLY_SCAN=1`
//! `scan` alone (for profiles).

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use aiwatch::config::RunConfig;
use aiwatch::generate::DEMO_POLICY;
use aiwatch::stream::{run, RunOptions};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

#[path = "common/typed.rs"]
mod typed;
#[path = "common/stream.rs"]
mod stream;
use typed::TypedEvent;

const PARTITIONS: i32 = 4;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc; // as the binary

fn main() -> anyhow::Result<()> {
    aiwatch::allocator::configure(); // as the binary
    let bootstrap = std::env::var("AIWATCH_KAFKA_BOOTSTRAP")
        .map_err(|_| anyhow::anyhow!("set AIWATCH_KAFKA_BOOTSTRAP (start a broker with scripts/kafka.sh start)"))?;
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let events: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let kept_topic = std::env::var("AIWATCH_BENCH_TOPIC").ok();
    let topic = kept_topic.clone().unwrap_or_else(|| format!("aiwatch-bench-{}", std::process::id()));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;

    let admin: AdminClient<_> = ClientConfig::new().set("bootstrap.servers", &bootstrap).create()?;
    let created = runtime.block_on(admin.create_topics(
        &[NewTopic::new(&topic, PARTITIONS, TopicReplication::Fixed(1))],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
    ))?;
    if kept_topic.is_none() || created.iter().all(|r| r.is_ok()) {
        fill(&bootstrap, &topic, events)?;
    } else {
        eprintln!("reusing topic {topic}");
    }
    let run_id = std::process::id();
    // The child processes that measure `run` and `scan` (see `measure`).
    if std::env::var_os("AIWATCH_BENCH_ONLY_RUN").is_some() {
        let dir = tempfile::tempdir()?;
        let cpu = cpu_seconds();
        let (totals, secs) = run_once(&runtime, dir.path(), &bootstrap, &topic, run_id)?;
        let m = Measured::of(&totals, secs, totals.processing.as_secs_f64(), cpu_seconds() - cpu);
        println!(
            "aiwatch run --until-end: {} messages in {secs:.2} s: {:.0} msg/s; steady {:.0} msg/s; CPU {:.2} s, {:.2} µs per message",
            m.records,
            m.records as f64 / secs,
            m.steady_rate(),
            m.cpu,
            m.cpu_per_record()
        );
        println!("measured {}", serde_json::to_string(&m)?);
        return Ok(());
    }
    if std::env::var_os("AIWATCH_BENCH_ONLY_SCAN").is_some() {
        let dir = tempfile::tempdir()?;
        let (scanned, cpu) = scan_once(&runtime, dir.path(), events)?;
        let secs = scanned.elapsed.as_secs_f64();
        let m = Measured::of(&scanned, secs, secs, cpu);
        println!(
            "aiwatch scan: {} lines in {secs:.2} s: {:.0} events/s; CPU {cpu:.2} s, {:.2} µs per event",
            m.records,
            m.steady_rate(),
            m.cpu_per_record()
        );
        println!("measured {}", serde_json::to_string(&m)?);
        return Ok(());
    }
    // (1) The raw consume rate: count messages until every partition's end.
    let (n, raw_secs, bytes) = raw_consume(&bootstrap, &topic, run_id)?;
    let raw_rate = n as f64 / raw_secs;
    println!("raw consume: {n} messages, {:.0} MB in {raw_secs:.2} s: {raw_rate:.0} msg/s", bytes as f64 / 1e6);
    // (2) A consumer that parses each message into a typed struct (serde_json).
    let (n, typed_secs, _) = typed_consume(&bootstrap, &topic, run_id)?;
    let typed_rate = n as f64 / typed_secs;
    println!("typed consume (serde_json struct): {n} messages in {typed_secs:.2} s: {typed_rate:.0} msg/s");

    // (3) aiwatch run --until-end over the same topic.
    let run = measure("AIWATCH_BENCH_ONLY_RUN", &topic)?;
    let rate = run.records as f64 / run.wall;
    println!(
        "aiwatch run --until-end: {} messages, {} events, {} alerts in {:.2} s: {rate:.0} msg/s ({:.2} x the typed consumer's rate, {:.0} % of raw)",
        run.records,
        run.events,
        run.alerts,
        run.wall,
        rate / typed_rate,
        100.0 * rate / raw_rate
    );
    // Without start-up (planning the rules, joining the group) and the final checkpoint.
    let steady = run.steady_rate();
    println!(
        "aiwatch run, steady rate (first message to last step, {:.2} s): {steady:.0} msg/s ({:.2} x the typed consumer's rate)",
        run.steady,
        steady / typed_rate
    );

    // (4) aiwatch scan of the same events, from a file.
    let scan = measure("AIWATCH_BENCH_ONLY_SCAN", &topic)?;
    let scan_rate = scan.steady_rate();
    println!(
        "aiwatch scan of the same events: {} lines, {} alerts in {:.2} s: {scan_rate:.0} events/s; run / scan = {:.2} (steady: {:.2})",
        scan.records,
        scan.alerts,
        scan.wall,
        rate / scan_rate,
        steady / scan_rate
    );
    // CPU time, less sensitive than rates to other load on the machine (the broker's own is not counted).
    println!(
        "CPU (each process): run {:.2} s, scan {:.2} s: {:.2} µs per event in run, {:.2} in scan ({:.2} x)",
        run.cpu,
        scan.cpu,
        run.cpu_per_record(),
        scan.cpu_per_record(),
        run.cpu_per_record() / scan.cpu_per_record()
    );
    if kept_topic.is_none() {
        let _ = runtime.block_on(admin.delete_topics(&[&topic], &AdminOptions::new()));
    }
    Ok(())
}

/// What a child process measured of `run` or `scan`.
#[derive(serde::Serialize, serde::Deserialize)]
struct Measured {
    records: u64,
    events: u64,
    alerts: u64,
    /// Seconds from the call to its return.
    wall: f64,
    /// `run`: seconds from the first message taken to the last step
    /// evaluated; `scan`: as `wall` (it reads from its first instant).
    steady: f64,
    /// CPU seconds of the process over the call, user and system.
    cpu: f64,
}

impl Measured {
    fn of(t: &aiwatch::pipeline::Totals, wall: f64, steady: f64, cpu: f64) -> Measured {
        Measured { records: t.records as u64, events: t.events as u64, alerts: t.alerts() as u64, wall, steady, cpu }
    }

    fn steady_rate(&self) -> f64 {
        self.records as f64 / self.steady.max(1e-9)
    }

    fn cpu_per_record(&self) -> f64 {
        self.cpu * 1e6 / self.records.max(1) as f64
    }
}

/// Runs this benchmark again in a child process with `only` set (measuring
/// `run` or `scan` alone, on `topic`) and reads what it measured. Each is
/// timed in a fresh process, as a user runs `aiwatch run` and `aiwatch
/// scan`: in one process the second would start with the allocator's memory
/// already faulted in, and its CPU time would include none of the first's
/// background work.
fn measure(only: &str, topic: &str) -> anyhow::Result<Measured> {
    let out = std::process::Command::new(std::env::current_exe()?)
        .args(std::env::args().skip(1))
        .env(only, "1")
        .env("AIWATCH_BENCH_TOPIC", topic)
        .stderr(std::process::Stdio::inherit())
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(out.status.success(), "{only}: the child process failed ({}): {stdout}", out.status);
    let line = stdout.lines().find_map(|l| l.strip_prefix("measured ")).ok_or_else(|| anyhow::anyhow!("{only}: no measurement in {stdout}"))?;
    Ok(serde_json::from_str(line)?)
}

/// `aiwatch scan` of the stream the topic holds, written to a file in `dir`: its totals and CPU seconds.
fn scan_once(runtime: &tokio::runtime::Runtime, dir: &std::path::Path, events: u64) -> anyhow::Result<(aiwatch::pipeline::Totals, f64)> {
    let lines = dir.join("events.jsonl");
    stream::write_scan_stream(&lines, events)?;
    let cpu = cpu_seconds();
    let scanned = runtime.block_on(async {
        let policy = std::sync::Arc::new(aiwatch::policy::Policy::parse(DEMO_POLICY, "demo").map_err(|e| anyhow::anyhow!(e))?);
        let mut engine = aiwatch::engine::Engine::new(policy, aiwatch::rules::builtin(), &aiwatch::engine::EngineConfig::default()).await?;
        let mut dead = aiwatch::pipeline::DeadLetterSink::File(aiwatch::outputs::JsonLines::create(Some(&dir.join("scan-dead.jsonl")))?);
        let mut alerts = aiwatch::outputs::JsonLines::create(Some(&dir.join("scan-alerts.jsonl")))?;
        let inputs = aiwatch::pipeline::ScanInputs::new(vec![lines.display().to_string()], 65_536);
        aiwatch::pipeline::scan(&mut engine, inputs, &mut dead, |a| Ok(alerts.write_alerts(a)?), |_| {}).await
    })?;
    Ok((scanned, cpu_seconds() - cpu))
}

/// User and system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(u.ru_utime) + secs(u.ru_stime)
}

/// `aiwatch run --until-end` over `topic` in a fresh group, state in `dir`: its totals and wall seconds.
fn run_once(runtime: &tokio::runtime::Runtime, dir: &std::path::Path, bootstrap: &str, topic: &str, run_id: u32) -> anyhow::Result<(aiwatch::pipeline::Totals, f64)> {
    std::fs::write(dir.join("policy.toml"), DEMO_POLICY)?;
    let config_path = dir.join("aiwatch.toml");
    let mut f = std::fs::File::create(&config_path)?;
    write!(
        f,
        "policy = \"policy.toml\"\nstate_dir = \"state\"\n[kafka]\nbootstrap_servers = \"{bootstrap}\"\ntopics = [\"{topic}\"]\ngroup_id = \"{topic}-aiwatch-{run_id}\"\n\
         [dead_letter]\nkind = \"file\"\npath = \"dead.jsonl\"\n[[output]]\nkind = \"file\"\npath = \"alerts.jsonl\"\n[metrics]\nenabled = false\n"
    )?;
    drop(f);
    let mut config = RunConfig::load(&config_path)?;
    if let Some(secs) = std::env::var("AIWATCH_BENCH_CHECKPOINT_SECONDS").ok().and_then(|v| v.parse().ok()) {
        config.checkpoint_interval_seconds = secs;
    }
    if let Some(n) = std::env::var("AIWATCH_BENCH_BATCH").ok().and_then(|v| v.parse().ok()) {
        config.kafka.batch_size = n;
    }
    let started = Instant::now();
    let totals = runtime.block_on(run(config, RunOptions { until_end: true }))?;
    Ok((totals, started.elapsed().as_secs_f64()))
}

/// Fills `topic` with `events` generated events, spread evenly over its partitions.
fn fill(bootstrap: &str, topic: &str, events: u64) -> anyhow::Result<()> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    // The scan benchmark's stream, so `scan` of the same events can be compared.
    let mut g = stream::scan_stream_generator();
    let mut line = Vec::with_capacity(1024);
    let started = Instant::now();
    for i in 0..events {
        line.clear();
        g.next_into(&mut line);
        let partition = (i % PARTITIONS as u64) as i32;
        loop {
            match producer.send(BaseRecord::<(), [u8]>::to(topic).payload(&line[..]).partition(partition)) {
                Ok(()) => break,
                Err((_, _)) => {
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120))?;
    eprintln!("produced {events} events to {topic} in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Drains `topic` from the beginning with a bare consumer that only counts: (messages, seconds, bytes).
fn raw_consume(bootstrap: &str, topic: &str, run_id: u32) -> anyhow::Result<(u64, f64, u64)> {
    consume(bootstrap, topic, &format!("{topic}-raw-{run_id}"), |_| {})
}

/// Drains `topic` parsing each message into a [`TypedEvent`]: (messages, seconds, bytes).
fn typed_consume(bootstrap: &str, topic: &str, run_id: u32) -> anyhow::Result<(u64, f64, u64)> {
    let mut parsed = 0u64;
    let r = consume(bootstrap, topic, &format!("{topic}-typed-{run_id}"), |payload| {
        parsed += serde_json::from_slice::<TypedEvent>(payload).is_ok() as u64;
    })?;
    std::hint::black_box(parsed);
    Ok(r)
}

/// Drains `topic` from the beginning, handing each payload to `each`.
fn consume(bootstrap: &str, topic: &str, group: &str, mut each: impl FnMut(&[u8])) -> anyhow::Result<(u64, f64, u64)> {
    let raw: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        // As aiwatch's consumer: librdkafka otherwise pauses fetching for 1 s whenever its queue is full.
        .set("fetch.queue.backoff.ms", "20")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
        ends.insert(p, raw.fetch_watermarks(topic, p, Duration::from_secs(30))?.1);
    }
    raw.assign(&tpl)?;
    let started = Instant::now();
    let (mut n, mut bytes) = (0u64, 0u64);
    while !ends.is_empty() {
        if let Some(Ok(m)) = raw.poll(Duration::from_millis(100)) {
            n += 1;
            let payload = m.payload().unwrap_or_default();
            bytes += payload.len() as u64;
            each(payload);
            if m.offset() + 1 >= ends.get(&m.partition()).copied().unwrap_or(i64::MAX) {
                ends.remove(&m.partition());
            }
        }
    }
    let raw_secs = started.elapsed().as_secs_f64();
    Ok((n, raw_secs, bytes))
}
