//! Shared helpers: the broker address, unique names, topics, producing the
//! exact bytes of a file, the `aiwatch run` child process (killed on drop),
//! alert and dead-letter files, HTTP and Prometheus text helpers.
//!
//! Nothing stands in for Kafka: without `AIWATCH_KAFKA_BOOTSTRAP` every test fails.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

/// Partitions of every input topic: lines are spread over them round robin.
pub const PARTITIONS: i32 = 4;

/// A (rule_id, subject) pair: one violation.
pub type Violation = (String, String);

// ---------------------------------------------------------------- broker and names

thread_local! {
    /// A broker of the current test's own (see [`UseBroker`]), instead of the shared one.
    static BROKER_OVERRIDE: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// While alive, every helper called on this thread (topics, producing, offsets,
/// [`RunConfig`]) talks to `bootstrap` instead of `AIWATCH_KAFKA_BOOTSTRAP`.
/// Thread-local, so the other tests, running in parallel, keep the shared broker.
pub struct UseBroker(());

impl UseBroker {
    pub fn new(bootstrap: &str) -> UseBroker {
        BROKER_OVERRIDE.with(|b| *b.borrow_mut() = Some(bootstrap.to_string()));
        UseBroker(())
    }
}

impl Drop for UseBroker {
    fn drop(&mut self) {
        BROKER_OVERRIDE.with(|b| *b.borrow_mut() = None);
    }
}

/// The broker under test: from `AIWATCH_KAFKA_BOOTSTRAP`, or a test's own ([`UseBroker`]).
pub fn bootstrap() -> String {
    if let Some(b) = BROKER_OVERRIDE.with(|b| b.borrow().clone()) {
        return b;
    }
    match std::env::var("AIWATCH_KAFKA_BOOTSTRAP") {
        Ok(b) if !b.trim().is_empty() => b,
        _ => panic!(
            "AIWATCH_KAFKA_BOOTSTRAP is not set: the Kafka integration tests need a real broker. \
             Run them with scripts/test.sh (it starts one), or `scripts/kafka.sh start` and \
             AIWATCH_KAFKA_BOOTSTRAP=127.0.0.1:19092 cargo test --test kafka"
        ),
    }
}

/// A name no other test, and no earlier run, uses: `aiwatch-it-<what>-<pid>-<time>-<n>`.
pub fn unique(what: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis();
    format!("aiwatch-it-{what}-{}-{t}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Runs a future to completion on a small runtime of its own.
pub fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime").block_on(f)
}

fn client_config() -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap());
    c
}

/// Creates `topic` with `partitions` partitions and waits until its metadata is visible.
pub fn create_topic(topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = client_config().create().expect("Kafka admin client");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = block_on(admin.create_topics(&[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))], &opts))
        .unwrap_or_else(|e| panic!("cannot create topic {topic} on {}: {e} (is the broker up? scripts/kafka.sh status)", bootstrap()));
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("cannot create topic {t}: {e}"));
    }
    wait_for(Duration::from_secs(30), &format!("topic {topic} to have {partitions} partitions"), || {
        (partition_count(topic) == partitions).then_some(())
    });
}

/// Deletes topics a test made (best effort: the broker is wiped on its next start anyway).
pub fn delete_topics(topics: &[&str]) {
    let admin: AdminClient<DefaultClientContext> = client_config().create().expect("Kafka admin client");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let _ = block_on(admin.delete_topics(topics, &opts));
}

fn partition_count(topic: &str) -> i32 {
    let c: BaseConsumer = client_config().create().expect("Kafka consumer");
    match c.fetch_metadata(Some(topic), Duration::from_secs(10)) {
        Ok(md) => md.topics().first().filter(|t| t.error().is_none()).map_or(0, |t| t.partitions().len() as i32),
        Err(_) => 0,
    }
}

/// The lines of a JSON Lines file as exact bytes: split on `\n` only, so a `\r`,
/// invalid UTF-8 or a blank line stays as it is; no empty piece after the last newline.
pub fn lines_of(data: &[u8]) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
}

