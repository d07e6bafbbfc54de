//! The `otlp_proto` and `otlp_json` formats: one OpenTelemetry
//! `ExportTraceServiceRequest` per record (what the OpenTelemetry Collector's
//! Kafka exporter writes with `encoding: otlp_proto`, its default, or
//! `otlp_json`). Each GenAI span (one with the attribute
//! `gen_ai.operation.name`) maps to an `ai.request` and an `ai.response`;
//! other spans are skipped and counted (spec `adapters.md`, "otlp").
//!
//! The message types are `opentelemetry-proto`'s (prost, with its serde
//! support for OTLP/JSON: hex ids, 64-bit integers as strings or numbers).
//! Its serde reads enums as numbers only; OTLP/JSON allows their names too
//! (`"kind": "SPAN_KIND_CLIENT"`), so a request the fast path refuses is read
//! again with names turned into numbers.
//!
//! The unit of mapping is the span: a GenAI span that cannot be mapped is one
//! dead letter carrying its whole request with the text attributes hashed;
//! the other spans of the request map as usual.

use std::borrow::Cow;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use prost::Message as _;

mod json;

use crate::decode::{out_of_range, Out, Verdict};
use crate::event::{Event, Item, List, Origin};
use crate::formats::aiwatch::{strip_values, syntax_class};
use crate::formats::{hex, sha256_compact_json, Adapter, Format};

/// Attributes that hold prompt or response text: never copied, hashed in dead letters.
pub const TEXT_ATTRIBUTES: [&str; 5] =
    ["gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions", "gen_ai.prompt", "gen_ai.completion"];

fn is_text_attribute(key: &str) -> bool {
    TEXT_ATTRIBUTES.iter().any(|t| key == *t || key.strip_prefix(t).is_some_and(|rest| rest.starts_with('.')))
}

/// Decodes one record of `otlp_proto`.
pub fn decode_proto(bytes: &[u8], origin: &Origin, adapter: &Adapter, out: &mut Out<'_>) {
    match ExportTraceServiceRequest::decode(bytes) {
        Ok(req) => map_request(&req, Format::OtlpProto, origin, adapter, out),
        // Bytes that do not parse are kept as they are.
        Err(e) => out.dead(origin, ("invalid_protobuf", format!("not an OTLP ExportTraceServiceRequest in protobuf: {e}")), bytes),
    }
}

/// Decodes one record of `otlp_json`: with the borrowed reader, or, for what
/// it leaves to them, with the crate's types.
pub fn decode_json(bytes: &[u8], origin: &Origin, adapter: &Adapter, out: &mut Out<'_>) {
    // One UTF-8 check of the whole record, rather than one of each string (serde_json's `from_slice`).
    // The usual shape of a request by hand, anything else by the serde reader (both borrow).
    let request = simdutf8::basic::from_utf8(bytes)
        .ok()
        .and_then(|text| json::plain::read(text).or_else(|| serde_json::from_str::<json::Request<'_>>(text).ok()));
    match request {
        Some(req) if !req.resource_spans.is_empty() => {
            let redact = || redact_json(bytes).unwrap_or_default();
            let spans = req.resource_spans.iter().flat_map(|rs| {
                let resource = rs.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
                rs.scope_spans.iter().flat_map(|ss| &ss.spans).map(move |span| SpanView {
                    trace_id: Id::Hex(span.trace_id.0),
                    span_id: Id::Hex(span.span_id.0),
                    start: span.start_time_unix_nano.0,
                    end: span.end_time_unix_nano.0,
                    error_status: span.status.as_ref().is_some_and(|s| s.code.0 == StatusCode::Error as i32),
                    attributes: &span.attributes,
                    resource,
                })
            });
            Mapper { origin, adapter, format: Format::OtlpJson, redact: &redact, redacted: None }.spans(spans, out);
        }
        _ => decode_json_with_crate(bytes, origin, adapter, out),
    }
}

/// Decodes one record of `otlp_json` with the crate's types.
fn decode_json_with_crate(bytes: &[u8], origin: &Origin, adapter: &Adapter, out: &mut Out<'_>) {
    match parse_json(bytes) {
        Ok(req) => map_request(&req, Format::OtlpJson, origin, adapter, out),
        Err(verdict) => {
            let redacted = redact_json(bytes);
            out.dead(origin, verdict, redacted.as_deref().unwrap_or(bytes));
        }
    }
}

fn parse_json(bytes: &[u8]) -> Result<ExportTraceServiceRequest, Verdict> {
    if let Ok(req) = serde_json::from_slice::<ExportTraceServiceRequest>(bytes) {
        if !req.resource_spans.is_empty() {
            return Ok(req);
        }
    }
    // The slow path: enum names, an empty request, or an explanation.
    let mut v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        if e.is_eof() {
            ("invalid_json", "not valid JSON: the record ends early (truncated?)".to_string())
        } else {
            ("invalid_json", format!("not valid JSON: {} at column {}", syntax_class(&e), e.column()))
        }
    })?;
    let Some(obj) = v.as_object() else {
        return Err(("not_object", "not an OTLP/JSON ExportTraceServiceRequest: not a JSON object".into()));
    };
    if !obj.contains_key("resourceSpans") {
        return Err(("not_otlp", "not an OTLP/JSON ExportTraceServiceRequest: no field `resourceSpans`".into()));
    }
    enum_names_to_numbers(&mut v);
    serde_json::from_value(v)
        .map_err(|e| ("not_otlp", format!("not an OTLP/JSON ExportTraceServiceRequest: {}", strip_values(&e.to_string()))))
}

