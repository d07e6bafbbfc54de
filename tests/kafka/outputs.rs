//! Alert outputs of `aiwatch run`: webhook (with a secret header), Alertmanager,
//! an alert topic and a dead-letter topic, and retries when a receiver fails.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

const AUTH_ENV: &str = "AIWATCH_IT_WEBHOOK_AUTH";
const GENERATOR_URL: &str = "https://runbooks.example.com/aiwatch?from=kafka-it";

#[test]
fn every_alert_reaches_the_webhook_alertmanager_and_alert_topic() {
    let dir = tempfile::tempdir().unwrap();
    let webhook = Receiver::start(|_, _| 200);
    let alertmanager = Receiver::start(|_, r| if r.method == "POST" && r.path == "/api/v2/alerts" { 200 } else { 404 });

    let (topic, alert_topic, dead_topic) = (unique("outputs-in"), unique("outputs-alerts"), unique("outputs-dead"));
    create_topic(&topic, PARTITIONS);
    create_topic(&alert_topic, 2);
    create_topic(&dead_topic, 1);
    let produced = produce_file(&topic, &examples().join("events.jsonl"));

    let mut cfg = RunConfig::new(dir.path(), &topic);
    cfg.single_step();
    cfg.start_at_beginning();
    cfg.dead_letters = None;
    cfg.extra = format!(
        "\n[dead_letter]\nkind = \"kafka\"\ntopic = {dead}\n\
         \n[[output]]\nkind = \"webhook\"\nurl = {hook}\nauth_header = \"Authorization\"\nauth_value = {{ env = \"{AUTH_ENV}\" }}\n\
         \n[[output]]\nkind = \"alertmanager\"\nurl = {am}\ngenerator_url = {gen}\n\
         \n[[output]]\nkind = \"kafka\"\ntopic = {alerts}\n",
        dead = toml_str(&dead_topic),
        hook = toml_str(&format!("{}/hooks/aiwatch", webhook.url())),
        am = toml_str(&alertmanager.url()),
        gen = toml_str(GENERATOR_URL),
        alerts = toml_str(&alert_topic),
    );
    let secret = format!("Bearer it-{}", unique("secret"));
    let log = run_until_end(&cfg.write(dir.path()), Duration::from_secs(90), &[(AUTH_ENV, &secret)]);
    assert!(!log.contains(&secret), "the webhook secret appears in the log");

    let expected = expected_violations();
    let file = json_lines(cfg.alerts());
    assert_same_violations(&violations_once(&file), &expected, "file output");
    let id_of: BTreeMap<String, Violation> = file.iter().map(|a| (a["alert_id"].as_str().unwrap().to_string(), violation_of(a))).collect();

    // Webhook: one JSON POST per alert, each with the secret header from the environment.
    let hooks = webhook.requests();
    for r in &hooks {
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/hooks/aiwatch"));
        assert_eq!(r.header("authorization"), Some(secret.as_str()), "webhook request without the configured auth header");
        assert!(r.header("content-type").is_some_and(|c| c.starts_with("application/json")));
    }
    let posted: Vec<Value> = hooks.iter().map(Received::json).collect();
    assert_same_violations(&violations_once(&posted), &expected, "webhook output");

    // Alertmanager: postable alerts, identity in labels, text in annotations.
    let mut am_ids = BTreeSet::new();
    for r in alertmanager.requests() {
        assert_eq!((r.method.as_str(), r.path.as_str(), r.status), ("POST", "/api/v2/alerts", 200));
        for a in r.json().as_array().expect("Alertmanager gets an array of alerts") {
            let labels = &a["labels"];
            let id = labels["alert_id"].as_str().expect("alert_id label").to_string();
            let (rule, _) = id_of.get(&id).unwrap_or_else(|| panic!("Alertmanager alert with an unknown alert_id: {a}"));
            assert_eq!(labels["alertname"].as_str(), Some(rule.as_str()), "{a}");
            assert_eq!(labels["rule_id"].as_str(), Some(rule.as_str()), "{a}");
            for l in ["category", "severity"] {
                assert!(labels[l].as_str().is_some_and(|v| !v.is_empty()), "label {l} missing: {a}");
            }
            for l in ["summary", "controls"] {
                assert!(a["annotations"][l].as_str().is_some_and(|v| !v.is_empty()), "annotation {l} missing: {a}");
            }
            assert_eq!(a["generatorURL"].as_str(), Some(GENERATOR_URL), "{a}");
            // On-call conventions: the rule's level as priority, severity through the default table,
            // a page that stays open for a day, the rule's description.
            let mapped = match labels["priority"].as_str() {
                Some("critical") => "critical",
                Some("high") => "error",
                Some("medium") => "warning",
                Some("low" | "info") => "info",
                other => panic!("priority {other:?}: {a}"),
            };
            assert_eq!(labels["severity"].as_str(), Some(mapped), "{a}");
            let ends = chrono::DateTime::parse_from_rfc3339(a["endsAt"].as_str().expect("endsAt")).unwrap();
            let left = (ends.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds();
            assert!((86_000..=86_400).contains(&left), "endsAt {left} s ahead: {a}");
            assert!(a["annotations"]["description"].as_str().is_some_and(|d| d.len() > 20), "description: {a}");
            assert!(am_ids.insert(id), "Alertmanager got an alert twice: {a}");
        }
    }
    assert_eq!(am_ids, id_of.keys().cloned().collect(), "alert ids that reached Alertmanager");

    // The alert topic: one message per alert, keyed by its alert_id.
    let messages = read_topic(&alert_topic);
    assert_eq!(messages.len(), file.len(), "messages on the alert topic");
    let mut topic_ids = BTreeSet::new();
    for m in &messages {
        let a: Value = serde_json::from_slice(&m.value).expect("alert message is JSON");
        let id = a["alert_id"].as_str().unwrap();
        assert_eq!(m.key.as_deref(), Some(id.as_bytes()), "alert message key");
        topic_ids.insert(id.to_string());
    }
    assert_eq!(topic_ids, id_of.keys().cloned().collect(), "alert ids on the alert topic");

    // The dead-letter topic: the 14 malformed records, byte for byte, with origin and reason headers.
    let dead = read_topic(&dead_topic);
    assert_eq!(dead.len(), 14, "dead letters on the dead-letter topic");
    for d in &dead {
        let h: BTreeMap<&str, String> = d.headers.iter().map(|(k, v)| (k.as_str(), String::from_utf8_lossy(v).into_owned())).collect();
        assert_eq!(h.get("aiwatch.origin.topic"), Some(&topic), "headers {h:?}");
        let at = (h["aiwatch.origin.partition"].parse().unwrap(), h["aiwatch.origin.offset"].parse().unwrap());
        assert_eq!(produced.at.get(&at), Some(&d.value), "dead letter bytes of {at:?}");
        assert!(h.get("aiwatch.reason").is_some_and(|r| !r.is_empty()), "dead letter without a reason: {h:?}");
    }
    delete_topics(&[&topic, &alert_topic, &dead_topic]);
}

#[test]
fn a_webhook_that_fails_at_first_still_gets_every_alert_and_the_run_exits_0() {
    const FAILURES: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let webhook = Receiver::start(|n, _| if n < FAILURES { 503 } else { 200 });
    let topic = unique("outputs-retry");
    create_topic(&topic, PARTITIONS);
    produce_file(&topic, &examples().join("events.jsonl"));

    let mut cfg = RunConfig::new(dir.path(), &topic);
    cfg.single_step();
    cfg.start_at_beginning();
    // Fewer retries than failures: the output gives up once, and the stream retries it.
    cfg.extra = format!("\n[[output]]\nkind = \"webhook\"\nurl = {}\nmax_retries = 2\ntimeout_ms = 2000\n", toml_str(&webhook.url()));
    run_until_end(&cfg.write(dir.path()), Duration::from_secs(90), &[]);

    let expected = expected_violations();
    let hooks = webhook.requests();
    assert_eq!(hooks.iter().filter(|r| r.status == 503).count(), FAILURES);
    let taken: Vec<Value> = hooks.iter().filter(|r| r.status == 200).map(Received::json).collect();
    let mut ids: BTreeMap<Violation, String> = BTreeMap::new();
    for a in &taken {
        let id = a["alert_id"].as_str().unwrap().to_string();
        if let Some(prev) = ids.insert(violation_of(a), id.clone()) {
            assert_eq!(prev, id, "a resent alert changed its alert_id");
        }
    }
    assert_same_violations(&ids.keys().cloned().collect(), &expected, "alerts the failing webhook finally took");
    // The file output took them the first time and is not sent them again.
    assert_same_violations(&violations_once(&json_lines(cfg.alerts())), &expected, "file output beside the failing webhook");
    delete_topics(&[&topic]);
}

#[test]
fn an_output_that_stays_down_holds_back_commits_and_a_restart_delivers_everything() {
    let dir = tempfile::tempdir().unwrap();
    let down = Receiver::start(|_, _| 500);
    let topic = unique("outputs-down");
    create_topic(&topic, PARTITIONS);
    produce_file(&topic, &examples().join("events.jsonl"));

    // The webhook is the only output: nothing else takes the alerts.
    let mut cfg = RunConfig::new(dir.path(), &topic);
    cfg.alerts = None;
    let metrics = free_addr();
    cfg.metrics = Some(metrics);
    let webhook = |url: String| format!("\n[[output]]\nkind = \"webhook\"\nurl = {}\nmax_retries = 0\ntimeout_ms = 2000\n", toml_str(&url));
    cfg.extra = webhook(down.url());
    let mut p = Process::run(&cfg.write(dir.path()), false, &[]);
    wait_for(Duration::from_secs(60), "the webhook output to be reported down", || {
        p.assert_running();
        let m = scrape(metrics)?;
        let errors = m.iter().filter(|s| s.name == "aiwatch_output_errors_total" && s.labels.get("output").map(String::as_str) == Some("webhook"));
        let up = m.iter().find(|s| s.name == "aiwatch_output_up" && s.labels.get("output").map(String::as_str) == Some("webhook"));
        (errors.map(|s| s.value).sum::<f64>() >= 2.0 && up.is_some_and(|s| s.value == 0.0)).then_some(())
    });
    assert!(down.requests().len() >= 2, "the stream retries the failed output");

    // Alerts no output took: shutdown must not commit their events, and must say it failed.
    p.signal("TERM");
    let status = p.wait(Duration::from_secs(45));
    assert!(!status.success(), "exit 0 although the alerts were never delivered\n{}", p.stderr_text());

    // With the receiver back, a restart in the same group and state dir delivers all of them.
    let up = Receiver::start(|_, _| 200);
    cfg.extra = webhook(up.url());
    cfg.metrics = None;
    cfg.single_step();
    run_until_end(&cfg.write(dir.path()), Duration::from_secs(90), &[]);
    let taken: Vec<Value> = up.requests().iter().map(Received::json).collect();
    assert_same_violations(&violations_once(&taken), &expected_violations(), "alerts delivered after the output came back");
    assert_eq!(committed_offsets(&cfg.group, &topic), end_offsets(&topic), "committed offsets after the restart");
    delete_topics(&[&topic]);
}
