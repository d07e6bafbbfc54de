//! Properties of the engine as a whole: random streams against a brute-force
//! reading of the spec, and checkpoints taken at random cut points.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::decode::Decoder;
use crate::engine::{Engine, EngineConfig, SpillConfig};
use crate::event::{Origin, RawBatch};
use crate::generate::{Generator, GeneratorConfig, Rng, DEMO_POLICY};
use crate::policy::Policy;

type Violations = BTreeSet<(String, String)>;

async fn engine(lateness_seconds: u64) -> Engine {
    spilling(lateness_seconds, None).await
}

/// An engine whose open obligations go to disk at every step; with `store`,
/// at that path (so a checkpoint can name it), else in a scratch file.
async fn spilling(lateness_seconds: u64, store: Option<&std::path::Path>) -> Engine {
    let policy = Arc::new(Policy::parse(DEMO_POLICY, "demo").unwrap());
    let mut config = EngineConfig { lateness_seconds, ..Default::default() };
    if let Some(path) = store {
        config.spill = SpillConfig { memory_limit: 0, path: Some(path.to_path_buf()), min_ahead: 0 };
    }
    Engine::new(policy, crate::rules::builtin(), &config).await.unwrap()
}

async fn sharded(lateness_seconds: u64, shards: usize) -> Engine {
    let policy = Arc::new(Policy::parse(DEMO_POLICY, "demo").unwrap());
    let config = EngineConfig { lateness_seconds, shards, ..Default::default() };
    Engine::new(policy, crate::rules::builtin(), &config).await.unwrap()
}

async fn spill_everything(lateness_seconds: u64) -> Engine {
    let policy = Arc::new(Policy::parse(DEMO_POLICY, "demo").unwrap());
    let mut config = EngineConfig { lateness_seconds, ..Default::default() };
    config.spill.memory_limit = 0;
    config.spill.min_ahead = 0;
    Engine::new(policy, crate::rules::builtin(), &config).await.unwrap()
}

/// Feeds `lines` in batches of the given sizes (cycled), then finishes.
async fn scan(e: &mut Engine, lines: &[String], sizes: &[usize]) -> Violations {
    let mut d = Decoder::new();
    let mut out = Violations::new();
    let mut at = 0;
    let mut k = 0;
    while at < lines.len() {
        let n = sizes[k % sizes.len()].min(lines.len() - at);
        k += 1;
        let mut raw = RawBatch::default();
        for (i, l) in lines[at..at + n].iter().enumerate() {
            raw.push(l.as_bytes(), Origin::Generated { seq: (at + i) as u64 });
        }
        at += n;
        let r = e.step(d.decode(&raw).events).await.unwrap();
        out.extend(r.alerts.into_iter().map(|a| (a.rule_id, a.subject)));
    }
    out.extend(e.finish().await.unwrap().alerts.into_iter().map(|a| (a.rule_id, a.subject)));
    out
}

const HOUR: i64 = 3600;

