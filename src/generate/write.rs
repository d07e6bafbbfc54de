//! Writing JSON by hand (no allocation, no fmt machinery): RFC 3339 times in a producer's UTC
//! offset and precision, numbers, escaped strings, and [`J`], one object in a producer's style.

use super::catalogue::CLASS_NAMES;
use super::rng::Rng;

pub(super) const SEC_NS: i64 = 1_000_000_000;
pub(super) const MS_NS: i64 = 1_000_000;
pub(super) const DAY_NS: i64 = 86_400 * SEC_NS;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub(super) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = (y - era * 400) as u64;
    let m = m as u64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as u64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe as i64 - 719_468
}

/// (year, month, day) of a day number since 1970-01-01.
pub(super) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = (z - era * 146_097) as u64;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe as i64 + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// UTC offsets producers use: (suffix, minutes east of UTC, weight). Index 0 is `Z`.
pub(super) const OFFSETS: [(&str, i64, u32); 9] = [
    ("Z", 0, 60),
    ("+00:00", 0, 8),
    ("+01:00", 60, 6),
    ("+02:00", 120, 5),
    ("+05:30", 330, 5),
    ("-05:00", -300, 6),
    ("-08:00", -480, 4),
    ("+09:00", 540, 4),
    ("-03:00", -180, 2),
];
/// Fraction digits (0, 3, 6 or 9), their weights, and the nanoseconds one last digit is worth.
const PREC_DIGITS: [usize; 4] = [0, 3, 6, 9];
pub(super) const PREC_WEIGHTS: [u32; 4] = [5, 45, 25, 25];
pub(super) const PREC_UNIT: [i64; 4] = [SEC_NS, MS_NS, 1_000, 1];

/// Writes `t` (UTC ns) as RFC 3339 in the offset and precision of `fmt`
/// (offset index in the low 4 bits, precision index above). `t` must be a
/// multiple of the precision's unit; `stamp` makes sure of that.
pub(super) fn push_time(o: &mut Vec<u8>, t: i64, fmt: u8) {
    let (suffix, off_min, _) = OFFSETS[(fmt & 15) as usize];
    let prec = (fmt >> 4) as usize;
    let local = t + off_min * 60 * SEC_NS;
    let secs = local.div_euclid(SEC_NS);
    let ns = local.rem_euclid(SEC_NS);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400) as u64;
    push_pad(o, y as u64, 4);
    o.push(b'-');
    push_pad(o, m as u64, 2);
    o.push(b'-');
    push_pad(o, d as u64, 2);
    o.push(b'T');
    push_pad(o, sod / 3600, 2);
    o.push(b':');
    push_pad(o, sod / 60 % 60, 2);
    o.push(b':');
    push_pad(o, sod % 60, 2);
    let digits = PREC_DIGITS[prec];
    if digits > 0 {
        o.push(b'.');
        push_pad(o, (ns / PREC_UNIT[prec]) as u64, digits);
    }
    o.extend_from_slice(suffix.as_bytes());
}

pub(super) const HEX: &[u8; 16] = b"0123456789abcdef";

pub(super) fn push_u(o: &mut Vec<u8>, v: u64) {
    push_pad(o, v, 0);
}

pub(super) fn push_pad(o: &mut Vec<u8>, v: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let start = i.min(buf.len() - width.min(20));
    o.extend_from_slice(&buf[start..]);
}

pub(super) fn push_hex(o: &mut Vec<u8>, v: u64, digits: usize) {
    for i in (0..digits).rev() {
        o.push(HEX[((v >> (4 * i)) & 15) as usize]);
    }
}

