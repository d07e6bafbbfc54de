//! The scan benchmark's stream, written to a file: 200 events/s of event time,
//! 20 s disorder, 0.1 % duplicates, 0.05 % malformed lines (shared by the scan
//! and DuckDB benchmarks so they measure the same input).

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use aiwatch::generate::{Generator, GeneratorConfig};

/// The generator of the scan stream (also what the Kafka benchmark produces to its topic).
pub fn scan_stream_generator() -> Generator {
    Generator::new(GeneratorConfig {
        events_per_second: 200.0,
        max_disorder_seconds: 20.0,
        duplicate_rate: 0.001,
        malformed_rate: 0.0005,
        ..Default::default()
    })
}

/// Writes `events` lines to `path`; returns its size in bytes.
#[allow(dead_code)] // not every bench that includes this module writes the file
pub fn write_scan_stream(path: &Path, events: u64) -> anyhow::Result<u64> {
    let started = Instant::now();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut g = scan_stream_generator();
    let mut line = Vec::with_capacity(1024);
    for _ in 0..events {
        line.clear();
        g.next_into(&mut line);
        line.push(b'\n');
        out.write_all(&line)?;
    }
    out.flush()?;
    drop(out);
    let bytes = std::fs::metadata(path)?.len();
    eprintln!("generated {events} lines ({:.0} MB) in {:.1} s", bytes as f64 / 1e6, started.elapsed().as_secs_f64());
    Ok(bytes)
}
