//! Audit events as they travel through the engine: raw records with their
//! origin (what sources produce), and the one fixed schema of the `events`
//! table, declared once in [`FIELDS`]: its Arrow schema, the [`Event`] every
//! format maps a record to, and the [`Columns`] every format fills (what the
//! rules read).

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, OnceLock};

use arrow::array::{
    ArrayBuilder as _, ArrayRef, ArrowPrimitiveType, Float64Builder, Int32Builder, Int64Builder, ListBuilder, PrimitiveBuilder, RecordBatch,
    StringBuilder, TimestampNanosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;
use smallvec::SmallVec;

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

/// The JSON and Arrow type of a field of the `events` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A JSON string; Arrow `Utf8`.
    Str,
    /// A JSON array of strings; Arrow `List<Utf8>`, `[]` when absent.
    StrList,
    /// A JSON integer; Arrow `Int64`.
    Int,
    /// A JSON number; Arrow `Float64`.
    Num,
    /// RFC 3339 text in JSON; Arrow timestamp, nanoseconds, UTC.
    Time,
    /// Origin columns only: a Kafka partition; Arrow `Int32`.
    Partition,
    /// Origin columns only: a line or an offset; Arrow `Int64`.
    Position,
}

/// One column of the `events` table.
#[derive(Debug, Clone, Copy)]
pub struct FieldDef {
    pub name: &'static str,
    pub kind: Kind,
    pub nullable: bool,
    /// Named in events.md, so producers of the `aiwatch` format write it (the origin columns are ours).
    pub in_events_md: bool,
}

const fn f(name: &'static str, kind: Kind, nullable: bool) -> FieldDef {
    FieldDef { name, kind, nullable, in_events_md: true }
}
const fn origin(name: &'static str, kind: Kind, nullable: bool) -> FieldDef {
    FieldDef { name, kind, nullable, in_events_md: false }
}

/// The `events` table: every field of events.md, typed, in column order, then
/// where the event came from. The Arrow schema, the column positions and the
/// aiwatch format's type checks are derived from this list; [`Event`] and
/// [`Columns`] hold one slot per entry, checked against it by a test.
///
/// `environment` holds `production` when the event left it out (events.md), and
/// the two list columns hold `[]` when absent, so rules need no `COALESCE`.
pub const FIELDS: [FieldDef; 30] = [
    f("event_id", Kind::Str, false),
    f("event_type", Kind::Str, false),
    f("time", Kind::Time, false),
    f("tenant_id", Kind::Str, true),
    f("actor_id", Kind::Str, true),
    f("environment", Kind::Str, false),
    f("source", Kind::Str, true),
    f("request_id", Kind::Str, true),
    f("provider", Kind::Str, true),
    f("model", Kind::Str, true),
    f("operation", Kind::Str, true),
    f("vendor_region", Kind::Str, true),
    f("data_classes", Kind::StrList, false),
    f("context_tenant_ids", Kind::StrList, false),
    f("conversation_id", Kind::Str, true),
    f("input_tokens", Kind::Int, true),
    f("prompt_sha256", Kind::Str, true),
    f("status", Kind::Str, true),
    f("output_tokens", Kind::Int, true),
    f("latency_ms", Kind::Num, true),
    f("artifact_id", Kind::Str, true),
    f("artifact_kind", Kind::Str, true),
    f("storage_region", Kind::Str, true),
    f("resource_type", Kind::Str, true),
    f("resource", Kind::Str, true),
    f("change_id", Kind::Str, true),
    f("approved_by", Kind::Str, true),
    origin("origin_source", Kind::Str, false),
    origin("origin_partition", Kind::Partition, true),
    origin("origin_position", Kind::Position, false),
];

/// The position of `name` in [`FIELDS`]; a name that is not there fails the build.
const fn position(name: &str) -> usize {
    let mut i = 0;
    while i < FIELDS.len() {
        let a = FIELDS[i].name.as_bytes();
        let b = name.as_bytes();
        if a.len() == b.len() {
            let mut j = 0;
            while j < a.len() && a[j] == b[j] {
                j += 1;
            }
            if j == a.len() {
                return i;
            }
        }
        i += 1;
    }
    panic!("no such field in FIELDS")
}