/// A JSON string. `ascii` escapes every non-ASCII character as `\uXXXX` (as
/// Python's `json.dumps` does by default); `slash` escapes `/` as `\/` (as PHP does).
fn push_str(o: &mut Vec<u8>, s: &str, ascii: bool, slash: bool) {
    o.push(b'"');
    let plain = s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\' && !(slash && b == b'/') && !(ascii && b >= 0x80));
    if plain {
        o.extend_from_slice(s.as_bytes());
    } else {
        for c in s.chars() {
            match c {
                '"' => o.extend_from_slice(b"\\\""),
                '\\' => o.extend_from_slice(b"\\\\"),
                '/' if slash => o.extend_from_slice(b"\\/"),
                c if (c as u32) < 0x20 => {
                    o.extend_from_slice(b"\\u00");
                    push_hex(o, c as u64, 2);
                }
                c if ascii && !c.is_ascii() => {
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        o.extend_from_slice(b"\\u");
                        push_hex(o, *u as u64, 4);
                    }
                }
                c => {
                    let mut b = [0u8; 4];
                    o.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                }
            }
        }
    }
    o.push(b'"');
}

/// One JSON object being written: separators and escaping in the producer's style.
pub(super) struct J<'a> {
    pub(super) o: &'a mut Vec<u8>,
    first: bool,
    spaced: bool,
    ascii: bool,
    pub(super) slash: bool,
}

impl<'a> J<'a> {
    pub(super) fn open(o: &'a mut Vec<u8>, spaced: bool, ascii: bool, slash: bool) -> J<'a> {
        o.push(b'{');
        J { o, first: true, spaced, ascii, slash }
    }
    pub(super) fn close(self) {
        self.o.push(b'}');
    }
    fn sep(&mut self) {
        if self.spaced {
            self.o.extend_from_slice(b", ");
        } else {
            self.o.push(b',');
        }
    }
    pub(super) fn key(&mut self, k: &str) {
        if self.first {
            self.first = false;
        } else {
            self.sep();
        }
        self.o.push(b'"');
        self.o.extend_from_slice(k.as_bytes());
        self.o.extend_from_slice(if self.spaced { b"\": " } else { b"\":" });
    }
    pub(super) fn s(&mut self, k: &str, v: &str) {
        self.key(k);
        push_str(self.o, v, self.ascii, self.slash);
    }
    pub(super) fn null(&mut self, k: &str) {
        self.key(k);
        self.o.extend_from_slice(b"null");
    }
    pub(super) fn u(&mut self, k: &str, v: u64) {
        self.key(k);
        push_u(self.o, v);
    }
    pub(super) fn raw(&mut self, k: &str, v: &[u8]) {
        self.key(k);
        self.o.extend_from_slice(v);
    }
    /// `"<prefix><tag>-<n zero-padded to width><suffix>"`
    pub(super) fn id(&mut self, k: &str, prefix: &str, tag: &[u8], n: u64, width: usize, suffix: &str) {
        self.key(k);
        self.o.push(b'"');
        self.o.extend_from_slice(prefix.as_bytes());
        self.o.extend_from_slice(tag);
        self.o.push(b'-');
        push_pad(self.o, n, width);
        self.o.extend_from_slice(suffix.as_bytes());
        self.o.push(b'"');
    }
    pub(super) fn time(&mut self, k: &str, t: i64, fmt: u8) {
        self.key(k);
        self.o.push(b'"');
        push_time(self.o, t, fmt);
        self.o.push(b'"');
    }
    pub(super) fn strs(&mut self, k: &str, items: &[&str]) {
        self.key(k);
        self.o.push(b'[');
        for (i, s) in items.iter().enumerate() {
            if i > 0 {
                self.sep();
            }
            push_str(self.o, s, self.ascii, self.slash);
        }
        self.o.push(b']');
    }
    pub(super) fn classes(&mut self, k: &str, mask: u8) {
        self.key(k);
        self.o.push(b'[');
        let mut first = true;
        for (i, name) in CLASS_NAMES.iter().enumerate() {
            if mask & (1 << i) != 0 {
                if !first {
                    self.sep();
                }
                first = false;
                push_str(self.o, name, false, false);
            }
        }
        self.o.push(b']');
    }
    pub(super) fn hex(&mut self, k: &str, rng: &mut Rng, digits: usize) {
        self.key(k);
        self.o.push(b'"');
        let mut left = digits;
        while left > 0 {
            let n = left.min(16);
            push_hex(self.o, rng.next(), n);
            left -= n;
        }
        self.o.push(b'"');
    }
}
