//! JSON events to Arrow: one raw batch in, one typed `RecordBatch` and the
//! dead letters out.
//!
//! Each record is deserialized straight into borrowed, typed fields (no
//! `serde_json::Value` per row) and appended to column builders, so a bad
//! record is rejected alone and never spoils its neighbours. Only a record
//! that fails takes the slow path, which re-reads it to say which field is
//! wrong. We use this rather than arrow-json's tape decoder because the
//! contract's notion of "malformed" is stricter than arrow-json's coercions
//! (it parses `"12"` into an integer column and accepts timestamps without an
//! offset), and a per-record verdict is what the dead-letter output needs.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{
    ArrayBuilder as _, ArrayRef, ArrowPrimitiveType, Float64Builder, Int32Builder, Int64Builder, ListBuilder, PrimitiveBuilder, RecordBatch,
    StringBuilder, TimestampNanosecondBuilder,
};
use chrono::DateTime;
use serde::Deserialize;
use smallvec::SmallVec;

use crate::event::{events_schema, Origin, RawBatch};

/// A record that is not a valid event (events.md, "Dead letters").
///
/// The raw bytes may hold anything the producer sent, prompt text included, so
/// at most [`DecodeOptions::max_raw_bytes`] of them are kept (none when
/// [`DecodeOptions::include_raw`] is off); the length and SHA-256 of the whole
/// record are always kept, so the original can be found and matched.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub origin: Origin,
    /// Short machine-friendly class of the problem, used as a metric label.
    pub kind: &'static str,
    /// What is wrong, for a person: names the field, never echoes its value.
    pub reason: String,
    /// The record's bytes, or their first `max_raw_bytes`; `None` when raw bytes are not kept.
    pub bytes: Option<Vec<u8>>,
    /// Length of the whole record, bytes.
    pub len: usize,
    /// SHA-256 of the whole record, lowercase hex.
    pub sha256: String,
}

impl DeadLetter {
    /// Keeps what `options` allow of `record`, and its length and hash.
    pub fn new(origin: Origin, (kind, reason): Verdict, record: &[u8], options: &DecodeOptions) -> DeadLetter {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(record);
        let sha256 = digest.iter().map(|b| format!("{b:02x}")).collect();
        let bytes = options.include_raw.then(|| {
            let mut kept = &record[..record.len().min(options.max_raw_bytes)];
            // Cut at a character boundary, so UTF-8 text stays text (`raw`, not `raw_hex`).
            if kept.len() < record.len() {
                if let Err(e) = std::str::from_utf8(kept) {
                    if e.error_len().is_none() {
                        kept = &kept[..e.valid_up_to()];
                    }
                }
            }
            kept.to_vec()
        });
        DeadLetter { origin, kind, reason, bytes, len: record.len(), sha256 }
    }

    /// Whether the kept bytes are only a prefix of the record (or none of it).
    pub fn truncated(&self) -> bool {
        self.bytes.as_ref().map_or(0, Vec::len) < self.len
    }

    /// The dead-letter record as one JSON line: origin, reason, length, hash and the kept bytes.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "origin": self.origin.to_json_origin(),
            "kind": self.kind,
            "reason": self.reason,
            "length": self.len,
            "sha256": self.sha256,
        });
        if let Some(bytes) = &self.bytes {
            match std::str::from_utf8(bytes) {
                Ok(s) => v["raw"] = serde_json::Value::String(s.to_string()),
                Err(_) => v["raw_hex"] = serde_json::Value::String(bytes.iter().map(|b| format!("{b:02x}")).collect()),
            }
            v["raw_truncated"] = serde_json::Value::Bool(self.truncated());
        }
        v
    }
}

impl Origin {
    fn to_json_origin(&self) -> serde_json::Value {
        match self {
            Origin::File { path, line } => serde_json::json!({"file": &**path, "line": line}),
            Origin::Kafka { topic, partition, offset } => serde_json::json!({"topic": &**topic, "partition": partition, "offset": offset}),
            Origin::Generated { seq } => serde_json::json!({"generator_seq": seq}),
        }
    }
}

