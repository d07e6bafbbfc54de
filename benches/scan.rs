//! Scan throughput and peak memory: about one million generated events through
//! the full built-in pack, end to end (read, decode, state, 13 rules, alerts).
//!
//! `cargo bench --bench scan` (optionally `-- EVENTS BATCH_SIZE`;
//! `AIWATCH_BENCH_SHARDS=N` sets the state's shard count). Prints events/s and
//! peak RSS; the figures are recorded in docs/benchmarks.md.
//! No assertions: speed goals live here, not in tests.

use std::sync::Arc;

use aiwatch::engine::{Engine, EngineConfig};
use aiwatch::generate::DEMO_POLICY;
use aiwatch::pipeline::{scan, DeadLetterSink, ScanInputs};
use aiwatch::policy::Policy;

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

#[path = "common/stream.rs"]
mod stream;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc; // as the binary

fn main() -> anyhow::Result<()> {
    aiwatch::allocator::configure(); // as the binary
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let events: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let batch_size: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(65_536);

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("events.jsonl");
    let bytes = stream::write_scan_stream(&path, events)?;
    let rss_before = peak_rss_mib();

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let shards = std::env::var("AIWATCH_BENCH_SHARDS").ok().and_then(|v| v.parse().ok()).unwrap_or(aiwatch::engine::state::DEFAULT_SHARDS);
    let totals = runtime.block_on(async {
        let policy = Arc::new(Policy::parse(DEMO_POLICY, "demo").map_err(|e| anyhow::anyhow!(e))?);
        let rules = aiwatch::rules::builtin();
        let config = EngineConfig { shards, ..Default::default() };
        let mut engine = Engine::new(policy, rules, &config).await?;
        let mut dead = DeadLetterSink::File(aiwatch::outputs::JsonLines::create(Some(&dir.path().join("dead.jsonl")))?);
        let mut alerts = aiwatch::outputs::JsonLines::create(Some(&dir.path().join("alerts.jsonl")))?;
        scan(&mut engine, ScanInputs::new(vec![path.display().to_string()], batch_size), &mut dead, |a| Ok(alerts.write_alerts(a)?), |_| {}).await
    })?;
    let secs = totals.elapsed.as_secs_f64();
    let lines = totals.records as f64;
    println!("scan: {} lines, {} events, {} alerts, batch size {batch_size}, {} shards", totals.records, totals.events, totals.alerts(), shards);
    println!("scan: {secs:.2} s, {:.0} events/s, {:.1} MB/s", lines / secs, bytes as f64 / 1e6 / secs);
    println!("scan: peak RSS {:.0} MiB (after generating: {rss_before:.0} MiB)", peak_rss_mib());
    Ok(())
}
