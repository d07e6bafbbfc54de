//! Poison inputs through `scan`: a time far ahead, a time outside what the
//! engine computes with, fields over their limits. Each is a dead letter with a
//! reason naming the field (never its value), and the events around it give
//! exactly the alerts they give without it.

use std::path::{Path, PathBuf};

use crate::support::*;

/// The example stream with `extra` lines appended, written to `dir`.
fn example_with(dir: &Path, extra: &[String]) -> PathBuf {
    // The example holds non-UTF-8 lines on purpose: bytes, not a String.
    let mut text = std::fs::read(examples().join("events.jsonl")).unwrap();
    if !text.ends_with(b"\n") {
        text.push(b'\n');
    }
    for l in extra {
        text.extend_from_slice(l.as_bytes());
        text.push(b'\n');
    }
    let path = dir.join("events.jsonl");
    std::fs::write(&path, text).unwrap();
    path
}

/// The dead letters of the last `scan` in `dir` (the helper writes them to dead.jsonl).
fn dead_letters(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("dead.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn request(id: &str, time: &str) -> String {
    format!(
        r#"{{"event_id":"{id}","event_type":"ai.request","time":"{time}","tenant_id":"acme","actor_id":"user:a","request_id":"req-poison","provider":"no-such-vendor"}}"#
    )
}

#[test]
fn a_far_future_time_is_a_dead_letter_and_adds_no_false_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let baseline = scan(dir.path(), &examples().join("events.jsonl"), &[]);
    let base_dead = dead_letters(dir.path()).len();

    // Beyond i64 nanoseconds' safe range: refused by every scan.
    let input = example_with(dir.path(), &[request("poison-2262", "2262-01-01T00:00:00Z")]);
    assert_eq!(scan(dir.path(), &input, &[]), baseline, "a time past 2200 changed the alerts");
    let dead = dead_letters(dir.path());
    assert_eq!(dead.len(), base_dead + 1);
    let d = dead.last().unwrap();
    assert_eq!(d["kind"], "time_out_of_range", "{d}");
    assert!(d["reason"].as_str().unwrap().contains("`time`"), "{d}");

    // Computable but far ahead of the clock: refused with --max-future only.
    let input = example_with(dir.path(), &[request("poison-2150", "2150-01-01T00:00:00Z")]);
    let expired = |v: &std::collections::BTreeSet<(String, String)>| v.iter().filter(|(r, _)| r == "retention.expired").count();
    let without = scan(dir.path(), &input, &[]);
    assert!(expired(&without) > expired(&baseline), "without --max-future the event is taken and its time settles every retention deadline");
    assert_eq!(scan(dir.path(), &input, &["--max-future", "300"]), baseline);
    let d = dead_letters(dir.path()).pop().unwrap();
    assert_eq!(d["kind"], "time_in_future", "{d}");
    assert!(d["reason"].as_str().unwrap().contains("300 s") && !d["reason"].as_str().unwrap().contains("2150"), "{d}");
}

#[test]
fn an_oversize_id_is_a_dead_letter_naming_the_field_not_its_value() {
    let dir = tempfile::tempdir().unwrap();
    let baseline = scan(dir.path(), &examples().join("events.jsonl"), &[]);
    let huge = format!("CANARY{}", "x".repeat(300_000));
    let many: Vec<String> = (0..300).map(|i| format!("\"class-{i}\"")).collect();
    let extra = vec![
        request(&huge, "2026-11-01T12:00:00Z"),
        format!(
            r#"{{"event_id":"poison-list","event_type":"ai.request","time":"2026-11-01T12:00:00Z","tenant_id":"acme","provider":"openai","data_classes":[{}]}}"#,
            many.join(",")
        ),
    ];
    let input = example_with(dir.path(), &extra);
    assert_eq!(scan(dir.path(), &input, &[]), baseline, "the oversize events changed the alerts");
    let dead = dead_letters(dir.path());
    let (id, list) = (&dead[dead.len() - 2], &dead[dead.len() - 1]);
    assert_eq!(id["kind"], "field_too_long", "{id}");
    assert!(id["reason"].as_str().unwrap().contains("`event_id`") && !id["reason"].as_str().unwrap().contains("CANARY"), "{id}");
    assert_eq!(list["kind"], "list_too_long", "{list}");
    assert!(list["reason"].as_str().unwrap().contains("`data_classes` has 300 entries"), "{list}");

    // The dead letter keeps a capped prefix, the whole record's length and hash.
    let raw = id["raw"].as_str().unwrap();
    assert_eq!(raw.len(), 64 << 10, "the default cap is 64 KiB");
    assert_eq!(id["raw_truncated"], true);
    assert_eq!(id["length"].as_u64().unwrap() as usize, extra[0].len());
    assert_eq!(id["sha256"].as_str().unwrap().len(), 64);

    // Limits are flags: a higher field limit accepts the list; no raw bytes at all with 0.
    scan(dir.path(), &input, &["--max-list-items", "300", "--dead-letter-max-raw", "0"]);
    let dead = dead_letters(dir.path());
    assert_eq!(dead.last().unwrap()["kind"], "field_too_long");
    assert!(dead.iter().all(|d| d.get("raw").is_none() && d.get("raw_hex").is_none() && d["sha256"].is_string()), "raw bytes kept with --dead-letter-max-raw 0");
}

#[test]
fn a_record_over_max_event_bytes_is_a_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let big = format!(
        r#"{{"event_id":"big","event_type":"ai.request","time":"2026-11-01T12:00:00Z","unknown_extra":"{}"}}"#,
        "y".repeat(5000)
    );
    let input = dir.path().join("big.jsonl");
    std::fs::write(&input, format!("{big}\n")).unwrap();
    scan(dir.path(), &input, &[]);
    assert!(dead_letters(dir.path()).is_empty(), "unknown fields are allowed, and a valid event may be large");
    scan(dir.path(), &input, &["--max-event-bytes", "4096"]);
    let d = dead_letters(dir.path());
    assert_eq!(d.len(), 1);
    assert_eq!(d[0]["kind"], "event_too_large");
    assert!(d[0]["reason"].as_str().unwrap().contains("max_event_bytes"), "{}", d[0]);
}

#[test]
fn out_of_range_flags_are_refused() {
    for args in [["--lateness", "99999999999"], ["--max-future", "999999999999"]] {
        let out = aiwatch().args(["scan", "--policy"]).arg(examples().join("policy.toml")).args(args).arg(examples().join("events.jsonl")).output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(args[0]), "{err}");
    }
}