/// Column positions in the `events` schema, so hot paths index instead of looking up names.
pub mod col {
    use super::position;
    pub const EVENT_ID: usize = position("event_id");
    pub const EVENT_TYPE: usize = position("event_type");
    pub const TIME: usize = position("time");
    pub const TENANT_ID: usize = position("tenant_id");
    pub const REQUEST_ID: usize = position("request_id");
    pub const CONVERSATION_ID: usize = position("conversation_id");
    pub const ARTIFACT_ID: usize = position("artifact_id");
    pub const ARTIFACT_KIND: usize = position("artifact_kind");
    pub const STORAGE_REGION: usize = position("storage_region");
    pub const ORIGIN_SOURCE: usize = position("origin_source");
    pub const ORIGIN_PARTITION: usize = position("origin_partition");
    pub const ORIGIN_POSITION: usize = position("origin_position");
}

/// The Arrow schema of the `events` table, made from [`FIELDS`].
pub fn events_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let fields: Vec<Field> = FIELDS
                .iter()
                .map(|d| {
                    let ty = match d.kind {
                        Kind::Str => DataType::Utf8,
                        Kind::StrList => DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                        Kind::Int | Kind::Position => DataType::Int64,
                        Kind::Num => DataType::Float64,
                        Kind::Time => DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                        Kind::Partition => DataType::Int32,
                    };
                    Field::new(d.name, ty, d.nullable)
                })
                .collect();
            Arc::new(Schema::new(fields))
        })
        .clone()
}

/// One event of the schema, as a format hands it to [`Columns`]: every
/// field of events.md but the three required ones, which come typed
/// ([`Columns::append`]). The `aiwatch` format deserializes its records
/// straight into it (so a wrong JSON type fails the record, other fields are
/// ignored, and strings are borrowed from the record where they can be); the
/// adapter formats fill it from what they map.
#[derive(Default, Deserialize)]
pub struct Event<'a> {
    #[serde(borrow)]
    pub event_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub event_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub time: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub tenant_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub actor_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub environment: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub source: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub request_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub provider: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub model: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub operation: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub vendor_region: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub data_classes: Option<List<'a>>,
    #[serde(borrow)]
    pub context_tenant_ids: Option<List<'a>>,
    #[serde(borrow)]
    pub conversation_id: Option<Cow<'a, str>>,
    pub input_tokens: Option<i64>,
    #[serde(borrow)]
    pub prompt_sha256: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub status: Option<Cow<'a, str>>,
    pub output_tokens: Option<i64>,
    pub latency_ms: Option<f64>,
    #[serde(borrow)]
    pub artifact_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub artifact_kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub storage_region: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub resource_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub resource: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub change_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub approved_by: Option<Cow<'a, str>>,
}

/// A list field's entries: up to four inline, each borrowed from the record
/// unless it holds escapes, so a typical list costs no allocation.
pub type List<'a> = SmallVec<[Item<'a>; 4]>;

/// A string list entry. (A `Cow<str>` inside a container always deserializes
/// owned; this one borrows when it can.)
#[derive(Debug, Clone, PartialEq)]
pub struct Item<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Item<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Cow<'de, str>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_owned()))
            }

            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v))
            }
        }
        d.deserialize_str(Visit).map(Item)
    }
}

