//! A hot key: tens of thousands of requests sharing one `conversation_id` (the
//! empty string is a value too) scan at the normal rate, in bounded state, with
//! exactly the one alert per conversation that `xtenant.conversation` defines.

use std::io::Write;

use crate::support::*;

fn request(out: &mut impl Write, id: &str, tenant: &str, conversation: &str, secs: i64) {
    let t = chrono::DateTime::from_timestamp(1_790_000_000 + secs, 0).unwrap().to_rfc3339();
    writeln!(
        out,
        r#"{{"event_id":"{id}","event_type":"ai.request","time":"{t}","tenant_id":"{tenant}","actor_id":"svc:chat","request_id":"r-{id}","provider":"openai","model":"gpt-4o","conversation_id":"{conversation}"}}"#
    )
    .unwrap();
    writeln!(
        out,
        r#"{{"event_id":"{id}-resp","event_type":"ai.response","time":"{t}","tenant_id":"{tenant}","request_id":"r-{id}","status":"ok"}}"#
    )
    .unwrap();
}

#[test]
fn a_hot_conversation_gives_exactly_its_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("hot.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    // 30,000 requests of one tenant in conversation "hot", one a second, and
    // 15,000 in the empty conversation; another tenant uses "" in the middle.
    for i in 0..30_000 {
        request(&mut f, &format!("h{i}"), "acme", "hot", i);
        if i % 2 == 0 {
            request(&mut f, &format!("e{i}"), "acme", "", i);
        }
        if i == 12_000 {
            request(&mut f, "intruder", "globex", "", i);
        }
    }
    // Another tenant uses "hot" just over 24 h after its last request: no alert.
    request(&mut f, "late-guest", "globex", "hot", 29_999 + 86_401);
    // And "warm" twice exactly 24 h apart: an alert (the bound is inclusive).
    request(&mut f, "w1", "acme", "warm", 29_999 + 100_000);
    request(&mut f, "w2", "globex", "warm", 29_999 + 100_000 + 86_400);
    drop(f);

    let alerts = dir.path().join("alerts.jsonl");
    let out = run_ok(
        aiwatch()
            .args(["scan", "--batch-size", "4096", "--policy"])
            .arg(examples().join("policy.toml"))
            .arg("--alerts")
            .arg(&alerts)
            .arg(&input),
    );
    let found: Vec<String> =
        violations(&alerts).into_iter().filter(|(rule, _)| rule == "xtenant.conversation").map(|(_, subject)| subject).collect();
    assert_eq!(found, vec!["".to_string(), "warm".to_string()]);
    // The summary is bounded: the scan reports its state at the peak.
    let summary = String::from_utf8_lossy(&out.stderr);
    let reps: usize = summary
        .split("conversation_reps ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no state line in the summary:\n{summary}"));
    assert!(reps <= 16, "{reps} requests kept for 4 conversations:\n{summary}");
    // Evidence names one request of each tenant.
    let text = std::fs::read_to_string(&alerts).unwrap();
    let alert: serde_json::Value = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|a| a["rule_id"] == "xtenant.conversation" && a["subject"] == "")
        .unwrap();
    let ids = alert["evidence"]["event_ids"].as_array().unwrap();
    assert_eq!(ids.len(), 2);
    assert!(ids.iter().any(|i| i == "intruder"), "{alert}");
}
