//! Formats: what the bytes of one record mean (spec `adapters.md`).
//!
//! A source hands records with their origin; a format turns one record into
//! zero or more events of the one `events` schema, filling the shared
//! [`crate::event::Columns`] through [`crate::decode::Out`], or into a dead
//! letter. Adding a format is one file here and one arm in [`decode`] and
//! [`redact`]; no source changes.
//!
//! - [`aiwatch`]: the events of events.md, one JSON object a record (the default);
//! - [`litellm`]: LiteLLM's `StandardLoggingPayload`, or an array of them;
//! - [`otlp`]: OpenTelemetry `ExportTraceServiceRequest`s, as protobuf
//!   (`otlp_proto`) or OTLP/JSON (`otlp_json`), GenAI spans mapped.
//!
//! No prompt or response text leaves an adapter: events carry only hashes, and
//! an adapter's dead letter carries its record with the text fields replaced
//! by the hex SHA-256 of their compact JSON ([`redact`]).

pub mod adapter;
pub mod aiwatch;
pub mod litellm;
pub mod otlp;

use std::fmt;
use std::str::FromStr;

pub use adapter::{Adapter, AdapterConfig};

use crate::decode::Out;
use crate::event::Origin;

/// The format of an input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Format {
    /// events.md, one JSON object per record.
    #[default]
    Aiwatch,
    /// LiteLLM's standard logging payload, or a JSON array of them.
    Litellm,
    /// One OTLP `ExportTraceServiceRequest` in the OTLP/JSON encoding.
    OtlpJson,
    /// One OTLP `ExportTraceServiceRequest` as protobuf bytes.
    OtlpProto,
}

/// Every format, by its name.
pub const FORMATS: [Format; 4] = [Format::Aiwatch, Format::Litellm, Format::OtlpJson, Format::OtlpProto];

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Aiwatch => "aiwatch",
            Format::Litellm => "litellm",
            Format::OtlpJson => "otlp_json",
            Format::OtlpProto => "otlp_proto",
        }
    }

    /// Whether records are text in lines (JSON Lines files; blank lines skipped),
    /// rather than binary records (`otlp_proto`: a length-delimited stream in files).
    pub fn is_text(self) -> bool {
        self != Format::OtlpProto
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Format, String> {
        FORMATS.into_iter().find(|f| f.name() == s).ok_or_else(|| {
            let names: Vec<&str> = FORMATS.iter().map(|f| f.name()).collect();
            format!("unknown format `{s}`; the formats are {}", names.join(", "))
        })
    }
}

impl<'de> serde::Deserialize<'de> for Format {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Format, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What the formats keep from record to record, one per decoder.
#[derive(Debug, Default)]
pub struct State {
    pub(crate) litellm: litellm::Repeats,
}

/// Decodes one record of `format`.
pub fn decode(format: Format, bytes: &[u8], origin: &Origin, adapter: &Adapter, out: &mut Out<'_>) {
    match format {
        Format::Aiwatch => aiwatch::decode(bytes, origin, out),
        Format::Litellm => litellm::decode(bytes, origin, adapter, out),
        Format::OtlpJson => otlp::decode_json(bytes, origin, adapter, out),
        Format::OtlpProto => otlp::decode_proto(bytes, origin, adapter, out),
    }
}

/// The record with its prompt and response text replaced by hashes, for a
/// dead letter; `None` when the bytes do not parse (they are kept as they are)
/// or the format has no text fields (`aiwatch`).
pub fn redact(format: Format, bytes: &[u8]) -> Option<Vec<u8>> {
    match format {
        Format::Aiwatch => None,
        Format::Litellm => litellm::redact(bytes),
        Format::OtlpJson => otlp::redact_json(bytes),
        Format::OtlpProto => otlp::redact_proto(bytes),
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Hex SHA-256 of a JSON text in its compact form: the text with the
/// whitespace between tokens removed (strings, escapes and numbers exactly as
/// written). This is the hash of a prompt (`prompt_sha256`) and of every text
/// field a dead letter replaces, so the two can be matched.
pub fn sha256_compact_json(json: &str) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    let b = json.as_bytes();
    let (mut start, mut i) = (0, 0);
    while i < b.len() {
        match b[i] {
            // A string, kept whole: to its closing quote (an escaped character is skipped).
            b'"' => {
                i += 1;
                loop {
                    match memchr::memchr2(b'"', b'\\', &b[i..]) {
                        Some(p) if b[i + p] == b'\\' => i = (i + p + 2).min(b.len()),
                        Some(p) => {
                            i += p + 1;
                            break;
                        }
                        None => {
                            i = b.len();
                            break;
                        }
                    }
                }
            }
            b' ' | b'\n' | b'\r' | b'\t' => {
                h.update(&b[start..i]);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    h.update(&b[start.min(b.len())..]);
    hex(&h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compact_hash_skips_whitespace_outside_strings_only() {
        // What the hash must equal: the text with whitespace outside strings removed, one byte at a time.
        fn compact(json: &str) -> Vec<u8> {
            let (mut out, mut in_string, mut escaped) = (Vec::new(), false, false);
            for &c in json.as_bytes() {
                if in_string {
                    (in_string, escaped) = (escaped || c != b'"', !escaped && c == b'\\');
                } else if c == b'"' {
                    in_string = true;
                } else if matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                    continue;
                }
                out.push(c);
            }
            out
        }
        let cases = [
            r#"[{"role": "user", "content": "a b"}]"#,
            r#"[ {"content": "say \"hi there\" \\", "x" : [1, 2]} ]"#,
            r#"{"a\\": " \\\" b ", "c": "\u00e9 \n"}"#,
            "\"open string  with spaces",
            "\"ends with a backslash \\",
            "  \t\n ",
            "",
        ];
        for case in cases {
            use sha2::Digest as _;
            assert_eq!(sha256_compact_json(case), hex(&sha2::Sha256::digest(compact(case))), "{case:?}");
        }
    }

    #[test]
    fn format_names_round_trip_and_unknown_names_list_the_choices() {
        for f in FORMATS {
            assert_eq!(f.name().parse::<Format>().unwrap(), f);
        }
        let e = "otlp".parse::<Format>().unwrap_err();
        assert!(e.contains("`otlp`") && e.contains("otlp_proto") && e.contains("litellm"), "{e}");
    }

    #[test]
    fn compact_json_hashes_ignore_whitespace_between_tokens_only() {
        let a = sha256_compact_json(r#"[{"role": "user", "content": "a b"}]"#);
        let b = sha256_compact_json("[ {\"role\":\"user\",\n \"content\":\"a b\"} ]");
        assert_eq!(a, b);
        assert_ne!(a, sha256_compact_json(r#"[{"role":"user","content":"ab"}]"#));
        assert_ne!(sha256_compact_json(r#""a\" b""#), sha256_compact_json(r#""a\"b""#));
        use sha2::Digest as _;
        assert_eq!(sha256_compact_json("\"x\""), hex(&sha2::Sha256::digest(b"\"x\"")));
    }
}
