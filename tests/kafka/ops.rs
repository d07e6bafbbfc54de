//! Operating `aiwatch run`: `config check --connect` against the real broker,
//! and the self-monitoring series a fresh process exports before any event.

use std::time::Duration;

use crate::support::*;

fn check_connect(config: &std::path::Path) -> std::process::Output {
    aiwatch()
        .args(["config", "check", "--connect", "--timeout", "20", "--config"])
        .arg(config)
        .env_remove("AIWATCH_CONFIG")
        .output()
        .unwrap()
}

#[test]
fn config_check_connect_reaches_the_broker_and_outputs_and_names_a_missing_topic() {
    let dir = tempfile::tempdir().unwrap();
    let (topic, alert_topic) = (unique("check-in"), unique("check-alerts"));
    create_topic(&topic, 2);
    create_topic(&alert_topic, 1);
    let alertmanager = Receiver::start(|_, r| if r.method == "GET" && r.path == "/-/ready" { 200 } else { 404 });
    let hook = Receiver::start(|_, _| 200);

    let mut cfg = RunConfig::new(dir.path(), &topic);
    cfg.alerts = None;
    cfg.extra = format!(
        "\n[[output]]\nkind = \"alertmanager\"\nurl = {}\n\n[[output]]\nkind = \"webhook\"\nurl = {}\n\n[[output]]\nkind = \"kafka\"\ntopic = {}\n",
        toml_str(&alertmanager.url()),
        toml_str(&format!("{}/hook", hook.url())),
        toml_str(&alert_topic)
    );
    let out = check_connect(&cfg.write(dir.path()));
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains(&format!("ok    input topic {topic} (2 partitions)")) && said.contains(&format!("alert topic {alert_topic}")), "{said}");
    assert!(said.contains("ok    output 1 (alertmanager) reached") && said.contains("ok    output 2 (webhook) reached"), "{said}");
    assert_eq!(alertmanager.requests().len(), 1, "one readiness probe");
    assert!(hook.requests().is_empty(), "nothing is posted to a webhook by a check");

    // A topic that does not exist: valid, but not usable: 3, naming it.
    let missing = unique("check-missing");
    cfg.extra = format!("\n[[output]]\nkind = \"kafka\"\ntopic = {}\n", toml_str(&missing));
    let out = check_connect(&cfg.write(dir.path()));
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(said.contains(&format!("FAIL  alert topic {missing}: the cluster has no such topic")), "{said}");
    delete_topics(&[&topic, &alert_topic]);
}

#[test]
fn a_fresh_run_exports_build_info_process_metrics_readiness_and_zero_series() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("selfmon");
    create_topic(&topic, 1);
    let mut cfg = RunConfig::new(dir.path(), &topic);
    let addr = free_addr();
    cfg.metrics = Some(addr);
    let mut p = Process::run(&cfg.write(dir.path()), false, &[]);
    let text = wait_for(Duration::from_secs(60), "GET /readyz to answer 200", || {
        p.assert_running();
        matches!(http_get(addr, "/readyz"), Some((200, _))).then(|| http_get(addr, "/metrics")).flatten().map(|(_, t)| t)
    });
    let m = parse_metrics(&text);
    let one = |name: &str| m.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("{name} missing:\n{text}")).clone();
    let info = one("aiwatch_build_info");
    assert_eq!(info.value, 1.0);
    assert!(info.labels["version"].starts_with("0.") && !info.labels["commit"].is_empty() && info.labels["rustc"].starts_with("1."), "{info:?}");
    assert_eq!(one("aiwatch_ready").value, 1.0);
    assert!(one("process_resident_memory_bytes").value > 1e6);
    assert!(one("process_open_fds").value >= 3.0);
    assert!(one("process_start_time_seconds").value > 1.7e9);
    assert!(one("aiwatch_last_checkpoint_timestamp_seconds").value > 1.7e9);
    let reasons: Vec<&str> = m.iter().filter(|s| s.name == "aiwatch_dead_letters_total").map(|s| s.labels["reason"].as_str()).collect();
    for r in ["invalid_json", "missing_field", "bad_time", "event_too_large"] {
        assert!(reasons.contains(&r), "aiwatch_dead_letters_total{{reason=\"{r}\"}} is not there at 0: {reasons:?}");
    }
    let rules: Vec<&str> = m.iter().filter(|s| s.name == "aiwatch_rule_errors_total").map(|s| s.labels["rule"].as_str()).collect();
    assert_eq!(rules.len(), 13, "every built-in rule's error series at 0: {rules:?}");
    let alerts = m.iter().filter(|s| s.name == "aiwatch_alerts_total" && s.value == 0.0).count();
    assert!(alerts >= 13, "every rule's alert series at 0 ({alerts})");
    assert!(m.iter().any(|s| s.name == "aiwatch_output_up" && s.labels["output"] == "file"), "the file output's series");
    p.signal("TERM");
    assert_eq!(p.wait(Duration::from_secs(30)).code(), Some(0), "{}", p.stderr_text());
    delete_topics(&[&topic]);
}

