//! Decode cost of each input format, per event produced, against the `aiwatch`
//! format (the target of issue 8: a format costs at most 2x the aiwatch
//! format's decode time per event).
//!
//! Inputs held in memory, cut into raw batches as `run` does (32,768 records
//! or `RawBatch::MAX_BYTES`, raw batches full by their bytes joined into one
//! step), each copied into the decoder's buffer just before it is decoded, as
//! the Kafka intake or the file reader writes it there: generated
//! aiwatch events (as the stages bench), and the real-library fixtures of
//! `tests/fixtures/formats/` repeated with a fresh id each time (LiteLLM
//! payloads, OTLP requests in protobuf and JSON), and the LiteLLM payloads
//! once more with a cost-map entry that never repeats. Only decoding is timed.
//!
//! `cargo bench --bench formats` (optionally `-- EVENTS`). No assertions; the
//! figures are recorded in docs/benchmarks.md.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use aiwatch::decode::{DecodeOptions, Decoder, Formats};
use aiwatch::event::{Origin, RawBatch};
use aiwatch::formats::{Adapter, Format};
use aiwatch::generate::{Generator, GeneratorConfig};
use aiwatch::sources::file::{Framing, LineReader};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc; // as the binary

const BATCH: usize = 32_768;

/// Cuts records into raw batches with Kafka origins.
fn batches(records: impl Iterator<Item = Vec<u8>>) -> Vec<RawBatch> {
    let topic: Arc<str> = Arc::from("bench");
    let mut raws: Vec<RawBatch> = Vec::new();
    for (offset, r) in records.enumerate() {
        if raws.last().is_none_or(|b| b.is_full(BATCH)) {
            raws.push(RawBatch::with_capacity(BATCH, BATCH * 1024));
        }
        raws.last_mut().expect("pushed").push(&r, Origin::Kafka { topic: topic.clone(), partition: 0, offset: offset as i64 });
    }
    raws
}

/// Decodes the raw batches as `run`'s decoder does; returns (records, events,
/// dead letters, seconds). Each raw batch is first copied into a buffer of the
/// decoder's (untimed), so it is read from where the intake wrote it.
fn time(decoder: &mut Decoder, raws: &[RawBatch]) -> (usize, usize, usize, f64) {
    let (mut t, mut secs) = ((0, 0, 0), 0.0);
    let mut copy = RawBatch::default();
    for raw in raws {
        copy.clear();
        for (bytes, origin) in raw.iter() {
            copy.push(bytes, origin.clone());
        }
        let started = Instant::now();
        decoder.append(&copy);
        let step = (!copy.is_full_by_bytes() || decoder.pending_records() >= BATCH).then(|| decoder.finish());
        secs += started.elapsed().as_secs_f64();
        if let Some(d) = step {
            t = (t.0 + d.records, t.1 + d.events.num_rows(), t.2 + d.dead_letters.len());
            std::hint::black_box(d);
        }
    }
    let started = Instant::now();
    let d = decoder.finish();
    secs += started.elapsed().as_secs_f64();
    (t.0 + d.records, t.1 + d.events.num_rows(), t.2 + d.dead_letters.len(), secs)
}

fn litellm_payloads() -> Vec<Vec<u8>> {
    fixture("litellm/payloads.jsonl", Framing::Lines).into_iter().filter(|p| p.starts_with(b"{")).collect()
}

fn fixture(path: &str, framing: Framing) -> Vec<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/formats").join(path);
    let mut r = LineReader::open_framed(path.to_str().expect("utf-8 path"), framing).expect("fixture");
    let mut out = Vec::new();
    while let Some(b) = r.next_batch(1024).expect("fixture") {
        out.extend(b.iter().map(|(bytes, _)| bytes.to_vec()).filter(|b| !b.is_empty()));
    }
    out
}

/// `template` with every occurrence of `id` replaced by a same-length id made from `n`.
fn with_id(template: &[u8], id: &[u8], n: usize) -> Vec<u8> {
    let fresh = format!("{:0width$x}", n, width = id.len());
    let fresh = &fresh.as_bytes()[fresh.len() - id.len()..];
    let mut out = template.to_vec();
    let mut i = 0;
    while i + id.len() <= out.len() {
        if &out[i..i + id.len()] == id {
            out[i..i + id.len()].copy_from_slice(fresh);
            i += id.len();
        } else {
            i += 1;
        }
    }
    out
}

