//! The `litellm` format: LiteLLM's `StandardLoggingPayload` (what LiteLLM hands
//! its logging callbacks as `standard_logging_object`), one per record or a
//! JSON array of them. Each payload maps to an `ai.request` and an
//! `ai.response` (spec `adapters.md`, "litellm").
//!
//! A payload is read as an object whose values stay unparsed ([`Obj`]): the
//! prompt and the response, most of a payload's bytes, are only scanned,
//! never copied, and only the fields the mapping names are parsed. A large
//! value a decoder has met before, byte for byte (LiteLLM's cost-map entry for
//! the model, in every payload), is recognised by comparison instead of
//! scanned again ([`Repeats`]). The unit
//! of mapping is the payload: a payload that cannot be mapped is one dead
//! letter (its text fields replaced by hashes), and the other payloads of the
//! same array map as usual.

use std::borrow::Cow;
use std::cell::RefCell;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::decode::{out_of_range, Out, Verdict};
use crate::event::{Event, Item, List, Origin};
use crate::formats::aiwatch::syntax_class;
use crate::formats::{sha256_compact_json, Adapter};

const FORMAT: &str = "litellm";

/// The payload fields that hold prompt or response text: never copied, hashed in dead letters.
pub const TEXT_FIELDS: [&str; 2] = ["messages", "response"];

/// A JSON object whose values are left unparsed (their JSON text) until
/// asked for. Keys are borrowed from the record unless they hold escapes.
struct Obj<'a> {
    /// Each key's fingerprint ([`print`], so a lookup compares whole keys
    /// only where they agree), the key, and its value's JSON text.
    entries: Vec<(u64, Cow<'a, str>, &'a str)>,
}

/// A key's fingerprint: its length and last eight bytes.
#[inline]
fn print(key: &str) -> u64 {
    let b = key.as_bytes();
    let tail = match b.len().checked_sub(8) {
        // One load for most keys (a copy of a length not known at compile time would call `memcpy`).
        Some(start) => u64::from_le_bytes(b[start..].try_into().expect("eight bytes")),
        None => b.iter().rev().fold(0u64, |t, c| (t << 8) | u64::from(*c)),
    };
    tail ^ (b.len() as u64).rotate_right(8)
}

/// The keys a `litellm` mapping may look up, at any depth: the mapping's own
/// and every segment of the adapter's tenant and actor paths. An object read
/// by [`Reader`] keeps only the entries whose key may be one of them (a
/// 256-bit filter on [`print`]: a false hit only keeps one entry more), so a
/// payload's 50 to 70 keys a level cost no entry and no lookup passes them.
#[derive(Debug, Clone)]
pub struct Keys([u64; 4]);

impl Keys {
    /// What [`map`] and [`metadata_paths`] look up.
    const MAPPED: [&'static str; 19] = [
        "litellm_call_id", "startTime", "endTime", "custom_llm_provider", "model", "call_type", "api_base", "hidden_params", "metadata",
        "spend_logs_metadata", "requester_metadata", "data_classes", "context_tenant_ids", "conversation_id", "request_tags",
        "prompt_tokens", "completion_tokens", "messages", "status",
    ];

    /// The keys of the mapping with `paths` (the adapter's, split at the dots).
    pub fn of<'p>(paths: impl IntoIterator<Item = &'p Vec<String>>) -> Keys {
        let mut keys = Keys([0; 4]);
        let segments = paths.into_iter().flatten().map(String::as_str);
        for key in Self::MAPPED.into_iter().chain(segments) {
            let slot = Self::slot(print(key));
            keys.0[slot >> 6] |= 1 << (slot & 63);
        }
        keys
    }

    fn slot(print: u64) -> usize {
        (print.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as usize
    }

    /// Whether a key with this [`print`] may be looked up (or shares a slot with one that may).
    fn may_hold(&self, print: u64) -> bool {
        let slot = Self::slot(print);
        self.0[slot >> 6] >> (slot & 63) & 1 == 1
    }
}

impl<'de> Deserialize<'de> for Obj<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Obj<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Obj<'de>, M::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(48));
                while let Some(Item(key)) = map.next_key::<Item<'de>>()? {
                    entries.push((print(&key), key, map.next_value::<&'de RawValue>()?.get()));
                }
                Ok(Obj { entries })
            }
        }
        d.deserialize_map(Visit)
    }
}

impl<'a> Obj<'a> {
    /// The first value of `key` that is not `null`.
    fn get(&self, key: &str) -> Option<&'a str> {
        let p = print(key);
        self.entries.iter().find(|(q, k, v)| *q == p && k == key && *v != "null").map(|e| e.2)
    }

    /// Reads a payload's top-level object as `serde_json` reads an [`Obj`]
    /// ([`Reader`]); `None` where the text is not such an object (the caller
    /// then asks `serde_json` why).
    #[cfg(test)]
    fn read_top(b: &'a [u8], repeats: &mut Repeats, nested: impl Fn(&str) -> bool) -> Option<Payload<'a>> {
        Obj::read_top_keeping(b, repeats, nested, None)
    }

    /// [`Obj::read_top`], keeping in each object only the entries whose key may be one of `keys` (all when `None`).
    fn read_top_keeping(b: &'a [u8], repeats: &mut Repeats, nested: impl Fn(&str) -> bool, keys: Option<&'a Keys>) -> Option<Payload<'a>> {
        // One UTF-8 check of the record; then every slice at an ASCII delimiter is text.
        // A held value found in the record by comparison is not checked again:
        // it is text already (held as a `str`), so the record is text when
        // the bytes before and after it are: a concatenation of UTF-8 texts is
        // UTF-8 text. (And when either is not, neither is the record, as the
        // held value starts and ends with an ASCII byte: no character spans
        // the joins. Either way the slow path decides.)
        let text = match repeats.locate(b) {
            Some((at, len)) => {
                simdutf8::basic::from_utf8(&b[..at]).ok()?;
                simdutf8::basic::from_utf8(&b[at + len..]).ok()?;
                // SAFETY: `b[..at]` and `b[at + len..]` were just checked, and
                // `b[at..at + len]` equals the bytes of a `str` the decoder
                // holds (`Repeats::locate` compared them); UTF-8 texts joined
                // are UTF-8 text.
                unsafe { std::str::from_utf8_unchecked(b) }
            }
            None => simdutf8::basic::from_utf8(b).ok()?,
        };
        let mut r = Reader { text, repeats, inner: Vec::with_capacity(2), keys };
        let mut i = ws(b, 0);
        let top = r.object(&mut i, Some(&nested))?;
        (ws(b, i) == b.len()).then(|| Payload { top, inner: RefCell::new(r.inner), keys })
    }
}

/// The position of the first byte at or after `i` that is not JSON whitespace.
#[inline]
pub(crate) fn ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\n' | b'\r' | b'\t')) {
        i += 1;
    }
    i
}

/// One JSON value at `*at` (after any whitespace) read by serde_json, and `*at` moved past it.
fn one<'a, T: Deserialize<'a>>(text: &'a str, at: &mut usize) -> Option<T> {
    let mut values = serde_json::Deserializer::from_str(text.get(*at..)?).into_iter::<T>();
    let value = values.next()?.ok()?;
    *at += values.byte_offset();
    Some(value)
}