/// Where each produced line went.
pub struct Produced {
    /// `(partition, offset)` -> the bytes sent.
    pub at: BTreeMap<(i32, i64), Vec<u8>>,
}

/// Produces every line of `data` byte-exact (blank lines as empty messages),
/// round robin over the topic's partitions, and waits until the broker has them all.
pub fn produce_lines(topic: &str, data: &[u8]) -> Produced {
    let producer: FutureProducer = client_config()
        .set("linger.ms", "20")
        // Small record batches (see "Arrival across partitions" in RunConfig).
        .set("batch.size", "8192")
        .set("enable.idempotence", "true")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()
        .expect("Kafka producer");
    let lines = lines_of(data);
    let partitions = partition_count(topic);
    assert!(partitions > 0, "topic {topic} does not exist");
    let at = block_on(async {
        let mut pending = Vec::with_capacity(lines.len());
        for (i, line) in lines.iter().enumerate() {
            let record = FutureRecord::<(), [u8]>::to(topic).payload(*line).partition(i as i32 % partitions);
            let delivery = producer.send_result(record).unwrap_or_else(|(e, _)| panic!("cannot enqueue line {} for {topic}: {e}", i + 1));
            pending.push((i, delivery));
        }
        let mut at = BTreeMap::new();
        for (i, d) in pending {
            let d = tokio::time::timeout(Duration::from_secs(60), d)
                .await
                .unwrap_or_else(|_| panic!("line {} not acknowledged by the broker within 60 s", i + 1))
                .expect("delivery not cancelled")
                .unwrap_or_else(|(e, _)| panic!("line {} not delivered to {topic}: {e}", i + 1));
            at.insert((d.partition, d.offset), lines[i].to_vec());
        }
        at
    });
    Produced { at }
}

/// Produces a file (see [`produce_lines`]).
pub fn produce_file(topic: &str, path: &Path) -> Produced {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    produce_lines(topic, &data)
}

/// The end (high watermark) offset of each partition of `topic`.
pub fn end_offsets(topic: &str) -> BTreeMap<i32, i64> {
    let c: BaseConsumer = client_config().create().expect("Kafka consumer");
    (0..partition_count(topic))
        .map(|p| {
            let (_, high) = c.fetch_watermarks(topic, p, Duration::from_secs(10)).expect("partition watermarks");
            (p, high)
        })
        .collect()
}

/// The offsets `group` has committed on `topic` (partitions without a commit are left out).
pub fn committed_offsets(group: &str, topic: &str) -> BTreeMap<i32, i64> {
    let c: BaseConsumer = client_config().set("group.id", group).set("enable.auto.commit", "false").create().expect("Kafka consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partition_count(topic) {
        tpl.add_partition(topic, p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(15)).expect("committed offsets of the group");
    got.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// One message read back from a topic.
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Every message of `topic` up to its current end offsets.
pub fn read_topic(topic: &str) -> Vec<Record> {
    let ends = end_offsets(topic);
    let c: BaseConsumer = client_config()
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        // The end of a transactional partition is a commit marker no consumer is handed: EOF says it was reached.
        .set("enable.partition.eof", "true")
        .create()
        .expect("Kafka consumer");
    let mut tpl = TopicPartitionList::new();
    for p in ends.keys() {
        tpl.add_partition_offset(topic, *p, Offset::Beginning).unwrap();
    }
    c.assign(&tpl).expect("assign");
    let mut next: BTreeMap<i32, i64> = ends.keys().map(|p| (*p, 0)).collect();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while next.iter().any(|(p, n)| *n < ends[p]) {
        assert!(Instant::now() < deadline, "could not read {topic} to its end within 60 s");
        let Some(m) = c.poll(Duration::from_millis(200)) else { continue };
        let m = match m {
            Ok(m) => m,
            Err(rdkafka::error::KafkaError::PartitionEOF(p)) => {
                next.insert(p, ends[&p]);
                continue;
            }
            Err(e) => panic!("reading {topic}: {e}"),
        };
        let headers = m
            .headers()
            .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec())).collect())
            .unwrap_or_default();
        next.insert(m.partition(), m.offset() + 1);
        out.push(Record {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().unwrap_or_default().to_vec(),
            headers,
        });
    }
    out
}

