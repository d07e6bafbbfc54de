//! The usual shape of an OTLP/JSON request read by hand, in one pass over
//! the text, into the same [`Request`] the serde reader of the parent module
//! gives. serde's derived readers cost a call or two per key and value; an
//! instrumentation library's request is mostly small attribute objects
//! (`{"key":..,"value":{"stringValue":..}}`), so this reads about twice as
//! fast (docs/benchmarks.md, "Formats").
//!
//! It accepts only what the serde reader accepts and reads it alike: the
//! fields that reader knows, each once, with the same types, the same numbers
//! and strings; anything else (an unknown or repeated field, a `null`, an
//! escape in a key or an id, a span event or link, an exponent, an enum by
//! name with an escape, `kvlistValue`, `bytesValue`) is refused here and
//! read by the serde reader, which then decides as before. A test checks
//! every one-byte change of the fixture requests.

use std::borrow::Cow;
use std::str::FromStr;

use super::{AnyValue, Enum, Hex, Integer, KeyValue, Names, Request, Resource, ResourceSpans, Scope, ScopeSpans, Span, Status, Text, Value};
use crate::event::Item;
use crate::formats::litellm::{plain_string, plain_token, to_quote_escape_or_control, ws};

/// The request in `text` (UTF-8 checked), or `None` where it leaves the record to the serde reader.
pub(in crate::formats::otlp) fn read(text: &str) -> Option<Request<'_>> {
    let mut r = Plain { text, at: 0, depth: 0 };
    let mut resource_spans = None;
    r.object(|r, key| match key {
        "resourceSpans" if resource_spans.is_none() => {
            resource_spans = Some(r.array(Plain::resource_spans)?);
            Some(())
        }
        _ => None,
    })?;
    (ws(text.as_bytes(), r.at) == text.len()).then(|| Request { resource_spans: resource_spans.unwrap_or_default() })
}

struct Plain<'a> {
    text: &'a str,
    at: usize,
    /// `arrayValue`s within one another (serde_json refuses a record nested over 128 deep).
    depth: usize,
}

/// Marks a field read; `None` when it was read before (serde refuses a repeated field).
fn once(seen: &mut u32, field: u32) -> Option<()> {
    let bit = 1 << field;
    (*seen & bit == 0).then(|| *seen |= bit)
}

impl<'a> Plain<'a> {
    /// How many `arrayValue`s deep a value is read here (each is 3 levels to serde_json).
    const MAX_DEPTH: usize = 16;

    /// Moves past `c` (after any whitespace).
    fn expect(&mut self, c: u8) -> Option<()> {
        let b = self.text.as_bytes();
        self.at = ws(b, self.at);
        (b.get(self.at) == Some(&c)).then(|| self.at += 1)
    }

    /// An object: `field` reads the value of each key (keys without escapes).
    fn object(&mut self, mut field: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        let b = self.text.as_bytes();
        self.expect(b'{')?;
        self.at = ws(b, self.at);
        if b.get(self.at) == Some(&b'}') {
            self.at += 1;
            return Some(());
        }
        loop {
            let (key, end) = plain_string(self.text, self.at)?;
            self.at = end;
            self.expect(b':')?;
            self.at = ws(b, self.at);
            field(self, key)?;
            self.at = ws(b, self.at);
            match b.get(self.at) {
                Some(b',') => self.at = ws(b, self.at + 1),
                Some(b'}') => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn array<T>(&mut self, mut item: impl FnMut(&mut Self) -> Option<T>) -> Option<Vec<T>> {
        let b = self.text.as_bytes();
        self.expect(b'[')?;
        self.at = ws(b, self.at);
        let mut items = Vec::new();
        if b.get(self.at) == Some(&b']') {
            self.at += 1;
            return Some(items);
        }
        loop {
            items.push(item(self)?);
            self.at = ws(b, self.at);
            match b.get(self.at) {
                Some(b',') => self.at = ws(b, self.at + 1),
                Some(b']') => {
                    self.at += 1;
                    return Some(items);
                }
                _ => return None,
            }
        }
    }

    /// `[]` (a span's events or links: any other is left to serde).
    fn empty_array(&mut self) -> Option<()> {
        self.array(|_| None::<()>).map(drop)
    }

    /// A string without escapes: its text.
    fn plain(&mut self) -> Option<&'a str> {
        let (s, end) = plain_string(self.text, self.at)?;
        self.at = end;
        Some(s)
    }

    /// Any string, escapes checked as serde_json checks a string it skips
    /// (`\u` and four hex digits, whatever they make: an attribute value is
    /// skipped until read); `\u` is left to serde where `unicode` is false (a
    /// string it reads, where it refuses a lone surrogate). Its JSON text, quotes included.
    fn string_json(&mut self, unicode: bool) -> Option<&'a str> {
        let b = self.text.as_bytes();
        let start = self.at;
        if b.get(start) != Some(&b'"') {
            return None;
        }
        let mut i = start + 1;
        loop {
            i += to_quote_escape_or_control(&b[i..])?;
            match b[i] {
                b'"' => break,
                b'\\' => match b.get(i + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                    b'u' if unicode && b.get(i + 2..i + 6)?.iter().all(u8::is_ascii_hexdigit) => i += 6,
                    _ => return None,
                },
                _ => return None, // a control character
            }
        }
        self.at = i + 1;
        self.text.get(start..self.at)
    }

    fn text_field(&mut self) -> Option<Text> {
        self.string_json(false).map(|_| Text)
    }

    /// A JSON integer (no fraction, no exponent): its text.
    fn integer_token(&mut self) -> Option<&'a str> {
        let (token, end) = plain_token(self.text, self.at)?;
        let digits = token.strip_prefix('-').unwrap_or(token);
        if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        self.at = end;
        Some(token)
    }

