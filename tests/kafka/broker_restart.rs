//! The broker dies (SIGKILL) in the middle of a run and comes back on the same
//! data: `aiwatch run` neither crashes nor exits while it is gone, resumes when
//! it is back, and once the stream is drained the alerts are exactly what
//! `scan` finds, with any repeat carrying the same `alert_id`.
//!
//! The test kills a broker of its own (`scripts/kafka.sh` on another port and a
//! temporary folder), never the shared one the other tests use in parallel.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

/// Client port of the test's own broker (its controller takes the next one).
/// `AIWATCH_TEST_RESTART_KAFKA_PORT` overrides it.
const PORT: u16 = 19192;

/// A single-node broker of this test's own, run by `scripts/kafka.sh` with its
/// own port and data folder; stopped, and its folder deleted, when dropped (on
/// failure too).
struct OwnBroker {
    dir: PathBuf,
    port: u16,
    bootstrap: String,
}

impl OwnBroker {
    fn start(dir: PathBuf) -> OwnBroker {
        let port = std::env::var("AIWATCH_TEST_RESTART_KAFKA_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(PORT);
        let broker = OwnBroker { dir, port, bootstrap: format!("127.0.0.1:{port}") };
        broker.script("start");
        broker
    }

    /// `scripts/kafka.sh CMD` for this broker; fails the test (with its output) if it fails.
    /// Each command bounds its own waits (start and restart: AIWATCH_KAFKA_START_TIMEOUT).
    fn script(&self, cmd: &str) {
        let started = Instant::now();
        let out = self.command(cmd).output().unwrap_or_else(|e| panic!("cannot run scripts/kafka.sh {cmd}: {e}"));
        assert!(
            out.status.success(),
            "scripts/kafka.sh {cmd} (port {}, dir {}) failed: {}\n{}",
            self.port,
            self.dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("broker_restart: scripts/kafka.sh {cmd} took {:.1} s", started.elapsed().as_secs_f64());
    }

    fn command(&self, cmd: &str) -> Command {
        let mut c = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka.sh"));
        c.arg(cmd)
            .env("AIWATCH_KAFKA_PORT", self.port.to_string())
            .env("AIWATCH_KAFKA_DIR", &self.dir)
            .env("AIWATCH_KAFKA_START_TIMEOUT", "90")
            .stdin(std::process::Stdio::null());
        c
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        // Best effort; `stop` bounds its wait (SIGKILL after 30 s).
        let _ = self.command("stop").output();
    }
}

/// From `/metrics` of a running aiwatch: the records taken in (valid events,
/// duplicates and dead letters) and the offset commits; `None` until it answers.
fn counts(addr: std::net::SocketAddr) -> Option<(f64, f64)> {
    let m = scrape(addr)?;
    let seen = metric_sum(&m, "aiwatch_events_consumed_total")
        + metric_sum(&m, "aiwatch_duplicate_events_total")
        + metric_sum(&m, "aiwatch_dead_letters_total");
    Some((seen, metric_sum(&m, "aiwatch_offset_commits_total")))
}

#[test]
fn broker_killed_and_restarted_mid_run_loses_no_violation() {
    let test_started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let (events, policy) = (dir.path().join("events.jsonl"), dir.path().join("policy.toml"));
    generate(
        &["--events", "40000", "--disorder", "10", "--duplicates", "0.01", "--malformed", "0.001", "--seed", "23"],
        &events,
        &policy,
    );
    let scanned = scan(&policy, &events, dir.path());

    let broker = OwnBroker::start(dir.path().join("kafka"));
    let _own = UseBroker::new(&broker.bootstrap);
    let topic = unique("broker-restart");
    create_topic(&topic, PARTITIONS);
    let produced = produce_file(&topic, &events);
    let total = produced.at.len() as f64;

    let mut cfg = RunConfig::new(dir.path(), &topic);
    cfg.policy = policy;
    cfg.checkpoint_interval_seconds = 1;
    // Small steps, so the stream takes long enough to lose the broker in the
    // middle, also when other tests leave this one the machine (500 was too
    // few: under no load all of it could be consumed before the first commit).
    cfg.batch_size = 200;
    // Little prefetch: while the broker is gone the consumer has only a few
    // hundred KB in hand, so most of the stream is fetched after the restart.
    cfg.kafka_options.push(("queued.max.messages.kbytes".into(), "256".into()));
    let addr = free_addr();
    cfg.metrics = Some(addr);
    cfg.start_at_beginning();
    let config = cfg.write(dir.path());

    let mut run = Process::run(&config, false, &[]);
    // Part of the stream processed, and some of it committed, before the broker dies.
    let (seen, _) = wait_for(Duration::from_secs(60), "a fifth of the stream to be consumed and an offset commit", || {
        run.assert_running();
        counts(addr).filter(|(seen, commits)| *seen >= total / 5.0 && *commits >= 1.0)
    });
    broker.script("kill9");
    let (seen_at_kill, _) = counts(addr).expect("metrics answer");
    assert!(seen_at_kill < total, "all {total} records were consumed before the broker was killed: no outage in the middle");

    // The broker stays down for longer than the group's session timeout (6 s):
    // aiwatch keeps running (and serving /healthz) with nothing to read.
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(10) {
        run.assert_running();
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(http_get(addr, "/healthz").map(|r| r.0), Some(200), "/healthz while the broker is down");
    let (seen_down, _) = counts(addr).expect("metrics answer");
    eprintln!("broker_restart: killed the broker at {seen} / {seen_at_kill} of {total} records; {seen_down} after 10 s without it");

    broker.script("restart");
    run.assert_running();

    // Drained: every record counted, and the group's commits at the end of every partition.
    let ends = end_offsets(&topic);
    wait_for(Duration::from_secs(120), "the stream to be consumed and committed to its end after the restart", || {
        run.assert_running();
        let (seen, _) = counts(addr)?;
        if seen < total {
            return None;
        }
        std::thread::sleep(Duration::from_millis(400)); // each probe below makes a Kafka client
        (committed_offsets(&cfg.group, &topic) == ends).then_some(())
    });
    run.signal("TERM");
    run.wait_ok(Duration::from_secs(60));
    let first = json_lines(cfg.alerts());
    let first_log = std::fs::read_to_string(&run.stderr).unwrap_or_default();
    let first_summary = Summary::parse(&first_log).expect("the run prints its summary on SIGTERM");
    // The outage outlasts the session timeout, so librdkafka revoked every
    // partition and, once the broker was back, read them again from the last
    // commit that went through: what this process had already taken is skipped,
    // not processed a second time (as duplicates and late events).
    assert_eq!(
        first_summary.records() as f64,
        total,
        "records the run processed ({first_summary:?}), of {total} produced: some were processed twice\n{}",
        run.stderr_text()
    );

    // An open stream holds back deadlines the watermark has not passed: a
    // `--until-end` run on the same state (nothing left to read) settles them, as scan does at its end.
    let log = run_until_end(&config, Duration::from_secs(90), &[]);
    let summary = Summary::parse(&log).expect("the --until-end run prints its summary");
    assert_eq!(summary.records(), 0, "the --until-end run read records again: the drained run's checkpoint did not cover them");
    let all = json_lines(cfg.alerts());

    // Nothing lost and nothing extra.
    let union: BTreeSet<Violation> = all.iter().map(violation_of).collect();
    assert_same_violations(&union, &scanned, "alerts of the run across the broker restart, then settled by --until-end");
    // Repeats share their alert_id.
    let mut ids: BTreeMap<Violation, String> = BTreeMap::new();
    for a in &all {
        let id = a["alert_id"].as_str().expect("alert_id").to_string();
        if let Some(prev) = ids.insert(violation_of(a), id.clone()) {
            assert_eq!(prev, id, "violation {:?} emitted again with another alert_id", violation_of(a));
        }
    }
    // One process lived through the outage: its events were never processed twice.
    violations_once(&first);
    violations_once(&all[first.len()..]);
    let unlocated = alerts_without_origins(&all);
    assert!(unlocated.is_empty(), "alerts without Kafka origins ({}): {:#?}", unlocated.len(), &unlocated[..unlocated.len().min(5)]);

    // Every malformed record reached the dead-letter file.
    let dead: BTreeSet<(i64, i64)> = json_lines(cfg.dead_letters())
        .iter()
        .map(|d| (d["origin"]["partition"].as_i64().unwrap(), d["origin"]["offset"].as_i64().unwrap()))
        .collect();
    assert_eq!(dead.len(), json_lines(&dir.path().join("scan-dead.jsonl")).len(), "malformed records dead-lettered");
    assert_eq!(committed_offsets(&cfg.group, &topic), end_offsets(&topic), "committed offsets at the end");
    eprintln!(
        "broker_restart: {} alerts ({} violations) from the run across the restart ({first_summary:?}), {} settled at the end; {:.0} s in all",
        first.len(),
        violations_once(&first).len(),
        all.len() - first.len(),
        test_started.elapsed().as_secs_f64()
    );
}
