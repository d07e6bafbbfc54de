//! Operating aiwatch: `config check` and its exit codes, `${VAR}` in the run
//! config, `scan --fail-on`, `--version`, completions, JSON logs, and alert
//! summaries that never start with an empty actor.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::*;

/// A run config naming the example policy, a broker nobody listens on, and `extra` at the end.
fn config(dir: &Path, extra: &str) -> PathBuf {
    let p = dir.join("aiwatch.toml");
    let text = format!(
        "policy = {:?}\nstate_dir = {:?}\n[kafka]\nbootstrap_servers = \"127.0.0.1:1\"\ntopics = [\"ai-audit\"]\n{extra}",
        examples().join("policy.toml").display().to_string(),
        dir.join("state").display().to_string(),
    );
    std::fs::write(&p, text).unwrap();
    p
}

fn check(args: &[&str], config: Option<&Path>, env: &[(&str, &str)]) -> Output {
    let mut cmd = aiwatch();
    cmd.args(["config", "check"]).args(args).env_remove("AIWATCH_CONFIG");
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    cmd.envs(env.iter().copied()).output().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn config_check_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let valid = config(dir.path(), "[[output]]\nkind = \"alertmanager\"\nurl = \"http://127.0.0.1:1\"\n");
    let out = check(&[], Some(&valid), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("13 parse and plan"), "{}", text(&out));

    // AIWATCH_CONFIG stands for --config.
    let out = check(&[], None, &[("AIWATCH_CONFIG", valid.to_str().unwrap())]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Valid, but nothing listens on the broker or Alertmanager: 3, naming both.
    let out = check(&["--connect", "--timeout", "1"], Some(&valid), &[]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("FAIL  kafka brokers 127.0.0.1:1") && said.contains("FAIL  output 1 (alertmanager) reached"), "{said}");
    assert!(!said.contains("librdkafka"), "librdkafka's own logs flood the report: {said}");

    // Invalid: an unknown key (1, with the line), a broken policy, a broken rule, a bad template.
    let unknown = config(dir.path(), "batch = 3\n");
    let out = check(&["--connect"], Some(&unknown), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("line 6") && text(&out).contains("batch"), "{}", text(&out));

    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "[[vendor]]\nprovider = \"openai\"\ndpa_signed = \"yes\"\n").unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(rules.join("bad.sql"), "-- id: user.bad\n-- title: Bad\n-- category: c\n-- severity: low\nSELECT nope FROM events\n").unwrap();
    let broken = dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        "policy = \"policy.toml\"\nrules = \"rules\"\n[kafka]\nbootstrap_servers = \"127.0.0.1:1\"\ntopics = [\"t\"]\n",
    )
    .unwrap();
    let out = check(&[], Some(&broken), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("FAIL  policy") && said.contains("dpa_signed") && said.contains("line 3"), "{said}");
    assert!(said.contains("FAIL  rules") && said.contains("bad.sql"), "{said}");

    let template = config(dir.path(), "[[output]]\nkind = \"alertmanager\"\nurl = \"http://am\"\ngenerator_url = \"https://g/{nope}\"\n");
    let out = check(&[], Some(&template), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("unknown placeholder `{nope}`"), "{}", text(&out));

    // A secret that cannot be read is invalid, and never shown.
    let secret = config(
        dir.path(),
        "[[output]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:1/hook\"\nauth_header = \"x-token\"\nauth_value = { env = \"AIWATCH_TEST_NO_SUCH_SECRET\" }\n",
    );
    let out = check(&[], Some(&secret), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("AIWATCH_TEST_NO_SUCH_SECRET is not set"), "{}", text(&out));
    let out = check(&[], Some(&secret), &[("AIWATCH_TEST_NO_SUCH_SECRET", "hunter2-canary")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!text(&out).contains("hunter2-canary"));

    // No config at all: a usage error, 2.
    let out = check(&[], None, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn a_missing_variable_names_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = config(dir.path(), "[[output]]\nkind = \"webhook\"\nurl = \"${AIWATCH_TEST_HOOK_URL}\"\ntimeout_ms = 1000\n");
    let out = check(&[], Some(&p), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("`output[1].url` (line 8)") && said.contains("AIWATCH_TEST_HOOK_URL is not set"), "{said}");
    // `aiwatch run` reads the config the same way, and stops before touching Kafka.
    let out = aiwatch().args(["run", "--config"]).arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("`output[1].url`") && text(&out).contains("AIWATCH_TEST_HOOK_URL"), "{}", text(&out));

    let out = check(&[], Some(&p), &[("AIWATCH_TEST_HOOK_URL", "https://hooks.example/x")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

fn scan_fail_on(input: &Path, policy: &Path, severity: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    aiwatch()
        .args(["scan", "--fail-on", severity, "--policy"])
        .arg(policy)
        .arg("--alerts")
        .arg(dir.path().join("alerts.jsonl"))
        .arg(input)
        .output()
        .unwrap()
}

#[test]
fn scan_fail_on_high_exits_1_on_the_example_stream() {
    let (events, policy) = (examples().join("events.jsonl"), examples().join("policy.toml"));
    let out = scan_fail_on(&events, &policy, "high");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("--fail-on high"), "{}", text(&out));

    // Only a medium finding (a production change by an authorized actor, approved by no one).
    let dir = tempfile::tempdir().unwrap();
    let medium = dir.path().join("medium.jsonl");
    std::fs::write(
        &medium,
        "{\"event_id\": \"c1\", \"event_type\": \"config.change\", \"time\": \"2026-11-01T00:00:00Z\", \"actor_id\": \"user:alice\", \
         \"resource_type\": \"model\", \"resource\": \"model/support-bot\", \"environment\": \"production\"}\n",
    )
    .unwrap();
    assert_eq!(scan_fail_on(&medium, &policy, "high").status.code(), Some(0));
    assert_eq!(scan_fail_on(&medium, &policy, "medium").status.code(), Some(1));
    assert_eq!(scan_fail_on(&medium, &policy, "info").status.code(), Some(1));
    // Errors stay 2, and a severity that does not exist is a usage error.
    assert_eq!(scan_fail_on(Path::new("/nonexistent/events.jsonl"), &policy, "high").status.code(), Some(2));
    assert_eq!(scan_fail_on(&medium, &policy, "urgent").status.code(), Some(2));
}

#[test]
fn an_unattributed_change_names_an_unknown_actor_in_its_summary() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("changes.jsonl");
    let mut lines = String::new();
    for (id, actor) in [("c1", ",\"actor_id\": \"\""), ("c2", ""), ("c3", ",\"actor_id\": null")] {
        lines.push_str(&format!(
            "{{\"event_id\": \"{id}\", \"event_type\": \"config.change\", \"time\": \"2026-11-01T00:00:00Z\"{actor}, \
             \"resource_type\": \"api_key\", \"resource\": \"api_key/openai-prod\", \"environment\": \"production\", \"approved_by\": \"user:bob\"}}\n"
        ));
    }
    std::fs::write(&input, lines).unwrap();
    let alerts = dir.path().join("alerts.jsonl");
    run_ok(aiwatch().args(["scan", "--policy"]).arg(examples().join("policy.toml")).arg("--alerts").arg(&alerts).arg(&input));
    let text = std::fs::read_to_string(&alerts).unwrap();
    let mut unauthorized = 0;
    for line in text.lines() {
        let a: serde_json::Value = serde_json::from_str(line).unwrap();
        let summary = a["summary"].as_str().unwrap();
        assert!(!summary.starts_with(' ') && !summary.contains("  "), "{summary:?}");
        if a["rule_id"] == "change.unauthorized" {
            unauthorized += 1;
            assert_eq!(summary, "an unknown actor changed api_key/openai-prod in production without authorization");
        }
    }
    assert_eq!(unauthorized, 3, "{text}");
}

#[test]
fn version_completions_and_json_logs() {
    let out = run_ok(aiwatch().arg("--version"));
    let v = String::from_utf8_lossy(&out.stdout);
    assert!(v.starts_with("aiwatch 0.") && v.contains("(commit ") && v.contains(", rustc 1."), "{v}");

    for shell in ["bash", "zsh", "fish"] {
        let out = run_ok(aiwatch().args(["completions", shell]));
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains("aiwatch") && script.contains("fail-on") && script.contains("config"), "{shell}: {script}");
    }

    // A malformed line is logged (no --dead-letter): each stderr log line is a JSON object.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.jsonl");
    std::fs::write(&input, "{not json\n").unwrap();
    let out = run_ok(
        aiwatch()
            .args(["--log-format", "json", "scan", "--policy"])
            .arg(examples().join("policy.toml"))
            .arg("--alerts")
            .arg(dir.path().join("a.jsonl"))
            .arg(&input),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let logs: Vec<serde_json::Value> = stderr.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let warn = logs.iter().find(|l| l["level"] == "WARN").unwrap_or_else(|| panic!("no JSON log line: {stderr}"));
    assert_eq!(warn["fields"]["reason"].as_str().map(|r| r.contains("not valid JSON")), Some(true), "{warn}");

    // An error that stops aiwatch is a JSON line too, with the file it names.
    let out = aiwatch().args(["--log-format", "json", "run", "--config", "/nonexistent/aiwatch.toml"]).env_remove("AIWATCH_CONFIG").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line: serde_json::Value = serde_json::from_str(stderr.trim()).unwrap_or_else(|e| panic!("not one JSON line ({e}): {stderr}"));
    assert_eq!(line["level"], "ERROR");
    assert!(line["fields"]["error"].as_str().is_some_and(|m| m.contains("/nonexistent/aiwatch.toml")), "{line}");
}
