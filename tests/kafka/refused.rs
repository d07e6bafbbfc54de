//! Alerts an output refuses for good: they go to the alert dead letter with
//! the output's answer, `aiwatch_alerts_dead_lettered_total` counts them, and
//! the stream goes on and commits.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

fn alert_ids(alerts: &[Value]) -> BTreeSet<String> {
    alerts.iter().map(|a| a["alert_id"].as_str().expect("alert_id").to_string()).collect()
}

#[test]
fn a_webhook_answering_400_for_ever_sends_every_alert_to_the_alert_dead_letter_and_the_stream_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let webhook = Receiver::start(|_, _| 400);
    let topic = unique("refused-in");
    create_topic(&topic, PARTITIONS);
    produce_file(&topic, &examples().join("events.jsonl"));

    let refused = dir.path().join("refused.jsonl");
    let metrics = free_addr();
    let mut cfg = RunConfig::new(dir.path(), &topic);
    cfg.start_at_beginning();
    cfg.metrics = Some(metrics);
    cfg.checkpoint_interval_seconds = 1;
    cfg.extra = format!(
        "\n[alert_dead_letter]\nkind = \"file\"\npath = {}\n\n[[output]]\nkind = \"webhook\"\nurl = {}\nmax_retries = 1\ntimeout_ms = 2000\n",
        toml_str(&refused.display().to_string()),
        toml_str(&webhook.url()),
    );
    let mut p = Process::run(&cfg.write(dir.path()), false, &[]);
    // Not stuck: every alert the file output took is dead-lettered, counted, and every offset committed.
    let counted = wait_for(Duration::from_secs(90), "every alert dead-lettered and every offset committed", || {
        p.assert_running();
        let counted = metric_sum(&scrape(metrics)?, "aiwatch_alerts_dead_lettered_total");
        let taken = json_lines(cfg.alerts()).len();
        (taken > 0 && counted == taken as f64 && committed_offsets(&cfg.group, &topic) == end_offsets(&topic)).then_some(counted)
    });
    let m = scrape(metrics).unwrap();
    // Every output's series exists (at 0 from the start); only the webhook's counted.
    let webhook_label = m.iter().find(|s| s.name == "aiwatch_alerts_dead_lettered_total" && s.value > 0.0).map(|s| s.labels["output"].clone());
    assert_eq!(webhook_label.as_deref(), Some("webhook"));
    p.signal("TERM");
    p.wait_ok(Duration::from_secs(45));

    let file = json_lines(cfg.alerts());
    let dead = json_lines(&refused);
    assert_eq!(dead.len() as f64, counted, "one dead letter per counted alert");
    assert_eq!(alert_ids(&dead.iter().map(|d| d["alert"].clone()).collect::<Vec<_>>()), alert_ids(&file), "dead-lettered alerts");
    for d in &dead {
        assert_eq!(d["output"], "webhook", "{d}");
        assert_eq!(d["status"], "HTTP 400 Bad Request", "{d}");
        assert_eq!(d["tries"], 3, "{d}");
        assert_eq!(d["alert_id"], d["alert"]["alert_id"], "{d}");
    }
    // Each alert was sent three times, never more: a retry does not resend what was decided.
    let posted = webhook.requests();
    assert!(posted.iter().all(|r| r.status == 400));
    assert_eq!(posted.len(), 3 * dead.len(), "requests to the refusing webhook");
    assert_eq!(committed_offsets(&cfg.group, &topic), end_offsets(&topic), "committed offsets");
    delete_topics(&[&topic]);
}

#[test]
fn alerts_too_large_for_the_alert_topic_are_dead_lettered_and_the_others_delivered() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;

    let dir = tempfile::tempdir().unwrap();
    let (topic, alert_topic, refused_topic) = (unique("too-large-in"), unique("too-large-alerts"), unique("too-large-refused"));
    create_topic(&topic, PARTITIONS);
    create_topic(&refused_topic, 1);
    // An alert topic that takes about half of the example's alerts (600 to 840 bytes each).
    let admin: AdminClient<DefaultClientContext> =
        rdkafka::ClientConfig::new().set("bootstrap.servers", bootstrap()).create().expect("Kafka admin client");
    let small = NewTopic::new(&alert_topic, 1, TopicReplication::Fixed(1)).set("max.message.bytes", "800");
    for r in block_on(admin.create_topics(&[small], &AdminOptions::new())).unwrap() {
        r.unwrap();
    }
    wait_for(Duration::from_secs(30), "the alert topic", || (end_offsets(&alert_topic).len() == 1).then_some(()));
    produce_file(&topic, &examples().join("events.jsonl"));

    let mut cfg = RunConfig::new(dir.path(), &topic);
    cfg.single_step();
    cfg.start_at_beginning();
    cfg.extra = format!(
        "\n[alert_dead_letter]\nkind = \"kafka\"\ntopic = {}\n\n[[output]]\nkind = \"kafka\"\ntopic = {}\n",
        toml_str(&refused_topic),
        toml_str(&alert_topic)
    );
    run_until_end(&cfg.write(dir.path()), Duration::from_secs(120), &[]);

    let file = json_lines(cfg.alerts());
    assert_same_violations(&violations_once(&file), &expected_violations(), "file output beside the refusing alert topic");
    let delivered: Vec<Value> = read_topic(&alert_topic).iter().map(|r| serde_json::from_slice(&r.value).unwrap()).collect();
    let refused = read_topic(&refused_topic);
    let dead: Vec<Value> = refused.iter().map(|r| serde_json::from_slice(&r.value).unwrap()).collect();
    assert!(!delivered.is_empty() && !dead.is_empty(), "{} delivered, {} refused", delivered.len(), dead.len());
    for d in &dead {
        assert_eq!(d["output"], "kafka", "{d}");
        assert_eq!(d["status"], "MessageSizeTooLarge", "{d}");
    }
    for r in &refused {
        assert!(r.headers.iter().any(|(k, v)| k == "aiwatch.status" && v == b"MessageSizeTooLarge"));
    }
    let dead_alerts: Vec<Value> = dead.iter().map(|d| d["alert"].clone()).collect();
    let (d, x) = (alert_ids(&delivered), alert_ids(&dead_alerts));
    assert!(d.is_disjoint(&x), "an alert both delivered and dead-lettered");
    assert_eq!(d.union(&x).cloned().collect::<BTreeSet<_>>(), alert_ids(&file), "every alert delivered or dead-lettered");
    assert_eq!(delivered.len(), d.len(), "an alert delivered twice");
    assert_eq!(committed_offsets(&cfg.group, &topic), end_offsets(&topic), "committed offsets");
    delete_topics(&[&topic, &alert_topic, &refused_topic]);
}
