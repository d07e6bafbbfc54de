//! A borrowed reader of the OTLP/JSON encoding of `ExportTraceServiceRequest`,
//! written for the mapping: strings borrowed from the record, attribute values
//! decoded straight into what the mapping reads, the fields it does not read
//! only type-checked. `opentelemetry-proto`'s serde types allocate every
//! string and buffer every attribute value (`#[serde(flatten)]`); this reads a
//! request in a fraction of their time (docs/benchmarks.md, "Formats").
//!
//! It accepts no record the crate's types refuse: every field they know is
//! checked against the same type (hex ids, 64-bit integers as strings or
//! numbers, enums as numbers or names, camelCase names, unknown fields
//! ignored). Where the crate's rules take more than a few lines to repeat
//! (`bytesValue`'s base64, a `0x` before an id) or a record is unusual (an
//! empty request), this reader refuses and the caller reads the record again
//! with the crate's types, which then decide, and explain, as before.

// Most fields are read only to check their type, as the crate's types do.
#![allow(dead_code)]

use std::fmt;

use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::event::Item;

pub(super) mod plain;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Request<'a> {
    #[serde(borrow, default)]
    pub resource_spans: Vec<ResourceSpans<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ResourceSpans<'a> {
    #[serde(borrow, default)]
    pub resource: Option<Resource<'a>>,
    #[serde(borrow, default)]
    pub scope_spans: Vec<ScopeSpans<'a>>,
    #[serde(default)]
    schema_url: Text,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Resource<'a> {
    #[serde(borrow, default, deserialize_with = "attributes")]
    pub attributes: Vec<KeyValue<'a>>,
    #[serde(default)]
    dropped_attributes_count: u32,
    #[serde(default)]
    entity_refs: Vec<EntityRef>,
}

/// `EntityRef` has no defaults in the crate: every field is required.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EntityRef {
    schema_url: Text,
    r#type: Text,
    id_keys: Vec<Text>,
    description_keys: Vec<Text>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ScopeSpans<'a> {
    #[serde(borrow, default)]
    scope: Option<Scope<'a>>,
    #[serde(borrow, default)]
    pub spans: Vec<Span<'a>>,
    #[serde(default)]
    schema_url: Text,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Scope<'a> {
    #[serde(default)]
    name: Text,
    #[serde(default)]
    version: Text,
    #[serde(borrow, default)]
    attributes: Vec<KeyValue<'a>>,
    #[serde(default)]
    dropped_attributes_count: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Span<'a> {
    #[serde(borrow, default)]
    pub trace_id: Hex<'a>,
    #[serde(borrow, default)]
    pub span_id: Hex<'a>,
    #[serde(default)]
    trace_state: Text,
    #[serde(borrow, default)]
    parent_span_id: Hex<'a>,
    #[serde(default)]
    flags: u32,
    #[serde(default)]
    name: Text,
    #[serde(default)]
    kind: Enum<SpanKindNames>,
    #[serde(default)]
    pub start_time_unix_nano: Integer<u64>,
    #[serde(default)]
    pub end_time_unix_nano: Integer<u64>,
    #[serde(borrow, default, deserialize_with = "attributes")]
    pub attributes: Vec<KeyValue<'a>>,
    #[serde(default)]
    dropped_attributes_count: u32,
    #[serde(borrow, default)]
    events: Vec<SpanEvent<'a>>,
    #[serde(default)]
    dropped_events_count: u32,
    #[serde(borrow, default)]
    links: Vec<Link<'a>>,
    #[serde(default)]
    dropped_links_count: u32,
    #[serde(default)]
    pub status: Option<Status>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpanEvent<'a> {
    #[serde(default)]
    time_unix_nano: Integer<u64>,
    #[serde(default)]
    name: Text,
    #[serde(borrow, default)]
    attributes: Vec<KeyValue<'a>>,
    #[serde(default)]
    dropped_attributes_count: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Link<'a> {
    #[serde(borrow, default)]
    trace_id: Hex<'a>,
    #[serde(borrow, default)]
    span_id: Hex<'a>,
    #[serde(default)]
    trace_state: Text,
    #[serde(borrow, default)]
    attributes: Vec<KeyValue<'a>>,
    #[serde(default)]
    dropped_attributes_count: u32,
    #[serde(default)]
    flags: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Status {
    #[serde(default)]
    message: Text,
    #[serde(default)]
    pub code: Enum<StatusCodeNames>,
}

/// `KeyValue` has no struct default in the crate: `key` is required.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct KeyValue<'a> {
    #[serde(borrow)]
    pub key: Item<'a>,
    #[serde(borrow, default)]
    pub value: Option<AnyValue<'a>>,
    #[serde(default)]
    key_strindex: i32,
}