// ---------------------------------------------------------------- contracts and files

/// `../shared` beside the checkout (override with AIWATCH_SHARED).
pub fn shared() -> PathBuf {
    std::env::var_os("AIWATCH_SHARED").map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"))
}

pub fn examples() -> PathBuf {
    shared().join("spec/examples")
}

/// The 206 violations of the example stream.
pub fn expected_violations() -> BTreeSet<Violation> {
    let text = std::fs::read_to_string(examples().join("expected-alerts.jsonl")).expect("read expected-alerts.jsonl");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("expected alert is JSON");
            (v["rule_id"].as_str().unwrap().to_string(), v["subject"].as_str().unwrap().to_string())
        })
        .collect()
}

/// Every JSON line of a file (an absent file has none).
pub fn json_lines(path: &Path) -> Vec<Value> {
    let text = match std::fs::read(path) {
        Ok(b) => String::from_utf8(b).unwrap_or_else(|_| panic!("{} is not UTF-8", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("cannot read {}: {e}", path.display()),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).unwrap_or_else(|e| panic!("{} line {}: not JSON ({e}): {l}", path.display(), i + 1)))
        .collect()
}

pub fn violation_of(alert: &Value) -> Violation {
    (alert["rule_id"].as_str().expect("rule_id").to_string(), alert["subject"].as_str().expect("subject").to_string())
}

/// The violations of a list of alerts, asserting that each appears once.
pub fn violations_once(alerts: &[Value]) -> BTreeSet<Violation> {
    let mut set = BTreeSet::new();
    for a in alerts {
        let key = violation_of(a);
        assert!(set.insert(key.clone()), "violation {key:?} emitted twice in one run");
    }
    set
}

/// The original bytes a dead-letter record keeps (`raw`, or `raw_hex` when they are not UTF-8).
pub fn dead_letter_bytes(d: &Value) -> Vec<u8> {
    match (d["raw"].as_str(), d["raw_hex"].as_str()) {
        (Some(raw), _) => raw.as_bytes().to_vec(),
        (None, Some(hex)) => (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect(),
        _ => panic!("dead letter without bytes: {d}"),
    }
}

/// Alerts whose evidence lacks the Kafka origin of one of its events (alerts.md:
/// from Kafka, each evidence event carries its topic, partition and offset).
pub fn alerts_without_origins(alerts: &[Value]) -> Vec<String> {
    alerts
        .iter()
        .filter(|a| {
            let ids = a["evidence"]["event_ids"].as_array().map_or(0, Vec::len);
            let located = a["evidence"]["events"].as_array().into_iter().flatten().filter(|e| e["topic"].is_string() && e["offset"].is_i64());
            located.count() < ids
        })
        .map(|a| format!("{} {}: ids={} events={}", a["rule_id"], a["subject"], a["evidence"]["event_ids"], a["evidence"]["events"]))
        .collect()
}

/// Asserts two violation sets are equal, listing what is missing and what is extra.
pub fn assert_same_violations(got: &BTreeSet<Violation>, want: &BTreeSet<Violation>, what: &str) {
    if got == want {
        return;
    }
    let missing: Vec<_> = want.difference(got).take(25).collect();
    let extra: Vec<_> = got.difference(want).take(25).collect();
    panic!(
        "{what}: {} violations, expected {}\n  missing ({}): {missing:?}\n  extra ({}): {extra:?}",
        got.len(),
        want.len(),
        want.difference(got).count(),
        got.difference(want).count()
    );
}

pub fn aiwatch() -> Command {
    Command::new(env!("CARGO_BIN_EXE_aiwatch"))
}

/// Runs a command to completion within `limit`, asserting success; returns stdout.
pub fn run_ok(cmd: &mut Command, limit: Duration) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("start aiwatch");
    let mut p = Process { child, stderr: err, what: format!("{cmd:?}") };
    let status = p.wait(limit);
    assert!(status.success(), "{} failed: {status}\n{}", p.what, p.stderr_text());
    std::fs::read(out).unwrap()
}

/// `aiwatch scan` of `input` with `policy`: the violations, each once.
pub fn scan(policy: &Path, input: &Path, dir: &Path) -> BTreeSet<Violation> {
    let alerts = dir.join(format!("scan-{}.jsonl", unique("alerts")));
    run_ok(
        aiwatch().arg("scan").arg("--policy").arg(policy).arg("--alerts").arg(&alerts).arg("--dead-letter").arg(dir.join("scan-dead.jsonl")).arg(input),
        Duration::from_secs(120),
    );
    violations_once(&json_lines(&alerts))
}

/// Writes `aiwatch generate ARGS` to `out` and the generator's policy to `policy`.
pub fn generate(args: &[&str], out: &Path, policy: &Path) {
    run_ok(aiwatch().arg("generate").args(args).arg("--out").arg(out), Duration::from_secs(60));
    let p = run_ok(aiwatch().args(["generate", "--print-policy"]), Duration::from_secs(30));
    std::fs::write(policy, p).unwrap();
}

// ---------------------------------------------------------------- the run config

/// A `aiwatch run` config: one input topic, a file output, a file dead-letter output.
///
/// # Arrival across partitions
///
/// The engine's watermark is global: the largest event time seen, minus the
/// lateness (60 s). A test that expects `run` to find what `scan` finds must
/// therefore keep the interleaving of partitions within the lateness, and
/// librdkafka does not: it hands over each partition's fetched data in one run
/// (up to 1 MB by default), and with no committed offsets each partition goes
/// through `auto.offset.reset` on its own, so under load one partition was seen
/// read 1,234 records ahead of the others. Three things bound it here:
///
/// - small record batches from the producer and small fetches
///   (`max.partition.fetch.bytes`): partitions interleave every ~25 records;
/// - [`RunConfig::start_at_beginning`]: a committed offset on every partition,
///   so all of them start in the same fetch;
/// - the example stream (two days in 1,106 lines: 25 records are hours of event
///   time) is taken in one engine step, see [`RunConfig::single_step`].
///
/// `until_end::until_end_with_default_fetch_sizes_equals_scan` (ignored) shows
/// what happens without them.
pub struct RunConfig {
    pub policy: PathBuf,
    pub topic: String,
    pub group: String,
    pub state_dir: PathBuf,
    pub alerts: Option<PathBuf>,
    pub dead_letters: Option<PathBuf>,
    /// `None` turns the listener off.
    pub metrics: Option<SocketAddr>,
    pub checkpoint_interval_seconds: u64,
    /// `state_memory_limit`, when not the default.
    pub state_memory_limit: Option<u64>,
    pub batch_size: usize,
    pub max_batch_wait_ms: u64,
    /// `[kafka.options]`: librdkafka settings.
    pub kafka_options: Vec<(String, String)>,
    /// More TOML appended at the end (e.g. `[[output]]` tables).
    pub extra: String,
}

impl RunConfig {
    /// A config in `dir` reading `topic` with a fresh group, the example policy,
    /// and alerts and dead letters to files in `dir`.
    pub fn new(dir: &Path, topic: &str) -> RunConfig {
        RunConfig {
            policy: examples().join("policy.toml"),
            topic: topic.to_string(),
            group: unique("group"),
            state_dir: dir.join("state"),
            alerts: Some(dir.join("alerts.jsonl")),
            dead_letters: Some(dir.join("dead.jsonl")),
            metrics: None,
            checkpoint_interval_seconds: 5,
            state_memory_limit: None,
            batch_size: 8192,
            max_batch_wait_ms: 200,
            kafka_options: vec![
                // A member killed with -9 holds its partitions until its session times out:
                // the broker's minimum, so a restart in the same group gets them within seconds.
                ("session.timeout.ms".into(), "6000".into()),
                ("heartbeat.interval.ms".into(), "1000".into()),
                // Small fetches (see "Arrival across partitions" above).
                ("max.partition.fetch.bytes".into(), "8192".into()),
            ],
            extra: String::new(),
        }
    }

    /// Commits the beginning of every partition for the group, so `aiwatch run`
    /// finds a committed offset for each and starts them together.
    pub fn start_at_beginning(&self) {
        let c: BaseConsumer = client_config().set("group.id", &self.group).set("enable.auto.commit", "false").create().expect("Kafka consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partition_count(&self.topic) {
            tpl.add_partition_offset(&self.topic, p, Offset::Offset(0)).unwrap();
        }
        // On a fresh broker the group coordinator (`__consumer_offsets`) is made on
        // first use and answers NotCoordinator for a moment: retry, bounded.
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Err(e) = c.commit(&tpl, rdkafka::consumer::CommitMode::Sync) {
            assert!(Instant::now() < deadline, "commit the start offsets: {e}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// With `--until-end`, no step before the end: the whole topic in one engine step.
    pub fn single_step(&mut self) {
        self.max_batch_wait_ms = 600_000;
    }

    pub fn alerts(&self) -> &Path {
        self.alerts.as_deref().expect("a file output")
    }

    pub fn dead_letters(&self) -> &Path {
        self.dead_letters.as_deref().expect("a dead-letter file")
    }

    pub fn to_toml(&self) -> String {
        let q = |p: &Path| toml_str(&p.display().to_string());
        let mut t = String::new();
        writeln!(t, "policy = {}", q(&self.policy)).unwrap();
        writeln!(t, "state_dir = {}", q(&self.state_dir)).unwrap();
        writeln!(t, "checkpoint_interval_seconds = {}", self.checkpoint_interval_seconds).unwrap();
        if let Some(limit) = self.state_memory_limit {
            writeln!(t, "state_memory_limit = {limit}").unwrap();
        }
        writeln!(t, "\n[kafka]").unwrap();
        writeln!(t, "bootstrap_servers = {}", toml_str(&bootstrap())).unwrap();
        writeln!(t, "topics = [{}]", toml_str(&self.topic)).unwrap();
        writeln!(t, "group_id = {}", toml_str(&self.group)).unwrap();
        writeln!(t, "batch_size = {}", self.batch_size).unwrap();
        writeln!(t, "max_batch_wait_ms = {}", self.max_batch_wait_ms).unwrap();
        writeln!(t, "\n[kafka.options]").unwrap();
        for (k, v) in &self.kafka_options {
            writeln!(t, "{} = {}", toml_str(k), toml_str(v)).unwrap();
        }
        if let Some(d) = &self.dead_letters {
            writeln!(t, "\n[dead_letter]\nkind = \"file\"\npath = {}", q(d)).unwrap();
        }
        if let Some(a) = &self.alerts {
            writeln!(t, "\n[[output]]\nkind = \"file\"\npath = {}", q(a)).unwrap();
        }
        match self.metrics {
            Some(addr) => writeln!(t, "\n[metrics]\nlisten = {}", toml_str(&addr.to_string())).unwrap(),
            None => writeln!(t, "\n[metrics]\nenabled = false").unwrap(),
        }
        t.push_str(&self.extra);
        t
    }

    /// Writes the config next to the state dir and returns its path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join(format!("{}.toml", unique("config")));
        std::fs::write(&path, self.to_toml()).unwrap();
        path
    }
}

/// A TOML basic string.
pub fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

// ---------------------------------------------------------------- child processes

/// A child process that is killed (SIGKILL) and reaped when dropped.
pub struct Process {
    pub child: Child,
    pub stderr: PathBuf,
    pub what: String,
}

impl Process {
    /// Starts `aiwatch run --config FILE [--until-end]`, stderr to a file beside the config.
    pub fn run(config: &Path, until_end: bool, env: &[(&str, &str)]) -> Process {
        let stderr = config.with_extension("stderr");
        let mut cmd = aiwatch();
        cmd.arg("run").arg("--config").arg(config);
        if until_end {
            cmd.arg("--until-end");
        }
        cmd.env("AIWATCH_LOG", "info").envs(env.iter().copied());
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start aiwatch run");
        Process { child, stderr, what: format!("aiwatch run --config {}{}", config.display(), if until_end { " --until-end" } else { "" }) }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr_text(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(60)..];
        format!("--- stderr of {} (last {} lines) ---\n{}", self.what, tail.len(), tail.join("\n"))
    }

    /// Panics (with stderr) if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!("{} exited early: {status}\n{}", self.what, self.stderr_text());
        }
    }

    /// Waits for the exit; past `limit` the process is killed and the test fails.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("{} did not exit within {limit:?}\n{}", self.what, self.stderr_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for a successful exit within `limit`.
    pub fn wait_ok(&mut self, limit: Duration) {
        let status = self.wait(limit);
        assert!(status.success(), "{} failed: {status}\n{}", self.what, self.stderr_text());
    }

    /// Sends a signal by name (`TERM`, `KILL`, ...) with `kill(1)`.
    pub fn signal(&self, name: &str) {
        let st = Command::new("kill").arg(format!("-{name}")).arg(self.pid().to_string()).status().expect("run kill(1)");
        assert!(st.success(), "kill -{name} {} failed", self.pid());
    }

    /// `kill -9` and reap.
    pub fn kill9(&mut self) {
        self.signal("KILL");
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `aiwatch run --until-end` to a successful exit within `limit`; returns its stderr (logs and summary).
pub fn run_until_end(config: &Path, limit: Duration, env: &[(&str, &str)]) -> String {
    let mut p = Process::run(config, true, env);
    p.wait_ok(limit);
    std::fs::read_to_string(&p.stderr).unwrap_or_default()
}

/// Polls `probe` every 100 ms until it gives a value; fails after `limit`.
pub fn wait_for<T>(limit: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------- HTTP

/// A loopback address that was free a moment ago.
pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().unwrap()
}

/// A plain HTTP/1.1 GET: (status, body), or `None` if nothing answers.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

/// One request a [`Receiver`] got.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The status it was answered with.
    pub status: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{} {} body is not JSON: {e}", self.method, self.path))
    }
}

/// A tiny HTTP server on 127.0.0.1:0 recording every request; the status of
/// each answer is chosen by `respond(n, request)` (n counts from 0).
/// Stops when dropped.
pub struct Receiver {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Received>>>,
    _rt: tokio::runtime::Runtime,
}

impl Receiver {
    pub fn start(respond: impl Fn(usize, &Received) -> u16 + Send + Sync + 'static) -> Receiver {
        use http_body_util::{BodyExt, Full};
        use hyper::body::Bytes;

        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("tokio runtime");
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind receiver");
        let addr = listener.local_addr().unwrap();
        let requests: Arc<Mutex<Vec<Received>>> = Arc::default();
        let respond = Arc::new(respond);
        let recorded = requests.clone();
        rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (recorded, respond) = (recorded.clone(), respond.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (recorded, respond) = (recorded.clone(), respond.clone());
                        async move {
                            let method = req.method().to_string();
                            let path = req.uri().path().to_string();
                            let headers = req
                                .headers()
                                .iter()
                                .map(|(k, v)| (k.as_str().to_ascii_lowercase(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                                .collect();
                            let body = req.into_body().collect().await?.to_bytes().to_vec();
                            let mut r = Received { method, path, headers, body, status: 0 };
                            let status = {
                                let mut all = recorded.lock().unwrap();
                                r.status = respond(all.len(), &r);
                                all.push(r.clone());
                                r.status
                            };
                            Ok::<_, hyper::Error>(
                                hyper::Response::builder().status(status).body(Full::new(Bytes::from_static(b"{}"))).unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
                });
            }
        });
        Receiver { addr, requests, _rt: rt }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Received> {
        self.requests.lock().unwrap().clone()
    }
}

// ---------------------------------------------------------------- Prometheus text

/// One sample of the Prometheus text format.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the text exposition format (comments skipped, label values unescaped).
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => panic!("bad metrics line: {line}"),
        };
        let mut labels = BTreeMap::new();
        let mut rest = rest;
        if let Some(r) = rest.strip_prefix('{') {
            let mut chars = r.char_indices().peekable();
            let end = loop {
                // A label name, after the comma that ends the previous label.
                let mut key = String::new();
                while let Some(&(_, c)) = chars.peek() {
                    if c == '=' || c == '}' {
                        break;
                    }
                    if c != ',' && !c.is_whitespace() {
                        key.push(c);
                    }
                    chars.next();
                }
                match chars.next() {
                    Some((i, '}')) => break i,
                    Some((_, '=')) => {}
                    _ => panic!("bad labels: {line}"),
                }
                assert_eq!(chars.next().map(|x| x.1), Some('"'), "bad label value: {line}");
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next().map(|x| x.1) {
                            Some('n') => value.push('\n'),
                            Some(c) => value.push(c),
                            None => panic!("bad escape: {line}"),
                        },
                        Some((_, '"')) => break,
                        Some((_, c)) => value.push(c),
                        None => panic!("unterminated label value: {line}"),
                    }
                }
                labels.insert(key, value);
            };
            rest = &r[end + 1..];
        }
        let value = rest.split_whitespace().next().unwrap_or_else(|| panic!("no value: {line}"));
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in: {line}")),
        };
        out.push(Sample { name: name.to_string(), labels, value });
    }
    out
}