/// `kind` and `status.code` of every span, from enum names to their numbers.
fn enum_names_to_numbers(v: &mut serde_json::Value) {
    let spans = v["resourceSpans"].as_array_mut().into_iter().flatten().flat_map(|rs| {
        rs.get_mut("scopeSpans").and_then(|s| s.as_array_mut()).into_iter().flatten().flat_map(|ss| {
            ss.get_mut("spans").and_then(|s| s.as_array_mut()).into_iter().flatten()
        })
    });
    for span in spans {
        if let Some(kind) = span.get_mut("kind") {
            if let Some(k) = kind.as_str().and_then(SpanKind::from_str_name) {
                *kind = (k as i32).into();
            }
        }
        if let Some(code) = span.get_mut("status").and_then(|s| s.get_mut("code")) {
            if let Some(c) = code.as_str().and_then(StatusCode::from_str_name) {
                *code = (c as i32).into();
            }
        }
    }
}

/// What the mapping reads of an attribute value, whichever reader gave it.
enum Val<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    /// An array's strings; `None` when it holds a non-string.
    Array(Option<List<'a>>),
    /// Another type, by name.
    Other(&'static str),
}

impl Val<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            Val::Str(_) => "a string",
            Val::Int(_) => "an integer",
            Val::Array(_) => "an array",
            Val::Other(name) => name,
        }
    }
}

/// An attribute, of the crate's types or of the borrowed OTLP/JSON reader.
trait Attr {
    fn key(&self) -> &str;
    /// The value; `None` when the attribute has none (or an empty one).
    fn val(&self) -> Option<Val<'_>>;
}

impl Attr for KeyValue {
    fn key(&self) -> &str {
        &self.key
    }

    fn val(&self) -> Option<Val<'_>> {
        Some(match self.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Val::Str(Cow::Borrowed(s)),
            Value::IntValue(i) => Val::Int(*i),
            Value::ArrayValue(a) => Val::Array(
                a.values
                    .iter()
                    .map(|v| match &v.value {
                        Some(Value::StringValue(s)) => Some(Item(Cow::Borrowed(s.as_str()))),
                        _ => None,
                    })
                    .collect(),
            ),
            Value::BoolValue(_) => Val::Other("a boolean"),
            Value::DoubleValue(_) => Val::Other("a double"),
            Value::KvlistValue(_) => Val::Other("a key-value list"),
            Value::BytesValue(_) => Val::Other("bytes"),
            Value::StringValueStrindex(_) => Val::Other("a string table index"),
        })
    }
}

impl Attr for json::KeyValue<'_> {
    fn key(&self) -> &str {
        &self.key.0
    }

    fn val(&self) -> Option<Val<'_>> {
        Some(match self.value.as_ref()?.0.as_ref()? {
            json::Value::String(s) => json_string(s).map_or(Val::Other("a string"), |s| Val::Str(s.0)),
            json::Value::Int(i) => Val::Int(*i),
            json::Value::Array(items) => Val::Array(
                items
                    .iter()
                    .map(|v| match &v.0 {
                        Some(json::Value::String(s)) => json_string(s),
                        _ => None,
                    })
                    .collect(),
            ),
            json::Value::Bool => Val::Other("a boolean"),
            json::Value::Double => Val::Other("a double"),
            json::Value::Kvlist => Val::Other("a key-value list"),
        })
    }
}

/// The text of a JSON string serde_json has checked: what is between the
/// quotes when it holds no escape, else unescaped by serde_json.
fn json_string(json: &str) -> Option<Item<'_>> {
    match json.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(inner) if !inner.contains('\\') => Some(Item(Cow::Borrowed(inner))),
        _ => serde_json::from_str::<Item<'_>>(json).ok(),
    }
}

fn value_of<'a, A: Attr>(attrs: &'a [A], key: &str) -> Option<Val<'a>> {
    attrs.iter().find(|kv| kv.key() == key).and_then(Attr::val)
}

fn wrong(key: &str, want: &str, v: &Val<'_>) -> Verdict {
    ("wrong_type", format!("attribute `{key}` must be {want}, found {}", v.type_name()))
}

/// A span's attributes, then its resource's.
struct Attrs<'a, A> {
    span: &'a [A],
    resource: &'a [A],
}