/// The lag of a partition, from the metrics.
fn lag(m: &[Sample], topic: &str) -> Option<f64> {
    m.iter().find(|s| s.name == "aiwatch_consumer_lag" && s.labels.get("topic").map(String::as_str) == Some(topic)).map(|s| s.value)
}

/// Lag is the partition's end minus what the engine processed: there before
/// anything is committed, and 0 once everything is processed though nothing is
/// committed yet (the first checkpoint is a minute away).
#[test]
fn lag_is_present_before_the_first_commit_and_follows_what_was_processed() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("lag");
    create_topic(&topic, 1);
    let produced = produce_file(&topic, &examples().join("events.jsonl")).at.len() as f64;
    let mut cfg = RunConfig::new(dir.path(), &topic);
    cfg.checkpoint_interval_seconds = 60;
    cfg.start_at_beginning();
    let addr = free_addr();
    cfg.metrics = Some(addr);
    let mut p = Process::run(&cfg.write(dir.path()), false, &[]);
    let first = wait_for(Duration::from_secs(60), "a lag series", || {
        p.assert_running();
        lag(&scrape(addr)?, &topic)
    });
    // Seen at once; how far the engine got by the first scrape varies.
    assert!((0.0..=produced).contains(&first), "lag {first} of {produced} records");
    wait_for(Duration::from_secs(60), "lag 0 once every record is processed", || {
        p.assert_running();
        (lag(&scrape(addr)?, &topic)? == 0.0).then_some(())
    });
    assert_eq!(committed_offsets(&cfg.group, &topic).values().sum::<i64>(), 0, "nothing committed before the first checkpoint");
    p.signal("TERM");
    assert_eq!(p.wait(Duration::from_secs(30)).code(), Some(0), "{}", p.stderr_text());
    delete_topics(&[&topic]);
}

/// On an idle topic the checkpoint stays current: its age stays under twice the interval.
#[test]
fn checkpoint_age_stays_under_twice_the_interval_on_an_idle_topic() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("idle");
    create_topic(&topic, 1);
    let mut cfg = RunConfig::new(dir.path(), &topic);
    cfg.checkpoint_interval_seconds = 1;
    let addr = free_addr();
    cfg.metrics = Some(addr);
    let mut p = Process::run(&cfg.write(dir.path()), false, &[]);
    wait_for(Duration::from_secs(60), "GET /readyz to answer 200", || matches!(http_get(addr, "/readyz"), Some((200, _))).then_some(()));
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(700));
        p.assert_running();
        let m = scrape(addr).expect("metrics");
        let at = m.iter().find(|s| s.name == "aiwatch_last_checkpoint_timestamp_seconds").expect("checkpoint time").value;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(now - at < 2.0, "checkpoint age {:.1} s with a 1 s interval on an idle topic", now - at);
    }
    p.signal("TERM");
    assert_eq!(p.wait(Duration::from_secs(30)).code(), Some(0), "{}", p.stderr_text());
    delete_topics(&[&topic]);
}