impl<'a> Event<'a> {
    /// Every string field with its name, for the size limits.
    pub fn strings(&self) -> [(&'static str, Option<&str>); 22] {
        [
            ("event_id", self.event_id.as_deref()),
            ("event_type", self.event_type.as_deref()),
            ("time", self.time.as_deref()),
            ("tenant_id", self.tenant_id.as_deref()),
            ("actor_id", self.actor_id.as_deref()),
            ("environment", self.environment.as_deref()),
            ("source", self.source.as_deref()),
            ("request_id", self.request_id.as_deref()),
            ("provider", self.provider.as_deref()),
            ("model", self.model.as_deref()),
            ("operation", self.operation.as_deref()),
            ("vendor_region", self.vendor_region.as_deref()),
            ("conversation_id", self.conversation_id.as_deref()),
            ("prompt_sha256", self.prompt_sha256.as_deref()),
            ("status", self.status.as_deref()),
            ("artifact_id", self.artifact_id.as_deref()),
            ("artifact_kind", self.artifact_kind.as_deref()),
            ("storage_region", self.storage_region.as_deref()),
            ("resource_type", self.resource_type.as_deref()),
            ("resource", self.resource.as_deref()),
            ("change_id", self.change_id.as_deref()),
            ("approved_by", self.approved_by.as_deref()),
        ]
    }

    /// Both list fields with their names.
    pub fn lists(&self) -> [(&'static str, &Option<List<'a>>); 2] {
        [("data_classes", &self.data_classes), ("context_tenant_ids", &self.context_tenant_ids)]
    }
}

/// Column builders for the `events` schema, reused from batch to batch: what
/// every format fills.
pub struct Columns {
    event_id: StringBuilder,
    event_type: StringBuilder,
    time: TimestampNanosecondBuilder,
    tenant_id: StringBuilder,
    actor_id: StringBuilder,
    environment: StringBuilder,
    source: StringBuilder,
    request_id: StringBuilder,
    provider: StringBuilder,
    model: StringBuilder,
    operation: StringBuilder,
    vendor_region: StringBuilder,
    data_classes: ListBuilder<StringBuilder>,
    context_tenant_ids: ListBuilder<StringBuilder>,
    conversation_id: StringBuilder,
    input_tokens: Int64Builder,
    prompt_sha256: StringBuilder,
    status: StringBuilder,
    output_tokens: Int64Builder,
    latency_ms: Float64Builder,
    artifact_id: StringBuilder,
    artifact_kind: StringBuilder,
    storage_region: StringBuilder,
    resource_type: StringBuilder,
    resource: StringBuilder,
    change_id: StringBuilder,
    approved_by: StringBuilder,
    origin_source: StringBuilder,
    origin_partition: Int32Builder,
    origin_position: Int64Builder,
}

fn list_builder() -> ListBuilder<StringBuilder> {
    // The schema's item field is nullable "item"; ListBuilder's default matches it.
    ListBuilder::new(StringBuilder::new())
}

impl Default for Columns {
    fn default() -> Self {
        Columns::new()
    }
}

impl Columns {
    pub fn new() -> Columns {
        Columns {
            event_id: StringBuilder::new(),
            event_type: StringBuilder::new(),
            time: TimestampNanosecondBuilder::new().with_timezone("UTC"),
            tenant_id: StringBuilder::new(),
            actor_id: StringBuilder::new(),
            environment: StringBuilder::new(),
            source: StringBuilder::new(),
            request_id: StringBuilder::new(),
            provider: StringBuilder::new(),
            model: StringBuilder::new(),
            operation: StringBuilder::new(),
            vendor_region: StringBuilder::new(),
            data_classes: list_builder(),
            context_tenant_ids: list_builder(),
            conversation_id: StringBuilder::new(),
            input_tokens: Int64Builder::new(),
            prompt_sha256: StringBuilder::new(),
            status: StringBuilder::new(),
            output_tokens: Int64Builder::new(),
            latency_ms: Float64Builder::new(),
            artifact_id: StringBuilder::new(),
            artifact_kind: StringBuilder::new(),
            storage_region: StringBuilder::new(),
            resource_type: StringBuilder::new(),
            resource: StringBuilder::new(),
            change_id: StringBuilder::new(),
            approved_by: StringBuilder::new(),
            origin_source: StringBuilder::new(),
            origin_partition: Int32Builder::new(),
            origin_position: Int64Builder::new(),
        }
    }

