//! The scan pipeline: files are read and decoded on one thread while the engine
//! evaluates the previous batch on the runtime, with at most two batches in
//! flight, so memory stays bounded whatever the input size. And [`step`], the
//! decode -> step -> count of every runner: `scan`, `run`, `demo` and the rule
//! fixtures.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::mpsc;

use crate::alert::Alert;
use crate::archive::ArchiveWriter;
use crate::decode::{DecodeOptions, Decoded, DeadLetter, Decoder, Formats};
use crate::engine::state::StateStats;
use crate::engine::{Engine, StepReport};
use crate::event::RawBatch;
use crate::outputs::JsonLines;
use crate::sources::file::{Framing, LineReader};

/// Running counts of a scan or a stream, for the summary and metrics.
#[derive(Debug, Default, Clone)]
pub struct Totals {
    pub records: usize,
    pub events: usize,
    pub dead_letters: usize,
    pub blank: usize,
    /// Records, or parts of one, a format skipped as not its own, by `(format, reason)`.
    pub skipped: BTreeMap<(&'static str, &'static str), usize>,
    pub duplicates: usize,
    pub late: usize,
    pub bytes: usize,
    pub alerts_by_rule: BTreeMap<String, usize>,
    pub elapsed: Duration,
    /// `run`: from the first message taken in to the last step evaluated,
    /// without start-up (planning, joining the group) and the final checkpoint.
    pub processing: Duration,
    /// The engine state at its largest (by estimated bytes) after a step.
    pub state_peak: StateStats,
}

impl Totals {
    pub fn add_decoded(&mut self, d: &Decoded) {
        self.records += d.records + d.blank;
        self.dead_letters += d.dead_letters.len();
        self.blank += d.blank;
        self.bytes += d.bytes;
        for (key, n) in &d.skipped {
            *self.skipped.entry(*key).or_default() += n;
        }
    }

    pub fn add_step(&mut self, r: &StepReport) {
        self.events += r.events;
        self.duplicates += r.duplicates;
        self.late += r.late;
        for a in &r.alerts {
            *self.alerts_by_rule.entry(a.rule_id.clone()).or_default() += 1;
        }
    }

    /// Keeps `s` if it is the largest state seen so far.
    pub fn observe_state(&mut self, s: StateStats) {
        if s.bytes >= self.state_peak.bytes {
            self.state_peak = s;
        }
    }

    pub fn alerts(&self) -> usize {
        self.alerts_by_rule.values().sum()
    }

    /// The multi-line summary printed on stderr at the end of a scan.
    pub fn render(&self) -> String {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let mut s = format!(
            "aiwatch: {} events ({} duplicates dropped, {} late), {} dead letters, {} blank lines, {:.1} MB in {:.2} s: {:.0} events/s\n",
            self.events,
            self.duplicates,
            self.late,
            self.dead_letters,
            self.blank,
            self.bytes as f64 / 1e6,
            secs,
            (self.events + self.duplicates) as f64 / secs
        );
        if !self.skipped.is_empty() {
            let parts: Vec<String> = self.skipped.iter().map(|((f, r), n)| format!("{n} {r} ({f})")).collect();
            s.push_str(&format!("aiwatch: skipped as not their format's own: {}\n", parts.join(", ")));
        }
        let entries: Vec<String> = self.state_peak.entries.iter().map(|(k, n)| format!("{k} {n}")).collect();
        s.push_str(&format!(
            "aiwatch: state at its peak: about {:.1} MiB in {} entries ({})\n",
            self.state_peak.bytes as f64 / (1 << 20) as f64,
            self.state_peak.total(),
            entries.join(", ")
        ));
        s.push_str(&format!("aiwatch: {} alerts\n", self.alerts()));
        for (rule, n) in &self.alerts_by_rule {
            s.push_str(&format!("  {rule:<28} {n}\n"));
        }
        s
    }
}

/// When the engine evaluates a step's rules.
#[derive(Debug, Clone, Copy)]
pub enum Evaluate {
    /// Pipelined ([`Engine::push`]): the state takes this batch in while the
    /// rules evaluate the last one, whose report this is. `hold` caps the watermark.
    Pipelined { hold: Option<i64> },
    /// At once ([`Engine::step`]): the report is this batch's.
    Now,
}