/// First event time aiwatch accepts: 1970-01-01T00:00:00Z (Unix nanoseconds).
pub const MIN_EVENT_TIME_NS: i64 = 0;
/// Event times from here on are refused: 2200-01-01T00:00:00Z. Times are i64
/// nanoseconds, which end in April 2262; this margin of 62 years leaves room
/// for every sum the engine makes (a time plus the longest retention, at most
/// [`crate::policy::MAX_RETENTION_DAYS`], plus lateness, response timeout and
/// the rules' 24 h windows) without overflow.
pub const MAX_EVENT_TIME_NS: i64 = 7_258_118_400 * 1_000_000_000;

/// What the decoder accepts. A record over any limit is a dead letter whose
/// reason names the limit and the field, never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeOptions {
    /// An event whose time is more than this many seconds ahead of the wall
    /// clock is a dead letter (`time_in_future`); `None` checks nothing.
    pub max_future_seconds: Option<u64>,
    /// A record longer than this (bytes, unknown fields included) is a dead letter (`event_too_large`).
    pub max_event_bytes: usize,
    /// A string field, or one entry of a list field, longer than this (bytes) is a dead letter (`field_too_long`).
    pub max_field_bytes: usize,
    /// A list field with more entries than this is a dead letter (`list_too_long`).
    pub max_list_items: usize,
    /// A dead letter keeps at most this many bytes of its record.
    pub max_raw_bytes: usize,
    /// Whether a dead letter keeps any raw bytes at all (they may hold prompt text).
    pub include_raw: bool,
}

pub const DEFAULT_MAX_EVENT_BYTES: usize = 8 << 20;
pub const DEFAULT_MAX_FIELD_BYTES: usize = 1024;
pub const DEFAULT_MAX_LIST_ITEMS: usize = 256;
pub const DEFAULT_MAX_RAW_BYTES: usize = 64 << 10;

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            max_future_seconds: None,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            max_field_bytes: DEFAULT_MAX_FIELD_BYTES,
            max_list_items: DEFAULT_MAX_LIST_ITEMS,
            max_raw_bytes: DEFAULT_MAX_RAW_BYTES,
            include_raw: true,
        }
    }
}

/// The result of decoding one raw batch.
#[derive(Debug)]
pub struct Decoded {
    /// Valid events, in arrival order, with the `events` schema.
    pub events: RecordBatch,
    pub dead_letters: Vec<DeadLetter>,
    /// Records that were blank lines, skipped by the contract.
    pub blank: usize,
    pub bytes: usize,
}

/// One event on the wire. Every field named in events.md is typed here, so a
/// wrong JSON type fails deserialization; other fields are ignored.
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    event_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    event_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    time: Option<Cow<'a, str>>,
    #[serde(borrow)]
    tenant_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    actor_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    environment: Option<Cow<'a, str>>,
    #[serde(borrow)]
    source: Option<Cow<'a, str>>,
    #[serde(borrow)]
    request_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    provider: Option<Cow<'a, str>>,
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow)]
    operation: Option<Cow<'a, str>>,
    #[serde(borrow)]
    vendor_region: Option<Cow<'a, str>>,
    #[serde(borrow)]
    data_classes: Option<List<'a>>,
    #[serde(borrow)]
    context_tenant_ids: Option<List<'a>>,
    #[serde(borrow)]
    conversation_id: Option<Cow<'a, str>>,
    input_tokens: Option<i64>,
    #[serde(borrow)]
    prompt_sha256: Option<Cow<'a, str>>,
    #[serde(borrow)]
    status: Option<Cow<'a, str>>,
    output_tokens: Option<i64>,
    latency_ms: Option<f64>,
    #[serde(borrow)]
    artifact_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    artifact_kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    storage_region: Option<Cow<'a, str>>,
    #[serde(borrow)]
    resource_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    resource: Option<Cow<'a, str>>,
    #[serde(borrow)]
    change_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    approved_by: Option<Cow<'a, str>>,
}

/// A list field's entries: up to four inline, each borrowed from the record
/// unless it holds escapes, so a typical list costs no allocation.
type List<'a> = SmallVec<[Item<'a>; 4]>;

/// A string list entry. (A `Cow<str>` inside a container always deserializes
/// owned; this one borrows when it can.)
struct Item<'a>(Cow<'a, str>);

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

/// The JSON type each named field must have, for the slow path's messages.
#[derive(Clone, Copy)]
enum Expect {
    Str,
    Int,
    Num,
    StrList,
}

