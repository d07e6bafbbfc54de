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
///
/// A batch is full at the step's record count or at [`RawBatch::MAX_BYTES`],
/// whichever comes first ([`RawBatch::is_full`]): a LiteLLM payload is 11 KB,
/// so a step of 32,768 of them would hold 370 MB of raw bytes per batch in
/// flight. The decoder joins the raw batches of one step
/// ([`crate::decode::Decoder::append`]), and reads each while it is still in
/// the processor's cache from being written.
#[derive(Debug)]
pub struct RawBatch {
    data: Vec<u8>,
    ends: Vec<usize>,
    origins: Vec<Origin>,
    /// The last raw batch of an engine step (the default). The Kafka intake
    /// clears it on a batch full by its bytes whose step wants more records,
    /// so the decoder joins the next batch into the same step.
    pub ends_step: bool,
}

impl Default for RawBatch {
    fn default() -> RawBatch {
        RawBatch { data: Vec::new(), ends: Vec::new(), origins: Vec::new(), ends_step: true }
    }
}

impl RawBatch {
    /// The bytes at which a batch is full, whatever its record count (one record may take it past).
    pub const MAX_BYTES: usize = 4 << 20;

    /// Room for `records` records of `bytes` bytes in all (at most [`RawBatch::MAX_BYTES`]).
    pub fn with_capacity(records: usize, bytes: usize) -> RawBatch {
        RawBatch {
            data: Vec::with_capacity(bytes.min(Self::MAX_BYTES)),
            ends: Vec::with_capacity(records),
            origins: Vec::with_capacity(records),
            ends_step: true,
        }
    }

    /// Whether the batch takes no more records: `records` of them, or [`RawBatch::MAX_BYTES`].
    pub fn is_full(&self, records: usize) -> bool {
        self.len() >= records || self.is_full_by_bytes()
    }

    /// Whether the batch is full by its bytes: more records were likely ready.
    pub fn is_full_by_bytes(&self) -> bool {
        self.data.len() >= Self::MAX_BYTES
    }

