//! Cost of each stage of the data path, one at a time, on about one million
//! generated events held in memory (no file, no Kafka): bare JSON parsing (the
//! floor any JSON consumer pays), decoding into Arrow, the engine state alone,
//! and the whole engine step (state and the 13 rules).
//!
//! `cargo bench --bench stages` (optionally `-- EVENTS BATCH_SIZE`). Prints
//! events/s and µs per event for each stage; the figures are recorded in
//! docs/benchmarks.md beside the end-to-end ones. No assertions.

use std::sync::Arc;
use std::time::Instant;

use aiwatch::decode::Decoder;
use aiwatch::engine::state::State;
use aiwatch::engine::{Engine, EngineConfig};
use aiwatch::event::{Origin, RawBatch};
use aiwatch::generate::{Generator, GeneratorConfig, DEMO_POLICY};
use aiwatch::policy::Policy;

#[path = "common/typed.rs"]
mod typed;
use typed::TypedEvent;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc; // as the binary

fn report(stage: &str, events: usize, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    println!("{stage:<28} {secs:>6.2} s {:>10.0} events/s {:>6.2} µs/event", events as f64 / secs, secs * 1e6 / events as f64);
}

fn main() -> anyhow::Result<()> {
    aiwatch::allocator::configure(); // as the binary
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let events: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let batch_size: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(32_768);

    // The same stream as the Kafka benchmark, cut into raw batches as `run` does.
    let mut g = Generator::new(GeneratorConfig { events_per_second: 200.0, max_disorder_seconds: 5.0, ..Default::default() });
    let topic: Arc<str> = Arc::from("bench");
    let mut raws = Vec::new();
    let mut line = Vec::with_capacity(1024);
    for offset in 0..events {
        if offset % batch_size == 0 {
            raws.push(RawBatch::with_capacity(batch_size, batch_size * 512));
        }
        line.clear();
        g.next_into(&mut line);
        let origin = Origin::Kafka { topic: topic.clone(), partition: (offset % 4) as i32, offset: (offset / 4) as i64 };
        raws.last_mut().expect("pushed above").push(&line, origin);
    }
    let bytes: usize = raws.iter().map(RawBatch::byte_len).sum();
    println!("{events} events, {:.0} MB, batch size {batch_size}", bytes as f64 / 1e6);

    let started = Instant::now();
    let mut parsed = 0;
    for raw in &raws {
        for (bytes, _) in raw.iter() {
            parsed += serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() as usize;
        }
    }
    report("bare JSON parse (serde)", parsed, started);

    let started = Instant::now();
    let mut typed_ok = 0;
    for raw in &raws {
        for (bytes, _) in raw.iter() {
            typed_ok += serde_json::from_slice::<TypedEvent>(bytes).is_ok() as usize;
        }
    }
    report("typed struct (serde_json)", events, started);
    std::hint::black_box(typed_ok);

    // Each batch is dropped after decoding, as in `run`, so memory is reused
    // the way it is there; the engine stages get their input decoded again, untimed.
    let started = Instant::now();
    let mut decoder = Decoder::new();
    for raw in &raws {
        std::hint::black_box(decoder.decode(raw));
    }
    report("decode to Arrow", events, started);
    let batches: Vec<_> = raws.iter().map(|raw| decoder.decode(raw).events).collect();
    drop(raws);

    let policy = Arc::new(Policy::parse(DEMO_POLICY, "demo").map_err(|e| anyhow::anyhow!(e))?);
    let started = Instant::now();
    // The built-in pack reads `history` for 1 h (xtenant.response's horizon).
    let mut state = State::new(EngineConfig::default().lateness_seconds, &policy, &[], 3600 * aiwatch::engine::state::NANOS_PER_SEC, Default::default(), aiwatch::engine::state::DEFAULT_SHARDS);
    for b in &batches {
        std::hint::black_box(state.step(b.clone(), &policy, None));
    }
    std::hint::black_box(state.finish());
    report("engine state alone", events, started);
    drop(state);

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let alerts = runtime.block_on(async {
        let mut engine = Engine::new(policy, aiwatch::rules::builtin(), &EngineConfig::default()).await?;
        let started = Instant::now();
        let mut alerts = 0;
        for b in &batches {
            alerts += engine.step(b.clone()).await?.alerts.len();
        }
        alerts += engine.finish().await?.alerts.len();
        report("engine step (state + rules)", events, started);
        anyhow::Ok(alerts)
    })?;
    println!("{alerts} alerts");
    Ok(())
}