    /// Rows appended since the last [`Columns::finish`].
    pub fn len(&self) -> usize {
        self.event_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends one event: its three required fields, checked by the format, and the rest.
    pub fn append(&mut self, w: &Event<'_>, event_id: &str, event_type: &str, time: i64, origin: &Origin) {
        fn list(b: &mut ListBuilder<StringBuilder>, v: &Option<List<'_>>) {
            if let Some(items) = v {
                for item in items {
                    b.values().append_value(&*item.0);
                }
            }
            b.append(true);
        }
        self.event_id.append_value(event_id);
        self.event_type.append_value(event_type);
        self.time.append_value(time);
        self.tenant_id.append_option(w.tenant_id.as_deref());
        self.actor_id.append_option(w.actor_id.as_deref());
        self.environment.append_value(w.environment.as_deref().unwrap_or("production"));
        self.source.append_option(w.source.as_deref());
        self.request_id.append_option(w.request_id.as_deref());
        self.provider.append_option(w.provider.as_deref());
        self.model.append_option(w.model.as_deref());
        self.operation.append_option(w.operation.as_deref());
        self.vendor_region.append_option(w.vendor_region.as_deref());
        list(&mut self.data_classes, &w.data_classes);
        list(&mut self.context_tenant_ids, &w.context_tenant_ids);
        self.conversation_id.append_option(w.conversation_id.as_deref());
        self.input_tokens.append_option(w.input_tokens);
        self.prompt_sha256.append_option(w.prompt_sha256.as_deref());
        self.status.append_option(w.status.as_deref());
        self.output_tokens.append_option(w.output_tokens);
        self.latency_ms.append_option(w.latency_ms);
        self.artifact_id.append_option(w.artifact_id.as_deref());
        self.artifact_kind.append_option(w.artifact_kind.as_deref());
        self.storage_region.append_option(w.storage_region.as_deref());
        self.resource_type.append_option(w.resource_type.as_deref());
        self.resource.append_option(w.resource.as_deref());
        self.change_id.append_option(w.change_id.as_deref());
        self.approved_by.append_option(w.approved_by.as_deref());
        let (source, partition, position) = origin.columns();
        self.origin_source.append_value(source);
        self.origin_partition.append_option(partition);
        self.origin_position.append_value(position);
    }

    /// Finishes the batch. Each builder starts the next batch with the room the
    /// finished one used: arrow's builders otherwise restart empty and regrow
    /// (reallocate and fault in fresh pages) through every batch.
    pub fn finish(&mut self) -> RecordBatch {
        fn strings(b: &mut StringBuilder) -> ArrayRef {
            let (items, bytes) = (b.len(), b.values_slice().len());
            let array = Arc::new(b.finish());
            *b = StringBuilder::with_capacity(items, bytes);
            array
        }
        fn lists(b: &mut ListBuilder<StringBuilder>) -> ArrayRef {
            let (lists, items, bytes) = (b.len(), b.values_ref().len(), b.values_ref().values_slice().len());
            let array = Arc::new(b.finish());
            *b = ListBuilder::with_capacity(StringBuilder::with_capacity(items, bytes), lists);
            array
        }
        fn primitives<T: ArrowPrimitiveType>(b: &mut PrimitiveBuilder<T>) -> ArrayRef {
            let items = b.len();
            let array = Arc::new(b.finish());
            *b = PrimitiveBuilder::with_capacity(items);
            array
        }
        fn times(b: &mut TimestampNanosecondBuilder) -> ArrayRef {
            let items = b.len();
            let array = Arc::new(b.finish());
            *b = TimestampNanosecondBuilder::with_capacity(items).with_timezone("UTC");
            array
        }
        let columns: Vec<ArrayRef> = vec![
            strings(&mut self.event_id),
            strings(&mut self.event_type),
            times(&mut self.time),
            strings(&mut self.tenant_id),
            strings(&mut self.actor_id),
            strings(&mut self.environment),
            strings(&mut self.source),
            strings(&mut self.request_id),
            strings(&mut self.provider),
            strings(&mut self.model),
            strings(&mut self.operation),
            strings(&mut self.vendor_region),
            lists(&mut self.data_classes),
            lists(&mut self.context_tenant_ids),
            strings(&mut self.conversation_id),
            primitives(&mut self.input_tokens),
            strings(&mut self.prompt_sha256),
            strings(&mut self.status),
            primitives(&mut self.output_tokens),
            primitives(&mut self.latency_ms),
            strings(&mut self.artifact_id),
            strings(&mut self.artifact_kind),
            strings(&mut self.storage_region),
            strings(&mut self.resource_type),
            strings(&mut self.resource),
            strings(&mut self.change_id),
            strings(&mut self.approved_by),
            strings(&mut self.origin_source),
            primitives(&mut self.origin_partition),
            primitives(&mut self.origin_position),
        ];
        RecordBatch::try_new(events_schema(), columns).expect("the builders match FIELDS")
    }
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
    fn event_and_columns_hold_one_slot_per_field_in_order() {
        // Columns::finish builds the batch against the schema made from FIELDS: it fails on any mismatch.
        let mut c = Columns::new();
        let e = Event { tenant_id: Some("t".into()), input_tokens: Some(3), ..Default::default() };
        c.append(&e, "id", "ai.request", 5, &Origin::File { path: "f".into(), line: 1 });
        let b = c.finish();
        assert_eq!(b.num_columns(), FIELDS.len());
        assert_eq!(b.column_by_name("tenant_id").unwrap().as_any().downcast_ref::<arrow::array::StringArray>().unwrap().value(0), "t");
        // Every string and list field of events.md is in Event's limit lists, by name.
        let named: Vec<&str> = e.strings().iter().map(|s| s.0).chain(e.lists().iter().map(|l| l.0)).collect();
        for d in FIELDS.iter().filter(|d| d.in_events_md && matches!(d.kind, Kind::Str | Kind::StrList | Kind::Time)) {
            assert!(named.contains(&d.name), "{} is not in Event::strings/lists", d.name);
        }
        assert_eq!(named.len(), FIELDS.iter().filter(|d| d.in_events_md && matches!(d.kind, Kind::Str | Kind::StrList | Kind::Time)).count());
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