impl<'a, A: Attr> Attrs<'a, A> {
    fn get(&self, key: &str) -> Option<Val<'a>> {
        value_of(self.span, key).or_else(|| value_of(self.resource, key))
    }

    fn string(&self, key: &str) -> Result<Option<Cow<'a, str>>, Verdict> {
        match self.get(key) {
            None => Ok(None),
            Some(Val::Str(s)) => Ok(Some(s)),
            Some(v) => Err(wrong(key, "a string", &v)),
        }
    }

    /// The first of `keys` with a non-empty string, each key on the span, then on the resource.
    fn first_string(&self, keys: &[impl AsRef<str>]) -> Result<Option<Cow<'a, str>>, Verdict> {
        for key in keys {
            let key = key.as_ref();
            for attrs in [self.span, self.resource] {
                match value_of(attrs, key) {
                    None => {}
                    Some(Val::Str(s)) if s.is_empty() => {}
                    Some(Val::Str(s)) => return Ok(Some(s)),
                    Some(v) => return Err(wrong(key, "a string", &v)),
                }
            }
        }
        Ok(None)
    }

    fn int(&self, key: &str) -> Result<Option<i64>, Verdict> {
        match self.get(key) {
            None => Ok(None),
            Some(Val::Int(i)) => Ok(Some(i)),
            Some(v) => Err(wrong(key, "an integer (intValue)", &v)),
        }
    }

    fn strings(&self, key: &str) -> Result<Option<List<'a>>, Verdict> {
        match self.get(key) {
            None => Ok(None),
            Some(Val::Array(Some(items))) => Ok(Some(items)),
            Some(Val::Array(None)) => {
                Err(("wrong_type", format!("attribute `{key}` must be an array of strings, found an array holding a non-string")))
            }
            Some(v) => Err(wrong(key, "an array of strings", &v)),
        }
    }
}

/// What the mapping reads of a span, whichever reader gave it.
struct SpanView<'a, A> {
    trace_id: Id<'a>,
    span_id: Id<'a>,
    start: u64,
    end: u64,
    /// The status code is ERROR.
    error_status: bool,
    attributes: &'a [A],
    /// Its resource's attributes.
    resource: &'a [A],
}

/// A trace or span id: bytes (protobuf), or hex as OTLP/JSON writes it.
#[derive(Clone, Copy)]
enum Id<'a> {
    Bytes(&'a [u8]),
    Hex(&'a str),
}

impl<'a> Id<'a> {
    fn is_empty(self) -> bool {
        match self {
            Id::Bytes(b) => b.is_empty(),
            Id::Hex(h) => h.is_empty(),
        }
    }

    /// Lowercase hex.
    fn hex(self) -> Cow<'a, str> {
        match self {
            Id::Bytes(b) => Cow::Owned(hex(b)),
            Id::Hex(h) if h.bytes().any(|b| b.is_ascii_uppercase()) => Cow::Owned(h.to_ascii_lowercase()),
            Id::Hex(h) => Cow::Borrowed(h),
        }
    }
}

/// The two events of one span, with their times.
struct Mapped<'a> {
    request: Event<'a>,
    requested_at: i64,
    response: Event<'a>,
    responded_at: i64,
}

fn nanos(t: u64, name: &str) -> Result<i64, Verdict> {
    if t == 0 {
        return Err(("missing_field", format!("required field `{name}` is missing or zero")));
    }
    i64::try_from(t).map_err(|_| out_of_range())
}

fn map_span<'a, A: Attr>(span: &SpanView<'a, A>, adapter: &Adapter) -> Result<Mapped<'a>, Verdict> {
    let attrs = &Attrs { span: span.attributes, resource: span.resource };
    if span.trace_id.is_empty() {
        return Err(("missing_field", "required field `traceId` is missing or empty".into()));
    }
    if span.span_id.is_empty() {
        return Err(("missing_field", "required field `spanId` is missing or empty".into()));
    }
    let requested_at = nanos(span.start, "startTimeUnixNano")?;
    let responded_at = nanos(span.end, "endTimeUnixNano")?;
    let request_id = format!("{}:{}", span.trace_id.hex(), span.span_id.hex());
    let tenant_id = attrs.first_string(&adapter.otel_tenant_keys)?;
    let actor_id = attrs.first_string(&adapter.otel_actor_keys)?;
    let provider = attrs.first_string(&["gen_ai.provider.name", "gen_ai.system"])?.map(|p| Cow::Owned(adapter.provider(&p).to_string()));
    let model = attrs.string("gen_ai.request.model")?;
    let operation = attrs.string("gen_ai.operation.name")?;
    let vendor_region = match attrs.string("cloud.region")? {
        Some(r) => Some(r),
        None => attrs.string("server.address")?.and_then(|h| adapter.region_of(&h)).map(Cow::Owned),
    };
    let environment = attrs.first_string(&["deployment.environment.name", "deployment.environment"])?;
    let source = attrs.string("service.name")?;
    let failed = span.error_status || attrs.get("error.type").is_some();

    let request = Event {
        event_id: Some(Cow::Owned(format!("otel:{request_id}:request"))),
        event_type: Some(Cow::Borrowed("ai.request")),
        tenant_id: tenant_id.clone(),
        actor_id,
        environment: environment.clone(),
        source: source.clone(),
        request_id: Some(Cow::Owned(request_id.clone())),
        provider: provider.clone(),
        model: model.clone(),
        operation: operation.clone(),
        vendor_region,
        data_classes: attrs.strings("aiwatch.data_classes")?,
        context_tenant_ids: attrs.strings("aiwatch.context_tenant_ids")?,
        conversation_id: attrs.string("gen_ai.conversation.id")?,
        input_tokens: attrs.int("gen_ai.usage.input_tokens")?,
        ..Default::default()
    };
    let response = Event {
        event_id: Some(Cow::Owned(format!("otel:{request_id}:response"))),
        event_type: Some(Cow::Borrowed("ai.response")),
        tenant_id,
        environment,
        source,
        request_id: Some(Cow::Owned(request_id)),
        provider,
        model,
        operation,
        status: Some(Cow::Borrowed(if failed { "error" } else { "ok" })),
        output_tokens: attrs.int("gen_ai.usage.output_tokens")?,
        latency_ms: Some((i128::from(responded_at) - i128::from(requested_at)) as f64 / 1e6),
        ..Default::default()
    };
    Ok(Mapped { request, requested_at, response, responded_at })
}