    /// Empties the batch, keeping its buffers for the next one.
    pub fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
        self.origins.clear();
        self.ends_step = true;
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
    /// A JSON array of strings; Arrow `List<Utf8>`.
    StrList,
    /// A JSON integer; Arrow `Int64`.
    Int,
    /// A JSON number; Arrow `Float64`.
    Num,
    /// RFC 3339 text in JSON; Arrow timestamp, nanoseconds, UTC. The column
    /// holds the time the format parsed, never null.
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

/// The one declaration of the `events` table, expanded into [`FIELDS`], the
/// [`Event`] struct (one slot per events.md field, its type given by the
/// kind: [`slot`]) and the [`Columns`] builders (one per column: [`builder`]).
///
/// An events.md field is `name: Kind`, null when the event leaves it out, or
/// `name: Kind or DEFAULT`, never null: DEFAULT is what an absent value
/// becomes. The `Time` field holds the time the format parsed. Origin fields
/// are the values of [`Origin::columns`], in its order; `or null` marks the
/// one that can be null.
macro_rules! events_table {
    (
        events { $( $name:ident : $kind:ident $(or $default:expr)? ),* $(,)? }
        origin { $( $oname:ident : $okind:ident $(or $onull:ident)? ),* $(,)? }
    ) => {
        /// The `events` table: every field of events.md, typed, in column
        /// order, then where the event came from. The Arrow schema, the
        /// column positions, [`Event`], [`Columns`] and the aiwatch format's
        /// type checks all come from this one list.
        ///
        /// `environment` holds `production` when the event left it out
        /// (events.md), and the two list columns hold `[]` when absent, so
        /// rules need no `COALESCE`.
        pub const FIELDS: &[FieldDef] = &[
            $( FieldDef {
                name: stringify!($name),
                kind: Kind::$kind,
                nullable: !matches!(Kind::$kind, Kind::Time) && !events_table!(@present $($default)?),
                in_events_md: true,
            }, )*
            $( FieldDef { name: stringify!($oname), kind: Kind::$okind, nullable: events_table!(@present $($onull)?), in_events_md: false }, )*
        ];

        /// How many fields of events.md [`Event`] holds.
        const EVENT_FIELDS: usize = [$(stringify!($name)),*].len();

        /// One event of the schema, as a format hands it to [`Columns`]: a
        /// slot per field of events.md. The `aiwatch` format deserializes its
        /// records straight into it (so a wrong JSON type fails the record,
        /// other fields are ignored); the adapter formats fill it from what
        /// they map.
        #[derive(Default, Deserialize)]
        #[serde(bound(deserialize = "'de: 'a"))]
        pub struct Event<'a> {
            $( pub $name: slot::$kind<'a>, )*
        }

        impl<'a> Event<'a> {
            /// Every field with its name, in column order, for the limits.
            pub fn fields(&self) -> [(&'static str, Value<'_, 'a>); EVENT_FIELDS] {
                [$( (stringify!($name), Slot::value(&self.$name)), )*]
            }
        }

        /// Column builders for the `events` schema, reused from batch to
        /// batch: what every format fills.
        pub struct Columns {
            rows: usize,
            $( $name: builder::$kind, )*
            $( $oname: builder::$okind, )*
        }

        impl Columns {
            pub fn new() -> Columns {
                Columns { rows: 0, $( $name: Builder::fresh(), )* $( $oname: Builder::fresh(), )* }
            }

            /// Appends one event that passed its format's checks (`event_id`
            /// and `event_type` set and non-empty), at `time`, from `origin`.
            pub fn append(&mut self, event: &Event<'_>, time: i64, origin: &Origin) {
                $( self.$name.put(events_table!(@value event time $name $kind $(or $default)?)); )*
                let ($($oname,)*) = origin.columns();
                $( self.$oname.put($oname); )*
                self.rows += 1;
            }

            /// Finishes the batch. Each builder starts the next batch with
            /// the room the finished one used: arrow's builders otherwise
            /// restart empty and regrow (reallocate and fault in fresh pages)
            /// through every batch.
            pub fn finish(&mut self) -> RecordBatch {
                self.rows = 0;
                let columns: Vec<ArrayRef> = vec![$( self.$name.finish_keeping_room(), )* $( self.$oname.finish_keeping_room(), )*];
                RecordBatch::try_new(events_schema(), columns).expect("the builders match FIELDS")
            }
        }
    };
    (@present) => { false };
    (@present $($t:tt)+) => { true };
    (@value $event:ident $time:ident $name:ident Time) => { $time };
    (@value $event:ident $time:ident $name:ident $kind:ident) => { &$event.$name };
    (@value $event:ident $time:ident $name:ident $kind:ident or $default:expr) => { $event.$name.as_deref().unwrap_or($default) };
}

events_table! {
    events {
        // Required: the formats check them before they append.
        event_id: Str or "",
        event_type: Str or "",
        time: Time,
        tenant_id: Str,
        actor_id: Str,
        environment: Str or "production",
        source: Str,
        request_id: Str,
        provider: Str,
        model: Str,
        operation: Str,
        vendor_region: Str,
        data_classes: StrList or &[],
        context_tenant_ids: StrList or &[],
        conversation_id: Str,
        input_tokens: Int,
        prompt_sha256: Str,
        status: Str,
        output_tokens: Int,
        latency_ms: Num,
        artifact_id: Str,
        artifact_kind: Str,
        storage_region: Str,
        resource_type: Str,
        resource: Str,
        change_id: Str,
        approved_by: Str,
    }
    origin {
        origin_source: Str,
        origin_partition: Partition or null,
        origin_position: Position,
    }
}

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

/// The type of an [`Event`] slot, by kind. Strings are borrowed from the
/// record where they can be.
pub mod slot {
    use std::borrow::Cow;

    pub type Str<'a> = Option<Cow<'a, str>>;
    /// The RFC 3339 text; the column holds the time the format parsed from it.
    pub type Time<'a> = Option<Cow<'a, str>>;
    pub type StrList<'a> = Option<super::List<'a>>;
    pub type Int<'a> = Option<i64>;
    pub type Num<'a> = Option<f64>;
}

/// The Arrow builder of a column, by kind.
pub mod builder {
    use arrow::array::{Float64Builder, Int32Builder, Int64Builder, ListBuilder, StringBuilder, TimestampNanosecondBuilder};

    pub type Str = StringBuilder;
    pub type Time = TimestampNanosecondBuilder;
    pub type StrList = ListBuilder<StringBuilder>;
    pub type Int = Int64Builder;
    pub type Num = Float64Builder;
    pub type Partition = Int32Builder;
    pub type Position = Int64Builder;
}

/// An [`Event`] slot seen whatever its kind, for checks that walk every field.
#[derive(Debug, Clone, Copy)]
pub enum Value<'e, 'a> {
    Str(Option<&'e str>),
    List(Option<&'e [Item<'a>]>),
    Int(Option<i64>),
    Num(Option<f64>),
}

trait Slot<'a> {
    fn value(&self) -> Value<'_, 'a>;
}

impl<'a> Slot<'a> for Option<Cow<'a, str>> {
    fn value(&self) -> Value<'_, 'a> {
        Value::Str(self.as_deref())
    }
}

