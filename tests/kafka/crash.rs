//! `kill -9` in the middle of a stream, then a restart from the checkpoint:
//! no violation is lost, and a violation emitted again carries the same `alert_id`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::support::*;

#[test]
fn kill_9_and_restart_lose_no_violation_and_repeat_only_with_the_same_alert_id() {
    kill_9_and_restart(None);
}

/// The same with every open obligation due more than an hour ahead spilled to
/// disk at each step: the restart rolls the store back to the checkpoint's savepoint.
#[test]
fn kill_9_and_restart_of_a_spilled_state_lose_no_violation() {
    kill_9_and_restart(Some(0));
}

fn kill_9_and_restart(state_memory_limit: Option<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let (events, policy) = (dir.path().join("events.jsonl"), dir.path().join("policy.toml"));
    generate(
        &["--events", "60000", "--disorder", "10", "--duplicates", "0.01", "--malformed", "0.001", "--seed", "11"],
        &events,
        &policy,
    );
    let scanned = scan(&policy, &events, dir.path());

    let topic = unique("crash");
    create_topic(&topic, PARTITIONS);
    let produced = produce_file(&topic, &events);
    let total = produced.at.len() as i64;

    let mut cfg = RunConfig::new(dir.path(), &topic);
    cfg.policy = policy;
    cfg.checkpoint_interval_seconds = 1;
    cfg.state_memory_limit = state_memory_limit;
    // The evidence archive, written at each checkpoint: every event in it once, after the kill too.
    let archive = dir.path().join("archive");
    cfg.extra = format!("\n[archive]\nlocation = {}\n", toml_str(&archive.display().to_string()));
    // Small steps, so the stream takes long enough to be killed in the middle.
    cfg.batch_size = 500;
    cfg.start_at_beginning();
    let config = cfg.write(dir.path());
    let checkpoint = cfg.state_dir.join("checkpoint.aiwatch");

    let mut first = Process::run(&config, false, &[]);
    // Kill once alerts were written after the latest checkpoint: the restart must
    // then process their events again, and may emit them again.
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    wait_for(Duration::from_secs(90), "alerts written after a checkpoint", || {
        first.assert_running();
        let (alerts, ckpt) = (modified(cfg.alerts())?, modified(&checkpoint)?);
        (alerts > ckpt + Duration::from_millis(200)).then_some(())
    });
    first.kill9();
    let before = json_lines(cfg.alerts()).len();
    let committed: i64 = committed_offsets(&cfg.group, &topic).values().sum();
    assert!(committed < total, "the first run had committed all {total} records before the kill: nothing left to recover");

    // Same group, same state dir, same alert file (appended).
    let log = run_until_end(&config, Duration::from_secs(150), &[]);
    let all = json_lines(cfg.alerts());

    // The restart resumed from the checkpoint instead of reading everything again.
    let summary = Summary::parse(&log).expect("the restart prints its summary");
    assert!((summary.records() as i64) < total, "the restart read {} of {total} records: it did not resume", summary.records());

    // Nothing lost: both runs together found what scan finds.
    let union: BTreeSet<Violation> = all.iter().map(violation_of).collect();
    assert_same_violations(&union, &scanned, &format!("alerts of the killed run plus the restart ({summary:?})"));

    // Repeats are allowed after a crash, but only with the same alert_id; within a run, none.
    let mut ids: BTreeMap<Violation, String> = BTreeMap::new();
    for a in &all {
        let id = a["alert_id"].as_str().expect("alert_id").to_string();
        if let Some(prev) = ids.insert(violation_of(a), id.clone()) {
            assert_eq!(prev, id, "violation {:?} emitted again with another alert_id", violation_of(a));
        }
    }
    eprintln!(
        "crash: killed after {committed} of {total} records committed and {before} alerts; the restart read {} records and wrote {} alerts, {} of them repeats",
        summary.records(),
        all.len() - before,
        all.len() - union.len()
    );
    violations_once(&all[..before]);
    violations_once(&all[before..]);

    // Evidence keeps each event's Kafka origin across the restart (restored state included).
    let unlocated = alerts_without_origins(&all[before..]);
    assert!(unlocated.is_empty(), "alerts of the restart without Kafka origins ({}): {:#?}", unlocated.len(), &unlocated[..unlocated.len().min(5)]);

    // Every malformed record reached the dead-letter file, some perhaps twice.
    let dead: BTreeSet<(i64, i64)> = json_lines(cfg.dead_letters())
        .iter()
        .map(|d| (d["origin"]["partition"].as_i64().unwrap(), d["origin"]["offset"].as_i64().unwrap()))
        .collect();
    assert_eq!(dead.len(), json_lines(&dir.path().join("scan-dead.jsonl")).len(), "malformed records dead-lettered by both runs");

    assert_eq!(committed_offsets(&cfg.group, &topic), end_offsets(&topic), "committed offsets after the restart");
    if state_memory_limit.is_some() {
        let stores = std::fs::read_dir(&cfg.state_dir).unwrap().flatten().filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("spill-") && name.ends_with(".redb")
        });
        assert!(stores.count() > 1, "open obligations were spilled to the shards' stores in state_dir");
    }

    // The archive holds every valid event of the stream exactly once, and every alert of both runs.
    let scan_archive = dir.path().join("scan-archive");
    run_ok(
        aiwatch().arg("scan").arg("--policy").arg(&cfg.policy).arg("--archive").arg(&scan_archive).arg("--alerts").arg(dir.path().join("a.jsonl")).arg(&events),
        Duration::from_secs(120),
    );
    let count = |archive: &std::path::Path, sql: &str| -> String {
        let out = run_ok(aiwatch().arg("query").arg("--archive").arg(archive).args(["--output", "csv", sql]), Duration::from_secs(60));
        String::from_utf8_lossy(&out).lines().nth(1).unwrap_or_default().to_string()
    };
    let events_sql = "SELECT count(*) AS n, count(DISTINCT event_id) AS ids FROM events";
    let in_run = count(&archive, events_sql);
    assert_eq!(in_run, count(&scan_archive, events_sql), "events archived by the killed run and the restart, against scan");
    let (n, ids) = in_run.split_once(',').unwrap();
    assert_eq!(n, ids, "no event archived twice");
    let alerts_sql = "SELECT count(DISTINCT alert_id) FROM alerts";
    assert_eq!(count(&archive, alerts_sql), count(&scan_archive, alerts_sql), "distinct alerts archived");
    delete_topics(&[&topic]);
}