/// Requests of a few tenants in a few conversations over four days, some
/// conversations hot; returns the lines in an arrival order disordered within
/// `lateness` and the conversations two tenants used within 24 h (brute force).
fn conversations(seed: u64, lateness: i64) -> (Vec<String>, BTreeSet<String>) {
    let mut rng = Rng(seed);
    let tenants = ["acme", "globex", "initech"];
    let mut uses: Vec<(i64, String, &str, String)> = Vec::new();
    for c in 0..12 {
        let conversation = if c == 0 { String::new() } else { format!("c{c}") };
        let n = if c < 3 { 400 } else { 1 + rng.next() % 6 };
        // Mostly one tenant, sometimes another, at random times.
        let main = tenants[(rng.next() % 3) as usize];
        for _ in 0..n {
            let t = (rng.next() % (96 * HOUR as u64)) as i64;
            let tenant = if rng.next() % 50 == 0 { tenants[(rng.next() % 3) as usize] } else { main };
            uses.push((t, format!("e{}", uses.len()), tenant, conversation.clone()));
        }
    }
    let mut expected = BTreeSet::new();
    for a in &uses {
        for b in &uses {
            if a.3 == b.3 && a.2 != b.2 && (a.0 - b.0).abs() <= 24 * HOUR {
                expected.insert(a.3.clone());
            }
        }
    }
    // Arrival: event time plus a delay below the lateness.
    let mut arrival: Vec<(i64, String)> = uses
        .iter()
        .map(|(t, id, tenant, conversation)| {
            let time = chrono::DateTime::from_timestamp(1_790_000_000 + t, 0).unwrap().to_rfc3339();
            let line = format!(
                r#"{{"event_id":"{id}","event_type":"ai.request","time":"{time}","tenant_id":"{tenant}","actor_id":"a","provider":"openai","conversation_id":"{conversation}"}}"#
            );
            (t + (rng.next() % lateness as u64) as i64, line)
        })
        .collect();
    arrival.sort();
    (arrival.into_iter().map(|(_, l)| l).collect(), expected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_match_the_brute_force_reading_in_any_batching_and_order() {
    for seed in 1..=4 {
        let lateness = 2 * HOUR;
        let (lines, expected) = conversations(seed, lateness);
        for sizes in [vec![lines.len()], vec![1, 7, 64], vec![500]] {
            let mut e = engine(lateness as u64).await;
            let found: BTreeSet<String> =
                scan(&mut e, &lines, &sizes).await.into_iter().filter(|(r, _)| r == "xtenant.conversation").map(|(_, s)| s).collect();
            assert_eq!(found, expected, "seed {seed}, batch sizes {sizes:?}");
        }
    }
}

fn generated(n: usize, seed: u64) -> Vec<String> {
    let mut g = Generator::new(GeneratorConfig {
        events_per_second: 5.0,
        max_disorder_seconds: 20.0,
        duplicate_rate: 0.01,
        seed,
        ..Default::default()
    });
    let mut line = Vec::new();
    (0..n)
        .map(|_| {
            line.clear();
            g.next_into(&mut line);
            String::from_utf8(line.clone()).unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_spilled_to_disk_finds_what_the_in_memory_state_finds() {
    for seed in [5, 17] {
        let lines = generated(6_000, seed);
        let expected = scan(&mut engine(60).await, &lines, &[400]).await;
        assert!(expected.iter().any(|(r, _)| r == "logging.missing_response"), "the stream has due requests");
        for sizes in [vec![400], vec![1, 7, 64, 333]] {
            let mut e = spill_everything(60).await;
            assert_eq!(scan(&mut e, &lines, &sizes).await, expected, "seed {seed}, batch sizes {sizes:?}");
        }
        // Spilled, and the obligations on disk are counted as open.
        let mut e = spill_everything(60).await;
        let mut d = Decoder::new();
        let mut raw = RawBatch::default();
        for (i, l) in lines[..2_000].iter().enumerate() {
            raw.push(l.as_bytes(), Origin::Generated { seq: i as u64 });
        }
        e.step(d.decode(&raw).events).await.unwrap();
        let stats = e.state_stats();
        let entry = |k: &str| stats.entries.iter().find(|e| e.0 == k).unwrap().1;
        assert!(entry("spilled_obligations") > 0 && entry("spilled_obligations") == entry("open_requests") + entry("open_artifacts"), "{stats:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_at_random_cut_points_give_the_alerts_of_one_scan() {
    checkpoints_at_random_cut_points(false).await;
}

/// The spill store goes back to each checkpoint's savepoint: work done after a
/// checkpoint and lost (a crash) leaves nothing behind in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_of_a_spilled_state_at_random_cut_points_give_the_alerts_of_one_scan() {
    checkpoints_at_random_cut_points(true).await;
}

async fn checkpoints_at_random_cut_points(spill: bool) {
    let dir = tempfile::tempdir().unwrap();
    for seed in [3, 11] {
        let lines = generated(8_000, seed);
        let expected = scan(&mut engine(60).await, &lines, &[400]).await;
        let store = dir.path().join(format!("spill-{seed}.redb"));
        let engine = |_: u64| spilling(60, spill.then_some(store.as_path()));
        let mut rng = Rng(seed);
        let mut cuts: Vec<usize> = (0..3).map(|_| 1 + (rng.next() % (lines.len() as u64 - 1)) as usize).collect();
        cuts.sort();
        cuts.dedup();
        let path = dir.path().join(format!("ckpt-{seed}"));
        let mut found = Violations::new();
        let mut from = 0;
        let mut restored = None;
        for &cut in cuts.iter().chain([&lines.len()]) {
            let mut e = engine(60).await;
            if let Some(at) = restored {
                assert_eq!(e.restore_checkpoint(&path).unwrap(), Some(serde_json::json!(at)));
            }
            let mut d = Decoder::new();
            for chunk in lines[from..cut].chunks(400) {
                let mut raw = RawBatch::default();
                for l in chunk {
                    raw.push(l.as_bytes(), Origin::Generated { seq: 0 });
                }
                let r = e.step(d.decode(&raw).events).await.unwrap();
                found.extend(r.alerts.into_iter().map(|a| (a.rule_id, a.subject)));
            }
            if cut == lines.len() {
                found.extend(e.finish().await.unwrap().alerts.into_iter().map(|a| (a.rule_id, a.subject)));
            } else {
                e.write_checkpoint(&path, serde_json::json!(cut)).unwrap();
                restored = Some(cut);
                // Work after the checkpoint that a crash loses: the next engine must not see it.
                let mut raw = RawBatch::default();
                for l in &lines[cut..(cut + 900).min(lines.len())] {
                    raw.push(l.as_bytes(), Origin::Generated { seq: 0 });
                }
                e.step(d.decode(&raw).events).await.unwrap();
            }
            from = cut;
        }
        assert_eq!(found, expected, "seed {seed}, cuts {cuts:?}");
    }
}

/// Steps of 5,000 events run the shards on parallel threads; smaller ones one after the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shard_and_many_give_the_same_alerts() {
    for seed in [2, 9] {
        let lines = generated(12_000, seed);
        let expected = scan(&mut sharded(60, 1).await, &lines, &[5_000]).await;
        assert!(expected.iter().any(|(r, _)| r == "logging.missing_response") && expected.iter().any(|(r, _)| r == "retention.expired"));
        for (shards, sizes) in [(2, vec![5_000]), (7, vec![5_000, 1, 300]), (64, vec![12_000])] {
            assert_eq!(scan(&mut sharded(60, shards).await, &lines, &sizes).await, expected, "seed {seed}, {shards} shards, batches {sizes:?}");
        }
        let (lines, expected) = conversations(seed, 2 * HOUR);
        for shards in [1, 5] {
            let found: BTreeSet<String> = scan(&mut sharded(2 * HOUR as u64, shards).await, &lines, &[5_000, 17])
                .await
                .into_iter()
                .filter(|(r, _)| r == "xtenant.conversation")
                .map(|(_, s)| s)
                .collect();
            assert_eq!(found, expected, "seed {seed}, {shards} shards");
        }
    }
}

/// One engine checkpoints after every step, so each shard's chain grows
/// deltas and is folded into new bases; a restore from any of those
/// checkpoints, with the work after it lost, gives the alerts of one scan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_incremental_checkpoints_restores_at_any_link() {
    let dir = tempfile::tempdir().unwrap();
    let lines = generated(16_000, 21);
    let expected = scan(&mut engine(60).await, &lines, &[100]).await;
    let path = dir.path().join("ckpt");
    let mut e = sharded(60, 3).await;
    let mut d = Decoder::new();
    let mut before = Violations::new();
    let mut rng = Rng(21);
    // Past 64 deltas a chain is folded into a new base, whatever the sizes.
    let stop = 70 + (rng.next() % 80) as usize;
    let mut found_at_stop = Violations::new();
    let mut bases = BTreeSet::new();
    let mut entries_at_stop = Vec::new();
    for (n, chunk) in lines.chunks(100).enumerate() {
        let mut raw = RawBatch::default();
        for l in chunk {
            raw.push(l.as_bytes(), Origin::Generated { seq: 0 });
        }
        let r = e.step(d.decode(&raw).events).await.unwrap();
        before.extend(r.alerts.into_iter().map(|a| (a.rule_id, a.subject)));
        if n <= stop {
            e.write_checkpoint(&path, serde_json::json!((n + 1) * 100)).unwrap();
            let names = std::fs::read_dir(dir.path().join("ckpt.shards")).unwrap().flatten().map(|f| f.file_name().to_string_lossy().into_owned());
            bases.extend(names.filter(|n| n.ends_with(".base")));
        }
        if n == stop {
            found_at_stop = before.clone();
            entries_at_stop = e.state_stats().entries;
        }
    }
    assert!(bases.len() > 4, "shards were rewritten whole: {bases:?}");
    let files = std::fs::read_dir(dir.path().join("ckpt.shards")).unwrap().count();
    assert!(files <= 2 * (3 * 66 + 2), "files no checkpoint names are deleted ({files})");
    let mut e = sharded(60, 1).await;
    let at = e.restore_checkpoint(&path).unwrap().unwrap().as_u64().unwrap() as usize;
    assert_eq!(at, (stop + 1) * 100);
    assert_eq!(e.state().shard_count(), 3, "the state keeps its checkpoint's shard count");
    let mut entries = e.state_stats().entries;
    entries.retain(|(k, _)| *k != "emitted_violations");
    entries_at_stop.retain(|(k, _)| *k != "emitted_violations");
    assert_eq!(entries, entries_at_stop, "the restored state holds what the live one held");
    let mut found = found_at_stop;
    found.extend(scan(&mut e, &lines[at..], &[100]).await);
    assert_eq!(found, expected);
}

/// A checkpoint after a small step writes what the step changed, not the state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_costs_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let lines = generated(40_000, 4);
    let path = dir.path().join("ckpt");
    let mut e = sharded(60, 4).await;
    let mut d = Decoder::new();
    let feed = |lines: &[String]| {
        let mut raw = RawBatch::default();
        for l in lines {
            raw.push(l.as_bytes(), Origin::Generated { seq: 0 });
        }
        raw
    };
    e.step(d.decode(&feed(&lines[..39_900])).events).await.unwrap();
    e.write_checkpoint(&path, serde_json::json!(1)).unwrap();
    let shards = dir.path().join("ckpt.shards");
    let sizes = || -> std::collections::BTreeMap<String, u64> {
        std::fs::read_dir(&shards).unwrap().flatten().map(|f| (f.file_name().to_string_lossy().into_owned(), f.metadata().unwrap().len())).collect()
    };
    let first = sizes();
    let whole: u64 = first.values().sum();
    e.step(d.decode(&feed(&lines[39_900..])).events).await.unwrap();
    e.write_checkpoint(&path, serde_json::json!(2)).unwrap();
    let added: u64 = sizes().iter().filter(|(name, _)| !first.contains_key(*name)).map(|(_, b)| b).sum();
    assert!(added > 0 && added * 10 < whole, "a checkpoint of 100 events wrote {added} bytes against a state of {whole}");
    // Nothing changed: no shard file at all.
    let before = sizes();
    e.write_checkpoint(&path, serde_json::json!(3)).unwrap();
    assert!(sizes().keys().all(|name| before.contains_key(name)), "an unchanged state writes only its manifest");
    let mut restored = sharded(60, 4).await;
    assert_eq!(restored.restore_checkpoint(&path).unwrap(), Some(serde_json::json!(3)));
    assert_eq!(restored.state_stats().entries, e.state_stats().entries);
}
