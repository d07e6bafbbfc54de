//! The worked example of the contracts: exactly its 206 violations and 14 dead letters.

use crate::support::*;

#[test]
fn example_stream_yields_exactly_the_expected_violations_and_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let (alerts, dead) = (dir.path().join("alerts.jsonl"), dir.path().join("dead.jsonl"));
    let ex = examples();
    let out = run_ok(
        aiwatch()
            .arg("scan")
            .arg("--policy")
            .arg(ex.join("policy.toml"))
            .arg("--alerts")
            .arg(&alerts)
            .arg("--dead-letter")
            .arg(&dead)
            .arg(ex.join("events.jsonl")),
    );
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(summary.contains("206 alerts"), "{summary}");

    // The contract's own scorer: per-rule exactness, duplicates, ids, canary, dead letters.
    let score = std::process::Command::new("python3")
        .arg(shared().join("tools/score-alerts.py"))
        .arg(&ex)
        .arg(&alerts)
        .arg(&dead)
        .output()
        .expect("python3 runs the scorer");
    let report = String::from_utf8_lossy(&score.stdout);
    assert!(score.status.success(), "score-alerts.py found problems:\n{report}");

    // Dead letters carry the original bytes, origin and a reason.
    let dead_text = std::fs::read_to_string(&dead).unwrap();
    let input = std::fs::read(ex.join("events.jsonl")).unwrap();
    let lines: Vec<&[u8]> = input.split(|b| *b == b'\n').collect();
    for l in dead_text.lines() {
        let d: serde_json::Value = serde_json::from_str(l).unwrap();
        let n = d["origin"]["line"].as_u64().unwrap() as usize;
        let original = lines[n - 1].strip_suffix(b"\r").unwrap_or(lines[n - 1]);
        let kept: Vec<u8> = match (d["raw"].as_str(), d["raw_hex"].as_str()) {
            (Some(raw), _) => raw.as_bytes().to_vec(),
            (None, Some(hex)) => (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect(),
            _ => panic!("dead letter without bytes: {l}"),
        };
        assert_eq!(kept, original, "dead letter keeps the bytes of line {n}");
        assert!(!d["reason"].as_str().unwrap().is_empty());
    }
}

#[test]
fn alerts_have_every_contract_field_and_stable_ids() {
    let dir = tempfile::tempdir().unwrap();
    let alerts = dir.path().join("a.jsonl");
    for _ in 0..2 {
        run_ok(
            aiwatch()
                .args(["scan", "--policy"])
                .arg(examples().join("policy.toml"))
                .arg("--alerts")
                .arg(&alerts)
                .arg(examples().join("events.jsonl")),
        );
    }
    let text = std::fs::read_to_string(&alerts).unwrap();
    for line in text.lines() {
        let a: serde_json::Value = serde_json::from_str(line).unwrap();
        for f in ["alert_id", "rule_id", "category", "severity", "subject", "tenant_id", "time", "detected_at", "summary", "controls", "evidence"] {
            assert!(a.get(f).is_some(), "alert lacks {f}: {line}");
        }
        assert!(a["time"].as_str().unwrap().ends_with('Z'));
        assert!(!a["evidence"]["event_ids"].as_array().unwrap().is_empty());
        assert!(a["evidence"]["events"][0]["line"].as_u64().is_some(), "file evidence carries the line: {line}");
    }
    // Same input, new run: the same alert ids.
    let first: Vec<String> = text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["alert_id"].as_str().unwrap().to_string()).collect();
    run_ok(aiwatch().args(["scan", "--policy"]).arg(examples().join("policy.toml")).arg("--alerts").arg(&alerts).arg(examples().join("events.jsonl")));
    let again: Vec<String> = std::fs::read_to_string(&alerts).unwrap().lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["alert_id"].as_str().unwrap().to_string()).collect();
    let (mut a, mut b) = (first, again);
    a.sort();
    b.sort();
    assert_eq!(a, b);
}

#[test]
fn stdin_and_gzip_inputs_give_the_same_answer() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let src = examples().join("events.jsonl");
    let plain = scan(dir.path(), &src, &[]);
    let gz = dir.path().join("events.jsonl.gz");
    let mut enc = flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), flate2::Compression::fast());
    enc.write_all(&std::fs::read(&src).unwrap()).unwrap();
    enc.finish().unwrap();
    assert_eq!(scan(dir.path(), &gz, &[]), plain);

    let out = aiwatch()
        .args(["scan", "--policy"])
        .arg(examples().join("policy.toml"))
        .arg("-")
        .stdin(std::fs::File::open(&src).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), plain.len());
}