const FIELD_TYPES: [(&str, Expect); 27] = [
    ("event_id", Expect::Str),
    ("event_type", Expect::Str),
    ("time", Expect::Str),
    ("tenant_id", Expect::Str),
    ("actor_id", Expect::Str),
    ("environment", Expect::Str),
    ("source", Expect::Str),
    ("request_id", Expect::Str),
    ("provider", Expect::Str),
    ("model", Expect::Str),
    ("operation", Expect::Str),
    ("vendor_region", Expect::Str),
    ("data_classes", Expect::StrList),
    ("context_tenant_ids", Expect::StrList),
    ("conversation_id", Expect::Str),
    ("input_tokens", Expect::Int),
    ("prompt_sha256", Expect::Str),
    ("status", Expect::Str),
    ("output_tokens", Expect::Int),
    ("latency_ms", Expect::Num),
    ("artifact_id", Expect::Str),
    ("artifact_kind", Expect::Str),
    ("storage_region", Expect::Str),
    ("resource_type", Expect::Str),
    ("resource", Expect::Str),
    ("change_id", Expect::Str),
    ("approved_by", Expect::Str),
];

/// Parses an RFC 3339 timestamp with an offset into UTC nanoseconds.
pub fn parse_time(s: &str) -> Option<i64> {
    fast_rfc3339(s.as_bytes()).or_else(|| DateTime::parse_from_rfc3339(s).ok()?.timestamp_nanos_opt())
}

/// The common shape `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|±HH:MM)`, parsed without
/// chrono. Returns `None` for anything else (another separator, a leap
/// second, more than 9 fraction digits, an overflow), which then goes to
/// chrono: this accepts only what chrono accepts, with the same value.
fn fast_rfc3339(b: &[u8]) -> Option<i64> {
    fn num(b: &[u8]) -> Option<i64> {
        b.iter().try_fold(0i64, |n, c| c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0')))
    }
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(&b[0..4])?, num(&b[5..7])?, num(&b[8..10])?);
    let (hour, minute, second) = (num(&b[11..13])?, num(&b[14..16])?, num(&b[17..19])?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&month) || day < 1 || day > month_days[month as usize - 1] || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut rest = &b[19..];
    let mut nanos = 0i64;
    if rest.first() == Some(&b'.') {
        let digits = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        nanos = num(&rest[1..=digits])? * 10i64.pow(9 - digits as u32);
        rest = &rest[1 + digits..];
    }
    let offset = match rest {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (h, m) = (num(&[*h1, *h2])?, num(&[*m1, *m2])?);
            if h > 23 || m > 59 {
                return None;
            }
            (h * 3600 + m * 60) * if *sign == b'-' { -1 } else { 1 }
        }
        _ => return None,
    };
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