/// Maps the spans of one request, whichever reader gave them.
struct Mapper<'r> {
    origin: &'r Origin,
    adapter: &'r Adapter,
    format: Format,
    /// Makes the request's dead-letter record (its text hashed), once, should a span need it.
    redact: &'r dyn Fn() -> Vec<u8>,
    redacted: Option<Vec<u8>>,
}

impl Mapper<'_> {
    /// Each GenAI span maps to two events, or is one dead letter; every other span is skipped, and counted.
    fn spans<'a, A: Attr + 'a>(&mut self, spans: impl Iterator<Item = SpanView<'a, A>>, out: &mut Out<'_>) {
        for span in spans {
            if span.attributes.iter().any(|kv| kv.key() == "gen_ai.operation.name") {
                self.span(&span, out);
            } else {
                out.skip(self.format.name(), "not_genai_span");
            }
        }
    }

    fn span<A: Attr>(&mut self, span: &SpanView<'_, A>, out: &mut Out<'_>) {
        let mapped = map_span(span, self.adapter).and_then(|m| {
            out.check(&m.request, m.requested_at)?;
            out.check(&m.response, m.responded_at)?;
            Ok(m)
        });
        match mapped {
            Ok(m) => {
                out.append(&m.request, m.requested_at, self.origin);
                out.append(&m.response, m.responded_at, self.origin);
            }
            Err((kind, reason)) => {
                let record = self.redacted.get_or_insert_with(self.redact);
                let id = |id: Id<'_>| if id.is_empty() { "(empty)".to_string() } else { id.hex().into_owned() };
                let reason = format!("span {} of trace {}: {reason}", id(span.span_id), id(span.trace_id));
                out.dead(self.origin, (kind, reason), record);
            }
        }
    }
}

/// Maps a request of the crate's types (`otlp_proto`, and what the borrowed JSON reader leaves to them).
fn map_request(req: &ExportTraceServiceRequest, format: Format, origin: &Origin, adapter: &Adapter, out: &mut Out<'_>) {
    let redact = || encode(&redacted_request(req), format);
    let spans = req.resource_spans.iter().flat_map(|rs| {
        let resource = rs.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
        rs.scope_spans.iter().flat_map(|ss| &ss.spans).map(move |span| SpanView {
            trace_id: Id::Bytes(&span.trace_id),
            span_id: Id::Bytes(&span.span_id),
            start: span.start_time_unix_nano,
            end: span.end_time_unix_nano,
            error_status: span.status.as_ref().is_some_and(|s| s.code == StatusCode::Error as i32),
            attributes: &span.attributes,
            resource,
        })
    });
    Mapper { origin, adapter, format, redact: &redact, redacted: None }.spans(spans, out);
}

fn encode(req: &ExportTraceServiceRequest, format: Format) -> Vec<u8> {
    match format {
        // A request read from JSON has no value JSON cannot hold (NaN); should one appear, the dead letter keeps no bytes.
        Format::OtlpJson => serde_json::to_vec(req).unwrap_or_default(),
        _ => req.encode_to_vec(),
    }
}

/// An attribute value as plain JSON: what its compact JSON is taken of.
fn plain_json(v: &Value) -> serde_json::Value {
    match v {
        Value::StringValue(s) => s.as_str().into(),
        Value::BoolValue(b) => (*b).into(),
        Value::IntValue(i) => (*i).into(),
        Value::DoubleValue(d) => serde_json::Number::from_f64(*d).map_or(serde_json::Value::Null, serde_json::Value::Number),
        Value::ArrayValue(a) => a.values.iter().map(|v| v.value.as_ref().map_or(serde_json::Value::Null, plain_json)).collect(),
        Value::KvlistValue(kv) => {
            kv.values.iter().map(|kv| (kv.key.clone(), kv.value.as_ref().and_then(|v| v.value.as_ref()).map_or(serde_json::Value::Null, plain_json))).collect()
        }
        Value::BytesValue(b) => hex(b).into(),
        Value::StringValueStrindex(i) => (*i).into(),
    }
}