/// The sum of every sample named `name` (0 when there is none).
pub fn metric_sum(samples: &[Sample], name: &str) -> f64 {
    samples.iter().filter(|s| s.name == name).map(|s| s.value).sum()
}

/// Scrapes `/metrics` of a running aiwatch.
pub fn scrape(addr: SocketAddr) -> Option<Vec<Sample>> {
    match http_get(addr, "/metrics") {
        Some((200, body)) => Some(parse_metrics(&body)),
        _ => None,
    }
}

// ---------------------------------------------------------------- the run summary

/// The counts of the summary `aiwatch run` prints on stderr when it ends.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub events: u64,
    pub duplicates: u64,
    pub late: u64,
    pub dead_letters: u64,
}

impl Summary {
    /// Parses `aiwatch: N events (D duplicates dropped, L late), X dead letters, ...`.
    pub fn parse(log: &str) -> Option<Summary> {
        let line = log.lines().rev().find(|l| l.starts_with("aiwatch: ") && l.contains(" events ("))?;
        let nums: Vec<u64> = line.split_whitespace().filter_map(|t| t.trim_matches(|c| c == '(' || c == ',' || c == ')').parse().ok()).collect();
        Some(Summary { events: nums[0], duplicates: nums[1], late: nums[2], dead_letters: nums[3] })
    }

