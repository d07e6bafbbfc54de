//! Errors a person can act on: the file, the line, the field, and a non-zero exit.

use crate::support::*;

#[test]
fn a_broken_rule_file_fails_check_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let rule = dir.path().join("bad.sql");
    std::fs::write(
        &rule,
        "-- id: user.bad\n-- title: Bad\n-- category: custom\n-- severity: low\nSELECT event_id AS subject, time, make_array(event_id) AS event_ids\nFROM events\nWHERE no_such_column = 1\n",
    )
    .unwrap();
    let out = aiwatch().args(["rules", "check", "--rules"]).arg(dir.path()).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.sql:") && err.contains("no_such_column"), "{err}");

    std::fs::write(&rule, "-- id: user.bad\n-- title: Bad\n-- category: custom\n-- severity: low\nSELECT event_id AS subject FROM events\n").unwrap();
    let out = aiwatch().args(["rules", "check", "--rules"]).arg(dir.path()).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.sql:5") && err.contains("`time` is missing"), "{err}");

    std::fs::write(&rule, "-- id: user.bad\n-- title: Bad\n-- category: custom\n-- severity: low\nSELEC 1\n").unwrap();
    let out = aiwatch().args(["rules", "check", "--rules"]).arg(dir.path()).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.sql:5"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_user_rule_runs_beside_the_pack_and_can_replace_a_builtin() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gpt.sql"),
        "-- id: custom.gpt4o\n-- title: gpt-4o used\n-- category: custom\n-- severity: info\n-- controls: CC1.1\nSELECT event_id AS subject, tenant_id, time, make_array(event_id) AS event_ids\nFROM events WHERE event_type = 'ai.request' AND model = 'gpt-4o'\n",
    )
    .unwrap();
    // Replaces the built-in with one that never fires.
    std::fs::write(
        dir.path().join("quiet.sql"),
        "-- id: vendor.data_class\n-- title: off\n-- category: vendor\n-- severity: info\nSELECT event_id AS subject, time, make_array(event_id) AS event_ids FROM events WHERE false\n",
    )
    .unwrap();
    let found = scan(dir.path(), &examples().join("events.jsonl"), &["--rules", dir.path().to_str().unwrap()]);
    assert!(found.iter().any(|(r, _)| r == "custom.gpt4o"));
    assert!(!found.iter().any(|(r, _)| r == "vendor.data_class"));
    assert!(found.iter().any(|(r, _)| r == "vendor.unapproved"));
}

#[test]
fn an_invalid_policy_is_refused_with_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "[[vendor]]\nprovider = \"openai\"\ndpa_signed = \"yes\"\n").unwrap();
    let out = aiwatch().args(["scan", "--policy"]).arg(&policy).arg(examples().join("events.jsonl")).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("policy.toml") && err.contains("line 3") && err.contains("dpa_signed"), "{err}");
}

#[test]
fn a_missing_input_fails_with_its_name() {
    let out = aiwatch().args(["scan", "--policy"]).arg(examples().join("policy.toml")).arg("/nonexistent/events.jsonl").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/events.jsonl"));
}

#[test]
fn the_builtin_fixtures_pass() {
    let out = run_ok(aiwatch().args(["rules", "test"]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(" 0 failed"), "{text}");
}

#[test]
fn a_rule_that_fails_on_a_batch_raises_an_error_alert_and_the_others_still_emit() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    // Plans fine; fails at run time on the first model name that is not a number.
    std::fs::write(
        rules.join("bad.sql"),
        "-- id: custom.bad_cast\n-- title: fails\n-- category: custom\n-- severity: info\n\
         SELECT event_id AS subject, time, make_array(event_id) AS event_ids\nFROM events WHERE CAST(model AS BIGINT) > 3\n",
    )
    .unwrap();
    let src = examples().join("events.jsonl");
    let baseline = scan(dir.path(), &src, &["--batch-size", "64"]);
    let found = scan(dir.path(), &src, &["--batch-size", "64", "--rules", rules.to_str().unwrap()]);
    let errors: Vec<&(String, String)> = found.iter().filter(|(r, _)| r == "aiwatch.rule_error").collect();
    assert!(!errors.is_empty(), "no rule error alert");
    assert!(errors.iter().all(|(_, subject)| subject.starts_with("custom.bad_cast ")), "{errors:?}");
    let rest: std::collections::BTreeSet<_> = found.iter().filter(|(r, _)| r != "aiwatch.rule_error").cloned().collect();
    assert_eq!(rest, baseline, "the other rules' alerts are exactly those without the failing rule");
}
