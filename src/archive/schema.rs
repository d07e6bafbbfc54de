//! The three tables of the archive, their Arrow schemas, and how alerts and
//! dead letters become rows. Events keep the engine's `events` schema
//! ([`crate::event::events_schema`]); the partition column `date` lives in the
//! directory name (`date=YYYY-MM-DD`), not in the files.

use std::sync::{Arc, OnceLock};

use arrow::array::{ArrayRef, Int32Builder, Int64Builder, ListBuilder, RecordBatch, StringBuilder, TimestampNanosecondBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};

use crate::alert::Alert;
use crate::decode::DeadLetter;
use crate::event::events_schema;

/// A table of the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    Events,
    Alerts,
    DeadLetters,
}

impl Table {
    pub const ALL: [Table; 3] = [Table::Events, Table::Alerts, Table::DeadLetters];

    /// The table's name, which is also its top-level directory.
    pub fn name(self) -> &'static str {
        match self {
            Table::Events => "events",
            Table::Alerts => "alerts",
            Table::DeadLetters => "dead_letters",
        }
    }

    /// The schema of the table's files: the engine's columns, with every
    /// timestamp in microseconds (see [`archive_schema`]).
    pub fn schema(self) -> SchemaRef {
        static SCHEMAS: OnceLock<[SchemaRef; 3]> = OnceLock::new();
        let all = SCHEMAS.get_or_init(|| {
            [archive_schema(&events_schema()), archive_schema(&alerts_schema()), archive_schema(&dead_letters_schema())]
        });
        all[self as usize].clone()
    }

    /// The timestamp column that gives a row its date partition and its place in a file.
    pub fn time_column(self) -> &'static str {
        match self {
            Table::Events | Table::Alerts => "time",
            Table::DeadLetters => "partition_time",
        }
    }

    /// Columns that identify a row, so compaction can drop a row written twice
    /// (a replay that crossed a flush boundary differently).
    pub fn key_columns(self) -> &'static [&'static str] {
        match self {
            Table::Events => &["event_id"],
            // detected_at is left out: a replayed alert is the same alert.
            Table::Alerts => &["alert_id", "time", "evidence_event_ids"],
            Table::DeadLetters => &["origin_source", "origin_partition", "origin_position", "sha256"],
        }
    }
}

/// `schema` with its nanosecond timestamps as microseconds, UTC. Spark reads
/// Parquet `TIMESTAMP(NANOS)` only as a number, while every engine reads
/// `TIMESTAMP(MICROS)` as a timestamp; event times keep microseconds.
pub fn archive_schema(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Timestamp(_, tz) => f.as_ref().clone().with_data_type(DataType::Timestamp(TimeUnit::Microsecond, tz.clone())),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// `batch` (engine schema) as rows of `table`'s files: timestamps cast to microseconds (truncated).
pub fn to_archive(table: Table, batch: &RecordBatch) -> Result<RecordBatch, arrow::error::ArrowError> {
    let schema = table.schema();
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| if c.data_type() == f.data_type() { Ok(c.clone()) } else { arrow::compute::cast(c, f.data_type()) })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema, columns)
}

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

fn utf8_list() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

/// The `alerts` table: one row per alert as emitted (alerts.md), without the
/// evidence origins (the `events` table holds them) and never any event text.
pub fn alerts_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let s = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
            Arc::new(Schema::new(vec![
                s("alert_id", false),
                s("rule_id", false),
                s("category", false),
                s("severity", false),
                s("subject", false),
                s("tenant_id", true),
                Field::new("time", ts(), false),
                Field::new("detected_at", ts(), false),
                s("title", false),
                s("summary", false),
                Field::new("controls", utf8_list(), false),
                Field::new("evidence_event_ids", utf8_list(), false),
            ]))
        })
        .clone()
}

/// The `dead_letters` table: where a malformed record was and why it was
/// refused, its length and SHA-256; never its bytes (they may hold prompt text).
pub fn dead_letters_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new("origin_source", DataType::Utf8, false),
                Field::new("origin_partition", DataType::Int32, true),
                Field::new("origin_position", DataType::Int64, false),
                Field::new("kind", DataType::Utf8, false),
                Field::new("reason", DataType::Utf8, false),
                Field::new("len", DataType::Int64, false),
                Field::new("sha256", DataType::Utf8, false),
                // The record's own `time`, when it has one that parses (RFC 3339).
                Field::new("event_time", ts(), true),
                // The stream's clock when it was read: the newest event time read
                // with or before it (the wall clock before any event).
                Field::new("stream_time", ts(), false),
                // event_time when known, else stream_time: what the date partition is.
                Field::new("partition_time", ts(), false),
            ]))
        })
        .clone()
}