    /// The summary lines of a log, for failure messages.
    pub fn text(log: &str) -> String {
        log.lines().filter(|l| l.starts_with("aiwatch: ")).collect::<Vec<_>>().join(" / ")
    }

    /// Records the run took in (blank lines aside).
    pub fn records(&self) -> u64 {
        self.events + self.duplicates + self.dead_letters
    }
}

/// Produces every line of `data` like [`produce_lines`], but through a
/// transactional producer: one transaction per `per_transaction` lines, each
/// committed, so every partition ends with a commit marker (an offset no
/// consumer is ever handed).
pub fn produce_transactional(topic: &str, data: &[u8], per_transaction: usize) -> Produced {
    use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer, DefaultProducerContext};
    let producer: ThreadedProducer<DefaultProducerContext> = client_config()
        .set("transactional.id", unique("tx"))
        .set("linger.ms", "5")
        .create()
        .expect("transactional Kafka producer");
    producer.init_transactions(Duration::from_secs(30)).expect("init_transactions");
    let lines = lines_of(data);
    let partitions = partition_count(topic);
    assert!(partitions > 0, "topic {topic} does not exist");
    for (n, chunk) in lines.chunks(per_transaction.max(1)).enumerate() {
        producer.begin_transaction().expect("begin_transaction");
        for (i, line) in chunk.iter().enumerate() {
            let at = n * per_transaction + i;
            let record = BaseRecord::<(), [u8]>::to(topic).payload(*line).partition(at as i32 % partitions);
            producer.send(record).unwrap_or_else(|(e, _)| panic!("cannot enqueue line {} for {topic}: {e}", at + 1));
        }
        producer.commit_transaction(Duration::from_secs(30)).expect("commit_transaction");
    }
    // Offsets of a transactional topic are not one per line (markers sit between): read them back.
    let at = read_topic(topic).into_iter().map(|r| ((r.partition, r.offset), r.value)).collect();
    Produced { at }
}
