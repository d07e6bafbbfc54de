//! Shared helpers: the binary, the shared contracts folder, and alert files.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn aiwatch() -> Command {
    Command::new(env!("CARGO_BIN_EXE_aiwatch"))
}

/// `../shared` beside the checkout (override with AIWATCH_SHARED).
pub fn shared() -> PathBuf {
    let dir = std::env::var_os("AIWATCH_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    assert!(dir.join("spec/examples").is_dir(), "the contracts folder {} is missing: keep shared/ beside the checkout or set AIWATCH_SHARED", dir.display());
    dir
}

pub fn examples() -> PathBuf {
    shared().join("spec/examples")
}

pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run aiwatch");
    assert!(out.status.success(), "aiwatch failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    out
}

/// The (rule_id, subject) pairs of an alert file, asserting each appears once.
pub fn violations(alerts: &Path) -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(alerts).expect("read alerts");
    let mut set = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).expect("alert is JSON");
        let key = (v["rule_id"].as_str().unwrap().to_string(), v["subject"].as_str().unwrap().to_string());
        assert!(set.insert(key.clone()), "violation {key:?} emitted twice");
    }
    set
}

/// Scans `input` with the example policy and returns the violations found.
pub fn scan(dir: &Path, input: &Path, extra: &[&str]) -> BTreeSet<(String, String)> {
    let alerts = dir.join(format!("alerts-{}.jsonl", extra.join("_").replace(['-', '/'], "")));
    run_ok(
        aiwatch()
            .arg("scan")
            .arg("--policy")
            .arg(examples().join("policy.toml"))
            .arg("--alerts")
            .arg(&alerts)
            .arg("--dead-letter")
            .arg(dir.join("dead.jsonl"))
            .args(extra)
            .arg(input),
    );
    violations(&alerts)
}