impl<'a> Slot<'a> for Option<List<'a>> {
    fn value(&self) -> Value<'_, 'a> {
        Value::List(self.as_deref())
    }
}

impl<'a> Slot<'a> for Option<i64> {
    fn value(&self) -> Value<'_, 'a> {
        Value::Int(*self)
    }
}

impl<'a> Slot<'a> for Option<f64> {
    fn value(&self) -> Value<'_, 'a> {
        Value::Num(*self)
    }
}

/// A column builder: made empty, finished keeping its room for the next batch.
trait Builder {
    fn fresh() -> Self;
    fn finish_keeping_room(&mut self) -> ArrayRef;
}

impl Builder for StringBuilder {
    fn fresh() -> Self {
        StringBuilder::new()
    }
    fn finish_keeping_room(&mut self) -> ArrayRef {
        let (items, bytes) = (self.len(), self.values_slice().len());
        let array = Arc::new(self.finish());
        *self = StringBuilder::with_capacity(items, bytes);
        array
    }
}

impl Builder for ListBuilder<StringBuilder> {
    fn fresh() -> Self {
        // The schema's item field is nullable "item"; ListBuilder's default matches it.
        ListBuilder::new(StringBuilder::new())
    }
    fn finish_keeping_room(&mut self) -> ArrayRef {
        let (lists, items, bytes) = (self.len(), self.values_ref().len(), self.values_ref().values_slice().len());
        let array = Arc::new(self.finish());
        *self = ListBuilder::with_capacity(StringBuilder::with_capacity(items, bytes), lists);
        array
    }
}

/// Finishes a primitive builder, replacing it with `make(rows)`.
fn finish_primitive<T: ArrowPrimitiveType>(b: &mut PrimitiveBuilder<T>, make: fn(usize) -> PrimitiveBuilder<T>) -> ArrayRef {
    let items = b.len();
    let array = Arc::new(b.finish());
    *b = make(items);
    array
}

impl Builder for TimestampNanosecondBuilder {
    fn fresh() -> Self {
        TimestampNanosecondBuilder::new().with_timezone("UTC")
    }
    fn finish_keeping_room(&mut self) -> ArrayRef {
        finish_primitive(self, |n| TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC"))
    }
}

impl Builder for Int64Builder {
    fn fresh() -> Self {
        Int64Builder::new()
    }
    fn finish_keeping_room(&mut self) -> ArrayRef {
        finish_primitive(self, Int64Builder::with_capacity)
    }
}

impl Builder for Int32Builder {
    fn fresh() -> Self {
        Int32Builder::new()
    }
    fn finish_keeping_room(&mut self) -> ArrayRef {
        finish_primitive(self, Int32Builder::with_capacity)
    }
}

impl Builder for Float64Builder {
    fn fresh() -> Self {
        Float64Builder::new()
    }
    fn finish_keeping_room(&mut self) -> ArrayRef {
        finish_primitive(self, Float64Builder::with_capacity)
    }
}

/// Appends one value of the kind a builder holds.
trait Put<V> {
    fn put(&mut self, v: V);
}

impl Put<&Option<Cow<'_, str>>> for StringBuilder {
    fn put(&mut self, v: &Option<Cow<'_, str>>) {
        self.append_option(v.as_deref());
    }
}

impl Put<&str> for StringBuilder {
    fn put(&mut self, v: &str) {
        self.append_value(v);
    }
}

impl Put<&[Item<'_>]> for ListBuilder<StringBuilder> {
    fn put(&mut self, items: &[Item<'_>]) {
        for item in items {
            self.values().append_value(&*item.0);
        }
        self.append(true);
    }
}

impl Put<&Option<List<'_>>> for ListBuilder<StringBuilder> {
    fn put(&mut self, v: &Option<List<'_>>) {
        match v {
            Some(items) => self.put(&items[..]),
            None => self.append(false),
        }
    }
}