/// Reads objects as serde_json reads an [`Obj`], accepting exactly what it
/// accepts: keys and scalars without escapes in place ([`plain_token`]),
/// anything else by serde_json. At the top level, a value [`Repeats`] holds
/// is recognised by comparison, and the objects the mapping looks into are
/// read in the same pass ([`Payload::inner`]).
struct Reader<'a, 'r> {
    text: &'a str,
    repeats: &'r mut Repeats,
    inner: Vec<(*const u8, Option<Obj<'a>>)>,
    /// The keys whose entries objects keep (all when `None`).
    keys: Option<&'a Keys>,
}

impl<'a> Reader<'a, '_> {
    /// The object at `*at`, and `*at` moved past it; `nested`, at the top level only, names the keys whose objects are read too.
    fn object(&mut self, at: &mut usize, nested: Option<&dyn Fn(&str) -> bool>) -> Option<Obj<'a>> {
        let (text, b) = (self.text, self.text.as_bytes());
        if b.get(*at) != Some(&b'{') {
            return None;
        }
        // LiteLLM's top level and `metadata` have 50 to 70 keys, of which the mapping reads a few.
        let mut entries = Vec::with_capacity(if self.keys.is_some() { 16 } else { 64 });
        let mut i = ws(b, *at + 1);
        if b.get(i) == Some(&b'}') {
            *at = i + 1;
            return Some(Obj { entries });
        }
        loop {
            let key = match plain_string(text, i) {
                Some((key, end)) => {
                    i = end;
                    Cow::Borrowed(key)
                }
                None => one::<Item<'a>>(text, &mut i)?.0,
            };
            i = ws(b, i);
            if b.get(i) != Some(&b':') {
                return None;
            }
            i = ws(b, i + 1);
            let value = self.value(&key, &mut i, nested)?;
            let p = print(&key);
            if self.keys.is_none_or(|k| k.may_hold(p)) {
                entries.push((p, key, value));
            }
            i = ws(b, i);
            match b.get(i) {
                Some(b',') => i = ws(b, i + 1),
                Some(b'}') => {
                    *at = i + 1;
                    return Some(Obj { entries });
                }
                _ => return None,
            }
        }
    }

    fn value(&mut self, key: &str, at: &mut usize, nested: Option<&dyn Fn(&str) -> bool>) -> Option<&'a str> {
        let (text, b) = (self.text, self.text.as_bytes());
        let start = *at;
        if let Some(nested) = nested.filter(|_| matches!(b.get(*at), Some(b'{' | b'['))) {
            if let Some(len) = self.repeats.find(key, b, *at) {
                *at += len;
                return text.get(*at - len..*at);
            }
            if b.get(*at) == Some(&b'{') && nested(key) {
                let start = *at;
                let obj = self.object(at, None)?;
                self.inner.push((b[start..].as_ptr(), Some(obj)));
                return text.get(start..*at);
            }
        }
        self.skip_in_place(at, 0)?;
        let v = text.get(start..*at)?;
        if nested.is_some() {
            self.repeats.remember(key, v);
        }
        Some(v)
    }

    /// Moves `*at` past the value there, checked as serde_json checks it.
    /// Objects and arrays to a depth of [`Reader::DEPTH`] are walked here,
    /// anything deeper or not plain is left to serde_json.
    fn skip(&mut self, at: &mut usize, depth: usize) -> Option<()> {
        let (text, b) = (self.text, self.text.as_bytes());
        match b.get(*at) {
            Some(b'{') if depth < Self::DEPTH => {
                let mut i = ws(b, *at + 1);
                if b.get(i) != Some(&b'}') {
                    loop {
                        match plain_string(text, i) {
                            Some((_, end)) => i = end,
                            None => one::<Item<'a>>(text, &mut i).map(drop)?,
                        }
                        i = ws(b, i);
                        if b.get(i) != Some(&b':') {
                            return None;
                        }
                        i = ws(b, i + 1);
                        self.skip_in_place(&mut i, depth + 1)?;
                        i = ws(b, i);
                        match b.get(i) {
                            Some(b',') => i = ws(b, i + 1),
                            Some(b'}') => break,
                            _ => return None,
                        }
                    }
                }
                *at = i + 1;
            }
            Some(b'[') if depth < Self::DEPTH => {
                let mut i = ws(b, *at + 1);
                if b.get(i) != Some(&b']') {
                    loop {
                        self.skip_in_place(&mut i, depth + 1)?;
                        i = ws(b, i);
                        match b.get(i) {
                            Some(b',') => i = ws(b, i + 1),
                            Some(b']') => break,
                            _ => return None,
                        }
                    }
                }
                *at = i + 1;
            }
            Some(b'{' | b'[') => drop(one::<&'a RawValue>(text, at)?),
            _ => match plain_token(text, *at) {
                Some((_, end)) => *at = end,
                None => drop(one::<&'a RawValue>(text, at)?),
            },
        }
        Some(())
    }
}

impl Reader<'_, '_> {
    /// [`Reader::skip`], with a plain scalar (most values) read here rather than by a call.
    #[inline]
    fn skip_in_place(&mut self, at: &mut usize, depth: usize) -> Option<()> {
        if !matches!(self.text.as_bytes().get(*at), Some(b'{' | b'[')) {
            if let Some((_, end)) = plain_token(self.text, *at) {
                *at = end;
                return Some(());
            }
        }
        self.skip(at, depth)
    }

    /// How deep [`Reader::skip`] walks before it leaves a value to serde_json (which has no limit).
    const DEPTH: usize = 32;
}

/// The string at `text[i]` when it holds no escape (most keys and values):
/// its text and where it ends; `None` for anything else, which serde_json
/// then reads and judges. Accepts only what serde_json accepts.
#[inline]
pub(crate) fn plain_string(text: &str, i: usize) -> Option<(&str, usize)> {
    let b = text.as_bytes();
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let len = to_quote_escape_or_control(&b[i + 1..])?;
    if b[i + 1 + len] != b'"' {
        return None;
    }
    Some((text.get(i + 1..i + 1 + len)?, i + len + 2))
}

/// The position of the first `"`, `\\` or control character, sixteen bytes
/// at a time with SSE2 (part of every x86-64 processor), else eight at a time
/// (as serde_json finds the end of a string).
#[inline]
pub(crate) fn to_quote_escape_or_control(b: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8};
        let mut at = 0;
        while at + 16 <= b.len() {
            // SAFETY: SSE2 is part of x86-64; `b[at..at + 16]` is in bounds
            // (checked above), and an unaligned load reads exactly those bytes.
            let mask = unsafe {
                let x = _mm_loadu_si128(b.as_ptr().add(at).cast());
                // A byte is a control character when max(byte, 0x1f) is 0x1f (unsigned).
                let control = _mm_cmpeq_epi8(_mm_max_epu8(x, _mm_set1_epi8(0x1f)), _mm_set1_epi8(0x1f));
                let quote_or_escape = _mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8(b'"' as i8)), _mm_cmpeq_epi8(x, _mm_set1_epi8(b'\\' as i8)));
                _mm_movemask_epi8(_mm_or_si128(quote_or_escape, control))
            };
            if mask != 0 {
                return Some(at + mask.trailing_zeros() as usize);
            }
            at += 16;
        }
        b[at..].iter().position(|c| matches!(c, b'"' | b'\\' | 0..=0x1f)).map(|p| at + p)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        const ONES: u64 = u64::from_ne_bytes([1; 8]);
        const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
        let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
        let mut at = 0;
        for chunk in b.chunks_exact(8) {
            let x = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
            let found = zero(x ^ (ONES * u64::from(b'"'))) | zero(x ^ (ONES * u64::from(b'\\'))) | (x.wrapping_sub(ONES * 0x20) & !x & HIGH);
            if found != 0 {
                // The lowest flagged byte is a true match (a borrow only flags bytes above one).
                return Some(at + found.trailing_zeros() as usize / 8);
            }
            at += 8;
        }
        b[at..].iter().position(|c| matches!(c, b'"' | b'\\' | 0..=0x1f)).map(|p| at + p)
    }
}