fn main() {
    aiwatch::allocator::configure(); // as the binary
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let events: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(1_000_000);

    let aiwatch = || {
        let mut g = Generator::new(GeneratorConfig { events_per_second: 200.0, max_disorder_seconds: 5.0, ..Default::default() });
        batches((0..events).map(|_| {
            let mut line = Vec::with_capacity(1024);
            g.next_into(&mut line);
            line
        }))
    };

    // Each LiteLLM payload gives 2 events, each OTLP request 14 (7 GenAI spans).
    let litellm = || {
        let payloads = litellm_payloads();
        batches((0..events / 2).map(|n| {
            let p = &payloads[n % payloads.len()];
            // Fixture call ids are `fx-...-00NN`: a fresh number keeps every event unique.
            with_id(p, b"-00", n)
        }))
    };
    // The same payloads with a cost-map entry no payload before held (LiteLLM
    // repeats the model's entry in every payload; this is the cost without that).
    let litellm_unrepeated = || {
        let payloads = litellm_payloads();
        batches((0..events / 2).map(|n| {
            let p = with_id(&payloads[n % payloads.len()], b"-00", n);
            let text = String::from_utf8(p).expect("utf-8");
            text.replacen("\"model_map_information\": {", &format!("\"model_map_information\": {{\"bench_n\": {n}, "), 1).into_bytes()
        }))
    };
    let otlp = |path: &str, framing: Framing| {
        let requests = fixture(path, framing);
        let per_request = 14 / requests.len().max(1) + 1;
        batches((0..events / per_request).map(|n| requests[n % requests.len()].clone()))
    };
    let otlp_proto = || otlp("otlp/requests.otlp_proto", Framing::LengthDelimited);
    let otlp_json = || otlp("otlp/requests.otlp_json.jsonl", Framing::Lines);

    let makers: [(&str, Format, &dyn Fn() -> Vec<RawBatch>); 5] = [
        ("aiwatch", Format::Aiwatch, &aiwatch),
        ("litellm", Format::Litellm, &litellm),
        ("litellm (unrepeated)", Format::Litellm, &litellm_unrepeated),
        ("otlp_proto", Format::OtlpProto, &otlp_proto),
        ("otlp_json", Format::OtlpJson, &otlp_json),
    ];
    // `AIWATCH_BENCH_FORMAT=litellm` times that format alone, after the aiwatch
    // base, and `AIWATCH_BENCH_PASSES=N` decodes each input N times (to profile
    // the decoding rather than the making of the inputs). Each input is made,
    // timed and dropped before the next is made: every format is timed with
    // only its own input in memory, the same conditions for all.
    let passes: usize = std::env::var("AIWATCH_BENCH_PASSES").ok().and_then(|p| p.parse().ok()).unwrap_or(1).max(1);
    let only = std::env::var("AIWATCH_BENCH_FORMAT").ok();
    println!("{:<20} {:>9} {:>9} {:>7} {:>8} {:>12} {:>10} {:>9}", "format", "records", "events", "dead", "MB", "events/s", "µs/event", "x aiwatch");
    let mut base = None;
    for (label, format, make) in makers.iter().filter(|(label, ..)| *label == "aiwatch" || only.as_deref().is_none_or(|o| o == *label)) {
        let raws = make();
        let mut decoder = Decoder::with_formats(DecodeOptions::default(), Formats::one(*format, Adapter::default()));
        let t = (0..passes).map(|_| time(&mut decoder, &raws)).fold((0, 0, 0, 0.0), |t, r| (t.0 + r.0, t.1 + r.1, t.2 + r.2, t.3 + r.3));
        let (records, events, dead, secs) = (t.0 / passes, t.1 / passes, t.2 / passes, t.3 / passes as f64);
        let mb = raws.iter().map(|r| r.byte_len()).sum::<usize>() as f64 / 1e6;
        drop(raws);
        let per_event = secs * 1e6 / events.max(1) as f64;
        let base = *base.get_or_insert(per_event);
        println!(
            "{label:<20} {records:>9} {events:>9} {dead:>7} {mb:>8.0} {:>12.0} {per_event:>10.3} {:>9.2}",
            events as f64 / secs,
            per_event / base
        );
    }
}