/// Nanoseconds since the epoch of an RFC 3339 time.
pub fn parse_time(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s).ok().and_then(|t| t.with_timezone(&Utc).timestamp_nanos_opt())
}

/// Alerts as rows of [`alerts_schema`].
pub fn alerts_batch(alerts: &[Alert]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut cols: Vec<StringBuilder> = (0..6).map(|_| StringBuilder::new()).collect();
    let (mut title, mut summary) = (StringBuilder::new(), StringBuilder::new());
    let (mut time, mut detected) = (TimestampNanosecondBuilder::new(), TimestampNanosecondBuilder::new());
    let (mut controls, mut evidence) = (ListBuilder::new(StringBuilder::new()), ListBuilder::new(StringBuilder::new()));
    for a in alerts {
        cols[0].append_value(&a.alert_id);
        cols[1].append_value(&a.rule_id);
        cols[2].append_value(&a.category);
        cols[3].append_value(&a.severity);
        cols[4].append_value(&a.subject);
        cols[5].append_option(a.tenant_id.as_deref());
        let detected_at = parse_time(&a.detected_at).unwrap_or_default();
        // An alert's time is the violation's event time; a rule error's may be empty.
        time.append_value(parse_time(&a.time).unwrap_or(detected_at));
        detected.append_value(detected_at);
        title.append_value(&a.title);
        summary.append_value(&a.summary);
        for c in &a.controls {
            controls.values().append_value(c);
        }
        controls.append(true);
        for id in &a.evidence.event_ids {
            evidence.values().append_value(id);
        }
        evidence.append(true);
    }
    let mut arrays: Vec<ArrayRef> = cols.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef).collect();
    arrays.push(Arc::new(time.finish().with_timezone("UTC")));
    arrays.push(Arc::new(detected.finish().with_timezone("UTC")));
    arrays.push(Arc::new(title.finish()));
    arrays.push(Arc::new(summary.finish()));
    // The builders' item field is `item`, Utf8, nullable: the schema's.
    arrays.push(Arc::new(controls.finish()));
    arrays.push(Arc::new(evidence.finish()));
    RecordBatch::try_new(alerts_schema(), arrays)
}

/// The record's `time` field, if it is a JSON object with an RFC 3339 `time`.
fn record_time(bytes: Option<&[u8]>) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Time<'a> {
        #[serde(borrow)]
        time: Option<std::borrow::Cow<'a, str>>,
    }
    let t: Time = serde_json::from_slice(bytes?).ok()?;
    parse_time(&t.time?)
}

/// Dead letters as rows of [`dead_letters_schema`]. `stream_times[i]`
/// (nanoseconds) dates dead letter `i` when its kept bytes hold no `time` that
/// parses, so a replay of the same input puts it in the same partition.
pub fn dead_letters_batch(dead: &[DeadLetter], stream_times: &[i64]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let (mut source, mut kind, mut reason, mut sha) = (StringBuilder::new(), StringBuilder::new(), StringBuilder::new(), StringBuilder::new());
    let (mut partition, mut position, mut len) = (Int32Builder::new(), Int64Builder::new(), Int64Builder::new());
    let (mut event_time, mut received, mut part_time) =
        (TimestampNanosecondBuilder::new(), TimestampNanosecondBuilder::new(), TimestampNanosecondBuilder::new());
    for (d, &stream_time) in dead.iter().zip(stream_times) {
        let (s, p, pos) = d.origin.columns();
        source.append_value(s);
        partition.append_option(p);
        position.append_value(pos);
        kind.append_value(d.kind);
        reason.append_value(&d.reason);
        len.append_value(d.len as i64);
        sha.append_value(&d.sha256);
        let t = record_time(d.bytes.as_deref());
        event_time.append_option(t);
        received.append_value(stream_time);
        part_time.append_value(t.unwrap_or(stream_time));
    }
    let arrays: Vec<ArrayRef> = vec![
        Arc::new(source.finish()),
        Arc::new(partition.finish()),
        Arc::new(position.finish()),
        Arc::new(kind.finish()),
        Arc::new(reason.finish()),
        Arc::new(len.finish()),
        Arc::new(sha.finish()),
        Arc::new(event_time.finish().with_timezone("UTC")),
        Arc::new(received.finish().with_timezone("UTC")),
        Arc::new(part_time.finish().with_timezone("UTC")),
    ];
    RecordBatch::try_new(dead_letters_schema(), arrays)
}