impl Wire<'_> {
    /// Every string field with its name.
    fn strings(&self) -> [(&'static str, Option<&str>); 22] {
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
}

/// Column builders for the `events` schema, reused from batch to batch.
struct Columns {
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

impl Columns {
    fn new() -> Columns {
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

    fn append(&mut self, w: &Wire<'_>, event_id: &str, event_type: &str, time: i64, origin: &Origin) {
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
    fn finish(&mut self) -> RecordBatch {
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
        RecordBatch::try_new(events_schema(), columns).expect("decoder columns match the events schema")
    }
}

/// Decodes raw batches into `events` record batches.
pub struct Decoder {
    columns: Columns,
    options: DecodeOptions,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    /// A decoder with the default limits and no check against the wall clock.
    pub fn new() -> Decoder {
        Decoder::with_options(DecodeOptions::default())
    }

    pub fn with_options(options: DecodeOptions) -> Decoder {
        Decoder { columns: Columns::new(), options }
    }

    pub fn options(&self) -> &DecodeOptions {
        &self.options
    }

    /// Decodes every record of `raw`; never fails: what is not an event becomes a dead letter.
    pub fn decode(&mut self, raw: &RawBatch) -> Decoded {
        let mut dead_letters = Vec::new();
        let mut blank = 0;
        // One reading of the clock per batch: a batch spans at most the batch wait.
        let latest = self.options.max_future_seconds.map(|s| {
            let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
            now.saturating_add((s.min(i64::MAX as u64 / 1_000_000_000) as i64) * 1_000_000_000)
        });
        for (bytes, origin) in raw.iter() {
            if bytes.iter().all(u8::is_ascii_whitespace) {
                blank += 1;
                continue;
            }
            let verdict: Verdict = if bytes.len() > self.options.max_event_bytes {
                (
                    "event_too_large",
                    format!("the record is {} bytes, over the limit of {} (max_event_bytes)", bytes.len(), self.options.max_event_bytes),
                )
            } else {
                match serde_json::from_slice::<Wire<'_>>(bytes) {
                    Ok(w) => match required(&w).and_then(|r| self.within_limits(&w, r.2, latest).map(|()| r)) {
                        Ok((id, ty, t)) => {
                            self.columns.append(&w, id, ty, t, origin);
                            continue;
                        }
                        Err(v) => v,
                    },
                    Err(_) => explain(bytes),
                }
            };
            dead_letters.push(DeadLetter::new(origin.clone(), verdict, bytes, &self.options));
        }
        Decoded { events: self.columns.finish(), dead_letters, blank, bytes: raw.byte_len() }
    }

    /// The limits on sizes and times, checked once the record is known to be a well-typed event.
    fn within_limits(&self, w: &Wire<'_>, time: i64, latest: Option<i64>) -> Result<(), Verdict> {
        let max = self.options.max_field_bytes;
        for (name, v) in w.strings() {
            if let Some(v) = v.filter(|v| v.len() > max) {
                return Err(("field_too_long", format!("field `{name}` is {} bytes, over the limit of {max} (max_field_bytes)", v.len())));
            }
        }
        for (name, list) in [("data_classes", &w.data_classes), ("context_tenant_ids", &w.context_tenant_ids)] {
            let Some(items) = list else { continue };
            if items.len() > self.options.max_list_items {
                return Err((
                    "list_too_long",
                    format!("field `{name}` has {} entries, over the limit of {} (max_list_items)", items.len(), self.options.max_list_items),
                ));
            }
            if let Some(item) = items.iter().find(|i| i.0.len() > max) {
                return Err((
                    "field_too_long",
                    format!("an entry of field `{name}` is {} bytes, over the limit of {max} (max_field_bytes)", item.0.len()),
                ));
            }
        }
        if !(MIN_EVENT_TIME_NS..MAX_EVENT_TIME_NS).contains(&time) {
            return Err(out_of_range());
        }
        if let (Some(latest), Some(ahead)) = (latest, self.options.max_future_seconds) {
            if time > latest {
                return Err((
                    "time_in_future",
                    format!("field `time` is more than {ahead} s ahead of the wall clock (max_future_seconds)"),
                ));
            }
        }
        Ok(())
    }
}

/// A dead letter's kind (metric label) and reason (for a person).
pub type Verdict = (&'static str, String);

fn out_of_range() -> Verdict {
    (
        "time_out_of_range",
        "field `time` is outside the range aiwatch computes with (from 1970-01-01T00:00:00Z, before 2200-01-01T00:00:00Z)".to_string(),
    )
}

/// The three required fields, checked: present, strings, non-empty, and a time with an offset.
fn required<'w>(w: &'w Wire<'_>) -> Result<(&'w str, &'w str, i64), Verdict> {
    let field = |name: &'static str, v: &'w Option<Cow<'_, str>>| match v.as_deref() {
        None => Err(("missing_field", format!("required field `{name}` is missing or null"))),
        Some("") => Err(("empty_field", format!("required field `{name}` is empty"))),
        Some(s) => Ok(s),
    };
    let id = field("event_id", &w.event_id)?;
    let ty = field("event_type", &w.event_type)?;
    let time = field("time", &w.time)?;
    let t = match fast_rfc3339(time.as_bytes()) {
        Some(t) => t,
        None => {
            let parsed = DateTime::parse_from_rfc3339(time).map_err(|_| {
                ("bad_time", "field `time` is not an RFC 3339 timestamp with a UTC offset (e.g. 2026-11-28T10:00:00Z)".to_string())
            })?;
            // A valid timestamp beyond what i64 nanoseconds hold (before 1677 or after 2262).
            parsed.timestamp_nanos_opt().ok_or_else(out_of_range)?
        }
    };
    Ok((id, ty, t))
}

/// Says why a record failed the fast path, naming the field but never its value.
fn explain(bytes: &[u8]) -> Verdict {
    let value: serde_json::Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) if e.is_eof() => return ("invalid_json", "not valid JSON: the record ends early (truncated?)".into()),
        Err(e) => {
            return (
                "invalid_json",
                format!("not valid JSON: {} at column {}", syntax_class(&e), e.column()),
            )
        }
    };
    let Some(obj) = value.as_object() else {
        let found = match value {
            serde_json::Value::Array(_) => "an array",
            serde_json::Value::String(_) => "a string",
            serde_json::Value::Number(_) => "a number",
            serde_json::Value::Bool(_) => "a boolean",
            serde_json::Value::Null => "null",
            serde_json::Value::Object(_) => unreachable!(),
        };
        return ("not_object", format!("not a JSON object (found {found})"));
    };
    for (name, expect) in FIELD_TYPES {
        let Some(v) = obj.get(name) else { continue };
        let ok = match (expect, v) {
            (_, serde_json::Value::Null) => true,
            (Expect::Str, v) => v.is_string(),
            (Expect::Int, v) => v.is_i64(),
            (Expect::Num, v) => v.is_number(),
            (Expect::StrList, serde_json::Value::Array(items)) => items.iter().all(|i| i.is_string()),
            (Expect::StrList, _) => false,
        };
        if !ok {
            let want = match expect {
                Expect::Str => "a string",
                Expect::Int => "an integer",
                Expect::Num => "a number",
                Expect::StrList => "an array of strings",
            };
            return ("wrong_type", format!("field `{name}` must be {want}, found {}", json_type(v)));
        }
    }
    // Typed fields are right, so the fast path failed on something serde alone sees.
    match serde_json::from_slice::<Wire<'_>>(bytes) {
        Ok(w) => match required(&w) {
            Ok(_) => ("invalid_json", "record could not be decoded".into()),
            Err(v) => v,
        },
        Err(e) => ("invalid_json", format!("record could not be decoded: {}", strip_values(&e.to_string()))),
    }
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        serde_json::Value::Number(_) => "a number with a fraction",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(items) if items.iter().all(|i| i.is_string()) => "an array",
        serde_json::Value::Array(_) => "an array holding a non-string",
        serde_json::Value::Object(_) => "an object",
    }
}

