//! The archive writer: batches in, one Parquet file per table and date out at
//! each flush.
//!
//! Rows wait in memory, grouped by table and event date, until [`ArchiveWriter::flush`],
//! which sorts each group by time and writes it as
//! `TABLE/date=YYYY-MM-DD/LABEL.parquet`. The caller picks the label from the
//! input positions the flush covers (a scan: the record range of its inputs; a
//! Kafka run: the partitions and offsets since the last checkpoint), so writing
//! the same input again replaces the same files instead of adding copies.

use std::collections::BTreeMap;

use arrow::array::{AsArray, RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, lexsort_to_indices, take_record_batch, SortColumn};
use arrow::datatypes::TimestampMicrosecondType;
use chrono::DateTime;
use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::metadata::SortingColumn;

use super::schema::{alerts_batch, dead_letters_batch, to_archive, Table};
use super::{ArchiveError, Target};
use crate::alert::Alert;
use crate::decode::DeadLetter;

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// One file a flush wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub table: Table,
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Relative to the archive root: `events/date=2026-01-05/LABEL.parquet`.
    pub path: String,
    pub rows: usize,
    pub bytes: usize,
}

/// Appends events, alerts and dead letters; writes them at each flush.
pub struct ArchiveWriter {
    target: Target,
    pending: BTreeMap<(Table, i64), Vec<RecordBatch>>,
    rows: usize,
}

/// `YYYY-MM-DD` of a day number (days since 1970-01-01, UTC).
pub fn day_string(day: i64) -> String {
    DateTime::from_timestamp(day * 86_400, 0).map(|t| t.format("%Y-%m-%d").to_string()).unwrap_or_else(|| format!("day{day}"))
}

/// The relative folder of one partition: `events/date=2026-01-05`.
pub fn partition_dir(table: Table, date: &str) -> String {
    format!("{}/date={date}", table.name())
}

/// For each dead letter, the stream's clock where it arrived: the time of the
/// valid event just before it in the same input (same source and partition,
/// the largest position below its own) among `events`, decoded with it; else
/// `before`, the last such time of earlier batches. Returns the times and the
/// clock to pass as `before` with the next batch (the time of the last event).
pub fn stream_times(events: &RecordBatch, dead: &[DeadLetter], before: i64) -> (Vec<i64>, i64) {
    use arrow::array::Array as _;
    use arrow::datatypes::{Int32Type, Int64Type, TimestampNanosecondType};
    use crate::event::col;
    let time = events.column(col::TIME).as_primitive::<TimestampNanosecondType>();
    let last = if time.is_empty() { before } else { time.value(time.len() - 1) };
    if dead.is_empty() {
        return (Vec::new(), last);
    }
    let source = events.column(col::ORIGIN_SOURCE).as_string::<i32>();
    let partition = events.column(col::ORIGIN_PARTITION).as_primitive::<Int32Type>();
    let position = events.column(col::ORIGIN_POSITION).as_primitive::<Int64Type>();
    let mut index: Vec<(&str, Option<i32>, i64, i64)> = (0..events.num_rows())
        .map(|i| (source.value(i), (!partition.is_null(i)).then(|| partition.value(i)), position.value(i), time.value(i)))
        .collect();
    index.sort_unstable_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
    let times = dead
        .iter()
        .map(|d| {
            let (s, p, pos) = d.origin.columns();
            let at = index.partition_point(|e| (e.0, e.1, e.2) < (s, p, pos));
            match at.checked_sub(1).map(|i| index[i]) {
                Some(e) if e.0 == s && e.1 == p => e.3,
                _ => before,
            }
        })
        .collect();
    (times, last)
}

/// The label stem of a scan's flushes: `s` and 8 hex digits of a hash of the
/// input names in order (flush `n` is `STEM-00000n`).
pub fn scan_label_base(inputs: &[String]) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for i in inputs {
        h.update(i.as_bytes());
        h.update([0u8]);
    }
    let d = h.finalize();
    format!("s{:02x}{:02x}{:02x}{:02x}", d[0], d[1], d[2], d[3])
}