fn hash_value(kv: &mut KeyValue) {
    if let Some(v) = kv.value.as_mut().and_then(|v| v.value.as_mut()) {
        let text = serde_json::to_string(&plain_json(v)).expect("JSON serializes");
        *v = Value::StringValue(sha256_compact_json(&text));
    }
}

/// The request with every text attribute, and every attribute of every span
/// event (where older conventions put prompts), replaced by the hex SHA-256
/// of its value's compact JSON.
fn redacted_request(req: &ExportTraceServiceRequest) -> ExportTraceServiceRequest {
    let mut req = req.clone();
    for span in req.resource_spans.iter_mut().flat_map(|rs| rs.scope_spans.iter_mut()).flat_map(|ss| ss.spans.iter_mut()) {
        span.attributes.iter_mut().filter(|kv| is_text_attribute(&kv.key)).for_each(hash_value);
        span.events.iter_mut().flat_map(|e| e.attributes.iter_mut()).for_each(hash_value);
    }
    req
}

/// An `otlp_proto` record with its text hashed; `None` when it does not parse.
pub fn redact_proto(bytes: &[u8]) -> Option<Vec<u8>> {
    let req = ExportTraceServiceRequest::decode(bytes).ok()?;
    Some(redacted_request(&req).encode_to_vec())
}

