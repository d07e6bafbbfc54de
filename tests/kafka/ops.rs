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
    p.signal("TERM");
    assert_eq!(p.wait(Duration::from_secs(30)).code(), Some(0), "{}", p.stderr_text());
    delete_topics(&[&topic]);
}