/// Whether a flush label is safe as a file name on every store.
fn valid_label(label: &str) -> bool {
    !label.is_empty() && label.len() <= 200 && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// The Parquet settings of every archive file: zstd, statistics per page (for
/// pruning by time in DataFusion, DuckDB, Spark and Trino), sorted by `time`.
pub fn writer_properties(table: Table) -> WriterProperties {
    let schema = table.schema();
    let time = schema.index_of(table.time_column()).expect("time column") as i32;
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("valid level")))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(1 << 20))
        .set_sorting_columns(Some(vec![SortingColumn { column_idx: time, descending: false, nulls_first: false }]))
        .set_created_by(format!("aiwatch {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Sorts rows of `table` by time, then by their key, so a file's bytes depend only on its rows.
pub fn sort_rows(table: Table, batch: &RecordBatch) -> Result<RecordBatch, ArchiveError> {
    let by: &[&str] = match table {
        Table::Events => &["time", "event_id"],
        Table::Alerts => &["time", "alert_id", "detected_at"],
        Table::DeadLetters => &["partition_time", "origin_source", "origin_position"],
    };
    let columns: Vec<SortColumn> =
        by.iter().map(|c| SortColumn { values: batch.column_by_name(c).expect("schema column").clone(), options: None }).collect();
    let indices = lexsort_to_indices(&columns, None)?;
    Ok(take_record_batch(batch, &indices)?)
}

/// Encodes `batch` (rows of `table`) as one Parquet file.
pub fn encode(table: Table, batch: &RecordBatch) -> Result<Vec<u8>, ArchiveError> {
    let mut buf = Vec::with_capacity(batch.get_array_memory_size() / 4 + 1024);
    let parquet = |source| ArchiveError::Parquet { path: format!("(new {} file)", table.name()), source };
    let mut w = ArrowWriter::try_new(&mut buf, table.schema(), Some(writer_properties(table))).map_err(parquet)?;
    w.write(batch).map_err(parquet)?;
    w.close().map_err(parquet)?;
    Ok(buf)
}

impl ArchiveWriter {
    pub fn new(target: Target) -> ArchiveWriter {
        ArchiveWriter { target, pending: BTreeMap::new(), rows: 0 }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Rows waiting for the next flush.
    pub fn pending_rows(&self) -> usize {
        self.rows
    }

    /// Valid events, as the engine took them (schema `events`, duplicates dropped).
    pub fn append_events(&mut self, batch: &RecordBatch) -> Result<(), ArchiveError> {
        self.append(Table::Events, batch)
    }

    pub fn append_alerts(&mut self, alerts: &[Alert]) -> Result<(), ArchiveError> {
        if alerts.is_empty() {
            return Ok(());
        }
        let batch = alerts_batch(alerts)?;
        self.append(Table::Alerts, &batch)
    }

    /// Dead letters' metadata (never their bytes); `stream_times` (see
    /// [`stream_times`]) dates those that carry no time of their own.
    pub fn append_dead_letters(&mut self, dead: &[DeadLetter], stream_times: &[i64]) -> Result<(), ArchiveError> {
        if dead.is_empty() {
            return Ok(());
        }
        let batch = dead_letters_batch(dead, stream_times)?;
        self.append(Table::DeadLetters, &batch)
    }

    fn append(&mut self, table: Table, batch: &RecordBatch) -> Result<(), ArchiveError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch = &to_archive(table, batch)?;
        let times = batch.column_by_name(table.time_column()).expect("schema column").as_primitive::<TimestampMicrosecondType>();
        let mut by_day: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
        for i in 0..times.len() {
            by_day.entry(times.value(i).div_euclid(MICROS_PER_DAY)).or_default().push(i as u32);
        }
        self.rows += batch.num_rows();
        if by_day.len() == 1 {
            let day = *by_day.keys().next().expect("one day");
            self.pending.entry((table, day)).or_default().push(batch.clone());
            return Ok(());
        }
        for (day, rows) in by_day {
            let part = take_record_batch(batch, &UInt32Array::from(rows))?;
            self.pending.entry((table, day)).or_default().push(part);
        }
        Ok(())
    }

    /// Writes what is pending: one file per table and date, named `LABEL.parquet`,
    /// each put whole (a reader never sees half a file). The label says which
    /// input the flush covers; the same label and rows give the same file.
    pub async fn flush(&mut self, label: &str) -> Result<Vec<Written>, ArchiveError> {
        if !valid_label(label) {
            return Err(ArchiveError::Location {
                location: self.target.display.clone(),
                reason: format!("flush label {label:?} must be 1 to 200 of A-Z a-z 0-9 - _ ."),
            });
        }
        let mut written = Vec::new();
        for ((table, day), batches) in std::mem::take(&mut self.pending) {
            let batch = concat_batches(&table.schema(), &batches)?;
            let sorted = sort_rows(table, &batch)?;
            let bytes = tokio::task::spawn_blocking(move || encode(table, &sorted)).await.expect("encoding does not panic")?;
            let date = day_string(day);
            let rel = format!("{}/{label}.parquet", partition_dir(table, &date));
            let len = bytes.len();
            let location = self.target.path(&rel);
            self.target
                .store
                .put(&location, PutPayload::from(bytes))
                .await
                .map_err(|source| ArchiveError::Write { path: format!("{}/{rel}", self.target.display), source })?;
            written.push(Written { table, date, path: rel, rows: batch.num_rows(), bytes: len });
        }
        self.rows = 0;
        Ok(written)
    }
}

/// Reads one archive file whole (for compaction and tests).
pub async fn read_file(target: &Target, rel: &str) -> Result<Vec<RecordBatch>, ArchiveError> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let path = format!("{}/{rel}", target.display);
    let read = |source| ArchiveError::Read { path: path.clone(), source };
    let bytes = target.store.get(&target.path(rel)).await.map_err(read)?.bytes().await.map_err(read)?;
    let parquet = |source| ArchiveError::Parquet { path: path.clone(), source };
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(parquet)?.with_batch_size(65_536).build().map_err(parquet)?;
    reader.collect::<Result<Vec<_>, _>>().map_err(|e| parquet(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_utc_dates() {
        assert_eq!(day_string(0), "1970-01-01");
        assert_eq!(day_string(20_454), "2026-01-01");
        assert_eq!((-1i64).div_euclid(MICROS_PER_DAY), -1);
    }

    /// Decoded events of (line number, JSON) pairs.
    fn events(lines: &[(u64, String)]) -> RecordBatch {
        let mut raw = crate::event::RawBatch::default();
        for (line, l) in lines {
            raw.push(l.as_bytes(), crate::event::Origin::File { path: "t.jsonl".into(), line: *line });
        }
        let d = crate::decode::Decoder::new().decode(&raw);
        assert!(d.dead_letters.is_empty());
        d.events
    }

    fn ev(id: &str, time: &str) -> String {
        format!(r#"{{"event_id":"{id}","event_type":"config.change","time":"{time}","actor_id":"user:a","resource_type":"model"}}"#)
    }

    #[tokio::test]
    async fn a_flush_writes_one_sorted_zstd_file_per_day_and_a_replay_the_same_files() {
        let dir = tempfile::tempdir().unwrap();
        let target = Target::open(dir.path().to_str().unwrap()).unwrap();
        let mut w = ArchiveWriter::new(target.clone());
        let lines = [
            ev("c", "2026-01-02T10:00:00Z"),
            ev("a", "2026-01-01T23:59:59Z"),
            ev("b", "2026-01-02T00:00:00Z"),
            ev("d", "2026-01-01T00:00:01+01:00"), // 2025-12-31 in UTC
        ];
        let lines: Vec<(u64, String)> = lines.into_iter().enumerate().map(|(i, l)| (i as u64 + 1, l)).collect();
        let batch = events(&lines);
        w.append_events(&batch).unwrap();
        assert_eq!(w.pending_rows(), 4);
        let written = w.flush("t-000000").await.unwrap();
        let paths: Vec<&str> = written.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            ["events/date=2025-12-31/t-000000.parquet", "events/date=2026-01-01/t-000000.parquet", "events/date=2026-01-02/t-000000.parquet"]
        );
        assert_eq!(w.pending_rows(), 0);

        let day = read_file(&target, "events/date=2026-01-02/t-000000.parquet").await.unwrap();
        let ids: Vec<&str> = day[0].column(0).as_string::<i32>().iter().map(Option::unwrap).collect();
        assert_eq!(ids, ["b", "c"], "sorted by time, not by arrival");

        let bytes = std::fs::read(dir.path().join("events/date=2026-01-02/t-000000.parquet")).unwrap();
        let file = std::fs::File::open(dir.path().join("events/date=2026-01-02/t-000000.parquet")).unwrap();
        let meta = parquet::file::reader::SerializedFileReader::new(file).unwrap();
        use parquet::file::reader::FileReader as _;
        let rg = meta.metadata().row_group(0);
        assert!(rg.columns().iter().all(|c| matches!(c.compression(), Compression::ZSTD(_))));
        assert_eq!(rg.sorting_columns().unwrap()[0].column_idx, 2);

        // The same rows again, in another order, under the same label: the same bytes.
        let mut again = lines.clone();
        again.reverse();
        w.append_events(&events(&again)).unwrap();
        w.flush("t-000000").await.unwrap();
        assert!(std::fs::read(dir.path().join("events/date=2026-01-02/t-000000.parquet")).unwrap() == bytes, "a rewrite changed the file");
    }

    #[test]
    fn a_dead_letter_without_a_time_takes_the_time_of_the_event_before_it() {
        let batch = events(&[(1, ev("a", "2026-01-01T00:00:10Z")), (3, ev("b", "2026-01-03T00:00:30Z"))]);
        let dead = |line: u64| {
            crate::decode::DeadLetter::new(
                crate::event::Origin::File { path: "t.jsonl".into(), line },
                ("not_object", "not a JSON object".into()),
                b"[1]",
                &crate::decode::DecodeOptions::default(),
            )
        };
        let (times, last) = stream_times(&batch, &[dead(0), dead(2), dead(4)], 7);
        let s = |t: &str| crate::archive::schema::parse_time(t).unwrap();
        assert_eq!(times, vec![7, s("2026-01-01T00:00:10Z"), s("2026-01-03T00:00:30Z")]);
        assert_eq!(last, s("2026-01-03T00:00:30Z"));
    }

    #[test]
    fn labels_are_plain_file_names() {
        assert!(valid_label("s0a1b2c3-000000000001-000000065536"));
        assert!(!valid_label("../x"));
        assert!(!valid_label(""));
    }
}
