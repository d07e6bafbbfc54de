//! The `aiwatch` format: one JSON object per record, the events of events.md.
//!
//! Each record is deserialized straight into the borrowed, typed [`Event`]
//! (no `serde_json::Value` per row), so a wrong JSON type fails the record
//! alone. Only a record that fails takes the slow path, which re-reads it to
//! say which field is wrong. We use this rather than arrow-json's tape
//! decoder because the contract's notion of "malformed" is stricter than
//! arrow-json's coercions (it parses `"12"` into an integer column and
//! accepts timestamps without an offset), and a per-record verdict is what
//! the dead-letter output needs.

use std::borrow::Cow;

use chrono::DateTime;

use crate::decode::{out_of_range, Out, Verdict};
use crate::event::{Event, Kind, Origin, FIELDS};

/// Decodes one record into one event, or a dead letter carrying its bytes as they are.
///
/// The record is checked to be UTF-8 once, whole, and then read as text, so
/// the JSON reader does not check each string again. A record that is not
/// UTF-8 is not JSON (events.md), even where the bytes are inside a field the
/// contract does not name (which `from_slice` would skip unchecked).
pub fn decode(bytes: &[u8], origin: &Origin, out: &mut Out<'_>) {
    let parsed = simdutf8::basic::from_utf8(bytes).ok().and_then(|text| serde_json::from_str::<Event<'_>>(text).ok());
    let verdict = match parsed {
        Some(w) => match required(&w).and_then(|(_, _, t)| out.check(&w, t).map(|()| t)) {
            Ok(t) => {
                out.append(&w, t, origin);
                return;
            }
            Err(v) => v,
        },
        None => explain(bytes),
    };
    out.dead(origin, verdict, bytes);
}

/// The three required fields, checked: present, strings, non-empty, and a time with an offset.
fn required<'w>(w: &'w Event<'_>) -> Result<(&'w str, &'w str, i64), Verdict> {
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
    // JSON is UTF-8 (events.md, RFC 8259), in every string, ignored fields' included.
    if let Err(e) = std::str::from_utf8(bytes) {
        return ("invalid_json", format!("not valid JSON: the record is not UTF-8 at column {}", e.valid_up_to() + 1));
    }
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
    for d in FIELDS.iter().filter(|d| d.in_events_md) {
        let Some(v) = obj.get(d.name) else { continue };
        let ok = match (d.kind, v) {
            (_, serde_json::Value::Null) => true,
            (Kind::Str | Kind::Time, v) => v.is_string(),
            (Kind::Int | Kind::Partition | Kind::Position, v) => v.is_i64(),
            (Kind::Num, v) => v.is_number(),
            (Kind::StrList, serde_json::Value::Array(items)) => items.iter().all(|i| i.is_string()),
            (Kind::StrList, _) => false,
        };
        if !ok {
            let want = match d.kind {
                Kind::Str | Kind::Time => "a string",
                Kind::Int | Kind::Partition | Kind::Position => "an integer",
                Kind::Num => "a number",
                Kind::StrList => "an array of strings",
            };
            return ("wrong_type", format!("field `{}` must be {want}, found {}", d.name, json_type(v)));
        }
    }
    // Typed fields are right, so the fast path failed on something serde alone sees.
    match serde_json::from_slice::<Event<'_>>(bytes) {
        Ok(w) => match required(&w) {
            Ok(_) => ("invalid_json", "record could not be decoded".into()),
            Err(v) => v,
        },
        Err(e) => ("invalid_json", format!("record could not be decoded: {}", strip_values(&e.to_string()))),
    }
}

pub(crate) fn json_type(v: &serde_json::Value) -> &'static str {
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
pub(crate) fn syntax_class(e: &serde_json::Error) -> String {
    let s = e.to_string();
    s.split(" at line").next().unwrap_or(&s).to_string()
}

/// Data errors can quote the offending value (`invalid type: string "..."`); drop quoted parts.
pub(crate) fn strip_values(s: &str) -> String {
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


/// Parses an RFC 3339 timestamp with an offset into UTC nanoseconds.
pub fn parse_time(s: &str) -> Option<i64> {
    fast_rfc3339(s.as_bytes()).or_else(|| DateTime::parse_from_rfc3339(s).ok()?.timestamp_nanos_opt())
}

/// The common shape `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|±HH:MM)`, parsed without
/// chrono. Returns `None` for anything else (another separator, a leap
/// second, more than 9 fraction digits, an overflow), which then goes to
/// chrono: this accepts only what chrono accepts, with the same value.
pub(crate) fn fast_rfc3339(b: &[u8]) -> Option<i64> {
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