/// The JSON text of the scalar at `text[i]` when it is a string without
/// escapes, `null`, `true`, `false` or a number, and where it ends; `None`
/// for anything else. What follows is the caller's to check (a delimiter).
/// Always inlined: a call a scalar costs the LiteLLM reader about 4 %.
#[inline(always)]
pub(crate) fn plain_token(text: &str, i: usize) -> Option<(&str, usize)> {
    let b = text.as_bytes();
    let digits = |mut j: usize| {
        while b.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        j
    };
    let end = match *b.get(i)? {
        b'"' => plain_string(text, i)?.1,
        b'n' if b[i..].starts_with(b"null") => i + 4,
        b't' if b[i..].starts_with(b"true") => i + 4,
        b'f' if b[i..].starts_with(b"false") => i + 5,
        b'-' | b'0'..=b'9' => {
            // -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
            let mut j = if b[i] == b'-' { i + 1 } else { i };
            j = match b.get(j) {
                Some(b'0') => j + 1,
                Some(b'1'..=b'9') => digits(j),
                _ => return None,
            };
            if b.get(j) == Some(&b'.') {
                let k = digits(j + 1);
                if k == j + 1 {
                    return None;
                }
                j = k;
            }
            if matches!(b.get(j), Some(b'e' | b'E')) {
                let sign = usize::from(matches!(b.get(j + 1), Some(b'+' | b'-')));
                let k = digits(j + 1 + sign);
                if k == j + 1 + sign {
                    return None;
                }
                j = k;
            }
            j
        }
        _ => return None,
    };
    Some((text.get(i..end)?, end))
}

/// Large values a decoder has met before, byte for byte, by the payload key
/// that held them. LiteLLM writes the same `model_map_information` (its
/// cost-map entry for the model, 9 KB, most of a payload) in every payload
/// for a model. An object or array is self-delimiting, so a record whose
/// text at a value starts with one met before (and checked by `serde_json`
/// then) holds that same valid value there: a comparison replaces the scan.
/// Prompt and response text is never held.
#[derive(Debug, Default)]
pub struct Repeats {
    /// (key, value's JSON text, times found again), at most [`Repeats::CAPACITY`].
    entries: Vec<(Box<str>, Box<str>, u32)>,
    /// The key of the value found last (`"key"` as written, for a search),
    /// and where that value was in its record (where [`Repeats::locate`]
    /// looks first in the next) and its length.
    last: Option<(Box<str>, memchr::memmem::Finder<'static>, usize, usize)>,
    /// What [`Repeats::locate`] found in the record being read: where it
    /// looked (a value of the key found last) and the entry held there, if any.
    located: Option<(usize, Option<usize>)>,
}

impl Repeats {
    /// Values smaller than this are scanned (a comparison saves little), larger than `MAX` too (memory).
    const MIN: usize = 2048;
    const MAX: usize = 64 << 10;
    const CAPACITY: usize = 16;
    /// How far before and after its place in the last record [`Repeats::locate`] looks first.
    const NEAR: usize = 1024;

    /// Where `b` holds, after the key of the value found last, a value held
    /// under that key: its start and length. Searched for before the record
    /// is read (so that the UTF-8 check can leave it out), near where it was
    /// in the last record, then from the start; only the first `"key"` found
    /// is tried, so a record without a repeat costs one search at most. The
    /// reader then takes the value found at that place without comparing
    /// again ([`Repeats::find`]).
    fn locate(&mut self, b: &[u8]) -> Option<(usize, usize)> {
        self.located = None;
        let (key, finder, was, _) = self.last.as_ref()?;
        let n = finder.needle().len();
        let near = was.saturating_sub(Self::NEAR).min(b.len());
        let near_end = (was + Self::NEAR + n).min(b.len()).max(near);
        let found = match finder.find(&b[near..near_end]) {
            Some(i) => near + i,
            None => finder.find(b)?,
        };
        let mut at = ws(b, found + n);
        if b.get(at) != Some(&b':') {
            return None;
        }
        at = ws(b, at + 1);
        let rest = &b[at..];
        let entry = self.entries.iter().position(|(k, t, _)| *k == *key && rest.starts_with(t.as_bytes()));
        self.located = Some((at, entry));
        entry.map(|e| (at, self.entries[e].1.len()))
    }

    /// The length of the value at `b[at..]` when it is one held for `key`.
    fn find(&mut self, key: &str, b: &[u8], at: usize) -> Option<usize> {
        let entry = match self.located {
            // Compared already, for every entry of this key.
            Some((there, entry)) if there == at && self.last.as_ref().is_some_and(|l| *l.0 == *key) => entry,
            _ => self.entries.iter().position(|(k, t, _)| **k == *key && b[at..].starts_with(t.as_bytes())),
        }?;
        let (_, text, hits) = &mut self.entries[entry];
        *hits += 1;
        let len = text.len();
        match &mut self.last {
            Some((k, _, was, held)) if **k == *key => (*was, *held) = (at, len),
            // A smaller value of another key, in a record where the key found last was found again: kept to.
            Some((.., held)) if len < *held && matches!(self.located, Some((_, Some(_)))) => {}
            last => {
                // What `locate` found was for another key.
                self.located = None;
                let finder = memchr::memmem::Finder::new(format!("\"{key}\"").as_bytes()).into_owned();
                *last = Some((key.into(), finder, at, len));
            }
        }
        Some(len)
    }

    /// Holds a large object or array scanned under `key`, in place of the held value found again least.
    fn remember(&mut self, key: &str, value: &str) {
        if !(Self::MIN..=Self::MAX).contains(&value.len()) || !matches!(value.as_bytes().first(), Some(b'{' | b'[')) || TEXT_FIELDS.contains(&key) {
            return;
        }
        let entry = (key.into(), value.into(), 0);
        if self.entries.len() < Self::CAPACITY {
            self.entries.push(entry);
        } else if let Some(least) = (0..self.entries.len()).min_by_key(|e| self.entries[*e].2) {
            self.entries[least] = entry;
            // What `locate` found there is no longer held.
            if self.located.is_some_and(|(_, e)| e == Some(least)) {
                self.located = None;
            }
        }
    }
}

/// A payload with lookups by dotted path; objects on the way are parsed once.
struct Payload<'a> {
    top: Obj<'a>,
    /// Parsed inner objects, by the address of their text (`None`: not an object).
    inner: RefCell<Vec<(*const u8, Option<Obj<'a>>)>>,
    /// The keys the objects read keep ([`Reader::keys`]).
    keys: Option<&'a Keys>,
}

impl<'a> Payload<'a> {
    /// The first value of the top-level `key` that is not `null`.
    fn get(&self, key: &str) -> Option<&'a str> {
        self.kept(key);
        self.top.get(key)
    }

