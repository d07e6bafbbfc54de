//! `/metrics`, `/healthz` and `/readyz` of a running `aiwatch run`: the counts
//! match the stream, and no label carries a tenant or any event content.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

const CANARY: &str = "CANARY-PROMPT-TEXT-7f3a9c";

/// The tenant ids of the example stream, and the largest event time of its valid events.
fn example_facts(dead: &BTreeSet<Vec<u8>>) -> (BTreeSet<String>, f64) {
    let data = std::fs::read(examples().join("events.jsonl")).unwrap();
    let (mut tenants, mut max_time) = (BTreeSet::new(), f64::MIN);
    for line in lines_of(&data) {
        let Ok(v) = serde_json::from_slice::<Value>(line) else { continue };
        if let Some(t) = v.get("tenant_id").and_then(Value::as_str) {
            tenants.insert(t.to_string());
        }
        if dead.contains(line) {
            continue;
        }
        if let Some(t) = v.get("time").and_then(Value::as_str).and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()) {
            max_time = max_time.max(t.timestamp_nanos_opt().unwrap() as f64 / 1e9);
        }
    }
    (tenants, max_time)
}

#[test]
fn metrics_count_the_stream_and_carry_no_tenant_or_content() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("metrics");
    create_topic(&topic, PARTITIONS);

    let mut cfg = RunConfig::new(dir.path(), &topic);
    let addr = free_addr();
    cfg.metrics = Some(addr);
    let mut p = Process::run(&cfg.write(dir.path()), false, &[]);
    wait_for(Duration::from_secs(60), "GET /readyz to answer 200", || {
        p.assert_running();
        matches!(http_get(addr, "/readyz"), Some((200, _))).then_some(())
    });
    assert_eq!(http_get(addr, "/healthz").map(|r| r.0), Some(200), "/healthz");
    // Produced while aiwatch already waits on the topic.
    produce_file(&topic, &examples().join("events.jsonl"));

    // 1,080 valid events, 9 of them delivered twice, 14 malformed lines.
    let (text, m) = wait_for(Duration::from_secs(60), "all 1,103 records to be counted", || {
        p.assert_running();
        let (status, text) = http_get(addr, "/metrics")?;
        assert_eq!(status, 200);
        let m = parse_metrics(&text);
        let seen = metric_sum(&m, "aiwatch_events_consumed_total") + metric_sum(&m, "aiwatch_duplicate_events_total");
        // A step is counted before its alerts are written: wait for the file to catch up too.
        let written = std::fs::read_to_string(cfg.alerts()).map_or(0, |t| t.lines().count()) as f64;
        (seen >= 1089.0 && metric_sum(&m, "aiwatch_dead_letters_total") >= 14.0 && metric_sum(&m, "aiwatch_alerts_total") == written)
            .then_some((text, m))
    });
    assert_eq!(metric_sum(&m, "aiwatch_events_consumed_total"), 1080.0, "aiwatch_events_consumed_total");
    assert_eq!(metric_sum(&m, "aiwatch_duplicate_events_total"), 9.0, "aiwatch_duplicate_events_total");
    assert_eq!(metric_sum(&m, "aiwatch_dead_letters_total"), 14.0, "aiwatch_dead_letters_total");
    for s in m.iter().filter(|s| s.name == "aiwatch_dead_letters_total") {
        let reason = &s.labels["reason"];
        assert!(!reason.is_empty() && reason.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "dead-letter reason label {reason:?}");
    }

    // Alerts by rule and severity: what the file output holds so far (the stream is open,
    // so absence rules wait for the watermark).
    let file = json_lines(cfg.alerts());
    assert!(!file.is_empty(), "no alert written while the stream is open");
    let mut by_rule: BTreeMap<(String, String), f64> = BTreeMap::new();
    for a in &file {
        *by_rule.entry((a["rule_id"].as_str().unwrap().into(), a["severity"].as_str().unwrap().into())).or_default() += 1.0;
    }
    let metric_by_rule: BTreeMap<(String, String), f64> = m
        .iter()
        // Every rule's series exists at 0 from the start; the file holds only rules that fired.
        .filter(|s| s.name == "aiwatch_alerts_total" && s.value > 0.0)
        .map(|s| ((s.labels["rule"].clone(), s.labels["severity"].clone()), s.value))
        .collect();
    assert_eq!(metric_by_rule, by_rule, "aiwatch_alerts_total{{rule, severity}} vs the alert file");

    // Steps and their duration histogram.
    let batches = metric_sum(&m, "aiwatch_batches_total");
    assert!(batches >= 1.0, "aiwatch_batches_total = {batches}");
    let mut buckets: Vec<(f64, f64)> = m
        .iter()
        .filter(|s| s.name == "aiwatch_batch_duration_seconds_bucket")
        .map(|s| (s.labels["le"].parse::<f64>().unwrap_or(f64::INFINITY), s.value))
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(buckets.len() >= 2 && buckets.last().unwrap().0.is_infinite(), "histogram buckets: {buckets:?}");
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "cumulative buckets: {buckets:?}");
    assert_eq!(buckets.last().unwrap().1, batches, "+Inf bucket vs aiwatch_batches_total");
    assert_eq!(metric_sum(&m, "aiwatch_batch_duration_seconds_count"), batches);
    assert!(metric_sum(&m, "aiwatch_batch_duration_seconds_sum") > 0.0);

    // The watermark: the largest valid event time minus the default 60 s lateness.
    let dead: BTreeSet<Vec<u8>> = json_lines(cfg.dead_letters())
        .iter()
        .map(dead_letter_bytes)
        .collect();
    let (tenants, max_time) = example_facts(&dead);
    // While streaming it is held by the slowest partition still delivering, so at
    // most the largest event time minus the lateness, and within the stream's span.
    let watermark = metric_sum(&m, "aiwatch_watermark_seconds");
    assert!(
        watermark <= max_time - 60.0 + 1e-3 && watermark > max_time - 3.0 * 86_400.0,
        "aiwatch_watermark_seconds = {watermark}, largest event time {max_time}"
    );

    // Nothing from inside the events: no tenant as a label value, no prompt text anywhere.
    assert!(tenants.len() >= 10 && tenants.contains("acme") && tenants.contains("müller-gmbh"), "tenants: {tenants:?}");
    for s in &m {
        for (k, v) in &s.labels {
            assert!(!tenants.contains(v), "metric {} has the tenant id {v:?} as label {k}", s.name);
        }
    }
    assert!(!text.contains(CANARY), "the prompt canary is in /metrics");

    p.signal("TERM");
    let status = p.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "exit after SIGTERM: {status}\n{}", p.stderr_text());
    let log = std::fs::read_to_string(&p.stderr).unwrap();
    assert!(!log.contains(CANARY), "the prompt canary is in the log");
    assert!(!std::fs::read_to_string(cfg.alerts()).unwrap().contains(CANARY), "the prompt canary is in an alert");
    delete_topics(&[&topic]);
}