/// One step of every runner: counts what was decoded, hands its events to the
/// engine, counts what the step found and the state it left. Returns the
/// step's report and the batch's dead letters, for the runner's outputs.
pub async fn step(engine: &mut Engine, totals: &mut Totals, decoded: Decoded, how: Evaluate) -> anyhow::Result<(StepReport, Vec<DeadLetter>)> {
    totals.add_decoded(&decoded);
    let Decoded { events, dead_letters, .. } = decoded;
    let report = match how {
        Evaluate::Pipelined { hold } => engine.push(events, hold).await?,
        Evaluate::Now => engine.step(events).await?,
    };
    totals.add_step(&report);
    totals.observe_state(engine.state_stats());
    Ok((report, dead_letters))
}

/// Where dead letters go: a JSON Lines file, or warnings on stderr when none was given.
pub enum DeadLetterSink {
    File(JsonLines),
    Warn,
}

impl DeadLetterSink {
    pub fn write(&mut self, dead: &[DeadLetter]) -> std::io::Result<()> {
        match self {
            DeadLetterSink::File(f) => f.write_dead_letters(dead),
            DeadLetterSink::Warn => {
                for d in dead {
                    tracing::warn!(origin = %d.origin, reason = %d.reason, "malformed event (pass --dead-letter FILE to keep its bytes)");
                }
                Ok(())
            }
        }
    }
}

/// What a scan reads, and how.
#[derive(Debug, Clone)]
pub struct ScanInputs {
    /// JSON Lines files, plain or gzip; `-` is standard input.
    pub paths: Vec<String>,
    /// Records per engine step.
    pub batch_size: usize,
    /// What the decoder accepts and what dead letters keep.
    pub decode: DecodeOptions,
    /// The inputs' format (`otlp_proto` files are length-delimited, the others JSON Lines) and the adapter mapping.
    pub formats: Formats,
}

impl ScanInputs {
    /// `paths` in steps of `batch_size`, in the `aiwatch` format with the decoder's defaults.
    pub fn new(paths: Vec<String>, batch_size: usize) -> ScanInputs {
        ScanInputs { paths, batch_size, decode: DecodeOptions::default(), formats: Formats::default() }
    }
}

/// Reads and decodes every input in order on a thread of its own.
fn spawn_reader(inputs: ScanInputs) -> mpsc::Receiver<anyhow::Result<Decoded>> {
    let (tx, rx) = mpsc::channel(2);
    let ScanInputs { paths, batch_size, decode, formats } = inputs;
    let framing = Framing::of(formats.default);
    std::thread::Builder::new()
        .name("aiwatch-reader".into())
        .spawn(move || {
            let mut decoder = Decoder::with_formats(decode, formats);
            let mut raw = RawBatch::default();
            for input in paths {
                let mut reader = match LineReader::open_framed(&input, framing).with_context(|| format!("cannot open input {input}")) {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                };
                // A step is `batch_size` records, read in raw batches of at most
                // `RawBatch::MAX_BYTES` (large records), each decoded while
                // its bytes are still in the processor's cache.
                loop {
                    match reader.next_batch_into(&mut raw, batch_size.saturating_sub(decoder.pending_records())) {
                        Ok(true) => {
                            decoder.append(&raw);
                            if raw.is_full_by_bytes() && decoder.pending_records() < batch_size {
                                continue;
                            }
                        }
                        Ok(false) if decoder.pending_records() == 0 => break,
                        Ok(false) => {}
                        Err(e) => {
                            let _ = tx.blocking_send(Err(anyhow::Error::new(e).context(format!("cannot read input {input}"))));
                            return;
                        }
                    }
                    if tx.blocking_send(Ok(decoder.finish())).is_err() {
                        return;
                    }
                }
            }
        })
        .expect("spawn reader thread");
    rx
}

/// Rows the archive holds in memory before a scan flushes them (about 200 MB of events).
pub const ARCHIVE_FLUSH_ROWS: usize = 500_000;

fn archive_step(archive: &mut ArchiveWriter, report: &StepReport) -> anyhow::Result<()> {
    for b in &report.accepted {
        archive.append_events(b)?;
    }
    archive.append_alerts(&report.alerts)?;
    Ok(())
}