    /// Checks (in debug builds) that the objects read kept the entries of `key`: it must be one of [`Keys`].
    fn kept(&self, key: &str) {
        debug_assert!(self.keys.is_none_or(|k| k.may_hold(print(key))), "`{key}` is looked up but not in litellm::Keys");
    }

    /// The value at `path` (keys into nested objects), first non-null at each step.
    fn at<'k>(&self, path: impl IntoIterator<Item = &'k str>) -> Option<&'a str> {
        let mut path = path.into_iter();
        let mut v = self.get(path.next()?)?;
        for key in path {
            v = self.child(v, key)?;
        }
        Some(v)
    }

    fn child(&self, text: &'a str, key: &str) -> Option<&'a str> {
        self.kept(key);
        let mut inner = self.inner.borrow_mut();
        if let Some((_, obj)) = inner.iter().find(|(p, _)| *p == text.as_ptr()) {
            return obj.as_ref()?.get(key);
        }
        // A path through something that is not an object finds nothing there.
        // The record was checked whole, so the reader takes what serde_json would (and leaves it anything unusual).
        let read = || Reader { text, repeats: &mut Repeats::default(), inner: Vec::new(), keys: self.keys }.object(&mut 0, None);
        let obj = if text.starts_with('{') { read().or_else(|| serde_json::from_str::<Obj<'a>>(text).ok()) } else { None };
        let found = obj.as_ref().and_then(|o| o.get(key));
        inner.push((text.as_ptr(), obj));
        found
    }

    /// The value at a path given both dotted (its name) and split.
    fn path(&self, (_, keys): (&str, [&str; 3])) -> Option<&'a str> {
        self.at(keys)
    }

    /// The first of `paths` holding a non-empty string.
    fn first_string(&self, paths: &[Vec<String>]) -> Result<Option<Cow<'a, str>>, Verdict> {
        for p in paths {
            if let Some(v) = self.at(p.iter().map(String::as_str)) {
                let s = string(v, &Dotted(p))?;
                if !s.is_empty() {
                    return Ok(Some(s));
                }
            }
        }
        Ok(None)
    }

    /// The first of `paths` holding a non-empty array of strings.
    fn first_list(&self, paths: [(&str, [&str; 3]); 2]) -> Result<Option<List<'a>>, Verdict> {
        for p in paths {
            if let Some(v) = self.path(p) {
                let l = strings(v, p.0)?;
                if !l.is_empty() {
                    return Ok(Some(l));
                }
            }
        }
        Ok(None)
    }
}

/// A path split at its dots, written back with them (only for a reason).
struct Dotted<'p>(&'p [String]);

impl std::fmt::Display for Dotted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

/// What a JSON value is, from its first character, for a reason that names no value.
fn found(v: &str) -> &'static str {
    match v.as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        _ => "a number",
    }
}

fn wrong(name: &dyn std::fmt::Display, want: &str, v: &str) -> Verdict {
    ("wrong_type", format!("field `{name}` must be {want}, found {}", found(v)))
}

fn string<'a>(v: &'a str, name: &dyn std::fmt::Display) -> Result<Cow<'a, str>, Verdict> {
    match plain_string(v, 0) {
        Some((s, end)) if end == v.len() => Ok(Cow::Borrowed(s)),
        _ => serde_json::from_str::<Item<'a>>(v).map(|i| i.0).map_err(|_| wrong(name, "a string", v)),
    }
}

fn strings<'a>(v: &'a str, name: &str) -> Result<List<'a>, Verdict> {
    serde_json::from_str::<List<'a>>(v).map_err(|_| wrong(&name, "an array of strings", v))
}

/// `v` is a JSON value the reader or serde_json checked: one that starts
/// like a number is a JSON number, which Rust's own parser reads as JSON
/// means it (correctly rounded). Anything else goes to serde_json, for its verdict.
fn number(v: &str, name: &str) -> Result<f64, Verdict> {
    match v.as_bytes().first() {
        Some(b'-' | b'0'..=b'9') => v.parse::<f64>().ok(),
        _ => None,
    }
    .map_or_else(|| serde_json::from_str::<f64>(v).map_err(|_| wrong(&name, "a number", v)), Ok)
}

/// As [`number`]: a JSON number of digits only (no fraction or exponent) in
/// range is what both Rust and serde_json read as an integer.
fn integer(v: &str, name: &str) -> Result<i64, Verdict> {
    match v.as_bytes().first() {
        Some(b'-' | b'0'..=b'9') => v.parse::<i64>().ok(),
        _ => None,
    }
    .map_or_else(|| serde_json::from_str::<i64>(v).map_err(|_| wrong(&name, "an integer", v)), Ok)
}

fn opt<'a, T>(v: Option<&'a str>, read: impl FnOnce(&'a str) -> Result<T, Verdict>) -> Result<Option<T>, Verdict> {
    v.map(read).transpose()
}

/// Seconds since the epoch (a float) to nanoseconds, rounded to the microsecond.
fn epoch_ns(secs: f64) -> Result<i64, Verdict> {
    let micros = (secs * 1e6).round();
    if !micros.is_finite() || micros.abs() >= (i64::MAX / 1000) as f64 {
        return Err(out_of_range());
    }
    Ok(micros as i64 * 1000)
}

/// `call_type` to an operation: the listed call types, also behind the `a` of their async variant.
fn operation(call_type: &str) -> &str {
    fn listed(s: &str) -> Option<&'static str> {
        Some(match s {
            "completion" | "responses" => "chat",
            "embedding" => "embeddings",
            "text_completion" => "text_completion",
            "image_generation" => "image_generation",
            "transcription" => "transcription",
            "speech" => "speech",
            "rerank" => "rerank",
            _ => return None,
        })
    }
    listed(call_type).or_else(|| call_type.strip_prefix('a').and_then(listed)).unwrap_or(call_type)
}

/// `metadata.spend_logs_metadata.NAME` and `metadata.requester_metadata.NAME`, dotted and split.
fn metadata_paths(name: &'static str) -> [(&'static str, [&'static str; 3]); 2] {
    let dotted = match name {
        "data_classes" => ["metadata.spend_logs_metadata.data_classes", "metadata.requester_metadata.data_classes"],
        "context_tenant_ids" => ["metadata.spend_logs_metadata.context_tenant_ids", "metadata.requester_metadata.context_tenant_ids"],
        "conversation_id" => ["metadata.spend_logs_metadata.conversation_id", "metadata.requester_metadata.conversation_id"],
        other => unreachable!("no metadata path for {other}"),
    };
    [(dotted[0], ["metadata", "spend_logs_metadata", name]), (dotted[1], ["metadata", "requester_metadata", name])]
}

/// The two events of one payload, with their times.
struct Mapped<'a> {
    request: Event<'a>,
    requested_at: i64,
    response: Event<'a>,
    responded_at: i64,
}

