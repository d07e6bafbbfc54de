//! `run --until-end` over a partitioned topic finds exactly what `scan` finds
//! in the same lines, commits everything it read, and keeps Kafka origins.

use std::time::Duration;

use serde_json::Value;

use crate::support::*;

#[test]
fn until_end_on_the_example_stream_finds_exactly_the_expected_violations() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("example");
    create_topic(&topic, PARTITIONS);
    let produced = produce_file(&topic, &examples().join("events.jsonl"));

    let mut cfg = RunConfig::new(dir.path(), &topic);
    cfg.single_step();
    cfg.start_at_beginning();
    let config = cfg.write(dir.path());
    run_until_end(&config, Duration::from_secs(90), &[]);

    let alerts = json_lines(cfg.alerts());
    assert_same_violations(&violations_once(&alerts), &expected_violations(), "run --until-end on the example topic");

    // Evidence names where each event came from, and that is where it is.
    for a in &alerts {
        for e in a["evidence"]["events"].as_array().into_iter().flatten() {
            assert_eq!(e["topic"], Value::from(topic.as_str()), "evidence origin: {a}");
            let at = (e["partition"].as_i64().unwrap() as i32, e["offset"].as_i64().unwrap());
            let bytes = produced.at.get(&at).unwrap_or_else(|| panic!("evidence points at no produced message: {e}"));
            let id = e["event_id"].as_str().unwrap();
            let sent: Value = serde_json::from_slice(bytes).expect("evidence points at a valid event");
            assert_eq!(sent["event_id"].as_str(), Some(id), "evidence {e} points at another event");
        }
    }
    let unlocated = alerts_without_origins(&alerts);
    assert!(unlocated.is_empty(), "evidence events without their Kafka origin ({}): {:#?}", unlocated.len(), &unlocated[..unlocated.len().min(10)]);

    // 14 dead letters, each with its Kafka origin, the bytes as sent and a reason.
    let dead = json_lines(cfg.dead_letters());
    assert_eq!(dead.len(), 14, "dead letters: {dead:#?}");
    for d in &dead {
        let o = &d["origin"];
        assert_eq!(o["topic"], Value::from(topic.as_str()), "dead letter origin: {d}");
        let at = (o["partition"].as_i64().unwrap() as i32, o["offset"].as_i64().unwrap());
        assert_eq!(Some(&dead_letter_bytes(d)), produced.at.get(&at), "dead letter keeps the bytes of {at:?}");
        assert!(!d["reason"].as_str().unwrap_or_default().is_empty(), "dead letter without a reason: {d}");
    }

    // Everything read was committed.
    assert_eq!(committed_offsets(&cfg.group, &topic), end_offsets(&topic), "committed offsets of the group");

    // A second --until-end in the same group and state dir has nothing left to read or say.
    run_until_end(&config, Duration::from_secs(60), &[]);
    assert_eq!(json_lines(cfg.alerts()).len(), alerts.len(), "a finished replay emitted alerts again");
    assert_eq!(json_lines(cfg.dead_letters()).len(), 14, "a finished replay wrote dead letters again");
    delete_topics(&[&topic]);
}

#[test]
fn until_end_on_a_generated_stream_equals_scan_of_the_same_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (events, policy) = (dir.path().join("events.jsonl"), dir.path().join("policy.toml"));
    // Disorder well within the default 60 s lateness, so the answer must not depend on arrival.
    generate(
        &["--events", "20000", "--disorder", "10", "--duplicates", "0.01", "--malformed", "0.001", "--seed", "7"],
        &events,
        &policy,
    );
    let scanned = scan(&policy, &events, dir.path());
    assert!(scanned.len() > 50, "the generated stream should hold violations, found {}", scanned.len());
    let scanned_dead = json_lines(&dir.path().join("scan-dead.jsonl")).len();

    let topic = unique("generated");
    create_topic(&topic, PARTITIONS);
    produce_file(&topic, &events);
    let mut cfg = RunConfig::new(dir.path(), &topic);
    cfg.policy = policy;
    cfg.start_at_beginning();
    let log = run_until_end(&cfg.write(dir.path()), Duration::from_secs(120), &[]);
    let summary = Summary::text(&log);

    assert_same_violations(
        &violations_once(&json_lines(cfg.alerts())),
        &scanned,
        &format!("run --until-end vs scan of the generated stream (run summary: {summary})"),
    );
    assert_eq!(json_lines(cfg.dead_letters()).len(), scanned_dead, "dead letters of run vs scan");
    assert_eq!(committed_offsets(&cfg.group, &topic), end_offsets(&topic), "committed offsets of the group");
    delete_topics(&[&topic]);
}

/// Default consumer settings, without the arrival bounds the other tests set up
/// (see `RunConfig` in support.rs): a regression test for partitions read at
/// different speeds.
///
/// librdkafka hands over each partition's fetched data in one run (up to
/// `max.partition.fetch.bytes`, 1 MB by default), so a backlog is read faster
/// on one partition than another. With a watermark that followed only the
/// largest event time seen, most of the slower partitions' events turned late
/// and hundreds of false `logging.missing_response` violations appeared. The
/// watermark is now held by the partitions that still have unread messages.
#[test]
fn until_end_with_default_fetch_sizes_equals_scan() {
    let dir = tempfile::tempdir().unwrap();
    let (events, policy) = (dir.path().join("events.jsonl"), dir.path().join("policy.toml"));
    generate(&["--events", "20000", "--disorder", "20", "--seed", "7"], &events, &policy);
    let scanned = scan(&policy, &events, dir.path());

    let topic = unique("default-fetch");
    create_topic(&topic, PARTITIONS);
    produce_file(&topic, &events);
    let mut cfg = RunConfig::new(dir.path(), &topic);
    cfg.policy = policy;
    cfg.kafka_options.retain(|(k, _)| k != "max.partition.fetch.bytes");
    let log = run_until_end(&cfg.write(dir.path()), Duration::from_secs(120), &[]);
    let summary = Summary::text(&log);
    assert_same_violations(
        &violations_once(&json_lines(cfg.alerts())),
        &scanned,
        &format!("run --until-end with default fetch sizes vs scan (run summary: {summary})"),
    );
    delete_topics(&[&topic]);
}