/// Scans the inputs to the end, then moves the watermark to the largest
/// event time seen so absence rules settle. Alerts are handed to `on_alerts` as
/// they fire.
pub async fn scan(
    engine: &mut Engine,
    inputs: ScanInputs,
    dead: &mut DeadLetterSink,
    on_alerts: impl FnMut(&[Alert]) -> anyhow::Result<()>,
    on_progress: impl FnMut(&Totals),
) -> anyhow::Result<Totals> {
    scan_archived(engine, inputs, dead, None, on_alerts, on_progress).await
}

/// [`scan`], also writing every valid event, alert and dead letter to `archive`
/// (see [`crate::archive::writer`]): a flush at least every [`ARCHIVE_FLUSH_ROWS`]
/// rows and at the end. Flush `n` of a scan is labelled `s{hash of the input
/// names}-{n}`, so scanning the same inputs with the same batch size again
/// rewrites the same files.
pub async fn scan_archived(
    engine: &mut Engine,
    inputs: ScanInputs,
    dead: &mut DeadLetterSink,
    mut archive: Option<&mut ArchiveWriter>,
    mut on_alerts: impl FnMut(&[Alert]) -> anyhow::Result<()>,
    mut on_progress: impl FnMut(&Totals),
) -> anyhow::Result<Totals> {
    let started = Instant::now();
    let label_base = crate::archive::writer::scan_label_base(&inputs.paths);
    let mut flushes = 0usize;
    // Dates dead letters with no time of their own; the wall clock only before any valid event.
    let mut stream_time: i64 = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let mut totals = Totals::default();
    let mut rx = spawn_reader(inputs);
    while let Some(decoded) = rx.recv().await {
        let decoded = decoded?;
        if let Some(a) = archive.as_deref_mut() {
            let (times, last) = crate::archive::writer::stream_times(&decoded.events, &decoded.dead_letters, stream_time);
            a.append_dead_letters(&decoded.dead_letters, &times)?;
            stream_time = last;
        }
        let (report, dead_letters) = step(engine, &mut totals, decoded, Evaluate::Pipelined { hold: None }).await?;
        dead.write(&dead_letters).context("cannot write dead letters")?;
        on_alerts(&report.alerts)?;
        if let Some(a) = archive.as_deref_mut() {
            archive_step(a, &report)?;
            if a.pending_rows() >= ARCHIVE_FLUSH_ROWS {
                a.flush(&format!("{label_base}-{flushes:06}")).await?;
                flushes += 1;
            }
        }
        on_progress(&totals);
    }
    let report = engine.finish().await?;
    totals.add_step(&report);
    on_alerts(&report.alerts)?;
    if let Some(a) = archive {
        archive_step(a, &report)?;
        a.flush(&format!("{label_base}-{flushes:06}")).await?;
    }
    totals.elapsed = started.elapsed();
    Ok(totals)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Large records cut raw batches at their bytes; the reader joins those
    /// into steps of `batch_size` records, so the engine's steps keep their size.
    #[test]
    fn large_records_are_read_in_raw_batches_bounded_by_bytes_and_joined_into_full_steps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("large.jsonl");
        let line = format!("{{\"padding\":\"{}\"}}\n", "x".repeat(100_000));
        std::fs::write(&path, line.repeat(100)).unwrap();
        let per_raw = RawBatch::MAX_BYTES.div_ceil(line.len() - 1);
        assert!(per_raw < 60, "a raw batch holds {per_raw} of these records");

        let mut reader = LineReader::open(path.to_str().unwrap()).unwrap();
        let mut raw = RawBatch::default();
        assert!(reader.next_batch_into(&mut raw, 60).unwrap());
        assert_eq!(raw.len(), per_raw);
        assert!(raw.is_full_by_bytes() && raw.is_full(60));

        let inputs = ScanInputs::new(vec![path.to_str().unwrap().to_string()], 60);
        let mut rx = spawn_reader(inputs);
        let mut steps = Vec::new();
        while let Some(d) = rx.blocking_recv() {
            steps.push(d.unwrap().records);
        }
        assert_eq!(steps, [60, 40]);
    }
}