/// The attributes of a resource or a span, as `Vec`'s own `Deserialize`
/// reads them, into room for as many as a span of an instrumentation
/// library has (a `Vec` from JSON starts empty and grows four times).
fn attributes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<KeyValue<'de>>, D::Error> {
    struct Visit;
    impl<'de> Visitor<'de> for Visit {
        type Value = Vec<KeyValue<'de>>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a sequence")
        }

        fn visit_seq<S: de::SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
            let mut attributes = Vec::with_capacity(seq.size_hint().unwrap_or(0).max(24));
            while let Some(kv) = seq.next_element()? {
                attributes.push(kv);
            }
            Ok(attributes)
        }
    }
    d.deserialize_seq(Visit)
}

/// An attribute value: the last value field present and not null, as the
/// crate reads it; `None` when it has none.
pub(super) struct AnyValue<'a>(pub Option<Value<'a>>);

pub(super) enum Value<'a> {
    /// A string's JSON text, unescaped only when the mapping reads it (most
    /// are never read: prompts, responses, SDK details).
    String(&'a str),
    Bool,
    Int(i64),
    Double,
    Array(Vec<AnyValue<'a>>),
    Kvlist,
}

/// `arrayValue` and `kvlistValue` require their `values`, as in the crate.
#[derive(Deserialize)]
struct Values<T> {
    values: Vec<T>,
}

impl<'de: 'a, 'a> Deserialize<'de> for AnyValue<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = AnyValue<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object for AnyValue")
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<AnyValue<'de>, M::Error> {
                let mut value = None;
                while let Some(key) = map.next_key::<Item<'de>>()? {
                    let read = match &*key.0 {
                        "stringValue" => match map.next_value::<Option<&'de RawValue>>()? {
                            Some(s) if !s.get().starts_with('"') => return Err(de::Error::custom("stringValue: not a string")),
                            s => s.map(|s| Value::String(s.get())),
                        },
                        "boolValue" => map.next_value::<Option<bool>>()?.map(|_| Value::Bool),
                        "intValue" => map.next_value::<Option<Integer<i64>>>()?.map(|i| Value::Int(i.0)),
                        "doubleValue" => map.next_value::<Option<f64>>()?.map(|_| Value::Double),
                        "arrayValue" => map.next_value::<Option<Values<AnyValue<'de>>>>()?.map(|a| Value::Array(a.values)),
                        "kvlistValue" => map.next_value::<Option<Values<KeyValue<'de>>>>()?.map(|_| Value::Kvlist),
                        // The crate decodes base64 here; it decides.
                        "bytesValue" => return Err(de::Error::custom("bytesValue: read by opentelemetry-proto")),
                        _ => {
                            map.next_value::<de::IgnoredAny>()?;
                            None
                        }
                    };
                    if read.is_some() {
                        value = read;
                    }
                }
                Ok(AnyValue(value))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// An integer, or a string holding one: `intValue` as `i64` (the crate's
/// `StringOrInt`), the times as `u64` (its `deserialize_string_to_u64`).
#[derive(Default)]
pub(super) struct Integer<T>(pub T);

impl<'de, T> Deserialize<'de> for Integer<T>
where
    T: TryFrom<i64> + TryFrom<u64> + std::str::FromStr,
    <T as std::str::FromStr>::Err: fmt::Display,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<T> Visitor<'_> for Visit<T>
        where
            T: TryFrom<i64> + TryFrom<u64> + std::str::FromStr,
            <T as std::str::FromStr>::Err: fmt::Display,
        {
            type Value = Integer<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer, or a string holding one")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Integer<T>, E> {
                T::try_from(v).map(Integer).map_err(|_| E::custom("integer out of range"))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Integer<T>, E> {
                T::try_from(v).map(Integer).map_err(|_| E::custom("integer out of range"))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Integer<T>, E> {
                v.parse().map(Integer).map_err(E::custom)
            }
        }
        d.deserialize_any(Visit(std::marker::PhantomData))
    }
}

/// An id: hex digits, an even number of them, borrowed as written. Anything
/// else (a `0x` the crate strips, a bad digit) is refused here and left to
/// the crate.
#[derive(Default)]
pub(super) struct Hex<'a>(pub &'a str);

impl<'de: 'a, 'a> Deserialize<'de> for Hex<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <&'de str>::deserialize(d)?;
        if s.len() % 2 == 0 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Hex(s))
        } else {
            Err(de::Error::custom("not plain hex"))
        }
    }
}

