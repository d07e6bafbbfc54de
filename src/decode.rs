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

use crate::event::{events_schema, Origin, RawBatch};

/// A record that is not a valid event (events.md, "Dead letters"), kept whole.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub origin: Origin,
    /// Short machine-friendly class of the problem, used as a metric label.
    pub kind: &'static str,
    /// What is wrong, for a person: names the field, never echoes its value.
    pub reason: String,
    pub bytes: Vec<u8>,
}

impl DeadLetter {
    /// The dead-letter record as one JSON line: origin, reason and the original bytes.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "origin": self.origin.to_json_origin(),
            "kind": self.kind,
            "reason": self.reason,
        });
        match std::str::from_utf8(&self.bytes) {
            Ok(s) => v["raw"] = serde_json::Value::String(s.to_string()),
            Err(_) => v["raw_hex"] = serde_json::Value::String(self.bytes.iter().map(|b| format!("{b:02x}")).collect()),
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
    data_classes: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow)]
    context_tenant_ids: Option<Vec<Cow<'a, str>>>,
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
    DateTime::parse_from_rfc3339(s).ok()?.timestamp_nanos_opt()
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
        fn list(b: &mut ListBuilder<StringBuilder>, v: &Option<Vec<Cow<'_, str>>>) {
            if let Some(items) = v {
                for item in items {
                    b.values().append_value(item);
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
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder { columns: Columns::new() }
    }

    /// Decodes every record of `raw`; never fails: what is not an event becomes a dead letter.
    pub fn decode(&mut self, raw: &RawBatch) -> Decoded {
        let mut dead_letters = Vec::new();
        let mut blank = 0;
        for (bytes, origin) in raw.iter() {
            if bytes.iter().all(u8::is_ascii_whitespace) {
                blank += 1;
                continue;
            }
            match serde_json::from_slice::<Wire<'_>>(bytes) {
                Ok(w) => match required(&w) {
                    Ok((id, ty, t)) => self.columns.append(&w, id, ty, t, origin),
                    Err((kind, reason)) => dead_letters.push(DeadLetter { origin: origin.clone(), kind, reason, bytes: bytes.to_vec() }),
                },
                Err(_) => {
                    let (kind, reason) = explain(bytes);
                    dead_letters.push(DeadLetter { origin: origin.clone(), kind, reason, bytes: bytes.to_vec() });
                }
            }
        }
        Decoded { events: self.columns.finish(), dead_letters, blank, bytes: raw.byte_len() }
    }
}

type Verdict = (&'static str, String);

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
    let t = parse_time(time).ok_or_else(|| {
        ("bad_time", "field `time` is not an RFC 3339 timestamp with a UTC offset (e.g. 2026-11-28T10:00:00Z)".to_string())
    })?;
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
            assert_eq!(dl.bytes, line.as_bytes());
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
}