/// An `otlp_json` record with its text hashed; `None` when it is not JSON. A
/// JSON record that is not a request has the same attributes hashed wherever
/// they are (objects with a text `key` and a `value`, and every attribute
/// under `events`).
pub fn redact_json(bytes: &[u8]) -> Option<Vec<u8>> {
    if let Ok(req) = parse_json(bytes) {
        return Some(encode(&redacted_request(&req), Format::OtlpJson));
    }
    let mut v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    fn walk(v: &mut serde_json::Value, in_events: bool) {
        match v {
            serde_json::Value::Object(m) => {
                let text = m.get("key").and_then(|k| k.as_str()).is_some_and(|k| in_events || is_text_attribute(k));
                if text {
                    if let Some(value) = m.get_mut("value") {
                        let hash = sha256_compact_json(&serde_json::to_string(value).expect("JSON serializes"));
                        *value = serde_json::json!({ "stringValue": hash });
                    }
                }
                for (k, child) in m.iter_mut() {
                    walk(child, in_events || k == "events");
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|i| walk(i, in_events)),
            _ => {}
        }
    }
    walk(&mut v, false);
    Some(serde_json::to_vec(&v).expect("JSON serializes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{DecodeOptions, Decoded, Decoder, Formats};
    use crate::event::RawBatch;
    use arrow::array::{Array, AsArray};
    use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{span::Event as SpanEvent, ResourceSpans, ScopeSpans, Span, Status};

    const CANARY: &str = "AIWATCH-CANARY-PROMPT-7f3c";

    /// The value of the first attribute named `key`, of the crate's types.
    fn crate_value<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
        attrs.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()).and_then(|v| v.value.as_ref())
    }

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
    }
    fn s(v: &str) -> Value {
        Value::StringValue(v.into())
    }

    fn genai_span(span_id: u8, extra: Vec<KeyValue>) -> Span {
        let mut attributes = vec![
            kv("gen_ai.operation.name", s("chat")),
            kv("gen_ai.system", s("openai")),
            kv("gen_ai.request.model", s("gpt-4o")),
            kv("gen_ai.usage.input_tokens", Value::IntValue(11)),
            kv("gen_ai.usage.output_tokens", Value::IntValue(5)),
            kv("server.address", s("europe-west4-aiplatform.googleapis.com")),
            kv("gen_ai.input.messages", s(&format!("[{{\"role\":\"user\",\"content\":\"{CANARY}\"}}]"))),
            kv("aiwatch.data_classes", Value::ArrayValue(ArrayValue { values: vec![AnyValue { value: Some(s("pii")) }] })),
        ];
        attributes.extend(extra);
        Span {
            trace_id: vec![0xAB; 16],
            span_id: vec![span_id; 8],
            name: "chat gpt-4o".into(),
            kind: SpanKind::Client as i32,
            start_time_unix_nano: 1_764_324_000_000_000_000,
            end_time_unix_nano: 1_764_324_000_250_000_000,
            attributes,
            events: vec![SpanEvent { name: "gen_ai.content.prompt".into(), attributes: vec![kv("gen_ai.prompt", s(CANARY))], ..Default::default() }],
            ..Default::default()
        }
    }

    fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", s("support-bot")), kv("tenant.id", s("acme")), kv("deployment.environment.name", s("staging"))],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                ..Default::default()
            }],
        }
    }

    fn decode(format: Format, records: &[Vec<u8>]) -> Decoded {
        let mut raw = RawBatch::default();
        for (i, r) in records.iter().enumerate() {
            raw.push(r, Origin::Kafka { topic: "spans".into(), partition: 0, offset: i as i64 });
        }
        Decoder::with_formats(DecodeOptions::default(), Formats::one(format, Adapter::default())).decode(&raw)
    }

    fn col<'a>(d: &'a Decoded, name: &str) -> Vec<Option<&'a str>> {
        d.events.column_by_name(name).unwrap().as_string::<i32>().iter().collect()
    }

    fn plain_span(span_id: u8) -> Span {
        Span { trace_id: vec![1; 16], span_id: vec![span_id; 8], name: "GET /".into(), start_time_unix_nano: 5, end_time_unix_nano: 6, ..Default::default() }
    }

    #[test]
    fn genai_spans_map_in_both_encodings_and_other_spans_are_skipped() {
        let req = request(vec![genai_span(1, vec![kv("enduser.id", s("user:bob"))]), plain_span(2)]);
        for (format, bytes) in [(Format::OtlpProto, req.encode_to_vec()), (Format::OtlpJson, serde_json::to_vec(&req).unwrap())] {
            let d = decode(format, &[bytes]);
            assert!(d.dead_letters.is_empty(), "{format}: {:?}", d.dead_letters);
            assert_eq!(d.skipped.get(&(format.name(), "not_genai_span")), Some(&1), "{format}");
            let rid = format!("{}:{}", "ab".repeat(16), "01".repeat(8));
            assert_eq!(col(&d, "event_id"), [Some(format!("otel:{rid}:request").as_str()), Some(format!("otel:{rid}:response").as_str())]);
            assert_eq!(col(&d, "request_id"), [Some(rid.as_str()), Some(rid.as_str())]);
            assert_eq!(col(&d, "tenant_id"), [Some("acme"), Some("acme")], "from the resource");
            assert_eq!(col(&d, "actor_id"), [Some("user:bob"), None]);
            assert_eq!(col(&d, "provider"), [Some("openai"), Some("openai")]);
            assert_eq!(col(&d, "operation"), [Some("chat"), Some("chat")]);
            assert_eq!(col(&d, "vendor_region"), [Some("europe-west4"), None]);
            assert_eq!(col(&d, "environment"), [Some("staging"), Some("staging")]);
            assert_eq!(col(&d, "source"), [Some("support-bot"), Some("support-bot")]);
            assert_eq!(col(&d, "status"), [None, Some("ok")]);
            let lat = d.events.column_by_name("latency_ms").unwrap().as_primitive::<arrow::datatypes::Float64Type>();
            assert_eq!(lat.value(1), 250.0);
            let classes = d.events.column_by_name("data_classes").unwrap().as_list::<i32>();
            assert_eq!(classes.value(0).as_string::<i32>().value(0), "pii");
        }
    }

    #[test]
    fn otlp_json_reads_enum_names_and_numbers_and_int64_as_strings_or_numbers() {
        let rid = "5b8efff798038103d269b633813fc60c";
        let text = |kind: &str, code: &str, start: &str| {
            format!(
                r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"tenant.id","value":{{"stringValue":"acme"}}}}]}},"scopeSpans":[{{"spans":[{{"traceId":"{}","spanId":"EEE19B7EC3C1B174","kind":{kind},"startTimeUnixNano":{start},"endTimeUnixNano":"1764324001000000000","status":{{"code":{code}}},"attributes":[{{"key":"gen_ai.operation.name","value":{{"stringValue":"chat"}}}},{{"key":"gen_ai.usage.input_tokens","value":{{"intValue":"42"}}}}]}}]}}]}}]}}"#,
                rid.to_uppercase()
            )
        };
        for (kind, code, start, status) in [
            ("3", "2", "\"1764324000000000000\"", "error"),
            ("\"SPAN_KIND_CLIENT\"", "\"STATUS_CODE_ERROR\"", "1764324000000000000", "error"),
            ("\"SPAN_KIND_CLIENT\"", "\"STATUS_CODE_OK\"", "\"1764324000000000000\"", "ok"),
        ] {
            let d = decode(Format::OtlpJson, &[text(kind, code, start).into_bytes()]);
            assert!(d.dead_letters.is_empty(), "{kind} {code}: {:?}", d.dead_letters);
            assert_eq!(col(&d, "request_id")[0], Some(format!("{rid}:eee19b7ec3c1b174").as_str()), "ids as lowercase hex");
            assert_eq!(col(&d, "status")[1], Some(status));
            let tokens = d.events.column_by_name("input_tokens").unwrap().as_primitive::<arrow::datatypes::Int64Type>();
            assert_eq!(tokens.value(0), 42);
        }
    }

    #[test]
    fn a_bad_genai_span_is_one_redacted_dead_letter_and_its_neighbours_map() {
        let bad = genai_span(3, vec![kv("gen_ai.usage.input_tokens", Value::DoubleValue(1.5))]);
        // The first value of a key wins: put the bad one first.
        let mut bad = bad;
        bad.attributes.rotate_right(1);
        let mut no_time = genai_span(4, vec![]);
        no_time.start_time_unix_nano = 0;
        let mut error = genai_span(5, vec![]);
        error.status = Some(Status { code: StatusCode::Error as i32, ..Default::default() });
        let req = request(vec![genai_span(1, vec![]), bad, no_time, error, plain_span(9)]);
        for (format, bytes) in [(Format::OtlpProto, req.encode_to_vec()), (Format::OtlpJson, serde_json::to_vec(&req).unwrap())] {
            let d = decode(format, &[bytes]);
            assert_eq!(d.events.num_rows(), 4, "{format}");
            assert_eq!(col(&d, "status")[3], Some("error"));
            assert_eq!(d.dead_letters.len(), 2);
            assert!(d.dead_letters[0].reason.contains("`gen_ai.usage.input_tokens` must be an integer"), "{}", d.dead_letters[0].reason);
            assert!(d.dead_letters[0].reason.contains(&"03".repeat(8)), "names the span: {}", d.dead_letters[0].reason);
            assert!(d.dead_letters[1].reason.contains("`startTimeUnixNano`"), "{}", d.dead_letters[1].reason);
            for dl in &d.dead_letters {
                let kept = dl.bytes.as_ref().unwrap();
                assert!(!String::from_utf8_lossy(kept).contains(CANARY), "{format}: the canary is in the dead letter");
                let back = match format {
                    Format::OtlpProto => ExportTraceServiceRequest::decode(&kept[..]).unwrap(),
                    _ => serde_json::from_slice::<ExportTraceServiceRequest>(kept).unwrap(),
                };
                assert_eq!(back.resource_spans[0].scope_spans[0].spans.len(), 5, "the whole request");
                let span = &back.resource_spans[0].scope_spans[0].spans[0];
                let msg = crate_value(&span.attributes, "gen_ai.input.messages").unwrap();
                assert!(matches!(msg, Value::StringValue(h) if h.len() == 64));
                assert_eq!(crate_value(&span.attributes, "gen_ai.request.model"), Some(&s("gpt-4o")), "other attributes stay");
            }
        }
    }

    #[test]
    fn records_that_are_not_requests_are_dead_letters() {
        let d = decode(Format::OtlpJson, &[b"{\"resourceSpans\":".to_vec(), b"[1]".to_vec(), b"{\"hello\":1}".to_vec(), b"{\"resourceSpans\":[]}".to_vec()]);
        let kinds: Vec<&str> = d.dead_letters.iter().map(|d| d.kind).collect();
        assert_eq!(kinds, ["invalid_json", "not_object", "not_otlp"], "an empty request is no dead letter");
        let d = decode(Format::OtlpProto, &[vec![0xff, 0xff, 0xff], Vec::new()]);
        assert_eq!(d.dead_letters.len(), 1);
        assert_eq!(d.dead_letters[0].kind, "invalid_protobuf");
        assert_eq!(d.dead_letters[0].bytes.as_deref(), Some(&[0xff, 0xff, 0xff][..]), "bytes that do not parse are kept");
        assert_eq!(d.events.num_rows(), 0);
    }

    #[test]
    fn a_json_record_that_is_not_a_request_still_has_its_text_hashed() {
        let text = format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"zz","attributes":[{{"key":"gen_ai.prompt","value":{{"stringValue":"{CANARY}"}}}}]}}]}}]}}]}}"#);
        let d = decode(Format::OtlpJson, &[text.into_bytes()]);
        assert_eq!(d.dead_letters.len(), 1);
        let kept = String::from_utf8(d.dead_letters[0].bytes.clone().unwrap()).unwrap();
        assert!(!kept.contains(CANARY) && kept.contains("gen_ai.prompt"), "{kept}");
        assert!(!d.dead_letters[0].reason.contains(CANARY));
    }

    /// Every fixture record and test request read by the borrowed reader (or
    /// by the crate's types where it leaves them the record) decodes exactly
    /// as the crate's types alone decode it.
    #[test]
    fn the_borrowed_json_reader_decodes_as_the_crate_types_do() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/formats/otlp");
        let mut records: Vec<Vec<u8>> = Vec::new();
        for file in ["requests.otlp_json.jsonl", "malformed.jsonl"] {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            records.extend(text.lines().filter(|l| !l.trim().is_empty()).map(|l| l.as_bytes().to_vec()));
        }
        let bad = genai_span(3, vec![kv("gen_ai.usage.input_tokens", Value::DoubleValue(1.5))]);
        let mut odd = genai_span(4, vec![kv("nested", Value::KvlistValue(Default::default())), kv("error.type", Value::BoolValue(true))]);
        odd.status = Some(Status { code: StatusCode::Error as i32, ..Default::default() });
        odd.trace_id = vec![0xAB, 0xCD];
        let mixed = serde_json::to_vec(&request(vec![genai_span(1, vec![]), bad, odd, plain_span(9)])).unwrap();
        let upper = String::from_utf8(mixed.clone()).unwrap().replace("abcd", "ABcD").into_bytes();
        let bytes_value = serde_json::to_vec(&request(vec![genai_span(5, vec![kv("blob", Value::BytesValue(vec![1, 2]))])])).unwrap();
        for r in [&records[0], &mixed, &upper] {
            assert!(serde_json::from_slice::<json::Request<'_>>(r).is_ok(), "the borrowed reader reads {}", String::from_utf8_lossy(r));
        }
        records.extend([mixed, upper, bytes_value]);
        records.push(br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0xab","spanId":"01","startTimeUnixNano":1,"endTimeUnixNano":2,"attributes":[{"key":"gen_ai.operation.name","value":{"stringValue":"chat"}}]}]}]}]}"#.to_vec());
        let mut raw = RawBatch::default();
        for (i, r) in records.iter().enumerate() {
            raw.push(r, Origin::Kafka { topic: "spans".into(), partition: 0, offset: i as i64 });
        }
        let decoder = || Decoder::with_formats(DecodeOptions::default(), Formats::one(Format::OtlpJson, Adapter::default()));
        let fast = decoder().decode(&raw);
        let with_crate = decoder().decode_with(&raw, |_, bytes, origin, adapter, out| decode_json_with_crate(bytes, origin, adapter, out));
        assert_eq!(fast.events, with_crate.events);
        assert_eq!(fast.dead_letters, with_crate.dead_letters);
        assert_eq!(fast.skipped, with_crate.skipped);
        assert!(fast.events.num_rows() > 20 && fast.dead_letters.len() > 10, "{} {}", fast.events.num_rows(), fast.dead_letters.len());
    }

    /// The hand reader of the usual shape reads what the serde reader reads,
    /// alike, and nothing it refuses: every fixture request, and every
    /// one-byte change of them.
    #[test]
    fn the_plain_json_reader_reads_only_what_the_serde_reader_reads_and_alike() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/formats/otlp");
        let mut records: Vec<Vec<u8>> = Vec::new();
        let mut requests = 0;
        for file in ["requests.otlp_json.jsonl", "malformed.jsonl"] {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            records.extend(text.lines().filter(|l| !l.trim().is_empty()).map(|l| l.as_bytes().to_vec()));
            requests = if requests == 0 { records.len() } else { requests };
        }
        let extra = [
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"spanId":"01","spanId":"02"}]}]}]}"#,
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"a\ud800b","kind":"SPAN_KIND_CLIENT"}]}]}]}"#,
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[{"key":"k","value":{"stringValue":"a\ud800b\n"}}],"status":{"code":2}}]}]}]}"#,
            r#" {"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[{"key":"k","value":{"intValue":"-007"}},{"key":"d","value":{"doubleValue":-0.5}}]}]}]}]} "#,
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[{"key":"k","value":{"intValue":9223372036854775808}}]}]}]}]}"#,
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"startTimeUnixNano":18446744073709551615,"endTimeUnixNano":"18446744073709551616"}]}]}]}"#,
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[{"key":"k","value":{"doubleValue":1e999}}]}]}]}]}"#,
        ];
        records.extend(extra.iter().map(|r| r.as_bytes().to_vec()));
        let nested = |n: usize| {
            let value = format!(r#"{}{{"intValue":1}}{}"#, r#"{"arrayValue":{"values":["#.repeat(n), "]}}".repeat(n));
            format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"attributes":[{{"key":"k","value":{value}}}]}}]}}]}}]}}"#)
        };
        records.extend([nested(3), nested(40)].map(String::into_bytes));
        let (mut plain, mut checked) = (0, 0);
        // Whether the hand reader read it (then as serde did); `None`: not UTF-8.
        let check = |bytes: &[u8]| -> Option<bool> {
            let text = std::str::from_utf8(bytes).ok()?;
            let read = json::plain::read(text)?;
            let Ok(serde) = serde_json::from_str::<json::Request<'_>>(text) else { panic!("read, but refused by serde: {text}") };
            assert_eq!(json::describe(&read), json::describe(&serde), "{text}");
            Some(true)
        };
        for (i, r) in records.iter().enumerate() {
            checked += 1;
            let read = check(r).is_some();
            plain += usize::from(read);
            assert!(read || i >= requests, "every fixture request is read by hand: {}", String::from_utf8_lossy(r));
        }
        for r in &records[..requests] {
            for at in 0..r.len() {
                for c in [b'"', b',', b'x', b'1', b' ', b'}', b']', b'\\', b'.', b'e', b'-', b'0', b'a', b'n', 0x01] {
                    let mut bytes = r.clone();
                    bytes[at] = c;
                    checked += 1;
                    plain += usize::from(check(&bytes).is_some());
                }
            }
        }
        assert!(plain > 5000 && checked > 100_000, "{plain} of {checked}");
    }

    #[test]
    fn the_same_request_twice_maps_to_the_same_ids() {
        let bytes = request(vec![genai_span(1, vec![])]).encode_to_vec();
        let d = decode(Format::OtlpProto, &[bytes.clone(), bytes]);
        assert_eq!(col(&d, "event_id")[0], col(&d, "event_id")[2]);
        assert!(!d.events.column_by_name("tenant_id").unwrap().is_null(0));
    }
}
