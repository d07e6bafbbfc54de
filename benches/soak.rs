//! Soak: days of event time at a steady rate, with resident memory and state
//! size sampled at every hour of event time. Memory must follow the rules'
//! horizons, not the length of the stream: flat once the longest horizon has
//! passed.
//!
//! ```sh
//! cargo bench --bench soak                          # through the scan path
//! scripts/kafka.sh start
//! AIWATCH_KAFKA_BOOTSTRAP=127.0.0.1:19092 cargo bench --bench soak -- kafka   # through `run` from Kafka
//! ```
//!
//! The stream is `aiwatch generate --events 4000000 --rate 15 --disorder 20`
//! (3 days of event time; `AIWATCH_SOAK_EVENTS` and `AIWATCH_SOAK_RATE` change
//! it; `AIWATCH_SOAK_STATE_LIMIT` sets the scan's `state_memory_limit` in
//! bytes; `AIWATCH_SOAK_CHECKPOINT=1` writes a checkpoint after every step of
//! the scan path, as `run` does at each interval, and reports per hour the
//! bytes a checkpoint wrote, its time and the checkpoint's size on disk). It
//! is scanned twice: with the demo policy (`generate --print-policy`,
//! whose longest retention is 30 days) and with the same policy cut to a
//! longest retention of 1 day, where memory must be flat after day 1.
//! For each, a table gives per hour of event time: RSS, state entries, the
//! state's estimated bytes, and bytes per entry. No assertions; the figures
//! are recorded in docs/benchmarks.md.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aiwatch::decode::Decoder;
use aiwatch::engine::{Engine, EngineConfig};
use aiwatch::event::{Origin, RawBatch};
use aiwatch::generate::{Generator, GeneratorConfig, DEMO_POLICY};
use aiwatch::policy::Policy;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc; // as the binary

const HOUR_NS: i64 = 3_600_000_000_000;