/// A string the mapping does not read: checked, not kept.
#[derive(Default)]
struct Text;

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl Visitor<'_> for Visit {
            type Value = Text;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_str<E: de::Error>(self, _: &str) -> Result<Text, E> {
                Ok(Text)
            }
        }
        d.deserialize_str(Visit)
    }
}

/// The names of an OTLP enum, as the slow path of the crate reads them.
pub(super) trait Names {
    fn number(name: &str) -> Option<i32>;
}

pub(super) struct SpanKindNames;
impl Names for SpanKindNames {
    fn number(name: &str) -> Option<i32> {
        SpanKind::from_str_name(name).map(|k| k as i32)
    }
}

pub(super) struct StatusCodeNames;
impl Names for StatusCodeNames {
    fn number(name: &str) -> Option<i32> {
        StatusCode::from_str_name(name).map(|c| c as i32)
    }
}

/// An enum field: its number (an `i32`), or one of its names.
pub(super) struct Enum<N>(pub i32, std::marker::PhantomData<N>);

impl<N> Default for Enum<N> {
    fn default() -> Self {
        Enum(0, std::marker::PhantomData)
    }
}

impl<'de, N: Names> Deserialize<'de> for Enum<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<N>(std::marker::PhantomData<N>);
        impl<N: Names> Visitor<'_> for Visit<N> {
            type Value = Enum<N>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an enum number or name")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Enum<N>, E> {
                i32::try_from(v).map(|n| Enum(n, self.0)).map_err(|_| E::custom("enum out of range"))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Enum<N>, E> {
                i32::try_from(v).map(|n| Enum(n, self.0)).map_err(|_| E::custom("enum out of range"))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Enum<N>, E> {
                N::number(v).map(|n| Enum(n, self.0)).ok_or_else(|| E::custom("unknown enum name"))
            }
        }
        d.deserialize_any(Visit(std::marker::PhantomData))
    }
}

/// Everything a [`Request`] holds, written out (tests compare the two readers).
#[cfg(test)]
pub(super) fn describe(r: &Request<'_>) -> String {
    fn value(v: &Option<AnyValue<'_>>) -> String {
        match v.as_ref().map(|v| &v.0) {
            None => "-".into(),
            Some(None) => "none".into(),
            Some(Some(Value::String(s))) => format!("s{s}"),
            Some(Some(Value::Int(i))) => format!("i{i}"),
            Some(Some(Value::Bool)) => "b".into(),
            Some(Some(Value::Double)) => "d".into(),
            Some(Some(Value::Kvlist)) => "kv".into(),
            Some(Some(Value::Array(a))) => format!("[{}]", a.iter().map(|v| value(&Some(AnyValue(v.0.as_ref().map(copy))))).collect::<Vec<_>>().join(",")),
        }
    }
    fn copy<'a>(v: &Value<'a>) -> Value<'a> {
        match v {
            Value::String(s) => Value::String(s),
            Value::Int(i) => Value::Int(*i),
            Value::Bool => Value::Bool,
            Value::Double => Value::Double,
            Value::Kvlist => Value::Kvlist,
            Value::Array(a) => Value::Array(a.iter().map(|v| AnyValue(v.0.as_ref().map(copy))).collect()),
        }
    }
    fn attrs(a: &[KeyValue<'_>]) -> String {
        a.iter().map(|kv| format!("{}={}/{}", kv.key.0, value(&kv.value), kv.key_strindex)).collect::<Vec<_>>().join(";")
    }
    let mut out = String::new();
    for rs in &r.resource_spans {
        let res = rs.resource.as_ref().map(|r| format!("{} {} {}", attrs(&r.attributes), r.dropped_attributes_count, r.entity_refs.len()));
        out += &format!("RS {res:?}\n");
        for ss in &rs.scope_spans {
            let scope = ss.scope.as_ref().map(|s| format!("{} {}", attrs(&s.attributes), s.dropped_attributes_count));
            out += &format!(" SS {scope:?}\n");
            for s in &ss.spans {
                out += &format!(
                    "  S {} {} {} {} {} {} {} {} {} {} {} {} {:?}\n",
                    s.trace_id.0,
                    s.span_id.0,
                    s.parent_span_id.0,
                    s.flags,
                    s.kind.0,
                    s.start_time_unix_nano.0,
                    s.end_time_unix_nano.0,
                    attrs(&s.attributes),
                    s.dropped_attributes_count,
                    s.events.len(),
                    s.dropped_events_count,
                    s.links.len() * 1000 + s.dropped_links_count as usize,
                    s.status.as_ref().map(|st| st.code.0),
                );
            }
        }
    }
    out
}
