//! Records to Arrow: one raw batch in, one typed `RecordBatch` of the
//! `events` schema and the dead letters out, whatever the records' format.
//!
//! The [`Decoder`] hands each record to its format ([`crate::formats`]: chosen
//! per input, or per Kafka topic), which maps it to zero or more events and
//! fills the shared [`Columns`] through an [`Out`], or gives a dead letter.
//! A bad record is rejected alone and never spoils its neighbours. The limits
//! of [`DecodeOptions`] (sizes, times) are checked here, once, for every format.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::RecordBatch;

use crate::event::{Columns, Event, Origin, RawBatch, Value};
use crate::formats::{self, Adapter, Format};

pub use crate::formats::aiwatch::parse_time;

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
    /// Records read, blank lines not counted (an adapter record can give several events, or none).
    pub records: usize,
    /// Records (or parts of one: OTLP spans) a format defines as not its own,
    /// by `(format, reason)`: skipped and counted, not dead letters.
    pub skipped: BTreeMap<(&'static str, &'static str), usize>,
    pub bytes: usize,
}

/// Which format each record is in: one for files, or one per Kafka topic.
#[derive(Debug, Clone, Default)]
pub struct Formats {
    /// The format of records whose topic is not in `by_topic`, and of every file.
    pub default: Format,
    /// Per Kafka topic.
    pub by_topic: HashMap<String, Format>,
    /// The mapping configuration of the adapter formats.
    pub adapter: Arc<Adapter>,
}

impl Formats {
    /// Every record in `format`, mapped with `adapter`.
    pub fn one(format: Format, adapter: Adapter) -> Formats {
        Formats { default: format, by_topic: HashMap::new(), adapter: Arc::new(adapter) }
    }

    fn of(&self, origin: &Origin) -> Format {
        match origin {
            Origin::Kafka { topic, .. } if !self.by_topic.is_empty() => self.by_topic.get(&**topic).copied().unwrap_or(self.default),
            _ => self.default,
        }
    }
}

/// What a format writes to while it decodes one record: events into the
/// shared columns, dead letters, and skipped parts.
pub struct Out<'a> {
    columns: &'a mut Columns,
    dead_letters: &'a mut Vec<DeadLetter>,
    skipped: &'a mut BTreeMap<(&'static str, &'static str), usize>,
    options: &'a DecodeOptions,
    /// The latest event time accepted (`max_future_seconds`), read once per batch.
    latest: Option<i64>,
    state: &'a mut formats::State,
}

impl Out<'_> {
    /// The limits on sizes and times, for one mapped event whose id and type are set.
    pub fn check(&self, w: &Event<'_>, time: i64) -> Result<(), Verdict> {
        let max = self.options.max_field_bytes;
        let fields = w.fields();
        for (name, v) in fields {
            let Value::Str(Some(v)) = v else { continue };
            if v.len() > max {
                return Err(("field_too_long", format!("field `{name}` is {} bytes, over the limit of {max} (max_field_bytes)", v.len())));
            }
        }
        for (name, v) in fields {
            let Value::List(Some(items)) = v else { continue };
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
        if let (Some(latest), Some(ahead)) = (self.latest, self.options.max_future_seconds) {
            if time > latest {
                return Err((
                    "time_in_future",
                    format!("field `time` is more than {ahead} s ahead of the wall clock (max_future_seconds)"),
                ));
            }
        }
        Ok(())
    }

    /// Appends one event that passed [`Out::check`]; `w.event_id` and `w.event_type` must be set.
    pub fn append(&mut self, w: &Event<'_>, time: i64, origin: &Origin) {
        self.columns.append(w, time, origin);
    }

    /// A dead letter carrying `record`: the record's own bytes, or an adapter's redacted copy.
    pub fn dead(&mut self, origin: &Origin, verdict: Verdict, record: &[u8]) {
        self.dead_letters.push(DeadLetter::new(origin.clone(), verdict, record, self.options));
    }

    /// What the formats keep from record to record.
    pub(crate) fn formats_state(&mut self) -> &mut formats::State {
        self.state
    }

    /// Counts a record, or a part of one, the format skips as not its own.
    pub fn skip(&mut self, format: &'static str, reason: &'static str) {
        *self.skipped.entry((format, reason)).or_default() += 1;
    }
}

/// Decodes raw batches into `events` record batches.
pub struct Decoder {
    columns: Columns,
    options: DecodeOptions,
    formats: Formats,
    state: formats::State,
    /// What [`Decoder::append`] took in since the last [`Decoder::finish`], beside the columns.
    pending: Pending,
}

/// Everything but the events of a [`Decoded`] being built.
#[derive(Default)]
struct Pending {
    dead_letters: Vec<DeadLetter>,
    skipped: BTreeMap<(&'static str, &'static str), usize>,
    blank: usize,
    records: usize,
    bytes: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    /// A decoder of the `aiwatch` format with the default limits and no check against the wall clock.
    pub fn new() -> Decoder {
        Decoder::with_options(DecodeOptions::default())
    }

    /// A decoder of the `aiwatch` format.
    pub fn with_options(options: DecodeOptions) -> Decoder {
        Decoder::with_formats(options, Formats::default())
    }