/// serde_json syntax errors carry no input text; keep just the sentence before " at line".
fn syntax_class(e: &serde_json::Error) -> String {
    let s = e.to_string();
    s.split(" at line").next().unwrap_or(&s).to_string()
}

/// Data errors can quote the offending value (`invalid type: string "..."`); drop quoted parts.
fn strip_values(s: &str) -> String {
    let head = s.split(" at line").next().unwrap_or(s);
    let mut out = String::with_capacity(head.len());
    let mut in_quote = false;
    for c in head.chars() {
        if c == '"' {
            if !in_quote {
                out.push_str("\"…\"");
            }
            in_quote = !in_quote;
        } else if !in_quote {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::TimestampNanosecondType;

    fn decode(lines: &[&str]) -> Decoded {
        let mut raw = RawBatch::default();
        for (i, l) in lines.iter().enumerate() {
            raw.push(l.as_bytes(), Origin::File { path: "t.jsonl".into(), line: i as u64 + 1 });
        }
        Decoder::new().decode(&raw)
    }

    const OK: &str = r#"{"event_id":"e1","event_type":"ai.request","time":"2026-11-28T11:00:00.123456789+01:00","tenant_id":"müller-gmbh","data_classes":["pii"],"input_tokens":5,"latency_ms":3,"extra":{"x":[1,2]}}"#;

    #[test]
    fn valid_event_is_typed_and_normalised_to_utc() {
        let d = decode(&[OK]);
        assert!(d.dead_letters.is_empty(), "{:?}", d.dead_letters);
        let b = &d.events;
        assert_eq!(b.num_rows(), 1);
        let t = b.column(2).as_primitive::<TimestampNanosecondType>().value(0);
        assert_eq!(t, parse_time("2026-11-28T10:00:00.123456789Z").unwrap());
        assert_eq!(b.column_by_name("tenant_id").unwrap().as_string::<i32>().value(0), "müller-gmbh");
        assert_eq!(b.column_by_name("environment").unwrap().as_string::<i32>().value(0), "production");
        let ctx = b.column_by_name("context_tenant_ids").unwrap().as_list::<i32>();
        assert!(!ctx.is_null(0));
        assert_eq!(ctx.value(0).len(), 0);
    }

    #[test]
    fn null_and_absent_are_the_same() {
        let d = decode(&[r#"{"event_id":"e1","event_type":"x","time":"2026-11-28T10:00:00Z","tenant_id":null,"data_classes":null,"environment":null}"#]);
        assert!(d.dead_letters.is_empty());
        assert!(d.events.column_by_name("tenant_id").unwrap().is_null(0));
        assert_eq!(d.events.column_by_name("environment").unwrap().as_string::<i32>().value(0), "production");
    }

    #[test]
    fn each_malformed_record_is_a_dead_letter_with_a_reason_naming_the_field() {
        let cases: &[(&str, &str)] = &[
            ("{not json", "not valid JSON"),
            ("[1,2]", "not a JSON object"),
            (r#"{"event_type":"x","time":"2026-11-28T10:00:00Z"}"#, "`event_id`"),
            (r#"{"event_id":"","event_type":"x","time":"2026-11-28T10:00:00Z"}"#, "`event_id` is empty"),
            (r#"{"event_id":1,"event_type":"x","time":"2026-11-28T10:00:00Z"}"#, "`event_id` must be a string"),
            (r#"{"event_id":"a","event_type":"x","time":"2026-11-28T10:00:00"}"#, "`time`"),
            (r#"{"event_id":"a","event_type":"x","time":"yesterday"}"#, "`time`"),
            (r#"{"event_id":"a","event_type":"x","time":"2026-11-28T10:00:00Z","input_tokens":"12"}"#, "`input_tokens` must be an integer"),
            (r#"{"event_id":"a","event_type":"x","time":"2026-11-28T10:00:00Z","input_tokens":1.5}"#, "`input_tokens` must be an integer"),
            (r#"{"event_id":"a","event_type":"x","time":"2026-11-28T10:00:00Z","data_classes":"pii"}"#, "`data_classes` must be an array of strings"),
            (r#"{"event_id":"a","event_type":"x","time":"2026-11-28T10:00:00Z","data_classes":["pii",3]}"#, "`data_classes` must be an array of strings"),
            (r#"{"event_id":"a","event_type":"x","time":"2026-11-28T10:00:00Z","latency_ms":"3"}"#, "`latency_ms` must be a number"),
        ];
        let lines: Vec<&str> = std::iter::once(OK).chain(cases.iter().map(|c| c.0)).chain(std::iter::once(OK)).collect();
        let d = decode(&lines);
        assert_eq!(d.events.num_rows(), 2, "good neighbours survive");
        assert_eq!(d.dead_letters.len(), cases.len());
        for (dl, (line, want)) in d.dead_letters.iter().zip(cases) {
            assert!(dl.reason.contains(want), "{line}: {}", dl.reason);
            assert_eq!(dl.bytes.as_deref(), Some(line.as_bytes()));
            assert_eq!(dl.len, line.len());
        }
        assert_eq!(d.dead_letters[0].origin, Origin::File { path: "t.jsonl".into(), line: 2 });
    }

    #[test]
    fn blank_lines_are_skipped_not_dead() {
        let d = decode(&["", "   ", OK]);
        assert_eq!(d.blank, 2);
        assert!(d.dead_letters.is_empty());
    }

    #[test]
    fn reasons_never_echo_values() {
        let d = decode(&[r#"{"event_id":"a","event_type":"x","time":"2026-11-28T10:00:00Z","model":{"secret":"CANARY"}}"#]);
        assert!(!d.dead_letters[0].reason.contains("CANARY"));
        let d = decode(&[r#"{"event_id":"a","event_id":"b","event_type":"x","time":"2026-11-28T10:00:00Z"}"#]);
        assert_eq!(d.dead_letters.len(), 1);
        assert!(!d.dead_letters[0].reason.contains("\"a\""), "{}", d.dead_letters[0].reason);
    }

    fn decode_with(options: DecodeOptions, lines: &[&str]) -> Decoded {
        let mut raw = RawBatch::default();
        for (i, l) in lines.iter().enumerate() {
            raw.push(l.as_bytes(), Origin::File { path: "t.jsonl".into(), line: i as u64 + 1 });
        }
        Decoder::with_options(options).decode(&raw)
    }

    fn event_at(time: &str) -> String {
        format!(r#"{{"event_id":"e","event_type":"ai.request","time":"{time}"}}"#)
    }

    #[test]
    fn a_time_too_far_ahead_of_the_clock_is_a_dead_letter_only_when_asked() {
        let now = chrono::Utc::now();
        let soon = (now + chrono::Duration::seconds(100)).to_rfc3339();
        let later = (now + chrono::Duration::seconds(1000)).to_rfc3339();
        let options = DecodeOptions { max_future_seconds: Some(300), ..Default::default() };
        let d = decode_with(options, &[&event_at(&soon), &event_at(&later)]);
        assert_eq!(d.events.num_rows(), 1);
        assert_eq!(d.dead_letters.len(), 1);
        assert_eq!(d.dead_letters[0].kind, "time_in_future");
        assert!(d.dead_letters[0].reason.contains("`time`") && d.dead_letters[0].reason.contains("300 s"), "{}", d.dead_letters[0].reason);
        assert_eq!(d.dead_letters[0].origin, Origin::File { path: "t.jsonl".into(), line: 2 });
        // Without the option (scan's default) the clock is not consulted.
        assert_eq!(decode(&[&event_at(&later)]).events.num_rows(), 1);
    }

    #[test]
    fn times_outside_the_computable_range_are_dead_letters() {
        for time in ["2262-01-01T00:00:00Z", "2200-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "1969-12-31T23:59:59Z", "1600-01-01T00:00:00Z"] {
            let d = decode(&[&event_at(time)]);
            assert_eq!(d.events.num_rows(), 0, "{time}");
            assert_eq!(d.dead_letters[0].kind, "time_out_of_range", "{time}");
            // The reason states the range, so only a time other than its end could be an echo.
            assert!(time.starts_with("2200") || !d.dead_letters[0].reason.contains(time), "reason echoes the value: {}", d.dead_letters[0].reason);
        }
        let d = decode(&[&event_at("2199-12-31T23:59:59.999999999Z"), &event_at("1970-01-01T00:00:00Z")]);
        assert!(d.dead_letters.is_empty(), "{:?}", d.dead_letters);
        assert_eq!(MAX_EVENT_TIME_NS, parse_time("2200-01-01T00:00:00Z").unwrap());
        assert_eq!(MIN_EVENT_TIME_NS, parse_time("1970-01-01T00:00:00Z").unwrap());
    }

    #[test]
    fn fields_lists_and_records_over_their_limits_are_dead_letters_naming_the_field() {
        let long = "x".repeat(1025);
        let many: Vec<String> = (0..257).map(|i| format!("\"c{i}\"")).collect();
        let cases: Vec<(String, &str, &str)> = vec![
            (format!(r#"{{"event_id":"{long}","event_type":"x","time":"2026-11-28T10:00:00Z"}}"#), "field_too_long", "`event_id` is 1025 bytes"),
            (format!(r#"{{"event_id":"a","event_type":"x","time":"2026-11-28T10:00:00Z","approved_by":"{long}"}}"#), "field_too_long", "`approved_by`"),
            (format!(r#"{{"event_id":"a","event_type":"x","time":"2026-11-28T10:00:00Z","data_classes":[{}]}}"#, many.join(",")), "list_too_long", "`data_classes` has 257 entries"),
            (format!(r#"{{"event_id":"a","event_type":"x","time":"2026-11-28T10:00:00Z","context_tenant_ids":["{long}"]}}"#), "field_too_long", "entry of field `context_tenant_ids`"),
        ];
        let lines: Vec<&str> = std::iter::once(OK).chain(cases.iter().map(|c| c.0.as_str())).chain(std::iter::once(OK)).collect();
        let d = decode(&lines);
        assert_eq!(d.events.num_rows(), 2, "good neighbours survive");
        assert_eq!(d.dead_letters.len(), cases.len());
        for (dl, (_, kind, want)) in d.dead_letters.iter().zip(&cases) {
            assert_eq!(dl.kind, *kind);
            assert!(dl.reason.contains(want), "{}", dl.reason);
            assert!(!dl.reason.contains("xxxx") && !dl.reason.contains("c256"), "reason echoes the value: {}", dl.reason);
        }
        // At the limit is fine; unknown fields count only toward the record's size.
        let at_limit = format!(r#"{{"event_id":"{}","event_type":"x","time":"2026-11-28T10:00:00Z","extra":"{long}{long}","data_classes":[{}]}}"#, "y".repeat(1024), many[..256].join(","));
        assert!(decode(&[&at_limit]).dead_letters.is_empty());
        let small = DecodeOptions { max_event_bytes: 1000, ..Default::default() };
        let d = decode_with(small, &[&at_limit, OK]);
        assert_eq!(d.dead_letters.len(), 1);
        assert_eq!(d.dead_letters[0].kind, "event_too_large");
        assert!(d.dead_letters[0].reason.contains("max_event_bytes"), "{}", d.dead_letters[0].reason);
    }

    #[test]
    fn dead_letters_keep_a_capped_prefix_with_the_length_and_hash_of_the_whole() {
        use sha2::Digest as _;
        let record = format!(r#"{{"event_id":1,"note":"{}"}}"#, "é".repeat(100));
        let hash: String = sha2::Sha256::digest(record.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        let capped = DecodeOptions { max_raw_bytes: 25, ..Default::default() };
        let d = decode_with(capped, &[&record]);
        let dl = &d.dead_letters[0];
        assert_eq!((dl.len, dl.sha256.as_str()), (record.len(), hash.as_str()));
        let kept = dl.bytes.as_deref().unwrap();
        assert_eq!(kept, &record.as_bytes()[..24], "cut before the split character");
        let j = dl.to_json();
        assert_eq!(j["raw_truncated"], true);
        assert!(j["raw"].is_string(), "cut at a character boundary, still text: {j}");
        assert_eq!(j["length"], record.len());
        assert_eq!(j["sha256"], hash);

        let d = decode(&[&record]);
        assert_eq!(d.dead_letters[0].bytes.as_deref(), Some(record.as_bytes()));
        assert_eq!(d.dead_letters[0].to_json()["raw_truncated"], false);

        let none = DecodeOptions { include_raw: false, ..Default::default() };
        let j = decode_with(none, &[&record]).dead_letters[0].to_json();
        assert!(j.get("raw").is_none() && j.get("raw_hex").is_none() && j.get("raw_truncated").is_none(), "{j}");
        assert_eq!(j["sha256"], hash);
    }

    #[test]
    fn the_fast_time_parser_agrees_with_chrono() {
        let mut rng = crate::generate::Rng(7);
        let mut cases: Vec<String> = vec![
            "2026-11-28T10:00:00Z".into(),
            "2026-11-28T10:00:00.5+05:30".into(),
            "2024-02-29T23:59:59.999999999-11:59".into(),
            "2023-02-29T00:00:00Z".into(),
            "2026-11-28T24:00:00Z".into(),
            "2026-11-28T10:00:60Z".into(),
            "2026-11-28t10:00:00Z".into(),
            "2026-11-28 10:00:00Z".into(),
            "2026-11-28T10:00:00".into(),
            "2026-11-28T10:00:00.Z".into(),
            "2026-11-28T10:00:00.1234567891Z".into(),
            "2262-04-11T23:47:16.854775808Z".into(),
            "1677-09-21T00:12:43.145224191Z".into(),
            "0001-01-01T00:00:00Z".into(),
            "9999-12-31T23:59:59Z".into(),
            "2026-13-01T00:00:00Z".into(),
            "2026-11-28T10:00:00+24:00".into(),
            "2026-11-28T10:00:00z".into(),
        ];
        for _ in 0..20_000 {
            let pick = |rng: &mut crate::generate::Rng, n: u64| rng.next() % n;
            let frac = match pick(&mut rng, 4) {
                0 => String::new(),
                _ => format!(".{}", &format!("{:09}", pick(&mut rng, 1_000_000_000))[..1 + pick(&mut rng, 9) as usize]),
            };
            let off = match pick(&mut rng, 3) {
                0 => "Z".to_string(),
                _ => format!("{}{:02}:{:02}", if pick(&mut rng, 2) == 0 { '+' } else { '-' }, pick(&mut rng, 25), pick(&mut rng, 61)),
            };
            cases.push(format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{frac}{off}",
                1600 + pick(&mut rng, 700),
                pick(&mut rng, 13),
                pick(&mut rng, 32),
                pick(&mut rng, 25),
                pick(&mut rng, 61),
                pick(&mut rng, 61)
            ));
        }
        for c in &cases {
            let chrono = DateTime::parse_from_rfc3339(c).ok().and_then(|t| t.timestamp_nanos_opt());
            if let Some(fast) = fast_rfc3339(c.as_bytes()) {
                assert_eq!(Some(fast), chrono, "{c}");
            }
            assert_eq!(parse_time(c), chrono, "{c}");
        }
    }
}