fn status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// One row of the table: the state after the first step past an hour of event time.
#[derive(Clone)]
struct Sample {
    hour: i64,
    rss_mib: f64,
    entries: usize,
    bytes: usize,
    /// Entries by kind and bytes by part (scan path only).
    kinds: Vec<(&'static str, usize)>,
    parts: Vec<(&'static str, usize)>,
    /// With checkpoints: the mean bytes written and milliseconds of this hour's checkpoints, and the files' total on disk.
    checkpoints: Option<(f64, f64, u64)>,
}

/// Bytes of each file under a checkpoint's folders, and the manifest.
fn checkpoint_files(path: &std::path::Path) -> std::collections::HashMap<std::path::PathBuf, u64> {
    let mut files = std::collections::HashMap::new();
    for suffix in ["", ".shards", ".history"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let p = std::path::PathBuf::from(p);
        if suffix.is_empty() {
            if let Ok(m) = std::fs::metadata(&p) {
                files.insert(p, m.len());
            }
        } else if let Ok(dir) = std::fs::read_dir(&p) {
            for e in dir.flatten() {
                files.insert(e.path(), e.metadata().map_or(0, |m| m.len()));
            }
        }
    }
    files
}

fn print_table(title: &str, samples: &[Sample], peak_mib: f64, secs: f64, events: u64) {
    println!("\n{title}: {events} events in {secs:.1} s ({:.0} events/s), peak RSS {peak_mib:.0} MiB", events as f64 / secs);
    let with_checkpoints = samples.iter().any(|s| s.checkpoints.is_some());
    print!("{:>5} {:>9} {:>12} {:>10} {:>11}", "hour", "RSS MiB", "entries", "state MiB", "bytes/entry");
    if with_checkpoints {
        print!(" {:>14} {:>8} {:>12}", "ckpt KB/write", "ckpt ms", "on disk MiB");
    }
    println!();
    for s in samples {
        print!(
            "{:>5} {:>9.0} {:>12} {:>10.1} {:>11.0}",
            s.hour,
            s.rss_mib,
            s.entries,
            s.bytes as f64 / (1 << 20) as f64,
            s.bytes as f64 / s.entries.max(1) as f64
        );
        if let Some((bytes, ms, disk)) = s.checkpoints {
            print!(" {:>14.0} {:>8.1} {:>12.1}", bytes / 1024.0, ms, disk as f64 / (1 << 20) as f64);
        }
        println!();
    }
    for s in samples.iter().filter(|s| s.hour % 12 == 0 && !s.kinds.is_empty()) {
        let kinds: Vec<String> = s.kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let parts: Vec<String> = s.parts.iter().map(|(k, n)| format!("{k} {:.1}", *n as f64 / (1 << 20) as f64)).collect();
        println!("hour {:>3}: {}; MiB: {}", s.hour, kinds.join(", "), parts.join(", "));
    }
    let at = |h: i64| samples.iter().filter(|s| s.hour <= h).next_back().map(|s| s.rss_mib);
    if let (Some(a), Some(b)) = (at(36), at(72)) {
        println!("RSS at day 3 / RSS at day 1.5: {:.2}", b / a);
    }
}

/// The demo policy with its one long retention (globex embeddings, 30 days) cut to 1 day.
fn one_day_policy() -> String {
    DEMO_POLICY.replace("retention_days = { embedding = 30 }", "retention_days = { embedding = 1 }")
}

fn generator(rate: f64) -> Generator {
    Generator::new(GeneratorConfig { events_per_second: rate, max_disorder_seconds: 20.0, ..Default::default() })
}

/// Generate, decode, step: the scan path with the stream made in memory.
fn soak_scan(policy_text: &str, events: u64, rate: f64) -> anyhow::Result<(Vec<Sample>, f64)> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let policy = Arc::new(Policy::parse(policy_text, "soak").map_err(|e| anyhow::anyhow!(e))?);
        let mut config = EngineConfig::default();
        // The state_memory_limit, in bytes (default 512 MiB): past it open obligations spill to disk.
        if let Ok(limit) = std::env::var("AIWATCH_SOAK_STATE_LIMIT") {
            config.spill.memory_limit = limit.parse()?;
        }
        let mut engine = Engine::new(policy, aiwatch::rules::builtin(), &config).await?;
        let mut g = generator(rate);
        let mut decoder = Decoder::new();
        let mut raw = RawBatch::default();
        let mut line = Vec::with_capacity(1024);
        let mut samples = Vec::new();
        let (mut first, mut next_hour) = (None::<i64>, 0);
        let checkpoint_dir = tempfile::tempdir()?;
        let checkpoint = std::env::var_os("AIWATCH_SOAK_CHECKPOINT").map(|_| checkpoint_dir.path().join("checkpoint.aiwatch"));
        // This hour's checkpoints: (count, bytes written, seconds).
        let mut hour_checkpoints = (0u32, 0u64, 0f64);
        let mut seq = 0u64;
        let batch = 8192;
        while seq < events {
            raw.clear();
            for _ in 0..batch.min(events - seq) {
                line.clear();
                g.next_into(&mut line);
                seq += 1;
                raw.push(&line, Origin::Generated { seq });
            }
            engine.step(decoder.decode(&raw).events).await?;
            if let Some(path) = &checkpoint {
                let before = checkpoint_files(path);
                let started = Instant::now();
                engine.write_checkpoint(path, serde_json::json!(seq))?;
                let took = started.elapsed().as_secs_f64();
                // New files, and the manifest (rewritten each time).
                let written: u64 = checkpoint_files(path).iter().filter(|(f, _)| !before.contains_key(*f) || **f == *path).map(|(_, b)| b).sum();
                hour_checkpoints = (hour_checkpoints.0 + 1, hour_checkpoints.1 + written, hour_checkpoints.2 + took);
            }
            let Some(newest) = engine.state().max_seen() else { continue };
            let start = *first.get_or_insert(newest);
            let hour = (newest - start) / HOUR_NS;
            if hour >= next_hour {
                let s = engine.state_stats();
                let checkpoints = checkpoint.as_ref().map(|path| {
                    let (n, bytes, secs) = std::mem::take(&mut hour_checkpoints);
                    let n = f64::from(n.max(1));
                    (bytes as f64 / n, 1000.0 * secs / n, checkpoint_files(path).values().sum())
                });
                samples.push(Sample {
                    hour,
                    rss_mib: status_mib("VmRSS:"),
                    entries: s.total(),
                    bytes: s.bytes,
                    kinds: s.entries.clone(),
                    parts: s.parts.clone(),
                    checkpoints,
                });
                next_hour = hour + 1;
            }
        }
        engine.finish().await?;
        anyhow::Ok((samples, status_mib("VmHWM:")))
    })
}

/// A metric's value from a Prometheus text page (summed over its label sets).
fn metric(page: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for l in page.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = l.rsplit_once(' ') else { continue };
        if key == name || key.starts_with(&format!("{name}{{")) {
            if let Ok(v) = value.parse::<f64>() {
                *found.get_or_insert(0.0) += v;
            }
        }
    }
    found
}

fn scrape(addr: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut page = String::new();
    s.read_to_string(&mut page).ok()?;
    Some(page)
}