    pub fn with_formats(options: DecodeOptions, formats: Formats) -> Decoder {
        Decoder { columns: Columns::new(), options, formats, state: formats::State::default(), pending: Pending::default() }
    }

    pub fn options(&self) -> &DecodeOptions {
        &self.options
    }

    /// Decodes every record of `raw`; never fails: what is not an event becomes a dead letter.
    pub fn decode(&mut self, raw: &RawBatch) -> Decoded {
        self.append(raw);
        self.finish()
    }

    /// Decodes every record of `raw` into the batch being built, which
    /// [`Decoder::finish`] ends: several raw batches bounded by their bytes
    /// ([`RawBatch::is_full`]) make one engine step.
    pub fn append(&mut self, raw: &RawBatch) {
        self.append_with(raw, formats::decode)
    }

    /// The records (blank lines included) taken in since the last [`Decoder::finish`].
    pub fn pending_records(&self) -> usize {
        self.pending.records + self.pending.blank
    }

    /// The batch built since the last call, with its dead letters and counts.
    pub fn finish(&mut self) -> Decoded {
        let Pending { dead_letters, skipped, blank, records, bytes } = std::mem::take(&mut self.pending);
        Decoded { events: self.columns.finish(), dead_letters, blank, records, skipped, bytes }
    }

    /// [`Decoder::decode`] with another function for one record (tests: a format's other reader).
    #[cfg(test)]
    pub(crate) fn decode_with(&mut self, raw: &RawBatch, decode: fn(Format, &[u8], &Origin, &Adapter, &mut Out<'_>)) -> Decoded {
        self.append_with(raw, decode);
        self.finish()
    }

    fn append_with(&mut self, raw: &RawBatch, decode: fn(Format, &[u8], &Origin, &Adapter, &mut Out<'_>)) {
        let pending = &mut self.pending;
        pending.bytes += raw.byte_len();
        // One reading of the clock per batch: a batch spans at most the batch wait.
        let latest = self.options.max_future_seconds.map(|s| {
            let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
            now.saturating_add((s.min(i64::MAX as u64 / 1_000_000_000) as i64) * 1_000_000_000)
        });
        let mut out = Out {
            columns: &mut self.columns,
            dead_letters: &mut pending.dead_letters,
            skipped: &mut pending.skipped,
            options: &self.options,
            latest,
            state: &mut self.state,
        };
        for (bytes, origin) in raw.iter() {
            let format = self.formats.of(origin);
            if format.is_text() && bytes.iter().all(u8::is_ascii_whitespace) {
                pending.blank += 1;
                continue;
            }
            pending.records += 1;
            if bytes.len() > out.options.max_event_bytes {
                let verdict = (
                    "event_too_large",
                    format!("the record is {} bytes, over the limit of {} (max_event_bytes)", bytes.len(), out.options.max_event_bytes),
                );
                let redacted = formats::redact(format, bytes);
                out.dead(origin, verdict, redacted.as_deref().unwrap_or(bytes));
                continue;
            }
            decode(format, bytes, origin, &self.formats.adapter, &mut out);
        }
    }
}

/// A dead letter's kind (metric label) and reason (for a person).
pub type Verdict = (&'static str, String);

pub(crate) fn out_of_range() -> Verdict {
    (
        "time_out_of_range",
        "field `time` is outside the range aiwatch computes with (from 1970-01-01T00:00:00Z, before 2200-01-01T00:00:00Z)".to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::aiwatch::fast_rfc3339;
    use chrono::DateTime;
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

    /// The record is checked to be UTF-8 whole and then read as text: with a
    /// byte that is not UTF-8 (alone, or cutting a character short) in any
    /// position of a valid record (keys, values, an unknown field's strings,
    /// between tokens, after the end), it is a dead letter that says so,
    /// even where `serde_json::from_slice` would skip the bytes unchecked.
    #[test]
    fn records_that_are_not_utf8_are_dead_letters() {
        let base = format!("{OK} ");
        for at in 0..=base.len() {
            for bad in [&[0xffu8][..], &[0xc3], &[0xe2, 0x82], &[0xed, 0xa0, 0x80]] {
                let mut bytes = base.as_bytes()[..at].to_vec();
                bytes.extend_from_slice(bad);
                bytes.extend_from_slice(&base.as_bytes()[at..]);
                let mut raw = RawBatch::default();
                raw.push(&bytes, Origin::File { path: "t.jsonl".into(), line: 1 });
                let d = Decoder::new().decode(&raw);
                assert_eq!(d.events.num_rows(), 0, "{bad:x?} at {at}");
                assert_eq!(d.dead_letters.len(), 1, "{bad:x?} at {at}");
                let dl = &d.dead_letters[0];
                assert_eq!(dl.kind, "invalid_json");
                // The column of the first byte of the sequence that is not
                // UTF-8: the inserted one, or the start of the character it cuts.
                let column: usize = dl.reason.split("not UTF-8 at column ").nth(1).and_then(|c| c.parse().ok()).expect(&dl.reason);
                assert!((at.saturating_sub(2)..=at + 1).contains(&column), "{bad:x?} at {at}: {}", dl.reason);
            }
        }
    }

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