impl Put<&Option<i64>> for Int64Builder {
    fn put(&mut self, v: &Option<i64>) {
        self.append_option(*v);
    }
}

impl Put<i64> for Int64Builder {
    fn put(&mut self, v: i64) {
        self.append_value(v);
    }
}

impl Put<&Option<f64>> for Float64Builder {
    fn put(&mut self, v: &Option<f64>) {
        self.append_option(*v);
    }
}

impl Put<Option<i32>> for Int32Builder {
    fn put(&mut self, v: Option<i32>) {
        self.append_option(v);
    }
}

impl Put<i64> for TimestampNanosecondBuilder {
    fn put(&mut self, v: i64) {
        self.append_value(v);
    }
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

impl Default for Columns {
    fn default() -> Self {
        Columns::new()
    }
}

impl Columns {
    /// Rows appended since the last [`Columns::finish`].
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
    fn columns_fill_every_field_of_the_table_and_absent_values_become_their_defaults() {
        use arrow::array::{Array, AsArray};
        use arrow::datatypes::{Float64Type, Int32Type, Int64Type, TimestampNanosecondType};
        let mut c = Columns::new();
        let full = Event {
            event_id: Some("id-1".into()),
            event_type: Some("ai.request".into()),
            tenant_id: Some("t".into()),
            data_classes: Some([Item("pii".into())].into_iter().collect()),
            input_tokens: Some(3),
            latency_ms: Some(1.5),
            approved_by: Some("bob".into()),
            ..Default::default()
        };
        c.append(&full, 5, &Origin::Kafka { topic: "k".into(), partition: 2, offset: 9 });
        let bare = Event { event_id: Some("id-2".into()), event_type: Some("x".into()), ..Default::default() };
        c.append(&bare, 6, &Origin::File { path: "f".into(), line: 1 });
        assert_eq!(c.len(), 2);
        let b = c.finish();
        assert!(c.is_empty());
        assert_eq!(b.schema(), events_schema());
        assert_eq!(b.num_columns(), FIELDS.len());
        let strings = |name: &str| -> Vec<Option<String>> {
            b.column_by_name(name).unwrap().as_string::<i32>().iter().map(|s| s.map(str::to_string)).collect()
        };
        assert_eq!(strings("event_id"), [Some("id-1".to_string()), Some("id-2".to_string())]);
        assert_eq!(strings("tenant_id"), [Some("t".to_string()), None]);
        assert_eq!(strings("approved_by"), [Some("bob".to_string()), None], "the last field of events.md");
        assert_eq!(strings("environment"), [Some("production".to_string()), Some("production".to_string())]);
        assert_eq!(strings("origin_source"), [Some("k".to_string()), Some("f".to_string())]);
        let times = b.column(col::TIME).as_primitive::<TimestampNanosecondType>();
        assert_eq!((times.value(0), times.value(1)), (5, 6));
        let classes = b.column_by_name("data_classes").unwrap().as_list::<i32>();
        assert_eq!(classes.value(0).as_string::<i32>().value(0), "pii");
        assert!(classes.is_valid(1) && classes.value(1).is_empty(), "absent is [], not null");
        let tokens = b.column_by_name("input_tokens").unwrap().as_primitive::<Int64Type>();
        assert_eq!((tokens.value(0), tokens.is_null(1)), (3, true));
        assert_eq!(b.column_by_name("latency_ms").unwrap().as_primitive::<Float64Type>().value(0), 1.5);
        let partitions = b.column(col::ORIGIN_PARTITION).as_primitive::<Int32Type>();
        assert_eq!((partitions.value(0), partitions.is_null(1)), (2, true));
        assert_eq!(b.column(col::ORIGIN_POSITION).as_primitive::<Int64Type>().values(), &[9, 1]);
        // The builders keep working after a finish.
        c.append(&bare, 7, &Origin::Generated { seq: 4 });
        assert_eq!(c.finish().num_rows(), 1);
    }

    #[test]
    fn columns_without_a_default_are_nullable() {
        let required: Vec<&str> = FIELDS.iter().filter(|d| !d.nullable).map(|d| d.name).collect();
        assert_eq!(required, ["event_id", "event_type", "time", "environment", "data_classes", "context_tenant_ids", "origin_source", "origin_position"]);
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
