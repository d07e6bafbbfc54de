//! Audit events as they travel through the engine: raw records with their
//! origin (what sources produce), and the one fixed Arrow schema of the
//! `events` table (what the decoder produces and the rules read).

use std::fmt;
use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Where one record came from: a line of a file, or a Kafka message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Origin {
    File { path: Arc<str>, line: u64 },
    Kafka { topic: Arc<str>, partition: i32, offset: i64 },
    /// Made by the built-in generator (`aiwatch demo`): a sequence number.
    Generated { seq: u64 },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line } => write!(f, "{path}:{line}"),
            Origin::Kafka { topic, partition, offset } => write!(f, "{topic}[{partition}]@{offset}"),
            Origin::Generated { seq } => write!(f, "generator#{seq}"),
        }
    }
}

impl Origin {
    /// The origin as an evidence object (alerts.md: file and line, or topic, partition and offset).
    pub fn to_json(&self, event_id: &str) -> serde_json::Value {
        match self {
            Origin::File { path, line } => serde_json::json!({"event_id": event_id, "file": &**path, "line": line}),
            Origin::Kafka { topic, partition, offset } => {
                serde_json::json!({"event_id": event_id, "topic": &**topic, "partition": partition, "offset": offset})
            }
            Origin::Generated { seq } => serde_json::json!({"event_id": event_id, "generator_seq": seq}),
        }
    }

    /// The three origin columns of the `events` table: source name, partition, position.
    pub(crate) fn columns(&self) -> (&str, Option<i32>, i64) {
        match self {
            Origin::File { path, line } => (path, None, *line as i64),
            Origin::Kafka { topic, partition, offset } => (topic, Some(*partition), *offset),
            Origin::Generated { seq } => ("generator", None, *seq as i64),
        }
    }

    /// Rebuilds an origin from the three origin columns.
    pub(crate) fn from_columns(source: &str, partition: Option<i32>, position: i64) -> Origin {
        match partition {
            Some(partition) => Origin::Kafka { topic: source.into(), partition, offset: position },
            None if source == "generator" => Origin::Generated { seq: position as u64 },
            None => Origin::File { path: source.into(), line: position as u64 },
        }
    }
}

/// A run of raw records (JSON Lines or Kafka message values), stored back to back.
#[derive(Debug, Default)]
pub struct RawBatch {
    data: Vec<u8>,
    ends: Vec<usize>,
    origins: Vec<Origin>,
}

impl RawBatch {
    pub fn with_capacity(records: usize, bytes: usize) -> RawBatch {
        RawBatch { data: Vec::with_capacity(bytes), ends: Vec::with_capacity(records), origins: Vec::with_capacity(records) }
    }

    /// Empties the batch, keeping its buffers for the next one.
    pub fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
        self.origins.clear();
    }

    pub fn push(&mut self, bytes: &[u8], origin: Origin) {
        self.data.extend_from_slice(bytes);
        self.ends.push(self.data.len());
        self.origins.push(origin);
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn byte_len(&self) -> usize {
        self.data.len()
    }

    /// The records with their origins, in arrival order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Origin)> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(self.ends.iter().copied()).zip(self.origins.iter()).map(|((s, e), o)| (&self.data[s..e], o))
    }
}

/// Column positions in the `events` schema, so hot paths index instead of looking up names.
pub mod col {
    pub const EVENT_ID: usize = 0;
    pub const EVENT_TYPE: usize = 1;
    pub const TIME: usize = 2;
    pub const TENANT_ID: usize = 3;
    pub const REQUEST_ID: usize = 7;
    pub const CONVERSATION_ID: usize = 14;
    pub const ARTIFACT_ID: usize = 20;
    pub const ARTIFACT_KIND: usize = 21;
    pub const STORAGE_REGION: usize = 22;
    pub const ORIGIN_SOURCE: usize = 27;
    pub const ORIGIN_PARTITION: usize = 28;
    pub const ORIGIN_POSITION: usize = 29;
}

/// The `events` table: every field of events.md, typed, plus where the event came from.
///
/// `environment` holds `production` when the event left it out (events.md), and
/// the two list columns hold `[]` when absent, so rules need no `COALESCE`.
pub fn events_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let s = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
            let list = |name: &str| Field::new(name, DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))), false);
            Arc::new(Schema::new(vec![
                s("event_id", false),
                s("event_type", false),
                Field::new("time", DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())), false),
                s("tenant_id", true),
                s("actor_id", true),
                s("environment", false),
                s("source", true),
                s("request_id", true),
                s("provider", true),
                s("model", true),
                s("operation", true),
                s("vendor_region", true),
                list("data_classes"),
                list("context_tenant_ids"),
                s("conversation_id", true),
                Field::new("input_tokens", DataType::Int64, true),
                s("prompt_sha256", true),
                s("status", true),
                Field::new("output_tokens", DataType::Int64, true),
                Field::new("latency_ms", DataType::Float64, true),
                s("artifact_id", true),
                s("artifact_kind", true),
                s("storage_region", true),
                s("resource_type", true),
                s("resource", true),
                s("change_id", true),
                s("approved_by", true),
                s("origin_source", false),
                Field::new("origin_partition", DataType::Int32, true),
                Field::new("origin_position", DataType::Int64, false),
            ]))
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_constants_match_the_schema() {
        let s = events_schema();
        let at = |i: usize| s.field(i).name().as_str();
        assert_eq!(at(col::EVENT_ID), "event_id");
        assert_eq!(at(col::EVENT_TYPE), "event_type");
        assert_eq!(at(col::TIME), "time");
        assert_eq!(at(col::TENANT_ID), "tenant_id");
        assert_eq!(at(col::REQUEST_ID), "request_id");
        assert_eq!(at(col::CONVERSATION_ID), "conversation_id");
        assert_eq!(at(col::ARTIFACT_ID), "artifact_id");
        assert_eq!(at(col::ARTIFACT_KIND), "artifact_kind");
        assert_eq!(at(col::STORAGE_REGION), "storage_region");
        assert_eq!(at(col::ORIGIN_SOURCE), "origin_source");
        assert_eq!(at(col::ORIGIN_PARTITION), "origin_partition");
        assert_eq!(at(col::ORIGIN_POSITION), "origin_position");
    }

    #[test]
    fn raw_batch_iterates_records_with_origins() {
        let mut b = RawBatch::default();
        b.push(b"{}", Origin::File { path: "a".into(), line: 1 });
        b.push(b"[1]", Origin::File { path: "a".into(), line: 2 });
        let v: Vec<_> = b.iter().map(|(r, o)| (r.to_vec(), o.to_string())).collect();
        assert_eq!(v, vec![(b"{}".to_vec(), "a:1".to_string()), (b"[1]".to_vec(), "a:2".to_string())]);
    }
}
