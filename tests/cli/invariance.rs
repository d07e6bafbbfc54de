//! The answer does not depend on batch size or on arrival order within the allowed lateness.

use std::path::Path;

use aiwatch::generate::Rng;

use crate::support::*;


/// Rewrites `src` in an arrival order where no event comes more than `jitter_s` after
/// an event with a later time: sort by event time plus a random delay in [0, jitter_s].
fn shuffle_within(src: &Path, dst: &Path, jitter_s: f64, seed: u64) {
    let bytes = std::fs::read(src).unwrap();
    let mut rng = Rng(seed);
    let mut keyed: Vec<(f64, &[u8])> = bytes
        .split(|b| *b == b'\n')
        .map(|l| {
            let t = serde_json::from_slice::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v.get("time").and_then(|t| t.as_str()).and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()))
                .map(|t| t.timestamp_millis() as f64 / 1000.0);
            let delay = (rng.next() % 10_000) as f64 / 10_000.0 * jitter_s;
            // Lines without a time (malformed, blank) land anywhere: they cannot be late.
            (t.map_or((rng.next() % 1_000_000) as f64 + 1.7e9, |t| t + delay), l)
        })
        .collect();
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
    let out: Vec<&[u8]> = keyed.into_iter().map(|(_, l)| l).collect();
    std::fs::write(dst, out.join(&b'\n')).unwrap();
}

#[test]
fn batch_size_does_not_change_the_violations() {
    let dir = tempfile::tempdir().unwrap();
    let src = examples().join("events.jsonl");
    let base = scan(dir.path(), &src, &["--batch-size", "8192"]);
    assert_eq!(base.len(), 206);
    for bs in ["1", "7"] {
        assert_eq!(scan(dir.path(), &src, &["--batch-size", bs]), base, "batch size {bs}");
    }
}

#[test]
fn shuffled_arrival_within_the_lateness_does_not_change_the_violations() {
    let dir = tempfile::tempdir().unwrap();
    let src = examples().join("events.jsonl");
    let base = scan(dir.path(), &src, &[]);
    for seed in [1, 2, 3] {
        let shuffled = dir.path().join(format!("shuffled-{seed}.jsonl"));
        // 55 s of delay: within the default 60 s lateness.
        shuffle_within(&src, &shuffled, 55.0, seed);
        for bs in ["7", "64"] {
            assert_eq!(scan(dir.path(), &shuffled, &["--batch-size", bs]), base, "seed {seed}, batch size {bs}");
        }
    }
}

#[test]
fn spilling_the_state_to_disk_does_not_change_the_violations() {
    let dir = tempfile::tempdir().unwrap();
    let src = examples().join("events.jsonl");
    let base = scan(dir.path(), &src, &[]);
    // A limit of 0 bytes moves every open obligation to disk at every step.
    for bs in ["7", "500"] {
        assert_eq!(scan(dir.path(), &src, &["--batch-size", bs, "--state-memory-limit", "0"]), base, "batch size {bs}");
    }
}
