//! A topic written by a transactional producer: each partition ends with a
//! commit marker that no consumer is handed, so "read to the end" must come
//! from the consumer's position and partition EOF, not the high watermark.

use std::time::Duration;

use crate::support::*;

#[test]
fn until_end_on_a_transactional_topic_exits_and_equals_scan() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("transactional");
    create_topic(&topic, PARTITIONS);
    let data = std::fs::read(examples().join("events.jsonl")).unwrap();
    // Transactions of 100 lines: commit markers between the messages and at the end of every partition.
    let produced = produce_transactional(&topic, &data, 100);
    assert_eq!(produced.at.len(), lines_of(&data).len(), "every line is readable");
    let ends = end_offsets(&topic);
    let last_data: Vec<i64> = (0..PARTITIONS).map(|p| produced.at.keys().filter(|(q, _)| *q == p).map(|(_, o)| *o).max().unwrap()).collect();
    assert!((0..PARTITIONS).all(|p| last_data[p as usize] + 1 < ends[&p]), "each partition ends with a marker: {last_data:?} {ends:?}");

    let mut cfg = RunConfig::new(dir.path(), &topic);
    cfg.single_step();
    cfg.start_at_beginning();
    let config = cfg.write(dir.path());
    run_until_end(&config, Duration::from_secs(90), &[]);
    assert_same_violations(&violations_once(&json_lines(cfg.alerts())), &expected_violations(), "run --until-end on a transactional topic");
    assert_eq!(json_lines(cfg.dead_letters()).len(), 14, "dead letters");
    // Committed: the next offset after the last message of each partition (the marker is never handed over).
    let committed = committed_offsets(&cfg.group, &topic);
    assert!((0..PARTITIONS).all(|p| committed[&p] > last_data[p as usize]), "committed {committed:?}, last messages {last_data:?}");

    // A second --until-end from those commits finds only markers left, and exits too.
    let alerts = json_lines(cfg.alerts()).len();
    run_until_end(&config, Duration::from_secs(60), &[]);
    assert_eq!(json_lines(cfg.alerts()).len(), alerts, "a finished replay emitted alerts again");
    delete_topics(&[&topic]);
}