    /// A number as serde hands it to an integer type: `u64`, else `i64` (larger ones are floats to serde: refused).
    fn number<T: TryFrom<u64> + TryFrom<i64>>(&mut self) -> Option<T> {
        let token = self.integer_token()?;
        if token.starts_with('-') {
            T::try_from(token.parse::<i64>().ok()?).ok()
        } else {
            T::try_from(token.parse::<u64>().ok()?).ok()
        }
    }

    /// [`Integer`]: a number, or a string (without escapes) parsed as serde's reader parses it.
    fn integer<T: TryFrom<u64> + TryFrom<i64> + FromStr>(&mut self) -> Option<Integer<T>> {
        if self.text.as_bytes().get(self.at) == Some(&b'"') {
            return self.plain()?.parse().ok().map(Integer);
        }
        self.number().map(Integer)
    }

    /// [`Enum`]: a number, or a name without escapes.
    fn enumeration<N: Names>(&mut self) -> Option<Enum<N>> {
        let n = if self.text.as_bytes().get(self.at) == Some(&b'"') { N::number(self.plain()?)? } else { self.number::<i32>()? };
        Some(Enum(n, std::marker::PhantomData))
    }

    fn hex(&mut self) -> Option<Hex<'a>> {
        let s = self.plain()?;
        (s.len() % 2 == 0 && s.bytes().all(|b| b.is_ascii_hexdigit())).then_some(Hex(s))
    }

    fn resource_spans(&mut self) -> Option<ResourceSpans<'a>> {
        let (mut seen, mut resource, mut scope_spans) = (0, None, Vec::new());
        self.object(|r, key| match key {
            "resource" => {
                once(&mut seen, 0)?;
                resource = Some(r.resource()?);
                Some(())
            }
            "scopeSpans" => {
                once(&mut seen, 1)?;
                scope_spans = r.array(Plain::scope_spans)?;
                Some(())
            }
            "schemaUrl" => {
                once(&mut seen, 2)?;
                r.text_field().map(drop)
            }
            _ => None,
        })?;
        Some(ResourceSpans { resource, scope_spans, schema_url: Text })
    }

    fn resource(&mut self) -> Option<Resource<'a>> {
        let (mut seen, mut attributes, mut dropped_attributes_count) = (0, Vec::new(), 0);
        self.object(|r, key| match key {
            "attributes" => {
                once(&mut seen, 0)?;
                attributes = r.array(Plain::key_value)?;
                Some(())
            }
            "droppedAttributesCount" => {
                once(&mut seen, 1)?;
                dropped_attributes_count = r.number()?;
                Some(())
            }
            _ => None,
        })?;
        Some(Resource { attributes, dropped_attributes_count, entity_refs: Vec::new() })
    }

    fn scope_spans(&mut self) -> Option<ScopeSpans<'a>> {
        let (mut seen, mut scope, mut spans) = (0, None, Vec::new());
        self.object(|r, key| match key {
            "scope" => {
                once(&mut seen, 0)?;
                scope = Some(r.scope()?);
                Some(())
            }
            "spans" => {
                once(&mut seen, 1)?;
                spans = r.array(Plain::span)?;
                Some(())
            }
            "schemaUrl" => {
                once(&mut seen, 2)?;
                r.text_field().map(drop)
            }
            _ => None,
        })?;
        Some(ScopeSpans { scope, spans, schema_url: Text })
    }

    fn scope(&mut self) -> Option<Scope<'a>> {
        let (mut seen, mut attributes, mut dropped_attributes_count) = (0, Vec::new(), 0);
        self.object(|r, key| {
            match key {
                "name" => once(&mut seen, 0).and_then(|_| r.text_field().map(drop)),
                "version" => once(&mut seen, 1).and_then(|_| r.text_field().map(drop)),
                "attributes" => {
                    once(&mut seen, 2)?;
                    attributes = r.array(Plain::key_value)?;
                    Some(())
                }
                "droppedAttributesCount" => {
                    once(&mut seen, 3)?;
                    dropped_attributes_count = r.number()?;
                    Some(())
                }
                _ => None,
            }
        })?;
        Some(Scope { name: Text, version: Text, attributes, dropped_attributes_count })
    }

    fn span(&mut self) -> Option<Span<'a>> {
        let mut seen = 0;
        let mut span = Span {
            trace_id: Hex::default(),
            span_id: Hex::default(),
            trace_state: Text,
            parent_span_id: Hex::default(),
            flags: 0,
            name: Text,
            kind: Enum::default(),
            start_time_unix_nano: Integer::default(),
            end_time_unix_nano: Integer::default(),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: Vec::new(),
            dropped_events_count: 0,
            links: Vec::new(),
            dropped_links_count: 0,
            status: None,
        };
        self.object(|r, key| {
            match key {
                "traceId" => span.trace_id = once(&mut seen, 0).and_then(|_| r.hex())?,
                "spanId" => span.span_id = once(&mut seen, 1).and_then(|_| r.hex())?,
                "traceState" => span.trace_state = once(&mut seen, 2).and_then(|_| r.text_field())?,
                "parentSpanId" => span.parent_span_id = once(&mut seen, 3).and_then(|_| r.hex())?,
                "flags" => span.flags = once(&mut seen, 4).and_then(|_| r.number())?,
                "name" => span.name = once(&mut seen, 5).and_then(|_| r.text_field())?,
                "kind" => span.kind = once(&mut seen, 6).and_then(|_| r.enumeration())?,
                "startTimeUnixNano" => span.start_time_unix_nano = once(&mut seen, 7).and_then(|_| r.integer())?,
                "endTimeUnixNano" => span.end_time_unix_nano = once(&mut seen, 8).and_then(|_| r.integer())?,
                "attributes" => span.attributes = once(&mut seen, 9).and_then(|_| r.array(Plain::key_value))?,
                "droppedAttributesCount" => span.dropped_attributes_count = once(&mut seen, 10).and_then(|_| r.number())?,
                "events" => once(&mut seen, 11).and_then(|_| r.empty_array())?,
                "droppedEventsCount" => span.dropped_events_count = once(&mut seen, 12).and_then(|_| r.number())?,
                "links" => once(&mut seen, 13).and_then(|_| r.empty_array())?,
                "droppedLinksCount" => span.dropped_links_count = once(&mut seen, 14).and_then(|_| r.number())?,
                "status" => span.status = Some(once(&mut seen, 15).and_then(|_| r.status())?),
                _ => return None,
            }
            Some(())
        })?;
        Some(span)
    }

    fn status(&mut self) -> Option<Status> {
        let (mut seen, mut code) = (0, Enum::default());
        self.object(|r, key| match key {
            "message" => once(&mut seen, 0).and_then(|_| r.text_field().map(drop)),
            "code" => {
                once(&mut seen, 1)?;
                code = r.enumeration()?;
                Some(())
            }
            _ => None,
        })?;
        Some(Status { message: Text, code })
    }

    fn key_value(&mut self) -> Option<KeyValue<'a>> {
        let (mut seen, mut key, mut value) = (0, None, None);
        self.object(|r, field| match field {
            "key" => {
                once(&mut seen, 0)?;
                key = Some(r.plain()?);
                Some(())
            }
            "value" => {
                once(&mut seen, 1)?;
                value = Some(r.any_value()?);
                Some(())
            }
            _ => None,
        })?;
        // `key` is required, as in the crate.
        Some(KeyValue { key: Item(Cow::Borrowed(key?)), value, key_strindex: 0 })
    }

    /// One value field at most (several, or a null, are left to serde, which keeps the last not null).
    fn any_value(&mut self) -> Option<AnyValue<'a>> {
        let mut value = None;
        self.object(|r, field| {
            if value.is_some() {
                return None;
            }
            value = Some(match field {
                "stringValue" => Value::String(r.string_json(true)?),
                "intValue" => Value::Int(r.integer::<i64>()?.0),
                "boolValue" => {
                    let (token, end) = plain_token(r.text, r.at)?;
                    if token != "true" && token != "false" {
                        return None;
                    }
                    r.at = end;
                    Value::Bool
                }
                "doubleValue" => {
                    // No exponent and at most 300 characters: never out of f64's range (serde refuses those).
                    let (token, end) = plain_token(r.text, r.at)?;
                    if !token.bytes().next().is_some_and(|c| c == b'-' || c.is_ascii_digit()) || token.len() > 300 || token.contains(['e', 'E']) {
                        return None;
                    }
                    r.at = end;
                    Value::Double
                }
                "arrayValue" => {
                    if r.depth == Self::MAX_DEPTH {
                        return None;
                    }
                    r.depth += 1;
                    let mut values = None;
                    r.object(|r, field| match field {
                        "values" if values.is_none() => {
                            values = Some(r.array(Plain::any_value)?);
                            Some(())
                        }
                        _ => None,
                    })?;
                    r.depth -= 1;
                    // `values` is required, as in the crate.
                    Value::Array(values?)
                }
                _ => return None,
            });
            Some(())
        })?;
        Some(AnyValue(value))
    }
}