fn map<'a>(p: &Payload<'a>, adapter: &Adapter) -> Result<Mapped<'a>, Verdict> {
    let o = p;
    let call_id = match o.get("litellm_call_id") {
        None => return Err(("missing_field", "required field `litellm_call_id` is missing or null".into())),
        Some(v) => string(v, &"litellm_call_id")?,
    };
    if call_id.is_empty() {
        return Err(("empty_field", "required field `litellm_call_id` is empty".into()));
    }
    let time = |name: &str| match o.get(name) {
        None => Err(("missing_field", format!("required field `{name}` is missing or null"))),
        Some(v) => number(v, name),
    };
    let (start, end) = (time("startTime")?, time("endTime")?);
    let (requested_at, responded_at) = (epoch_ns(start)?, epoch_ns(end)?);

    let provider = opt(o.get("custom_llm_provider"), |v| string(v, &"custom_llm_provider"))?
        .map(|s| match adapter.provider(&s) {
            same if same == s => s,
            other => Cow::Owned(other.to_string()),
        });
    let model = opt(o.get("model"), |v| string(v, &"model"))?;
    let operation = opt(o.get("call_type"), |v| string(v, &"call_type"))?.map(|ct| match operation(&ct) {
        same if same == ct => ct,
        other => Cow::Owned(other.to_string()),
    });
    let tenant_id = p.first_string(&adapter.tenant_paths)?;
    let actor_id = p.first_string(&adapter.actor_paths)?;
    let api_base = match opt(o.get("api_base"), |v| string(v, &"api_base"))? {
        Some(b) if !b.is_empty() => Some(b),
        _ => opt(p.at(["hidden_params", "api_base"]), |v| string(v, &"hidden_params.api_base"))?,
    };
    let vendor_region = api_base.and_then(|b| adapter.region_of(&b)).map(Cow::Owned);

    let mut data_classes: List<'a> = List::new();
    let mut add = |item: Item<'a>| {
        if !data_classes.contains(&item) {
            data_classes.push(item);
        }
    };
    for path in metadata_paths("data_classes") {
        for item in opt(p.path(path), |v| strings(v, path.0))?.unwrap_or_default() {
            add(item);
        }
    }
    let prefix = adapter.data_class_tag_prefix.as_str();
    for tag in opt(o.get("request_tags"), |v| strings(v, "request_tags"))?.unwrap_or_default() {
        if let Some(class) = tag.0.strip_prefix(prefix) {
            add(Item(Cow::Owned(class.to_string())));
        }
    }
    let context_tenant_ids = p.first_list(metadata_paths("context_tenant_ids"))?;
    let mut conversation_id = None;
    for path in metadata_paths("conversation_id") {
        if let Some(s) = opt(p.path(path), |v| string(v, &path.0))?.filter(|s| !s.is_empty()) {
            conversation_id = Some(s);
            break;
        }
    }
    let input_tokens = opt(o.get("prompt_tokens"), |v| integer(v, "prompt_tokens"))?;
    let output_tokens = opt(o.get("completion_tokens"), |v| integer(v, "completion_tokens"))?;
    let prompt_sha256 = o.get("messages").map(|m| Cow::Owned(sha256_compact_json(m)));
    let status = opt(o.get("status"), |v| string(v, &"status"))?.map(|s| Cow::Borrowed(if s == "success" { "ok" } else { "error" }));

    let request = Event {
        event_id: Some(Cow::Owned(["litellm:", &call_id, ":request"].concat())),
        event_type: Some(Cow::Borrowed("ai.request")),
        tenant_id: tenant_id.clone(),
        actor_id,
        source: Some(Cow::Borrowed(FORMAT)),
        request_id: Some(call_id.clone()),
        provider: provider.clone(),
        model: model.clone(),
        operation: operation.clone(),
        vendor_region,
        data_classes: Some(data_classes),
        context_tenant_ids,
        conversation_id,
        input_tokens,
        prompt_sha256,
        ..Default::default()
    };
    let response = Event {
        event_id: Some(Cow::Owned(["litellm:", &call_id, ":response"].concat())),
        event_type: Some(Cow::Borrowed("ai.response")),
        tenant_id,
        source: Some(Cow::Borrowed(FORMAT)),
        request_id: Some(call_id),
        provider,
        model,
        operation,
        status,
        output_tokens,
        latency_ms: Some((end - start) * 1000.0),
        ..Default::default()
    };
    Ok(Mapped { request, requested_at, response, responded_at })
}

/// Decodes one record: a payload, or an array of payloads.
pub fn decode(bytes: &[u8], origin: &Origin, adapter: &Adapter, out: &mut Out<'_>) {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        match serde_json::from_slice::<Vec<&RawValue>>(bytes) {
            Ok(payloads) => {
                for (i, p) in payloads.iter().enumerate() {
                    payload(p.get().as_bytes(), Some(i), origin, adapter, out);
                }
            }
            Err(e) => out.dead(origin, invalid_json(&e), bytes),
        }
    } else {
        payload(bytes, None, origin, adapter, out);
    }
}

fn invalid_json(e: &serde_json::Error) -> Verdict {
    if e.is_eof() {
        ("invalid_json", "not valid JSON: the record ends early (truncated?)".into())
    } else {
        ("invalid_json", format!("not valid JSON: {} at column {}", syntax_class(e), e.column()))
    }
}

fn payload(bytes: &[u8], index: Option<usize>, origin: &Origin, adapter: &Adapter, out: &mut Out<'_>) {
    let keys = &adapter.litellm_keys;
    // The objects the mapping looks into, the filter first.
    let nested = |key: &str| keys.may_hold(print(key)) && adapter.looks_into(key);
    let fast = Obj::read_top_keeping(bytes, &mut out.formats_state().litellm, nested, Some(keys));
    let read = fast.map_or_else(|| serde_json::from_slice::<Obj<'_>>(bytes).map(|top| Payload { top, inner: RefCell::new(Vec::new()), keys: None }), Ok);
    let mapped = match read {
        Ok(p) => {
            map(&p, adapter).and_then(|m| {
                out.check(&m.request, m.requested_at)?;
                out.check(&m.response, m.responded_at)?;
                Ok(m)
            })
        }
        Err(e) if e.is_data() => Err(("not_object", "not a LiteLLM payload: a record holds a JSON object, or an array of them".into())),
        Err(e) => Err(invalid_json(&e)),
    };
    match mapped {
        Ok(m) => {
            out.append(&m.request, m.requested_at, origin);
            out.append(&m.response, m.responded_at, origin);
        }
        Err((kind, reason)) => {
            let reason = match index {
                Some(i) => format!("payload {i} of the array (from 0): {reason}"),
                None => reason,
            };
            let redacted = redact_payload(bytes);
            out.dead(origin, (kind, reason), redacted.as_deref().unwrap_or(bytes));
        }
    }
}

/// The record with the text fields of each payload replaced by the hex
/// SHA-256 of their compact JSON; `None` when it is not JSON.
pub fn redact(bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        let payloads: Vec<&RawValue> = serde_json::from_slice(bytes).ok()?;
        let mut out = b"[".to_vec();
        for (i, p) in payloads.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend(redact_payload(p.get().as_bytes()).unwrap_or_else(|| p.get().as_bytes().to_vec()));
        }
        out.push(b']');
        Some(out)
    } else {
        redact_payload(bytes)
    }
}

