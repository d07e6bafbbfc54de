//! Poison inputs through `aiwatch run`: each is a dead letter, the stream goes
//! on, and the events around it give exactly their alerts. Events stamped far
//! ahead of the clock or outside the computable range; a dead letter larger
//! than the dead-letter topic takes.

use std::time::Duration;

use crate::support::*;

#[test]
fn far_future_and_out_of_range_times_are_dead_letters_and_change_no_alert() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("future");
    create_topic(&topic, PARTITIONS);
    let ahead = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut data = std::fs::read(examples().join("events.jsonl")).unwrap();
    if !data.ends_with(b"\n") {
        data.push(b'\n');
    }
    // One day ahead of the clock (past max_future_seconds = 300), and past 2200.
    let poison = [
        format!(r#"{{"event_id":"poison-ahead","event_type":"ai.request","time":"{ahead}","tenant_id":"acme","request_id":"r-poison","provider":"openai"}}"#),
        r#"{"event_id":"poison-2262","event_type":"ai.request","time":"2262-01-01T00:00:00Z","tenant_id":"acme","request_id":"r-poison-2","provider":"openai"}"#.to_string(),
    ];
    for p in &poison {
        data.extend_from_slice(p.as_bytes());
        data.push(b'\n');
    }
    produce_lines(&topic, &data);

    let mut cfg = RunConfig::new(dir.path(), &topic);
    cfg.single_step();
    cfg.start_at_beginning();
    run_until_end(&cfg.write(dir.path()), Duration::from_secs(90), &[]);
    assert_same_violations(&violations_once(&json_lines(cfg.alerts())), &expected_violations(), "run with far-future events");
    let dead = json_lines(cfg.dead_letters());
    assert_eq!(dead.len(), 16, "the example's 14 dead letters and the 2 poison events");
    let kinds: Vec<&str> = dead.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"time_in_future") && kinds.contains(&"time_out_of_range"), "{kinds:?}");
    assert!(dead.iter().all(|d| d["sha256"].is_string() && d["length"].is_u64()), "dead letters carry length and hash");
    delete_topics(&[&topic]);
}

#[test]
fn a_dead_letter_over_the_topic_limit_is_sent_without_its_bytes_and_the_run_goes_on() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;

    let dir = tempfile::tempdir().unwrap();
    let (topic, dead_topic) = (unique("big-dead-in"), unique("big-dead"));
    create_topic(&topic, PARTITIONS);
    // A dead-letter topic that takes at most 4 KB per message.
    let admin: AdminClient<DefaultClientContext> =
        rdkafka::ClientConfig::new().set("bootstrap.servers", bootstrap()).create().expect("Kafka admin client");
    let small = NewTopic::new(&dead_topic, 1, TopicReplication::Fixed(1)).set("max.message.bytes", "4096");
    for r in block_on(admin.create_topics(&[small], &AdminOptions::new())).unwrap() {
        r.unwrap();
    }
    wait_for(Duration::from_secs(30), "the dead-letter topic", || (end_offsets(&dead_topic).len() == 1).then_some(()));

    let mut data = std::fs::read(examples().join("events.jsonl")).unwrap();
    if !data.ends_with(b"\n") {
        data.push(b'\n');
    }
    // Malformed (event_id is a number) and 50 KB: over the topic's limit with its bytes.
    let big = format!(r#"{{"event_id":1,"event_type":"x","time":"2026-11-01T00:00:00Z","pad":"{}"}}"#, "z".repeat(50_000));
    data.extend_from_slice(big.as_bytes());
    data.push(b'\n');
    produce_lines(&topic, &data);

    let mut cfg = RunConfig::new(dir.path(), &topic);
    cfg.single_step();
    cfg.start_at_beginning();
    cfg.dead_letters = None;
    cfg.extra = format!("\n[dead_letter]\nkind = \"kafka\"\ntopic = {}\nmax_raw_bytes = 100000\n", toml_str(&dead_topic));
    run_until_end(&cfg.write(dir.path()), Duration::from_secs(90), &[]);
    assert_same_violations(&violations_once(&json_lines(cfg.alerts())), &expected_violations(), "run with an oversize dead letter");

    let dead = read_topic(&dead_topic);
    assert_eq!(dead.len(), 15, "the example's 14 dead letters and the big one");
    let header = |r: &Record, k: &str| r.headers.iter().find(|(n, _)| n == k).map(|(_, v)| String::from_utf8_lossy(v).to_string());
    let big_one = dead.iter().find(|r| header(r, "aiwatch.length") == Some(big.len().to_string())).expect("the big dead letter");
    assert!(big_one.value.is_empty(), "sent with its bytes over the topic limit");
    assert_eq!(header(big_one, "aiwatch.sha256").map(|h| h.len()), Some(64));
    assert!(dead.iter().filter(|r| r.offset != big_one.offset).all(|r| !r.value.is_empty()), "small dead letters keep their bytes");
    delete_topics(&[&topic, &dead_topic]);
}
