//! `run --until-end` over a topic finds exactly what `scan` finds in the same lines.

use std::time::Duration;

use crate::support::*;

#[test]
fn until_end_on_the_example_stream_finds_exactly_the_expected_violations() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("example");
    create_topic(&topic, PARTITIONS);
    let produced = produce_file(&topic, &examples().join("events.jsonl"));

    let cfg = RunConfig::new(dir.path(), &topic);
    run_until_end(&cfg.write(dir.path()), Duration::from_secs(90), &[]);

    let alerts = json_lines(cfg.alerts());
    assert_same_violations(&violations_once(&alerts), &expected_violations(), "run --until-end on the example topic");
}