/// One payload with its text fields hashed; a JSON value that is not an
/// object has no fields to hash and is kept; `None` when it is not JSON.
fn redact_payload(bytes: &[u8]) -> Option<Vec<u8>> {
    let Ok(obj) = serde_json::from_slice::<Obj<'_>>(bytes) else {
        return serde_json::from_slice::<serde::de::IgnoredAny>(bytes).ok().map(|_| bytes.to_vec());
    };
    let mut out = b"{".to_vec();
    for (i, (_, key, value)) in obj.entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend(serde_json::to_vec(key).expect("a string serializes"));
        out.push(b':');
        if TEXT_FIELDS.contains(&&**key) && *value != "null" {
            out.extend(format!("\"{}\"", sha256_compact_json(value)).bytes());
        } else {
            out.extend(value.bytes());
        }
    }
    out.push(b'}');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{DecodeOptions, Decoded, Decoder, Formats};
    use crate::event::RawBatch;
    use crate::formats::Format;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::TimestampNanosecondType;

    pub(crate) const CANARY: &str = "AIWATCH-CANARY-PROMPT-7f3c";

    fn payload_json(id: &str, extra: &str) -> String {
        format!(
            r#"{{"litellm_call_id":"{id}","call_type":"acompletion","status":"success","custom_llm_provider":"bedrock","model":"anthropic.claude-3","startTime":1764324000.1234561,"endTime":1764324001.5,"prompt_tokens":12,"completion_tokens":7,"api_base":"https://bedrock-runtime.eu-west-1.amazonaws.com/model/x","request_tags":["data:pii","team:a","data:phi"],"end_user":"","metadata":{{"user_api_key_team_id":"acme","user_api_key_user_id":"user:alice","spend_logs_metadata":{{"data_classes":["pii","customer_data"],"conversation_id":"conv-1","context_tenant_ids":["acme","globex"]}},"requester_metadata":null}},"messages":[{{"role":"user","content":"{CANARY} hello"}}],"response":{{"choices":[{{"message":{{"content":"{CANARY} answer"}}}}]}}{extra}}}"#
        )
    }

    fn decode(lines: &[&str]) -> Decoded {
        let mut raw = RawBatch::default();
        for (i, l) in lines.iter().enumerate() {
            raw.push(l.as_bytes(), Origin::File { path: "l.jsonl".into(), line: i as u64 + 1 });
        }
        Decoder::with_formats(DecodeOptions::default(), Formats::one(Format::Litellm, Adapter::default())).decode(&raw)
    }

    fn col<'a>(d: &'a Decoded, name: &str) -> Vec<Option<&'a str>> {
        d.events.column_by_name(name).unwrap().as_string::<i32>().iter().collect()
    }

    #[test]
    fn a_payload_maps_to_a_request_and_a_response() {
        let p = payload_json("call-1", "");
        let d = decode(&[&p]);
        assert!(d.dead_letters.is_empty(), "{:?}", d.dead_letters);
        assert_eq!(d.events.num_rows(), 2);
        assert_eq!(col(&d, "event_id"), [Some("litellm:call-1:request"), Some("litellm:call-1:response")]);
        assert_eq!(col(&d, "event_type"), [Some("ai.request"), Some("ai.response")]);
        assert_eq!(col(&d, "request_id"), [Some("call-1"), Some("call-1")]);
        assert_eq!(col(&d, "tenant_id"), [Some("acme"), Some("acme")]);
        assert_eq!(col(&d, "actor_id"), [Some("user:alice"), None], "end_user is empty, so the next key");
        assert_eq!(col(&d, "provider"), [Some("aws.bedrock"), Some("aws.bedrock")]);
        assert_eq!(col(&d, "operation"), [Some("chat"), Some("chat")]);
        assert_eq!(col(&d, "vendor_region"), [Some("eu-west-1"), None]);
        assert_eq!(col(&d, "conversation_id"), [Some("conv-1"), None]);
        assert_eq!(col(&d, "status"), [None, Some("ok")]);
        assert_eq!(col(&d, "source"), [Some("litellm"), Some("litellm")]);
        assert_eq!(col(&d, "environment"), [Some("production"), Some("production")]);
        let times = d.events.column_by_name("time").unwrap().as_primitive::<TimestampNanosecondType>();
        assert_eq!(times.value(0), 1_764_324_000_123_456_000, "rounded to the microsecond");
        assert_eq!(times.value(1), 1_764_324_001_500_000_000);
        let lat = d.events.column_by_name("latency_ms").unwrap().as_primitive::<arrow::datatypes::Float64Type>();
        assert!(lat.is_null(0) && (lat.value(1) - 1376.5439).abs() < 1e-3, "{}", lat.value(1));
        let classes = d.events.column_by_name("data_classes").unwrap().as_list::<i32>();
        let got: Vec<_> = classes.value(0).as_string::<i32>().iter().map(|s| s.unwrap().to_string()).collect();
        assert_eq!(got, ["pii", "customer_data", "phi"], "union in first-seen order");
        assert_eq!(classes.value(1).len(), 0);
        let ctx = d.events.column_by_name("context_tenant_ids").unwrap().as_list::<i32>();
        assert_eq!(ctx.value(0).len(), 2);
        let tokens = d.events.column_by_name("input_tokens").unwrap().as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!((tokens.value(0), tokens.is_null(1)), (12, true));
        let out = d.events.column_by_name("output_tokens").unwrap().as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!((out.is_null(0), out.value(1)), (true, 7));
        let sha = col(&d, "prompt_sha256");
        assert_eq!(sha[0].unwrap().len(), 64);
        assert_eq!(sha[0].unwrap(), sha256_compact_json(&format!(r#"[{{"role":"user","content":"{CANARY} hello"}}]"#)));
        for name in ["event_id", "tenant_id", "actor_id", "model", "prompt_sha256", "request_id"] {
            assert!(col(&d, name).iter().flatten().all(|v| !v.contains(CANARY)), "{name}");
        }
    }

    #[test]
    fn an_array_maps_each_payload_and_a_bad_one_alone_is_a_redacted_dead_letter() {
        let good = payload_json("a", "");
        let bad = payload_json("b", "").replace(r#""prompt_tokens":12"#, r#""prompt_tokens":"twelve""#);
        let record = format!("[{good},{bad},{}]", payload_json("c", ""));
        let d = decode(&[&record]);
        assert_eq!(d.events.num_rows(), 4);
        assert_eq!(d.dead_letters.len(), 1);
        let dl = &d.dead_letters[0];
        assert!(dl.reason.contains("payload 1") && dl.reason.contains("`prompt_tokens` must be an integer"), "{}", dl.reason);
        let kept = String::from_utf8(dl.bytes.clone().unwrap()).unwrap();
        assert!(!kept.contains(CANARY), "{kept}");
        let v: serde_json::Value = serde_json::from_str(&kept).unwrap();
        assert_eq!(v["litellm_call_id"], "b");
        assert_eq!(v["messages"].as_str().unwrap().len(), 64);
    }

    #[test]
    fn unmappable_payloads_are_dead_letters_naming_the_field() {
        let cases: Vec<(String, &str, &str)> = vec![
            ("{not json".into(), "invalid_json", "not valid JSON"),
            ("\"a string\"".into(), "not_object", "not a LiteLLM payload"),
            (payload_json("x", "").replace(r#""litellm_call_id":"x","#, r#""id":"x","#), "missing_field", "`litellm_call_id`"),
            (payload_json("", ""), "empty_field", "`litellm_call_id` is empty"),
            (payload_json("x", "").replace(r#""startTime":1764324000.1234561,"#, ""), "missing_field", "`startTime`"),
            (payload_json("x", "").replace("\"endTime\":1764324001.5", "\"endTime\":\"soon\""), "wrong_type", "`endTime` must be a number"),
            (payload_json("x", "").replace(r#""user_api_key_team_id":"acme""#, r#""user_api_key_team_id":5"#), "wrong_type", "`metadata.user_api_key_team_id` must be a string"),
            (payload_json("x", "").replace(r#"["data:pii","team:a","data:phi"]"#, r#""data:pii""#), "wrong_type", "`request_tags` must be an array of strings"),
            (payload_json("x", "").replace("1764324000.1234561", "-5"), "time_out_of_range", "`time`"),
        ];
        for (record, kind, want) in &cases {
            let d = decode(&[record]);
            assert_eq!(d.events.num_rows(), 0, "{record}");
            assert_eq!(d.dead_letters.len(), 1, "{record}");
            let dl = &d.dead_letters[0];
            assert_eq!(dl.kind, *kind, "{}", dl.reason);
            assert!(dl.reason.contains(want), "{want}: {}", dl.reason);
            let kept = String::from_utf8(dl.bytes.clone().unwrap()).unwrap();
            assert!(!kept.contains(CANARY) && !dl.reason.contains(CANARY), "{kept}");
        }
        // Bytes that do not parse are kept as they are.
        let d = decode(&[&format!("{{\"messages\":\"{CANARY}\"")]);
        assert!(d.dead_letters[0].bytes.as_ref().unwrap().starts_with(b"{\"messages\""));
    }

    #[test]
    fn call_types_map_to_operations() {
        for (ct, op) in [
            ("completion", "chat"),
            ("acompletion", "chat"),
            ("aembedding", "embeddings"),
            ("embedding", "embeddings"),
            ("atext_completion", "text_completion"),
            ("aimage_generation", "image_generation"),
            ("arerank", "rerank"),
            ("aresponses", "chat"),
            ("anthropic_messages", "anthropic_messages"),
            ("pass_through_endpoint", "pass_through_endpoint"),
            ("a", "a"),
        ] {
            assert_eq!(operation(ct), op, "{ct}");
        }
    }

    #[test]
    fn the_same_payload_twice_maps_to_the_same_ids() {
        let p = payload_json("dup", "");
        let d = decode(&[&p, &p]);
        assert_eq!(col(&d, "event_id")[0], col(&d, "event_id")[2]);
        assert_eq!(col(&d, "event_id")[1], col(&d, "event_id")[3]);
    }

    #[test]
    fn hidden_params_api_base_is_used_when_api_base_is_empty() {
        let p = payload_json("h", r#","api_base":"","hidden_params":{"api_base":"https://us-central1-aiplatform.googleapis.com/v1/x"}"#);
        // Keys appear twice: the first non-null wins, as for any lookup.
        let p = p.replace(r#""api_base":"https://bedrock-runtime.eu-west-1.amazonaws.com/model/x","#, "");
        let d = decode(&[&p]);
        assert_eq!(col(&d, "vendor_region")[0], Some("us-central1"));
    }

    #[test]
    fn a_large_value_met_before_is_recognised_and_the_rest_of_the_record_is_still_checked() {
        let costs: Vec<String> = (0..100).map(|i| format!(r#""input_cost_per_token_above_{i}k_tokens":null"#)).collect();
        let big = format!(r#","model_map_information":{{"model_map_key":"gpt-4o","model_map_value":{{{}}}}}"#, costs.join(", "));
        let long_prompt = format!(r#","messages":[{{"role":"user","content":"{}"}}]"#, "x".repeat(3000));
        // A second `messages`, large: keys may repeat (the first non-null wins), and text is never held.
        let first = payload_json("a", &format!("{big}{long_prompt}"));
        let again = payload_json("b", &format!(" {big}"));
        let broken_after = payload_json("c", &format!("{big},\"x\":tru"));
        let broken_inside = payload_json("d", &big.replace("99k_tokens\":null", "99k_tokens\":nul"));
        let mut repeats = Repeats::default();
        let nested = |key: &str| key == "metadata";
        assert!(Obj::read_top(first.as_bytes(), &mut repeats, nested).is_some());
        let held: Vec<&str> = repeats.entries.iter().map(|e| &*e.0).collect();
        assert_eq!(held, ["model_map_information"], "prompt text is never held");
        assert!(Obj::read_top(again.as_bytes(), &mut repeats, nested).is_some());
        assert_eq!(repeats.entries[0].2, 1, "found again");
        assert!(Obj::read_top(broken_after.as_bytes(), &mut repeats, nested).is_none());
        assert!(Obj::read_top(broken_inside.as_bytes(), &mut repeats, nested).is_none());
        let d = decode(&[&first, &again, &broken_after, &broken_inside]);
        assert_eq!(d.events.num_rows(), 4);
        let kinds: Vec<&str> = d.dead_letters.iter().map(|d| d.kind).collect();
        assert_eq!(kinds, ["invalid_json", "invalid_json"]);
    }

    /// The UTF-8 check leaves out a held value found by comparison, and
    /// still refuses a record with a byte that is not UTF-8 anywhere else.
    #[test]
    fn a_value_met_before_is_left_out_of_the_utf8_check_and_nothing_else_is() {
        let costs: Vec<String> = (0..200).map(|i| format!(r#""cost_{i}":{i}.5"#)).collect();
        let big = format!(r#","model_map_information":{{"model_map_key":"gpt-4o","model_map_value":{{{}}}}}"#, costs.join(", "));
        let other = big.replace("gpt-4o", "gpt-5");
        let nested = |key: &str| key == "metadata";
        let mut repeats = Repeats::default();
        for (id, extra) in [("a", &big), ("b", &other), ("c", &big)] {
            assert!(Obj::read_top(payload_json(id, extra).as_bytes(), &mut repeats, nested).is_some());
        }
        assert_eq!(repeats.entries.len(), 2);
        // Found before the check, wherever the map is now.
        let moved = payload_json("d", &format!(r#","first":"{}"{big}"#, "é".repeat(900)));
        let read = Obj::read_top(moved.as_bytes(), &mut repeats, nested).expect("read");
        assert!(matches!(repeats.located, Some((_, Some(0)))), "{:?}", repeats.located);
        assert_eq!(read.top.get("first").map(str::len), Some(1802));
        assert_eq!(repeats.entries[0].2, 2);
        let other_again = payload_json("e", &other);
        assert!(Obj::read_top(other_again.as_bytes(), &mut repeats, nested).is_some());
        assert!(matches!(repeats.located, Some((_, Some(1)))), "every entry of the key is tried: {:?}", repeats.located);
        // A byte that is not UTF-8 before the map, after it, or in it (then not found).
        let with = |extra: &str, bad: &str| {
            let mut bytes = payload_json("u", extra).into_bytes();
            let at = bytes.windows(bad.len()).position(|w| w == bad.as_bytes()).unwrap();
            bytes[at] = 0xff;
            bytes
        };
        let cases = [
            with(&format!(r#","before":"a?b"{big}"#), "?"),
            with(&format!(r#"{big},"after":"a?b""#), "?"),
            with(&format!(r#"{big},"after":"é""#), "é"),
            with(&format!(r#","before":"é"{big}"#), "é"),
            with(&big, "gpt-4o"),
        ];
        let hits = repeats.entries[0].2;
        for (i, bytes) in cases.iter().enumerate() {
            assert!(Obj::read_top(bytes, &mut repeats, nested).is_none(), "case {i}");
            assert!(serde_json::from_slice::<Obj<'_>>(bytes).is_err(), "case {i}");
            let mut raw = RawBatch::default();
            raw.push(bytes, Origin::File { path: "l.jsonl".into(), line: 1 });
            let d = Decoder::with_formats(DecodeOptions::default(), Formats::one(Format::Litellm, Adapter::default())).decode(&raw);
            assert_eq!((d.events.num_rows(), d.dead_letters[0].kind), (0, "invalid_json"), "case {i}");
        }
        assert_eq!(repeats.entries[0].2, hits, "refused before the map is read");
    }

    #[test]
    fn plain_tokens_are_only_what_serde_json_accepts() {
        let tokens = [
            "null", "true", "false", "0", "-0", "12", "-3.25", "1e5", "1E+5", "2.5e-06", "\"abc\"", "\"é ü\"", "\"\"",
            "nul", "nulll", "truex", "-", "-a", "1.", ".5", "1e", "1e+", "+1", "01", "-01", "0x10", "1.5.5", "--1", "\"a\\nb\"", "\"a\u{1}b\"", "\"open",
        ];
        let mut accepted = 0;
        for token in tokens {
            let record = format!("{token},");
            if let Some((text, end)) = plain_token(&record, 0) {
                if record.as_bytes()[end] == b',' {
                    accepted += 1;
                    assert_eq!(text, token);
                    assert!(serde_json::from_str::<serde::de::IgnoredAny>(token).is_ok(), "{token} is not JSON");
                }
            }
        }
        assert_eq!(accepted, 13, "the first 13 are plain");
        assert_eq!(plain_string("\"key\": 1", 0), Some(("key", 5)));
        assert_eq!(plain_string("\"a_much_longer_key_of_forty_one_characters\": 1", 0).map(|k| k.1), Some(43));
        assert_eq!(plain_string("\"k\\\"ey\": 1", 0), None, "escapes go to serde_json");
        assert_eq!(plain_string("\"a long key with a control\u{1} character\": 1", 0), None);
    }

    #[test]
    fn the_end_of_a_string_is_found_at_every_position_and_for_every_byte() {
        let slow = |b: &[u8]| b.iter().position(|c| matches!(c, b'"' | b'\\' | 0..=0x1f));
        for len in 0..40 {
            for at in 0..=len {
                for byte in 0..=255u8 {
                    let mut b = vec![b'a'; len];
                    b.extend(std::iter::repeat_n(0xc3, 3)); // bytes above 0x7f are never a stop
                    if at < len {
                        b[at] = byte;
                    }
                    assert_eq!(to_quote_escape_or_control(&b), slow(&b), "byte {byte:#x} at {at} of {len}");
                }
            }
        }
    }

    /// Every one-byte change of a payload: where the fast reader reads an
    /// object, serde_json reads the same one.
    #[test]
    fn the_fast_reader_accepts_nothing_serde_json_refuses() {
        let costs: Vec<String> = (0..200).map(|i| format!(r#""cost_{i}":{}"#, if i % 2 == 0 { "null".to_string() } else { format!("{i}.5e-3") })).collect();
        let good = payload_json("m", &format!(r#","model_map_information":{{{}}},"n":-0.5,"t":true"#, costs.join(",")));
        let mut repeats = Repeats::default();
        assert!(Obj::read_top(good.as_bytes(), &mut repeats, |k| k == "metadata").is_some());
        assert_eq!(repeats.entries.len(), 1);
        let (mut fast, mut checked) = (0, 0);
        for at in 0..good.len() {
            for c in [b'"', b',', b'x', b'1', b' ', b'}', b'\\', b'.', b'e', b'-', 0x01, 0xff] {
                let mut bytes = good.clone().into_bytes();
                bytes[at] = c;
                let Some(read) = Obj::read_top(&bytes, &mut repeats, |k| k == "metadata") else { continue };
                fast += 1;
                let Ok(obj) = serde_json::from_slice::<Obj<'_>>(&bytes) else { panic!("read, but not JSON: {}", String::from_utf8_lossy(&bytes)) };
                let a: Vec<(&str, &str)> = read.top.entries.iter().map(|(_, k, v)| (&**k, *v)).collect();
                let b: Vec<(&str, &str)> = obj.entries.iter().map(|(_, k, v)| (&**k, *v)).collect();
                assert_eq!(a, b);
                checked += 1;
            }
        }
        assert!(fast > 1000 && checked == fast, "{fast}");
        // Deeper than the walk goes: serde_json reads the rest, and judges it.
        let deep = payload_json("d", &format!(r#","deep":{}1{}"#, "[".repeat(40), "]".repeat(40)));
        assert!(Obj::read_top(deep.as_bytes(), &mut repeats, |_| false).is_some());
        let too_deep = deep.replacen("1]", "1,]", 1);
        assert!(Obj::read_top(too_deep.as_bytes(), &mut repeats, |_| false).is_none());
        assert!(serde_json::from_str::<Obj<'_>>(&too_deep).is_err());
        assert!(repeats.entries[0].2 > 1000, "the cost map was found again");
    }

    #[test]
    fn bytes_that_are_not_utf8_in_a_value_the_mapping_does_not_read_are_invalid_json() {
        let mut bytes = payload_json("u", r#","unread":{"note":"a?b"}"#).into_bytes();
        let at = bytes.iter().position(|b| *b == b'?').unwrap();
        bytes[at] = 0xff;
        let mut raw = RawBatch::default();
        raw.push(&bytes, Origin::File { path: "l.jsonl".into(), line: 1 });
        let d = Decoder::with_formats(DecodeOptions::default(), Formats::one(Format::Litellm, Adapter::default())).decode(&raw);
        assert_eq!(d.events.num_rows(), 0);
        assert_eq!(d.dead_letters[0].kind, "invalid_json", "{}", d.dead_letters[0].reason);
    }

    /// The library's payloads and the malformed fixtures decode alike the
    /// first time and when every large value is one met before.
    #[test]
    fn fixtures_decode_alike_with_values_met_before() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/formats/litellm");
        let mut lines = Vec::new();
        for file in ["payloads.jsonl", "malformed.jsonl"] {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            lines.extend(text.lines().filter(|l| !l.trim().is_empty()).map(str::to_string));
        }
        let twice: Vec<&str> = lines.iter().chain(lines.iter()).map(String::as_str).collect();
        let d = decode(&twice);
        let rows = d.events.num_rows();
        assert!(rows > 20 && rows.is_multiple_of(2), "{rows}");
        // Everything but the line the record came from.
        let mapped: Vec<usize> = (0..crate::event::col::ORIGIN_POSITION).collect();
        let events = d.events.project(&mapped).unwrap();
        assert_eq!(events.slice(0, rows / 2), events.slice(rows / 2, rows / 2));
        let letters = |range: std::ops::Range<usize>| -> Vec<_> { d.dead_letters[range].iter().map(|l| (l.kind, l.reason.clone(), l.bytes.clone())).collect() };
        let n = d.dead_letters.len();
        assert!(n >= 4 && n.is_multiple_of(2), "{n}");
        assert_eq!(letters(0..n / 2), letters(n / 2..n));
    }

    #[test]
    fn limits_apply_to_mapped_events() {
        let long = "m".repeat(2000);
        let p = payload_json("x", &format!(r#","model":"{long}""#)).replace(r#""model":"anthropic.claude-3","#, "");
        let d = decode(&[&p]);
        assert_eq!(d.dead_letters[0].kind, "field_too_long");
        assert!(d.dead_letters[0].reason.contains("`model`"));
    }
}