/// Fills `topic` with the soak stream (in a child process of its own).
fn produce(bootstrap: &str, topic: &str, events: u64, rate: f64) -> anyhow::Result<()> {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let mut g = generator(rate);
    let mut line = Vec::with_capacity(1024);
    let started = Instant::now();
    for i in 0..events {
        line.clear();
        g.next_into(&mut line);
        loop {
            match producer.send(BaseRecord::<(), [u8]>::to(topic).payload(&line[..]).partition((i % 4) as i32)) {
                Ok(()) => break,
                Err((_, _)) => {
                    producer.poll(Duration::from_millis(50));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120))?;
    eprintln!("produced {events} events to {topic} in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Fills a topic with the stream, then runs `aiwatch run --until-end` on it
/// in-process, sampling its metrics and this process's RSS by watermark hour.
fn soak_kafka(bootstrap: &str, policy_text: &str, events: u64, rate: f64) -> anyhow::Result<(Vec<Sample>, f64)> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::config::ClientConfig;

    let topic = format!("aiwatch-soak-{}", std::process::id());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let admin: AdminClient<_> = ClientConfig::new().set("bootstrap.servers", bootstrap).create()?;
    for created in runtime.block_on(admin.create_topics(
        &[NewTopic::new(&topic, 4, TopicReplication::Fixed(1))],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
    ))? {
        created.map_err(|(t, e)| anyhow::anyhow!("cannot create topic {t}: {e}"))?;
    }
    // Produced by a child process, so the producer's buffers are not in this process's RSS.
    let status = std::process::Command::new(std::env::current_exe()?)
        .env("AIWATCH_SOAK_PRODUCE", &topic)
        .env("AIWATCH_SOAK_EVENTS", events.to_string())
        .env("AIWATCH_SOAK_RATE", rate.to_string())
        .status()?;
    anyhow::ensure!(status.success(), "producing the soak stream failed");

    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("policy.toml"), policy_text)?;
    let metrics_addr = "127.0.0.1:19465";
    let config_path = dir.path().join("aiwatch.toml");
    std::fs::write(
        &config_path,
        format!(
            "policy = \"policy.toml\"\nstate_dir = \"state\"\n[kafka]\nbootstrap_servers = \"{bootstrap}\"\ntopics = [\"{topic}\"]\ngroup_id = \"{topic}\"\n\
             [dead_letter]\nkind = \"file\"\npath = \"dead.jsonl\"\n[[output]]\nkind = \"file\"\npath = \"alerts.jsonl\"\n[metrics]\nlisten = \"{metrics_addr}\"\n"
        ),
    )?;
    let config = aiwatch::config::RunConfig::load(&config_path)?;

    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (samples, done) = (samples.clone(), done.clone());
        std::thread::spawn(move || {
            let (mut first, mut next_hour) = (None::<f64>, 0);
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                let Some(page) = scrape(metrics_addr) else { continue };
                let (Some(watermark), Some(entries)) = (metric(&page, "aiwatch_watermark_seconds"), metric(&page, "aiwatch_state_entries")) else {
                    continue;
                };
                if watermark <= 0.0 {
                    continue;
                }
                let start = *first.get_or_insert(watermark);
                let hour = ((watermark - start) / 3600.0) as i64;
                if hour >= next_hour {
                    let bytes = metric(&page, "aiwatch_state_bytes").unwrap_or(0.0) as usize;
                    samples.lock().unwrap().push(Sample { hour, rss_mib: status_mib("VmRSS:"), entries: entries as usize, bytes, kinds: Vec::new(), parts: Vec::new(), checkpoints: None });
                    next_hour = hour + 1;
                }
            }
        })
    };
    let result = runtime.block_on(aiwatch::stream::run(config, aiwatch::stream::RunOptions { until_end: true }));
    done.store(true, Ordering::Relaxed);
    sampler.join().expect("sampler thread");
    result?;
    let _ = runtime.block_on(admin.delete_topics(&[&topic], &AdminOptions::new()));
    let samples = samples.lock().unwrap().clone();
    Ok((samples, status_mib("VmHWM:")))
}

fn main() -> anyhow::Result<()> {
    aiwatch::allocator::configure(); // as the binary
    let kafka = std::env::args().skip(1).any(|a| a == "kafka");
    let env = |name: &str, default: f64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let events = env("AIWATCH_SOAK_EVENTS", 4_000_000.0) as u64;
    let rate = env("AIWATCH_SOAK_RATE", 15.0);
    if let Ok(topic) = std::env::var("AIWATCH_SOAK_PRODUCE") {
        let bootstrap = std::env::var("AIWATCH_KAFKA_BOOTSTRAP")?;
        return produce(&bootstrap, &topic, events, rate);
    }
    let policies = [
        ("demo", "demo policy (longest retention 30 days)", DEMO_POLICY.to_string()),
        ("one-day", "longest retention 1 day", one_day_policy()),
    ];
    let Ok(only) = std::env::var("AIWATCH_SOAK_POLICY") else {
        // One process per policy, so each peak RSS is its own.
        for (key, _, _) in &policies {
            let status = std::process::Command::new(std::env::current_exe()?)
                .args(std::env::args().skip(1))
                .env("AIWATCH_SOAK_POLICY", key)
                .status()?;
            anyhow::ensure!(status.success(), "soak with policy {key} failed");
        }
        return Ok(());
    };
    for (key, name, text) in &policies {
        if *key != only {
            continue;
        }
        let started = Instant::now();
        let (samples, peak) = if kafka {
            let bootstrap = std::env::var("AIWATCH_KAFKA_BOOTSTRAP")
                .map_err(|_| anyhow::anyhow!("set AIWATCH_KAFKA_BOOTSTRAP (start a broker with scripts/kafka.sh start)"))?;
            soak_kafka(&bootstrap, text, events, rate)?
        } else {
            soak_scan(text, events, rate)?
        };
        let path = if kafka { "run --until-end from Kafka" } else { "scan" };
        print_table(&format!("{path}, {name}"), &samples, peak, started.elapsed().as_secs_f64(), events);
    }
    Ok(())
}
