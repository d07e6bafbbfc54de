//! Synthetic AI audit traffic: a seeded, reproducible stream of events per
//! `spec/events.md`, shaped like what AI gateways, storage layers and deploy
//! tooling really send, with injected violations of every built-in rule.
//!
//! The stream is made of *flows*: one AI call (an `ai.request`, its
//! `ai.response` after a realistic latency, sometimes stored artifacts and their
//! deletions), one `config.change`, or one event of a type the built-in rules
//! ignore. A share [`GeneratorConfig::violation_rate`] of flows carries exactly
//! one injected violation, spread evenly over the 13 rules of `spec/rules.md`
//! (a change with no actor is also unauthorized, as the spec says). Everything
//! else is compliant under [`DEMO_POLICY`], so alerts from a scan of generated
//! traffic with that policy are the injected ones.
//!
//! Pipeline inside [`Generator`]:
//! 1. flows are spawned at Poisson event times; every event of a flow is put in a
//!    heap keyed by event time (responses seconds later, deletions minutes to an
//!    hour later, so the heap stays small: about an hour of deletions);
//! 2. the heap is drained in event-time order and each event is rendered to JSON
//!    (field order, separators, `\u` escapes, UTC offsets and fraction digits vary
//!    like different producers do);
//! 3. optional disorder: a reorder buffer releases events by event time plus a
//!    random jitter of at most `max_disorder_seconds`, so no event arrives more
//!    than that behind the newest event time already delivered; duplicates (same
//!    bytes) go through the same buffer;
//! 4. optional malformed lines (per "Dead letters" in `spec/events.md`) are added
//!    between real events; they never replace one, so flows stay whole.
//!
//! Deterministic: the same config gives byte-identical output (a hand-written
//! SplitMix64, no hashing of addresses, no clocks).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// The policy that generated traffic is meant to be scanned with (`aiwatch generate --print-policy`).
pub const DEMO_POLICY: &str = include_str!("generate/demo-policy.toml");

/// What to generate. `Default` is seed 42, start 2026-11-01T00:00:00Z, 200 events/s,
/// 2 % of flows violating, in order, no duplicates, no malformed lines.
#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    pub seed: u64,
    /// Event time (UTC ns since the Unix epoch) of the first event.
    pub start_time_ns: i64,
    /// Event-time rate: mean events per second of event time.
    pub events_per_second: f64,
    /// Share of flows that carry an injected violation, e.g. 0.02.
    pub violation_rate: f64,
    /// Events arrive out of event-time order by up to this much (0 = in order).
    pub max_disorder_seconds: f64,
    /// Share of events delivered twice (same bytes).
    pub duplicate_rate: f64,
    /// Share of lines that are malformed per events.md "Dead letters".
    pub malformed_rate: f64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            seed: 42,
            start_time_ns: days_from_civil(2026, 11, 1) * DAY_NS,
            events_per_second: 200.0,
            violation_rate: 0.02,
            max_disorder_seconds: 0.0,
            duplicate_rate: 0.0,
            malformed_rate: 0.0,
        }
    }
}

// ---------------------------------------------------------------------------
// Time helpers

const SEC_NS: i64 = 1_000_000_000;
const MS_NS: i64 = 1_000_000;
const DAY_NS: i64 = 86_400 * SEC_NS;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = (y - era * 400) as u64;
    let m = m as u64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as u64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe as i64 - 719_468
}

/// (year, month, day) of a day number since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
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
const OFFSETS: [(&str, i64, u32); 9] = [
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
const PREC_WEIGHTS: [u32; 4] = [5, 45, 25, 25];
const PREC_UNIT: [i64; 4] = [SEC_NS, MS_NS, 1_000, 1];

/// Writes `t` (UTC ns) as RFC 3339 in the offset and precision of `fmt`
/// (offset index in the low 4 bits, precision index above). `t` must be a
/// multiple of the precision's unit; `stamp` makes sure of that.
fn push_time(o: &mut Vec<u8>, t: i64, fmt: u8) {
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

// ---------------------------------------------------------------------------
// Small writers (no allocation, no fmt machinery)

const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_u(o: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    o.extend_from_slice(&buf[i..]);
}

fn push_pad(o: &mut Vec<u8>, v: u64, width: usize) {
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

fn push_hex(o: &mut Vec<u8>, v: u64, digits: usize) {
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
struct J<'a> {
    o: &'a mut Vec<u8>,
    first: bool,
    spaced: bool,
    ascii: bool,
    slash: bool,
}

impl<'a> J<'a> {
    fn open(o: &'a mut Vec<u8>, spaced: bool, ascii: bool, slash: bool) -> J<'a> {
        o.push(b'{');
        J { o, first: true, spaced, ascii, slash }
    }
    fn close(self) {
        self.o.push(b'}');
    }
    fn sep(&mut self) {
        if self.spaced {
            self.o.extend_from_slice(b", ");
        } else {
            self.o.push(b',');
        }
    }
    fn key(&mut self, k: &str) {
        if self.first {
            self.first = false;
        } else {
            self.sep();
        }
        self.o.push(b'"');
        self.o.extend_from_slice(k.as_bytes());
        self.o.extend_from_slice(if self.spaced { b"\": " } else { b"\":" });
    }
    fn s(&mut self, k: &str, v: &str) {
        self.key(k);
        push_str(self.o, v, self.ascii, self.slash);
    }
    fn null(&mut self, k: &str) {
        self.key(k);
        self.o.extend_from_slice(b"null");
    }
    fn u(&mut self, k: &str, v: u64) {
        self.key(k);
        push_u(self.o, v);
    }
    fn raw(&mut self, k: &str, v: &[u8]) {
        self.key(k);
        self.o.extend_from_slice(v);
    }
    /// `"<prefix><tag>-<n zero-padded to width><suffix>"`
    fn id(&mut self, k: &str, prefix: &str, tag: &[u8], n: u64, width: usize, suffix: &str) {
        self.key(k);
        self.o.push(b'"');
        self.o.extend_from_slice(prefix.as_bytes());
        self.o.extend_from_slice(tag);
        self.o.push(b'-');
        push_pad(self.o, n, width);
        self.o.extend_from_slice(suffix.as_bytes());
        self.o.push(b'"');
    }
    fn time(&mut self, k: &str, t: i64, fmt: u8) {
        self.key(k);
        self.o.push(b'"');
        push_time(self.o, t, fmt);
        self.o.push(b'"');
    }
    fn strs(&mut self, k: &str, items: &[&str]) {
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
    fn classes(&mut self, k: &str, mask: u8) {
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
    fn hex(&mut self, k: &str, rng: &mut Rng, digits: usize) {
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

// ---------------------------------------------------------------------------
// PRNG: SplitMix64

/// A small seeded pseudo-random sequence (SplitMix64): reproducible everywhere,
/// and enough for synthetic traffic and test shuffles (not for secrets).
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn f64(&mut self) -> f64 {
        (self.next() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }
    /// Uniform in [0, n); n > 0.
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }
    /// Uniform in [lo, hi]; lo <= hi.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo) as u64 + 1) as i64
    }
    fn pick<T: Copy>(&mut self, s: &[T]) -> T {
        s[self.below(s.len() as u64) as usize]
    }
    fn weighted(&mut self, w: &[u32]) -> usize {
        let total: u32 = w.iter().sum();
        let mut x = self.below(total as u64) as u32;
        for (i, &wi) in w.iter().enumerate() {
            if x < wi {
                return i;
            }
            x -= wi;
        }
        w.len() - 1
    }
    /// Exponential with the given mean.
    fn exp(&mut self, mean: f64) -> f64 {
        -(1.0 - self.f64()).ln() * mean
    }
}

// ---------------------------------------------------------------------------
// The world: tenants, vendors, actors. Must agree with demo-policy.toml (a test checks).

const PUBLIC: u8 = 1;
const INTERNAL: u8 = 2;
const CUSTOMER_DATA: u8 = 4;
const PII: u8 = 8;
const PHI: u8 = 16;
const PCI: u8 = 32;
const SECRETS: u8 = 64;
/// "Data classes that are customer data" (rules.md).
const CUSTOMER: u8 = CUSTOMER_DATA | PII | PHI | PCI;
const CLASS_NAMES: [&str; 7] = ["public", "internal", "customer_data", "pii", "phi", "pci", "secrets"];

struct Provider {
    name: &'static str,
    /// Has a `[[vendor]]` entry in the demo policy.
    listed: bool,
    dpa: bool,
    trains: bool,
    allowed: u8,
    /// Weight in compliant traffic.
    weight: u32,
    chat: &'static [&'static str],
    embed: &'static [&'static str],
}

const P_OPENAI: u8 = 0;
const P_ANTHROPIC: u8 = 1;
const P_BEDROCK: u8 = 2;
const P_VERTEX: u8 = 3;
const P_COHERE: u8 = 4;
const P_MISTRAL: u8 = 5;
const P_FIRST_UNLISTED: u8 = 6;

const PROVIDERS: [Provider; 11] = [
    Provider {
        name: "openai",
        listed: true,
        dpa: true,
        trains: false,
        allowed: PUBLIC | INTERNAL | CUSTOMER_DATA | PII,
        weight: 40,
        chat: &["gpt-4o", "gpt-4o-mini", "gpt-4.1", "o3-mini"],
        embed: &["text-embedding-3-small", "text-embedding-3-large"],
    },
    Provider {
        name: "anthropic",
        listed: true,
        dpa: true,
        trains: false,
        allowed: PUBLIC | INTERNAL | CUSTOMER_DATA | PII | PHI,
        weight: 28,
        chat: &["claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1"],
        embed: &[],
    },
    Provider {
        name: "aws.bedrock",
        listed: true,
        dpa: true,
        trains: false,
        allowed: PUBLIC | INTERNAL | CUSTOMER_DATA | PII | PHI | PCI,
        weight: 17,
        chat: &["anthropic.claude-3-5-sonnet-20240620-v1:0", "meta.llama3-1-70b-instruct-v1:0", "amazon.nova-pro-v1:0"],
        embed: &["amazon.titan-embed-text-v2:0", "cohere.embed-english-v3"],
    },
    Provider {
        name: "gcp.vertex_ai",
        listed: true,
        dpa: true,
        trains: false,
        allowed: PUBLIC | INTERNAL | CUSTOMER_DATA | PII,
        weight: 8,
        chat: &["gemini-2.5-flash", "gemini-2.5-pro"],
        embed: &["text-embedding-005"],
    },
    Provider {
        name: "cohere",
        listed: true,
        dpa: true,
        trains: true,
        allowed: PUBLIC | INTERNAL | CUSTOMER_DATA,
        weight: 7,
        chat: &["command-r-plus", "command-a-03-2025"],
        embed: &["embed-english-v3.0", "embed-multilingual-v3.0"],
    },
    Provider {
        name: "mistral_ai",
        listed: true,
        dpa: false,
        trains: false,
        allowed: PUBLIC | INTERNAL,
        weight: 0,
        chat: &["mistral-large-latest", "mistral-small-latest"],
        embed: &["mistral-embed"],
    },
    Provider { name: "azure.ai.openai", listed: false, dpa: false, trains: false, allowed: 0, weight: 0, chat: &["gpt-4o"], embed: &["text-embedding-3-small"] },
    Provider { name: "deepseek", listed: false, dpa: false, trains: false, allowed: 0, weight: 0, chat: &["deepseek-chat", "deepseek-reasoner"], embed: &[] },
    Provider {
        name: "together_ai",
        listed: false,
        dpa: false,
        trains: false,
        allowed: 0,
        weight: 0,
        chat: &["meta-llama/Llama-3.3-70B-Instruct-Turbo"],
        embed: &["BAAI/bge-large-en-v1.5"],
    },
    Provider { name: "groq", listed: false, dpa: false, trains: false, allowed: 0, weight: 0, chat: &["llama-3.3-70b-versatile"], embed: &[] },
    Provider { name: "x_ai", listed: false, dpa: false, trains: false, allowed: 0, weight: 0, chat: &["grok-3"], embed: &[] },
];

const REGIONS: [&str; 9] = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-northeast-1", "sa-east-1", "ap-south-1", "ca-central-1", "eu-north-1"];

/// Artifact kinds, in this order everywhere.
const KINDS: [&str; 5] = ["prompt", "output", "embedding", "transcript", "log"];
const K_PROMPT: u8 = 0;
const K_OUTPUT: u8 = 1;
const K_EMBEDDING: u8 = 2;
const K_TRANSCRIPT: u8 = 3;
const K_LOG: u8 = 4;

struct Tenant {
    id: &'static str,
    /// Indexes into REGIONS; the first is the home region.
    regions: &'static [u8],
    /// Days per kind (KINDS order), the policy's tenant entry merged over the defaults.
    retention: [Option<u32>; 5],
    /// Data classes this tenant's prompts carry.
    profile: u8,
    weight: u32,
}

const DEFAULT_REGIONS: &[u8] = &[0, 1];
const DEFAULT_RETENTION: [Option<u32>; 5] = [Some(0), Some(1), None, Some(1), Some(1)];
const BASE_PROFILE: u8 = PUBLIC | INTERNAL | CUSTOMER_DATA | PII;

const TENANTS: [Tenant; 11] = [
    Tenant { id: "acme", regions: DEFAULT_REGIONS, retention: DEFAULT_RETENTION, profile: BASE_PROFILE, weight: 20 },
    Tenant { id: "globex", regions: &[2, 3], retention: [Some(0), Some(1), Some(30), Some(1), Some(1)], profile: BASE_PROFILE, weight: 12 },
    Tenant { id: "müller-gmbh", regions: &[3], retention: [Some(0), Some(1), None, Some(0), Some(1)], profile: BASE_PROFILE, weight: 8 },
    Tenant { id: "東京-ai", regions: &[4, 1], retention: DEFAULT_RETENTION, profile: BASE_PROFILE, weight: 8 },
    Tenant { id: "initech", regions: DEFAULT_REGIONS, retention: DEFAULT_RETENTION, profile: BASE_PROFILE | PCI, weight: 10 },
    Tenant { id: "umbrella", regions: DEFAULT_REGIONS, retention: DEFAULT_RETENTION, profile: BASE_PROFILE, weight: 8 },
    Tenant { id: "Acme-Labs", regions: DEFAULT_REGIONS, retention: DEFAULT_RETENTION, profile: BASE_PROFILE, weight: 5 },
    Tenant { id: "northwind-health", regions: DEFAULT_REGIONS, retention: DEFAULT_RETENTION, profile: BASE_PROFILE | PHI, weight: 8 },
    Tenant { id: "são-paulo-saúde", regions: &[5, 0], retention: DEFAULT_RETENTION, profile: BASE_PROFILE | PHI, weight: 5 },
    Tenant { id: "hooli", regions: DEFAULT_REGIONS, retention: DEFAULT_RETENTION, profile: BASE_PROFILE, weight: 10 },
    Tenant { id: "stark-industries", regions: DEFAULT_REGIONS, retention: DEFAULT_RETENTION, profile: BASE_PROFILE, weight: 6 },
];
const T_MULLER: u8 = 2;

/// Principals that call models. Services first.
const ACTORS: [&str; 14] = [
    "svc:support-bot",
    "svc:summarizer",
    "svc:code-assist",
    "svc:translator",
    "svc:rag-indexer",
    "svc:search-api",
    "user:alice",
    "user:bob",
    "user:dana",
    "user:eve",
    "user:jürgen",
    "user:さくら",
    "user:oğuz",
    "user:priya",
];
const ACTOR_WEIGHTS: [u32; 14] = [30, 18, 12, 6, 2, 2, 4, 4, 4, 4, 4, 4, 3, 3];
const A_RAG_INDEXER: u8 = 4;
const A_SEARCH_API: u8 = 5;
/// Actor codes for a missing actor: field absent, `null`, or `""`.
const ACTOR_ABSENT: u8 = 250;
const ACTOR_NULL: u8 = 251;
const ACTOR_EMPTY: u8 = 252;

const RTYPES: [&str; 8] = ["prompt_template", "model", "parameter", "api_key", "vendor_endpoint", "safety_setting", "retention_setting", "access_policy"];
const RESOURCES: [&[&str]; 8] = [
    &["prompt_template/support-bot", "prompt_template/summarizer", "prompt_template/code-review"],
    &["model/support-bot", "model/summarizer", "model/embeddings"],
    &["parameter/support-bot.temperature", "parameter/summarizer.max_tokens", "parameter/rag.top_k"],
    &["api_key/openai-prod", "api_key/anthropic-prod", "api_key/bedrock-prod"],
    &["vendor_endpoint/bedrock-us-east-1", "vendor_endpoint/vertex-europe-west4", "vendor_endpoint/openai-eu"],
    &["safety_setting/pii-redaction", "safety_setting/jailbreak-filter", "safety_setting/output-moderation"],
    &["retention_setting/transcripts", "retention_setting/prompt-logs"],
    &["access_policy/rag-index", "access_policy/admin-console"],
];
const ENV_PRODUCTION: u8 = 0;
const ENV_STAGING: u8 = 1;
const ENVS: [&str; 2] = ["production", "staging"];

/// People and services that make config changes; the first four have authorizations.
const CHANGE_ACTORS: [&str; 8] = ["user:alice", "user:bob", "svc:deployer", "user:carol", "user:dana", "user:mallory", "svc:ci-runner", "user:eve"];
/// (actor index in CHANGE_ACTORS, resource types, environments): the policy's [[change_authorization]].
const AUTH: [(u8, &[u8], &[u8]); 4] = [
    (0, &[0, 1, 2], &[ENV_PRODUCTION, ENV_STAGING]),
    (1, &[0], &[ENV_STAGING]),
    (2, &[1, 2, 4, 5, 3], &[ENV_PRODUCTION, ENV_STAGING]),
    (3, &[3, 7, 6], &[ENV_PRODUCTION]),
];
const REVIEWERS: [&str; 5] = ["user:carol", "user:dave", "user:erin", "user:frank", "user:alice"];

fn authorized(actor: u8, rtype: u8, env: u8) -> bool {
    AUTH.iter().any(|(a, types, envs)| *a == actor && types.contains(&rtype) && envs.contains(&env))
}

const WORDS: [&str; 16] = [
    "florp", "zindle", "quaxor", "mirtle", "bronvik", "yestal", "parmidge", "oobleck", "snorvel", "tindra", "gwomp", "velliq", "drusk", "plimmet", "harvox",
    "ozzle",
];
const CANARY: &str = "CANARY-PROMPT-TEXT-7f3a9c";

// ---------------------------------------------------------------------------
// Injected violations, one per rule of rules.md

const V_UNAPPROVED: u8 = 0;
const V_TRAINS: u8 = 1;
const V_DATA_CLASS: u8 = 2;
const V_REGION: u8 = 3;
const V_XCONTEXT: u8 = 4;
const V_XRESPONSE: u8 = 5;
const V_XCONVERSATION: u8 = 6;
const V_STORAGE_REGION: u8 = 7;
const V_EXPIRED: u8 = 8;
const V_UNAUTHORIZED: u8 = 9;
const V_UNREVIEWED: u8 = 10;
const V_MISSING_RESPONSE: u8 = 11;
const V_MISSING_ACTOR: u8 = 12;
const V_COUNT: u64 = 13;
const V_NONE: u8 = 255;

// ---------------------------------------------------------------------------
// Scheduled events

const OP_CHAT: u8 = 0;
const OP_TEXT: u8 = 1;
const OP_EMBED: u8 = 2;
const OPS: [&str; 3] = ["chat", "text_completion", "embeddings"];

#[derive(Debug, Clone, Copy)]
struct Req {
    n: u64,
    conv_n: u64,
    conv_hex: u32,
    tokens: u32,
    tenant: u8,
    actor: u8,
    provider: u8,
    model: u8,
    op: u8,
    /// REGIONS index, 255 = absent.
    region: u8,
    classes: u8,
    /// 0 absent, 1 null, 2 [], 3 [own], 4 [own, other], 5 [other]
    ctx: u8,
    ctx_other: u8,
    /// 0 absent, 1 null, 2 present
    conv: u8,
}

#[derive(Debug, Clone, Copy)]
struct Resp {
    n: u64,
    latency_us: u64,
    out_tokens: u32,
    tenant: u8,
    provider: u8,
    model: u8,
    op: u8,
    error: bool,
}

#[derive(Debug, Clone, Copy)]
struct Change {
    no: u32,
    actor: u8,
    rtype: u8,
    resource: u8,
    /// 0 absent (= production), 1 "production", 2 "staging"
    env: u8,
    /// 0 absent, 1 "", 2 same as the actor, 3+k REVIEWERS[k]
    approved: u8,
    /// 255 = none
    tenant: u8,
}

#[derive(Debug, Clone, Copy)]
enum Payload {
    Request(Req),
    Response(Resp),
    Stored { n: u64, tenant: u8, kind: u8, region: u8, classes: u8 },
    /// `paired`: a zero-retention deletion at the very time of its `artifact.stored`, which
    /// directly follows it in the stream (see `store`).
    Deleted { n: u64, tenant: u8, kind: u8, paired: bool },
    Change(Change),
    /// access.review / ai.feedback / ai.guardrail.triggered; `req` u64::MAX = none.
    Other { kind: u8, tenant: u8, actor: u8, req: u64 },
}

#[derive(Debug)]
struct Sched {
    time: i64,
    seq: u64,
    fmt: u8,
    p: Payload,
}

// BinaryHeap is a max-heap: order reversed so the earliest (time, seq) is on top.
impl Ord for Sched {
    fn cmp(&self, o: &Self) -> Ordering {
        o.time.cmp(&self.time).then(o.seq.cmp(&self.seq))
    }
}
impl PartialOrd for Sched {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl PartialEq for Sched {
    fn eq(&self, o: &Self) -> bool {
        self.time == o.time && self.seq == o.seq
    }
}
impl Eq for Sched {}

/// A rendered event waiting in the reorder buffer.
struct Arrival {
    key: i64,
    seq: u64,
    time: i64,
    slot: u32,
}
impl Ord for Arrival {
    fn cmp(&self, o: &Self) -> Ordering {
        o.key.cmp(&self.key).then(o.seq.cmp(&self.seq))
    }
}
impl PartialOrd for Arrival {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl PartialEq for Arrival {
    fn eq(&self, o: &Self) -> bool {
        self.key == o.key && self.seq == o.seq
    }
}
impl Eq for Arrival {}

/// One conversation slot of a tenant.
#[derive(Debug, Clone, Copy, Default)]
struct Conv {
    hex: u32,
    n: u64,
    turns_left: u8,
    actor: u8,
    provider: u8,
}
const CONV_SLOTS: usize = 24;

/// Deletion plan for a stored artifact.
#[derive(Clone, Copy, PartialEq)]
enum Deletion {
    /// In time for the tenant's retention (or sometimes never, when the kind has no deadline).
    Compliant,
    Never,
    Late,
}

// ---------------------------------------------------------------------------

/// The synthetic event source. See the module docs.
pub struct Generator {
    cfg: GeneratorConfig,
    rng: Rng,
    /// Six hex digits from the seed, in every id, so files from different seeds do not collide.
    tag: [u8; 6],
    heap: BinaryHeap<Sched>,
    seq: u64,
    next_flow: i64,
    flows: u64,
    scheduled: u64,
    events: u64,
    requests: u64,
    convs_started: u64,
    changes: u32,
    convs: Vec<[Conv; CONV_SLOTS]>,
    /// Per tenant: (conversation hex, n, event time) of its latest conversation turn.
    last_conv: Vec<Option<(u32, u64, i64)>>,
    last_req: Vec<u64>,
    // Output stage.
    disorder_ns: i64,
    last_time: i64,
    dup_pending: Option<i64>,
    dup_buf: Vec<u8>,
    buffer: BinaryHeap<Arrival>,
    slab: Vec<Vec<u8>>,
    free: Vec<u32>,
    fed_max: i64,
    arrivals: u64,
    pair_jitter: Option<i64>,
}

const WARM_UP_EVENTS: f64 = 400_000.0;

fn clamp01(x: f64) -> f64 {
    if x.is_finite() {
        x.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

impl Generator {
    pub fn new(config: GeneratorConfig) -> Generator {
        let mut cfg = config;
        cfg.violation_rate = clamp01(cfg.violation_rate);
        cfg.duplicate_rate = clamp01(cfg.duplicate_rate);
        // A line is malformed with this probability; 1.0 would never yield an event.
        cfg.malformed_rate = clamp01(cfg.malformed_rate).min(0.999);
        if !(cfg.events_per_second.is_finite() && cfg.events_per_second > 0.0) {
            cfg.events_per_second = GeneratorConfig::default().events_per_second;
        }
        if !(cfg.max_disorder_seconds.is_finite() && cfg.max_disorder_seconds > 0.0) {
            cfg.max_disorder_seconds = 0.0;
        }
        let disorder_ns = (cfg.max_disorder_seconds.min(1e6) * SEC_NS as f64) as i64;
        let mut rng = Rng(cfg.seed ^ 0x6169_7761_7463_6821);
        let t = rng.next();
        let mut tag = [0u8; 6];
        for (i, b) in tag.iter_mut().enumerate() {
            *b = HEX[((t >> (4 * i)) & 15) as usize];
        }
        let start = cfg.start_time_ns;
        // Deletions come up to an hour after their flow: start spawning flows up to an hour
        // early (at most ~400k events' worth) so the rate holds from the first second.
        let warm_up = (WARM_UP_EVENTS / cfg.events_per_second).min(3600.0);
        let first_flow = start.saturating_sub((warm_up * SEC_NS as f64) as i64);
        Generator {
            cfg,
            rng,
            tag,
            heap: BinaryHeap::new(),
            seq: 0,
            next_flow: first_flow,
            flows: 0,
            scheduled: 0,
            events: 0,
            requests: 0,
            convs_started: 0,
            changes: 0,
            convs: vec![[Conv::default(); CONV_SLOTS]; TENANTS.len()],
            last_conv: vec![None; TENANTS.len()],
            last_req: vec![u64::MAX; TENANTS.len()],
            disorder_ns,
            last_time: start,
            dup_pending: None,
            dup_buf: Vec::new(),
            buffer: BinaryHeap::new(),
            slab: Vec::new(),
            free: Vec::new(),
            fed_max: i64::MIN,
            arrivals: 0,
            pair_jitter: None,
        }
    }

    /// Appends the next record (one JSON object, no newline) to `out`; returns its event time in ns
    /// (for a malformed line, the time it would have had).
    pub fn next_into(&mut self, out: &mut Vec<u8>) -> i64 {
        if self.cfg.malformed_rate > 0.0 && self.rng.chance(self.cfg.malformed_rate) {
            let t = self.last_time;
            self.render_malformed(t, out);
            return t;
        }
        if self.disorder_ns == 0 {
            if let Some(t) = self.dup_pending.take() {
                out.extend_from_slice(&self.dup_buf);
                return t;
            }
            let ev = self.next_ordered();
            let start = out.len();
            self.render(&ev, out);
            if self.cfg.duplicate_rate > 0.0 && self.rng.chance(self.cfg.duplicate_rate) {
                self.dup_buf.clear();
                self.dup_buf.extend_from_slice(&out[start..]);
                self.dup_pending = Some(ev.time);
            }
            self.last_time = ev.time;
            return ev.time;
        }
        loop {
            if let Some(top) = self.buffer.peek() {
                if top.key <= self.fed_max {
                    let a = self.buffer.pop().expect("peeked");
                    out.extend_from_slice(&self.slab[a.slot as usize]);
                    self.free.push(a.slot);
                    self.last_time = a.time;
                    return a.time;
                }
            }
            self.feed();
        }
    }

    /// Moves the next event in event-time order into the reorder buffer (twice when duplicated).
    fn feed(&mut self) {
        let ev = self.next_ordered();
        let slot = self.take_slot();
        let mut bytes = std::mem::take(&mut self.slab[slot as usize]);
        bytes.clear();
        self.render(&ev, &mut bytes);
        let dup = self.cfg.duplicate_rate > 0.0 && self.rng.chance(self.cfg.duplicate_rate);
        if dup {
            let slot2 = self.take_slot();
            let copy = &mut self.slab[slot2 as usize];
            copy.clear();
            copy.extend_from_slice(&bytes);
            let j = self.jitter();
            self.push_arrival(ev.time, j, slot2);
        }
        self.slab[slot as usize] = bytes;
        // A paired deletion and its store (the next event) share one arrival key, deletion first.
        let j = match self.pair_jitter.take() {
            Some(j) => j,
            None => self.jitter(),
        };
        if matches!(ev.p, Payload::Deleted { paired: true, .. }) {
            self.pair_jitter = Some(j);
        }
        self.push_arrival(ev.time, j, slot);
        self.fed_max = self.fed_max.max(ev.time);
    }

    fn take_slot(&mut self) -> u32 {
        match self.free.pop() {
            Some(s) => s,
            None => {
                self.slab.push(Vec::with_capacity(512));
                (self.slab.len() - 1) as u32
            }
        }
    }

    /// Arrival key = event time + jitter in [0, max disorder]: mostly small, sometimes the whole bound.
    /// Released once the newest fed event time reaches the key, so an event never arrives after one
    /// whose event time is more than the bound ahead of its own.
    fn jitter(&mut self) -> i64 {
        let d = self.disorder_ns;
        if self.rng.chance(0.85) {
            self.rng.range(0, d.min(200 * MS_NS))
        } else {
            self.rng.range(0, d)
        }
    }

    fn push_arrival(&mut self, time: i64, jitter: i64, slot: u32) {
        self.arrivals += 1;
        self.buffer.push(Arrival { key: time + jitter, seq: self.arrivals, time, slot });
    }

    /// The next event in event-time order at or after the start time.
    fn next_ordered(&mut self) -> Sched {
        loop {
            let ev = self.next_scheduled();
            // Events of the warm-up (flows spawned before the start, so that the stream is a
            // slice of steady traffic): dropped, except for their effect on what follows.
            if ev.time >= self.cfg.start_time_ns {
                return ev;
            }
        }
    }

    /// The next event in event-time order, spawning flows as needed.
    fn next_scheduled(&mut self) -> Sched {
        loop {
            if let Some(top) = self.heap.peek() {
                if top.time <= self.next_flow {
                    return self.heap.pop().expect("peeked");
                }
            }
            let t = self.next_flow;
            self.spawn(t);
            // Flows come as a Poisson process; its rate follows the observed events per flow
            // so that events per second of event time matches the configuration.
            let per_flow = (self.scheduled as f64 + 160.0) / (self.flows as f64 + 64.0);
            let mean_gap = SEC_NS as f64 * per_flow / self.cfg.events_per_second;
            let gap = self.rng.exp(mean_gap).clamp(1.0, 1e15) as i64;
            self.next_flow = t + gap;
        }
    }

    // ---- time stamps ------------------------------------------------------

    fn pick_fmt(&mut self) -> (u8, usize) {
        const OW: [u32; 9] = [OFFSETS[0].2, OFFSETS[1].2, OFFSETS[2].2, OFFSETS[3].2, OFFSETS[4].2, OFFSETS[5].2, OFFSETS[6].2, OFFSETS[7].2, OFFSETS[8].2];
        let off = self.rng.weighted(&OW) as u8;
        let prec = self.rng.weighted(&PREC_WEIGHTS);
        (off, prec)
    }

    /// A time at or after `t`, representable in the chosen format.
    fn stamp(&mut self, t: i64) -> (i64, u8) {
        let (off, prec) = self.pick_fmt();
        let unit = PREC_UNIT[prec];
        let q = t.div_euclid(unit) * unit;
        let q = if q < t { q + unit } else { q };
        (q, off | (prec as u8) << 4)
    }

    /// Exactly `t`, in a format that can show it.
    fn stamp_exact(&mut self, t: i64) -> (i64, u8) {
        let (off, mut prec) = self.pick_fmt();
        while t.rem_euclid(PREC_UNIT[prec]) != 0 {
            prec += 1;
        }
        (t, off | (prec as u8) << 4)
    }

    fn push(&mut self, (time, fmt): (i64, u8), p: Payload) {
        self.seq += 1;
        self.scheduled += 1;
        self.heap.push(Sched { time, seq: self.seq, fmt, p });
    }

    // ---- flows ------------------------------------------------------------

    fn spawn(&mut self, t: i64) {
        self.flows += 1;
        let v = if self.cfg.violation_rate > 0.0 && self.rng.chance(self.cfg.violation_rate) { self.rng.below(V_COUNT) as u8 } else { V_NONE };
        match v {
            V_UNAUTHORIZED | V_UNREVIEWED => self.spawn_change(t, v),
            V_MISSING_ACTOR if self.rng.chance(0.15) => self.spawn_change(t, v),
            V_NONE => {
                let r = self.rng.f64();
                if r < 0.004 {
                    self.spawn_change(t, V_NONE)
                } else if r < 0.012 {
                    self.spawn_other(t)
                } else {
                    self.spawn_ai(t, V_NONE)
                }
            }
            v => self.spawn_ai(t, v),
        }
    }

    fn pick_tenant(&mut self) -> u8 {
        const W: [u32; 11] = [
            TENANTS[0].weight,
            TENANTS[1].weight,
            TENANTS[2].weight,
            TENANTS[3].weight,
            TENANTS[4].weight,
            TENANTS[5].weight,
            TENANTS[6].weight,
            TENANTS[7].weight,
            TENANTS[8].weight,
            TENANTS[9].weight,
            TENANTS[10].weight,
        ];
        self.rng.weighted(&W) as u8
    }

    fn other_tenant(&mut self, t: u8) -> u8 {
        let o = self.rng.below(TENANTS.len() as u64 - 1) as u8;
        if o >= t {
            o + 1
        } else {
            o
        }
    }

    fn pick_provider(&mut self, op: u8) -> u8 {
        let mut w = [0u32; 5];
        for (i, wi) in w.iter_mut().enumerate() {
            let p = &PROVIDERS[i];
            // Compliant traffic only goes to approved vendors.
            *wi = if (op == OP_EMBED && p.embed.is_empty()) || !(p.listed && p.dpa) { 0 } else { p.weight };
        }
        self.rng.weighted(&w) as u8
    }

    fn pick_model(&mut self, provider: u8, op: u8) -> u8 {
        let p = &PROVIDERS[provider as usize];
        let list = if op == OP_EMBED { p.embed } else { p.chat };
        // The first model of each list is the most used.
        if self.rng.chance(0.5) {
            0
        } else {
            self.rng.below(list.len() as u64) as u8
        }
    }

    /// 0 to 3 distinct classes out of `mask`.
    fn pick_classes(&mut self, mask: u8) -> u8 {
        let k = self.rng.weighted(&[35, 35, 20, 10]);
        let mut c = 0u8;
        for _ in 0..k {
            let left = mask & !c;
            if left == 0 {
                break;
            }
            let nth = self.rng.below(left.count_ones() as u64) as u32;
            let mut seen = 0;
            for b in 0..8 {
                if left & (1 << b) != 0 {
                    if seen == nth {
                        c |= 1 << b;
                        break;
                    }
                    seen += 1;
                }
            }
        }
        c
    }

    fn allowed_region(&mut self, tenant: u8) -> u8 {
        let regions = TENANTS[tenant as usize].regions;
        if regions.len() == 1 || self.rng.chance(0.7) {
            regions[0]
        } else {
            self.rng.pick(regions)
        }
    }

    fn foreign_region(&mut self, tenant: u8) -> u8 {
        let regions = TENANTS[tenant as usize].regions;
        loop {
            let r = self.rng.below(REGIONS.len() as u64) as u8;
            if !regions.contains(&r) {
                return r;
            }
        }
    }

    fn missing_actor(&mut self) -> u8 {
        self.rng.pick(&[ACTOR_ABSENT, ACTOR_ABSENT, ACTOR_NULL, ACTOR_EMPTY])
    }

    /// One AI call: request, response, maybe artifacts and their deletions.
    fn spawn_ai(&mut self, t: i64, mut v: u8) {
        let tenant = self.pick_tenant();
        let ti = tenant as usize;
        let mut op = match self.rng.weighted(&[68, 8, 24]) {
            0 => OP_CHAT,
            1 => OP_TEXT,
            _ => OP_EMBED,
        };

        // Conversation: chats mostly belong to one; turns reuse the id, actor and provider.
        let mut conv = 0u8;
        let mut conv_hex = 0u32;
        let mut conv_n = 0u64;
        let mut slot_actor = None;
        let mut slot_provider = None;
        if v == V_XCONVERSATION {
            // Reuse a conversation another tenant used within the last 23 hours.
            let start = self.rng.below(TENANTS.len() as u64) as usize;
            let found = (0..TENANTS.len()).map(|i| (start + i) % TENANTS.len()).find(|&o| {
                // Used since the start (so the use is in the output), within the last 23 hours.
                o != ti && matches!(self.last_conv[o], Some((_, _, when)) if when >= self.cfg.start_time_ns && t - when <= 23 * 3600 * SEC_NS)
            });
            match found {
                Some(o) => {
                    let (h, n, _) = self.last_conv[o].expect("found");
                    op = OP_CHAT;
                    conv = 2;
                    conv_hex = h;
                    conv_n = n;
                }
                None => v = V_NONE,
            }
        } else if op == OP_CHAT && self.rng.chance(0.85) {
            let s = self.rng.below(CONV_SLOTS as u64) as usize;
            let slot = self.convs[ti][s];
            let slot = if slot.turns_left > 0 {
                slot_actor = Some(slot.actor);
                slot_provider = Some(slot.provider);
                Conv { turns_left: slot.turns_left - 1, ..slot }
            } else {
                self.convs_started += 1;
                let actor = self.rng.weighted(&ACTOR_WEIGHTS[..4]) as u8;
                let actor = if self.rng.chance(0.4) { 6 + self.rng.below(8) as u8 } else { actor };
                let provider = self.pick_provider(OP_CHAT);
                slot_actor = Some(actor);
                slot_provider = Some(provider);
                Conv { hex: self.rng.next() as u32, n: self.convs_started, turns_left: self.rng.range(1, 9) as u8, actor, provider }
            };
            self.convs[ti][s] = slot;
            self.last_conv[ti] = Some((slot.hex, slot.n, t));
            conv = 2;
            conv_hex = slot.hex;
            conv_n = slot.n;
        } else if op != OP_EMBED && self.rng.chance(0.3) {
            conv = 1;
        }

        // Provider, and the data it may see.
        let profile = TENANTS[ti].profile;
        let (provider, classes) = match v {
            V_UNAPPROVED => {
                if self.rng.chance(0.25) {
                    let c = self.pick_classes(PUBLIC | INTERNAL);
                    (P_MISTRAL, c)
                } else {
                    let p = P_FIRST_UNLISTED + self.rng.below(PROVIDERS.len() as u64 - P_FIRST_UNLISTED as u64) as u8;
                    let c = self.pick_classes(profile);
                    (p, c)
                }
            }
            V_TRAINS => {
                let c = self.pick_classes(PUBLIC | INTERNAL);
                (P_COHERE, c | CUSTOMER_DATA)
            }
            V_DATA_CLASS => {
                let p = self.rng.pick(&[P_OPENAI, P_OPENAI, P_ANTHROPIC, P_BEDROCK, P_VERTEX]);
                let allowed = PROVIDERS[p as usize].allowed;
                let c = self.pick_classes(allowed & profile);
                let extra = self.pick_classes_exactly_one(!allowed & (PHI | PCI | SECRETS));
                (p, c | extra)
            }
            _ => {
                let p = match slot_provider {
                    Some(p) => p,
                    None => self.pick_provider(op),
                };
                let pr = &PROVIDERS[p as usize];
                let mask = if pr.trains { pr.allowed & profile & !CUSTOMER } else { pr.allowed & profile };
                let c = self.pick_classes(mask);
                (p, c)
            }
        };
        if op == OP_EMBED && PROVIDERS[provider as usize].embed.is_empty() {
            op = OP_TEXT;
        }
        let model = self.pick_model(provider, op);

        let actor = if v == V_MISSING_ACTOR {
            self.missing_actor()
        } else if let Some(a) = slot_actor {
            a
        } else if op == OP_EMBED {
            if self.rng.chance(0.8) {
                A_RAG_INDEXER
            } else {
                A_SEARCH_API
            }
        } else {
            self.rng.weighted(&ACTOR_WEIGHTS) as u8
        };

        let region = if v == V_REGION {
            self.foreign_region(tenant)
        } else if self.rng.chance(0.9) {
            self.allowed_region(tenant)
        } else {
            255
        };

        let (ctx, ctx_other) = if v == V_XCONTEXT {
            let o = self.other_tenant(tenant);
            (if self.rng.chance(0.6) { 4 } else { 5 }, o)
        } else {
            (self.rng.pick(&[0, 0, 0, 0, 0, 1, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3]), tenant)
        };

        let tokens = if op == OP_EMBED { 16 + self.rng.exp(400.0).min(8000.0) as u32 } else { 30 + self.rng.exp(1500.0).min(100_000.0) as u32 };

        self.requests += 1;
        let n = self.requests;
        self.last_req[ti] = n;
        let req = Req { n, conv_n, conv_hex, tokens, tenant, actor, provider, model, op, region, classes, ctx, ctx_other, conv };
        let (t_req, fmt) = self.stamp(t);
        self.push((t_req, fmt), Payload::Request(req));

        // The response after a realistic latency (always well under the 300 s timeout).
        let (latency_ns, out_tokens) = if op == OP_EMBED {
            (((30.0 + self.rng.exp(120.0)).min(5_000.0) * MS_NS as f64) as i64, 0)
        } else {
            let out = 20 + self.rng.exp(400.0).min(4_000.0) as u32;
            let per_token = 8.0 + self.rng.f64() * 22.0;
            let mut ms = 250.0 + out as f64 * per_token + self.rng.exp(300.0);
            if self.rng.chance(0.005) {
                ms += 30_000.0 + self.rng.f64() * 170_000.0;
            }
            ((ms.min(250_000.0) * MS_NS as f64) as i64, out)
        };
        let error = self.rng.chance(0.02);
        let resp_time = match v {
            V_MISSING_RESPONSE if self.rng.chance(0.7) => None,
            // Late: after the deadline, so it does not count.
            V_MISSING_RESPONSE => Some(t_req + 300 * SEC_NS + self.rng.range(SEC_NS, 120 * SEC_NS)),
            _ => Some(t_req + latency_ns),
        };
        if let Some(rt) = resp_time {
            let stamped = self.stamp(rt);
            let to = if v == V_XRESPONSE { self.other_tenant(tenant) } else { tenant };
            let resp = Resp {
                n,
                latency_us: ((stamped.0 - t_req) / 1_000) as u64,
                out_tokens,
                tenant: to,
                provider,
                model,
                op,
                error,
            };
            self.push(stamped, Payload::Response(resp));
        }

        // Stored artifacts.
        let t_done = t_req + latency_ns;
        let mut stored = 0u8;
        if v == V_STORAGE_REGION {
            let kind = if op == OP_EMBED { K_EMBEDDING } else if self.rng.chance(0.6) { K_OUTPUT } else { K_LOG };
            let region = self.foreign_region(tenant);
            let at = t_done + self.rng.range(5 * MS_NS, 800 * MS_NS);
            self.store(n, tenant, kind, region, classes, at, Deletion::Compliant);
            stored |= 1 << kind;
        }
        if v == V_EXPIRED {
            // Kinds with zero retention: prompts everywhere, transcripts at müller-gmbh.
            let kind = if tenant == T_MULLER && op == OP_CHAT && self.rng.chance(0.5) { K_TRANSCRIPT } else { K_PROMPT };
            let at = if kind == K_PROMPT { t_req + self.rng.range(MS_NS, 50 * MS_NS) } else { t_done + self.rng.range(SEC_NS, 10 * SEC_NS) };
            let how = if self.rng.chance(0.6) { Deletion::Never } else { Deletion::Late };
            let region = self.allowed_region(tenant);
            self.store(n, tenant, kind, region, classes, at, how);
            stored |= 1 << kind;
        }
        let want = |g: &mut Generator, kind: u8, p: f64| stored & (1 << kind) == 0 && g.rng.chance(p);
        if op == OP_EMBED {
            if want(self, K_EMBEDDING, 0.7) {
                let region = self.allowed_region(tenant);
                let at = t_done + self.rng.range(10 * MS_NS, 200 * MS_NS);
                self.store(n, tenant, K_EMBEDDING, region, classes, at, Deletion::Compliant);
            }
        } else {
            if want(self, K_OUTPUT, 0.3) {
                let region = self.allowed_region(tenant);
                let at = t_done + self.rng.range(5 * MS_NS, 800 * MS_NS);
                self.store(n, tenant, K_OUTPUT, region, classes, at, Deletion::Compliant);
            }
            if want(self, K_LOG, 0.2) {
                let region = self.allowed_region(tenant);
                let at = t_done + self.rng.range(500 * MS_NS, 5 * SEC_NS);
                self.store(n, tenant, K_LOG, region, classes, at, Deletion::Compliant);
            }
            if conv == 2 && want(self, K_TRANSCRIPT, 0.12) {
                let region = self.allowed_region(tenant);
                let at = t_done + self.rng.range(SEC_NS, 10 * SEC_NS);
                self.store(n, tenant, K_TRANSCRIPT, region, classes, at, Deletion::Compliant);
            }
            if want(self, K_PROMPT, 0.03) {
                let region = self.allowed_region(tenant);
                let at = t_req + self.rng.range(MS_NS, 50 * MS_NS);
                self.store(n, tenant, K_PROMPT, region, classes, at, Deletion::Compliant);
            }
        }
    }

    fn pick_classes_exactly_one(&mut self, mask: u8) -> u8 {
        debug_assert!(mask != 0);
        loop {
            let b = 1u8 << self.rng.below(7);
            if mask & b != 0 {
                return b;
            }
        }
    }

    /// Schedules an `artifact.stored` at `at` and its `artifact.deleted` per `how`.
    fn store(&mut self, n: u64, tenant: u8, kind: u8, region: u8, classes: u8, at: i64, how: Deletion) {
        let stamped = self.stamp(at);
        let t_store = stamped.0;
        let days = TENANTS[tenant as usize].retention[kind as usize];
        let deleted = match (how, days) {
            // Zero retention: deleted the moment it is stored (the deadline is inclusive).
            (Deletion::Compliant, Some(0)) => Some(self.stamp_exact(t_store)),
            (Deletion::Compliant, Some(d)) => {
                let latest = (d as i64 * DAY_NS).min(3600 * SEC_NS) - SEC_NS;
                // Retention jobs run often: mostly within minutes, at most an hour.
                let at = t_store + (60 * SEC_NS + self.rng.exp(600.0 * SEC_NS as f64) as i64).min(latest);
                Some(self.stamp(at))
            }
            (Deletion::Compliant, None) => {
                if self.rng.chance(0.3) {
                    let at = t_store + (600 * SEC_NS + self.rng.exp(900.0 * SEC_NS as f64) as i64).min(3600 * SEC_NS);
                    Some(self.stamp(at))
                } else {
                    None
                }
            }
            (Deletion::Never, _) => None,
            (Deletion::Late, d) => {
                let deadline = t_store + d.unwrap_or(0) as i64 * DAY_NS;
                let at = deadline + self.rng.range(60 * SEC_NS, 1800 * SEC_NS);
                Some(self.stamp(at))
            }
        };
        // A zero-retention deletion carries the same event time as the store; it goes first
        // (either order is valid) and the two travel together through the reorder buffer, so a
        // stream cut after N lines never ends between them with the deletion missing.
        let paired = matches!(deleted, Some((t, _)) if t == t_store);
        if paired {
            self.push(deleted.expect("paired"), Payload::Deleted { n, tenant, kind, paired });
        }
        self.push(stamped, Payload::Stored { n, tenant, kind, region, classes });
        if let (Some(s), false) = (deleted, paired) {
            self.push(s, Payload::Deleted { n, tenant, kind, paired });
        }
    }

    fn reviewer_other_than(&mut self, actor: &str) -> u8 {
        loop {
            let r = self.rng.below(REVIEWERS.len() as u64) as u8;
            if REVIEWERS[r as usize] != actor {
                return 3 + r;
            }
        }
    }

    /// One `config.change`: compliant, or one of the change violations (or one with no actor).
    fn spawn_change(&mut self, t: i64, v: u8) {
        self.changes += 1;
        let (actor, rtype, env, approved);
        match v {
            V_UNAUTHORIZED => {
                let (a, r, e) = loop {
                    let a = self.rng.below(CHANGE_ACTORS.len() as u64) as u8;
                    let r = self.rng.below(RTYPES.len() as u64) as u8;
                    let e = if self.rng.chance(0.8) { ENV_PRODUCTION } else { ENV_STAGING };
                    if !authorized(a, r, e) {
                        break (a, r, e);
                    }
                };
                actor = a;
                rtype = r;
                env = e;
                approved = self.reviewer_other_than(CHANGE_ACTORS[a as usize]);
            }
            V_UNREVIEWED => {
                let (a, types, _) = loop {
                    let entry = self.rng.pick(&AUTH);
                    if entry.2.contains(&ENV_PRODUCTION) {
                        break entry;
                    }
                };
                actor = a;
                rtype = self.rng.pick(types);
                env = ENV_PRODUCTION;
                approved = self.rng.pick(&[0, 0, 0, 1, 2, 2, 2]);
            }
            V_MISSING_ACTOR => {
                actor = self.missing_actor();
                rtype = self.rng.below(RTYPES.len() as u64) as u8;
                env = ENV_PRODUCTION;
                approved = self.reviewer_other_than("");
            }
            _ => {
                let (a, types, envs) = self.rng.pick(&AUTH);
                actor = a;
                rtype = self.rng.pick(types);
                env = self.rng.pick(envs);
                approved = if env == ENV_PRODUCTION || self.rng.chance(0.5) { self.reviewer_other_than(CHANGE_ACTORS[a as usize]) } else { 0 };
            }
        }
        let resource = self.rng.below(RESOURCES[rtype as usize].len() as u64) as u8;
        let env_field = if env == ENV_STAGING {
            2
        } else if self.rng.chance(0.4) {
            0
        } else {
            1
        };
        let tenant = if self.rng.chance(0.2) { self.pick_tenant() } else { 255 };
        let c = Change { no: 1000 + self.changes, actor, rtype, resource, env: env_field, approved, tenant };
        let s = self.stamp(t);
        self.push(s, Payload::Change(c));
    }

    /// An event of a type the built-in rules ignore (kept for user SQL).
    fn spawn_other(&mut self, t: i64) {
        let tenant = self.pick_tenant();
        let kind = self.rng.weighted(&[2, 5, 3]) as u8;
        let actor = 6 + self.rng.below(8) as u8;
        let req = self.last_req[tenant as usize];
        let s = self.stamp(t);
        self.push(s, Payload::Other { kind, tenant, actor, req });
    }

    // ---- rendering ----------------------------------------------------------

    /// Renders one event; cosmetic choices (field order, escapes, optional fields) are drawn here.
    fn render(&mut self, ev: &Sched, out: &mut Vec<u8>) {
        self.events += 1;
        let style = self.rng.next();
        let spaced = style % 5 < 2;
        let ascii = (style >> 8) % 100 < 15;
        let slash = ascii && (style >> 16) % 100 < 5;
        let envelope_last = (style >> 24) % 100 < 25;
        let extra = (style >> 32) % 100;
        let event_type = match &ev.p {
            Payload::Request(_) => "ai.request",
            Payload::Response(_) => "ai.response",
            Payload::Stored { .. } => "artifact.stored",
            Payload::Deleted { .. } => "artifact.deleted",
            Payload::Change(_) => "config.change",
            Payload::Other { kind, .. } => ["access.review", "ai.feedback", "ai.guardrail.triggered"][*kind as usize],
        };
        let mut w = J::open(out, spaced, ascii, slash);
        if !envelope_last {
            self.envelope(&mut w, event_type, ev);
        }
        match ev.p {
            Payload::Request(r) => self.body_request(&mut w, &r),
            Payload::Response(r) => self.body_response(&mut w, &r),
            Payload::Stored { n, tenant, kind, region, classes } => {
                w.s("tenant_id", TENANTS[tenant as usize].id);
                w.id("artifact_id", "art-", &self.tag, n, 7, ["-prompt", "-output", "-embedding", "-transcript", "-log"][kind as usize]);
                w.s("artifact_kind", KINDS[kind as usize]);
                w.s("storage_region", REGIONS[region as usize]);
                if self.rng.chance(0.9) {
                    w.id("request_id", "req-", &self.tag, n, 7, "");
                }
                if classes != 0 && self.rng.chance(0.7) {
                    w.classes("data_classes", classes);
                }
                if self.rng.chance(0.3) {
                    w.s("source", "artifact-store");
                }
                if self.rng.chance(0.2) {
                    w.u("size_bytes", 200 + self.rng.below(400_000));
                }
            }
            Payload::Deleted { n, tenant, kind, .. } => {
                w.s("tenant_id", TENANTS[tenant as usize].id);
                w.id("artifact_id", "art-", &self.tag, n, 7, ["-prompt", "-output", "-embedding", "-transcript", "-log"][kind as usize]);
                if self.rng.chance(0.3) {
                    w.s("reason", if self.rng.chance(0.9) { "retention" } else { "user_request" });
                }
                if self.rng.chance(0.3) {
                    w.s("source", "artifact-store");
                }
            }
            Payload::Change(c) => self.body_change(&mut w, &c),
            Payload::Other { kind, tenant, actor, req } => {
                w.s("tenant_id", TENANTS[tenant as usize].id);
                w.s("actor_id", ACTORS[actor as usize]);
                match kind {
                    0 => {
                        w.s("review", "quarterly-access");
                        w.s("result", if self.rng.chance(0.9) { "no_change" } else { "revoked" });
                    }
                    1 => {
                        if req != u64::MAX {
                            w.id("request_id", "req-", &self.tag, req, 7, "");
                        }
                        w.u("rating", 1 + self.rng.below(5));
                    }
                    _ => {
                        if req != u64::MAX {
                            w.id("request_id", "req-", &self.tag, req, 7, "");
                        }
                        w.s("guardrail", self.rng.pick(&["pii-redaction", "jailbreak-filter", "toxicity"]));
                        w.s("action", self.rng.pick(&["redacted", "blocked", "flagged"]));
                    }
                }
            }
        }
        // Producers add fields of their own.
        if extra < 4 {
            w.raw("x_gateway", b"{\"node\": \"gw-3\", \"tags\": [\"a\", \"b\"], \"n\": 1.5}");
        } else if extra < 7 {
            w.u("schema_version", 1);
        } else if extra < 9 {
            w.hex("trace_id", &mut self.rng, 32);
        }
        if envelope_last {
            self.envelope(&mut w, event_type, ev);
        }
        w.close();
    }

    fn envelope(&mut self, w: &mut J, event_type: &str, ev: &Sched) {
        w.id("event_id", "ev-", &self.tag, self.events, 9, "");
        w.s("event_type", event_type);
        w.time("time", ev.time, ev.fmt);
    }

    fn body_request(&mut self, w: &mut J, r: &Req) {
        let tenant = TENANTS[r.tenant as usize].id;
        let p = &PROVIDERS[r.provider as usize];
        w.s("tenant_id", tenant);
        match r.actor {
            ACTOR_ABSENT => {}
            ACTOR_NULL => w.null("actor_id"),
            ACTOR_EMPTY => w.s("actor_id", ""),
            a => w.s("actor_id", ACTORS[a as usize]),
        }
        w.id("request_id", "req-", &self.tag, r.n, 7, "");
        w.s("provider", p.name);
        let x = self.rng.below(100);
        if x < 92 {
            w.s("model", if r.op == OP_EMBED { p.embed[r.model as usize] } else { p.chat[r.model as usize] });
        } else if x < 95 {
            w.null("model");
        }
        if self.rng.chance(0.95) {
            w.s("operation", OPS[r.op as usize]);
        }
        if r.region != 255 {
            w.s("vendor_region", REGIONS[r.region as usize]);
        }
        if r.classes != 0 {
            w.classes("data_classes", r.classes);
        } else {
            match self.rng.below(10) {
                0..=5 => w.raw("data_classes", b"[]"),
                6 => w.null("data_classes"),
                _ => {}
            }
        }
        match r.ctx {
            1 => w.null("context_tenant_ids"),
            2 => w.raw("context_tenant_ids", b"[]"),
            3 => w.strs("context_tenant_ids", &[tenant]),
            4 => w.strs("context_tenant_ids", &[tenant, TENANTS[r.ctx_other as usize].id]),
            5 => w.strs("context_tenant_ids", &[TENANTS[r.ctx_other as usize].id]),
            _ => {}
        }
        match r.conv {
            1 => w.null("conversation_id"),
            2 => {
                w.key("conversation_id");
                w.o.extend_from_slice(b"\"conv-");
                push_hex(w.o, r.conv_hex as u64, 8);
                w.o.push(b'-');
                push_u(w.o, r.conv_n);
                w.o.push(b'"');
            }
            _ => {}
        }
        if self.rng.chance(0.97) {
            w.u("input_tokens", r.tokens as u64);
        }
        if self.rng.chance(0.9) {
            w.hex("prompt_sha256", &mut self.rng, 64);
        }
        let x = self.rng.below(100);
        if x < 25 {
            w.s("source", ["llm-gateway", "support-api", "rag-service", "copilot-backend"][(x % 4) as usize]);
        } else if x < 35 {
            w.s("environment", "production");
        }
        if self.rng.chance(0.015) {
            self.canary(w, "prompt");
        }
    }

    fn canary(&mut self, w: &mut J, key: &str) {
        w.key(key);
        w.o.push(b'"');
        w.o.extend_from_slice(CANARY.as_bytes());
        for _ in 0..self.rng.range(5, 40) {
            w.o.push(b' ');
            w.o.extend_from_slice(self.rng.pick(&WORDS).as_bytes());
        }
        w.o.push(b'"');
    }

    fn body_response(&mut self, w: &mut J, r: &Resp) {
        let p = &PROVIDERS[r.provider as usize];
        w.id("request_id", "req-", &self.tag, r.n, 7, "");
        w.s("tenant_id", TENANTS[r.tenant as usize].id);
        if self.rng.chance(0.8) {
            w.s("provider", p.name);
        }
        if self.rng.chance(0.5) {
            w.s("model", if r.op == OP_EMBED { p.embed[r.model as usize] } else { p.chat[r.model as usize] });
        }
        if self.rng.chance(0.9) {
            w.s("status", if r.error { "error" } else { "ok" });
        }
        if !r.error && r.op != OP_EMBED && self.rng.chance(0.95) {
            w.u("output_tokens", r.out_tokens as u64);
        }
        if self.rng.chance(0.95) {
            w.key("latency_ms");
            push_u(w.o, r.latency_us / 1000);
            w.o.push(b'.');
            push_pad(w.o, r.latency_us % 1000, 3);
        }
        if self.rng.chance(0.005) {
            self.canary(w, "completion");
        }
    }

    fn body_change(&mut self, w: &mut J, c: &Change) {
        match c.actor {
            ACTOR_ABSENT => {}
            ACTOR_NULL => w.null("actor_id"),
            ACTOR_EMPTY => w.s("actor_id", ""),
            a => w.s("actor_id", CHANGE_ACTORS[a as usize]),
        }
        w.s("resource_type", RTYPES[c.rtype as usize]);
        w.s("resource", RESOURCES[c.rtype as usize][c.resource as usize]);
        match c.env {
            1 => w.s("environment", ENVS[ENV_PRODUCTION as usize]),
            2 => w.s("environment", ENVS[ENV_STAGING as usize]),
            _ => {}
        }
        if self.rng.chance(0.5) {
            w.key("change_id");
            w.o.extend_from_slice(b"\"CHG-");
            push_u(w.o, c.no as u64);
            w.o.push(b'"');
        } else if self.rng.chance(0.6) {
            w.key("change_id");
            let url = b"https://github.com/example/ai-config/pull/";
            w.o.push(b'"');
            for &b in url {
                if b == b'/' && w.slash {
                    w.o.push(b'\\');
                }
                w.o.push(b);
            }
            push_u(w.o, c.no as u64);
            w.o.push(b'"');
        }
        match c.approved {
            0 => {}
            1 => w.s("approved_by", ""),
            2 => match c.actor {
                a if a < ACTOR_ABSENT => w.s("approved_by", CHANGE_ACTORS[a as usize]),
                _ => {}
            },
            k => w.s("approved_by", REVIEWERS[(k - 3) as usize]),
        }
        if c.tenant != 255 {
            w.s("tenant_id", TENANTS[c.tenant as usize].id);
        }
        if self.rng.chance(0.3) {
            w.s("source", "deploy-pipeline");
        }
    }

    /// A line the engine must dead-letter (events.md "Dead letters"). It never stands for a real
    /// event of a flow, so every flow stays whole.
    fn render_malformed(&mut self, t: i64, out: &mut Vec<u8>) {
        self.events += 1;
        let (off, prec) = self.pick_fmt();
        let unit = PREC_UNIT[prec];
        let fmt = off | (prec as u8) << 4;
        let tq = t.div_euclid(unit) * unit;
        let start = out.len();
        let tenant = TENANTS[self.rng.below(TENANTS.len() as u64) as usize].id;
        // The common head of a request-like object, with one thing wrong in it.
        let head = |g: &mut Generator, o: &mut Vec<u8>, skip: u8, empty: u8| {
            let mut w = J::open(o, true, false, false);
            match (skip, empty) {
                (0, _) => {}
                (_, 0) => w.s("event_id", ""),
                _ => w.id("event_id", "ev-", &g.tag, g.events, 9, ""),
            }
            match (skip, empty) {
                (1, _) => {}
                (_, 1) => w.s("event_type", ""),
                _ => w.s("event_type", "ai.request"),
            }
            if skip != 2 {
                w.time("time", tq, fmt);
            }
            w.s("tenant_id", tenant);
            w.s("actor_id", "svc:support-bot");
            w.id("request_id", "req-", &g.tag, g.events, 9, "-x");
            w.s("provider", "openai");
        };
        match self.rng.weighted(&[20, 10, 15, 8, 15, 25, 3]) {
            0 => {
                // Cut off mid-object (a crashed producer, a truncated file).
                head(self, out, 9, 9);
                out.extend_from_slice(b", \"model\": \"gpt-4o\", \"data_classes\": [\"pii\"], \"input_tokens\": 812}");
                let len = out.len() - start;
                let cut = start + 8 + self.rng.below(len as u64 - 9) as usize;
                out.truncate(cut);
            }
            1 => out.extend_from_slice(self.rng.pick(&[&b"[1, 2, 3]"[..], b"\"just a string\"", b"42", b"null", b"true", b"[{\"event_id\": \"ev-x\"}]"])),
            2 => {
                let skip = self.rng.below(3) as u8;
                head(self, out, skip, 9);
                out.push(b'}');
            }
            3 => {
                let empty = self.rng.below(2) as u8;
                head(self, out, 9, empty);
                out.push(b'}');
            }
            4 => {
                // `time` that is not RFC 3339 with an offset.
                let mut w = J::open(out, false, false, false);
                w.id("event_id", "ev-", &self.tag, self.events, 9, "");
                w.s("event_type", "ai.response");
                let secs = (tq / SEC_NS) as u64;
                match self.rng.below(4) {
                    0 => {
                        // No offset.
                        w.key("time");
                        w.o.push(b'"');
                        let len = w.o.len();
                        push_time(w.o, tq, 0x10);
                        w.o.truncate(w.o.len() - 1);
                        debug_assert!(w.o.len() > len);
                        w.o.push(b'"');
                    }
                    1 => w.u("time", secs),
                    2 => {
                        w.key("time");
                        w.o.push(b'"');
                        push_u(w.o, secs);
                        w.o.push(b'"');
                    }
                    _ => w.s("time", "yesterday 14:03"),
                }
                w.s("tenant_id", tenant);
                w.id("request_id", "req-", &self.tag, self.events, 9, "-x");
                w.s("status", "ok");
                w.close();
            }
            5 => {
                // A named field of the wrong JSON type.
                head(self, out, 9, 9);
                let bad: &[u8] = self.rng.pick(&[
                    &b", \"input_tokens\": \"1200\"}"[..],
                    b", \"data_classes\": \"pii\"}",
                    b", \"context_tenant_ids\": [\"acme\", 7]}",
                    b", \"conversation_id\": 4711}",
                    b", \"vendor_region\": [\"us-east-1\"]}",
                    b", \"input_tokens\": \"many\"}",
                ]);
                out.extend_from_slice(bad);
            }
            _ => {
                // Not UTF-8 (so not JSON).
                head(self, out, 9, 9);
                out.extend_from_slice(b", \"model\": \"gpt-4o\xff\xfe\"}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    fn lines(cfg: GeneratorConfig, n: usize) -> (Vec<Vec<u8>>, Vec<i64>) {
        let mut g = Generator::new(cfg);
        let mut out = Vec::new();
        let mut times = Vec::new();
        let mut v = Vec::new();
        for _ in 0..n {
            out.clear();
            times.push(g.next_into(&mut out));
            v.push(out.clone());
        }
        (v, times)
    }

    fn messy() -> GeneratorConfig {
        GeneratorConfig { max_disorder_seconds: 30.0, duplicate_rate: 0.02, violation_rate: 0.05, ..Default::default() }
    }

    #[test]
    fn civil_dates_round_trip() {
        for days in [-1000i64, 0, 59, 365, 10_957, 20_758, 20_759, 100_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(GeneratorConfig::default().start_time_ns, 1_793_491_200 * SEC_NS);
    }

    #[test]
    fn deterministic() {
        let cfg = GeneratorConfig { malformed_rate: 0.01, ..messy() };
        let (a, ta) = lines(cfg.clone(), 20_000);
        let (b, tb) = lines(cfg.clone(), 20_000);
        assert!(a == b && ta == tb);
        let (c, _) = lines(GeneratorConfig { seed: 7, ..cfg }, 20_000);
        assert!(a != c);
    }

    #[test]
    fn every_line_is_a_valid_event() {
        for cfg in [GeneratorConfig::default(), messy()] {
            let (v, times) = lines(cfg, 30_000);
            for (line, t) in v.iter().zip(&times) {
                let text = std::str::from_utf8(line).unwrap();
                let j: serde_json::Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
                let o = j.as_object().unwrap_or_else(|| panic!("not an object: {text}"));
                for k in ["event_id", "event_type", "time"] {
                    assert!(o.get(k).and_then(|x| x.as_str()).is_some_and(|s| !s.is_empty()), "{k} in {text}");
                }
                let parsed = chrono::DateTime::parse_from_rfc3339(o["time"].as_str().unwrap()).unwrap_or_else(|e| panic!("{e}: {text}"));
                assert_eq!(parsed.timestamp_nanos_opt().unwrap(), *t, "{text}");
                // Integer fields are integers, string arrays hold strings.
                for k in ["input_tokens", "output_tokens"] {
                    assert!(o.get(k).is_none_or(|x| x.is_u64()), "{k} in {text}");
                }
                for k in ["data_classes", "context_tenant_ids"] {
                    assert!(o.get(k).is_none_or(|x| x.is_null() || x.as_array().unwrap().iter().all(|s| s.is_string())), "{k} in {text}");
                }
            }
        }
    }

    #[test]
    fn malformed_lines_are_malformed() {
        let cfg = GeneratorConfig { malformed_rate: 0.05, ..messy() };
        let (v, _) = lines(cfg, 20_000);
        let mut bad = 0;
        for line in &v {
            let ok = std::str::from_utf8(line)
                .ok()
                .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
                .and_then(|j| {
                    let o = j.as_object()?;
                    let s = |k: &str| o.get(k).and_then(|x| x.as_str()).filter(|s| !s.is_empty());
                    chrono::DateTime::parse_from_rfc3339(s("time")?).ok()?;
                    s("event_id")?;
                    s("event_type")?;
                    let wrong = o.get("input_tokens").is_some_and(|x| !x.is_u64())
                        || o.get("conversation_id").is_some_and(|x| !x.is_string() && !x.is_null())
                        || o.get("vendor_region").is_some_and(|x| !x.is_string() && !x.is_null())
                        || o.get("data_classes").is_some_and(|x| !x.is_array() && !x.is_null())
                        || o.get("context_tenant_ids").is_some_and(|x| x.as_array().is_some_and(|a| a.iter().any(|s| !s.is_string())));
                    (!wrong).then_some(())
                })
                .is_some();
            if !ok {
                bad += 1;
            }
        }
        assert!((700..1300).contains(&bad), "{bad} malformed of 20000");
    }

    #[test]
    fn disorder_is_bounded() {
        for d in [0.0, 5.0, 30.0] {
            let cfg = GeneratorConfig { max_disorder_seconds: d, duplicate_rate: 0.01, malformed_rate: 0.001, ..Default::default() };
            let (_, times) = lines(cfg, 50_000);
            let bound = (d * 1e9) as i64;
            let mut max = i64::MIN;
            let mut late = 0;
            for &t in &times {
                assert!(max == i64::MIN || max - t <= bound, "{} ns behind with bound {bound}", max - t);
                if t < max {
                    late += 1;
                }
                max = max.max(t);
            }
            assert_eq!(late == 0, d == 0.0, "disorder {d}: {late} late events");
        }
    }

    #[test]
    fn duplicates_repeat_bytes() {
        let (v, _) = lines(GeneratorConfig { duplicate_rate: 0.05, ..messy() }, 20_000);
        let mut seen = std::collections::HashMap::new();
        for line in &v {
            let j: serde_json::Value = serde_json::from_slice(line).unwrap();
            let id = j["event_id"].as_str().unwrap().to_string();
            if let Some(prev) = seen.insert(id, line.clone()) {
                assert_eq!(&prev, line);
            }
        }
        let dups = v.len() - seen.len();
        assert!((600..1400).contains(&dups), "{dups} duplicates");
    }

    #[test]
    fn rate_matches_config() {
        let (_, times) = lines(GeneratorConfig { events_per_second: 50.0, ..Default::default() }, 100_000);
        let span = (times.last().unwrap() - times[0]) as f64 / 1e9;
        let rate = 100_000.0 / span;
        assert!((45.0..55.0).contains(&rate), "{rate} events/s");
    }

    #[test]
    fn demo_policy_matches_the_generator() {
        let p = Policy::parse(DEMO_POLICY, "demo").unwrap();
        assert_eq!(p.response_timeout_seconds, 300);
        for (i, pr) in PROVIDERS.iter().enumerate() {
            let v = p.vendors.iter().find(|v| v.provider == pr.name);
            assert_eq!(v.is_some(), pr.listed, "{}", pr.name);
            if let Some(v) = v {
                assert_eq!((v.dpa_signed, v.trains_on_customer_data), (pr.dpa, pr.trains), "{}", pr.name);
                let mask = v.allowed_data_classes.iter().fold(0u8, |m, c| m | 1 << CLASS_NAMES.iter().position(|n| n == c).unwrap());
                assert_eq!(mask, pr.allowed, "{}", pr.name);
                assert_eq!(pr.weight > 0, pr.dpa && i < P_MISTRAL as usize);
            }
        }
        assert_eq!(p.vendors.len(), PROVIDERS.iter().filter(|p| p.listed).count());
        for t in &TENANTS {
            let tp = p.tenant(t.id);
            let regions: Vec<&str> = t.regions.iter().map(|&r| REGIONS[r as usize]).collect();
            let mut want = regions.clone();
            want.sort();
            let mut got: Vec<&str> = tp.allowed_regions.iter().map(|s| s.as_str()).collect();
            got.sort();
            assert_eq!(got, want, "{}", t.id);
            for (k, kind) in KINDS.iter().enumerate() {
                assert_eq!(tp.retention_days.days(kind), t.retention[k], "{} {kind}", t.id);
            }
        }
        for t in p.tenants.keys() {
            assert!(TENANTS.iter().any(|x| x.id == t), "policy tenant {t} is never generated");
        }
        let mut auth = 0;
        for a in 0..CHANGE_ACTORS.len() as u8 {
            for r in 0..RTYPES.len() as u8 {
                for e in [ENV_PRODUCTION, ENV_STAGING] {
                    let want = p.authorizations.iter().any(|x| {
                        x.actor_id == CHANGE_ACTORS[a as usize] && x.resource_type == RTYPES[r as usize] && x.environment == ENVS[e as usize]
                    });
                    assert_eq!(authorized(a, r, e), want, "{} {} {}", CHANGE_ACTORS[a as usize], RTYPES[r as usize], ENVS[e as usize]);
                    auth += want as usize;
                }
            }
        }
        assert_eq!(auth, p.authorizations.len());
        assert_eq!(p.approval_required_in, vec!["production".to_string()]);
    }

    /// With no injected violations, the stateless rules find nothing.
    #[test]
    fn compliant_traffic_is_compliant() {
        let p = Policy::parse(DEMO_POLICY, "demo").unwrap();
        let (v, _) = lines(GeneratorConfig { violation_rate: 0.0, ..messy() }, 50_000);
        let mut requests = std::collections::HashMap::new();
        let mut kinds = std::collections::HashSet::new();
        for line in &v {
            let j: serde_json::Value = serde_json::from_slice(line).unwrap();
            let s = |k: &str| j.get(k).and_then(|x| x.as_str());
            let list = |k: &str| -> Vec<String> {
                j.get(k).and_then(|x| x.as_array()).map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect()).unwrap_or_default()
            };
            kinds.insert(s("event_type").unwrap().to_string());
            match s("event_type").unwrap() {
                "ai.request" => {
                    let tenant = s("tenant_id").unwrap();
                    assert!(s("actor_id").is_some_and(|a| !a.is_empty()));
                    let vendor = p.vendors.iter().find(|v| Some(v.provider.as_str()) == s("provider")).unwrap();
                    assert!(vendor.dpa_signed);
                    for c in list("data_classes") {
                        assert!(vendor.allowed_data_classes.contains(&c));
                        assert!(!vendor.trains_on_customer_data || !["customer_data", "pii", "phi", "pci"].contains(&c.as_str()));
                    }
                    if let Some(r) = s("vendor_region") {
                        assert!(p.tenant(tenant).allowed_regions.iter().any(|x| x == r), "{tenant} {r}");
                    }
                    assert!(list("context_tenant_ids").iter().all(|c| c == tenant));
                    requests.insert(s("request_id").unwrap().to_string(), tenant.to_string());
                }
                "ai.response" => {
                    if let Some(t) = requests.get(s("request_id").unwrap()) {
                        assert_eq!(Some(t.as_str()), s("tenant_id"));
                    }
                }
                "artifact.stored" => {
                    let tenant = s("tenant_id").unwrap();
                    assert!(p.tenant(tenant).allowed_regions.iter().any(|x| Some(x.as_str()) == s("storage_region")));
                }
                "config.change" => {
                    let actor = s("actor_id").unwrap();
                    let env = s("environment").unwrap_or("production");
                    assert!(p.authorizations.iter().any(|a| a.actor_id == actor && Some(a.resource_type.as_str()) == s("resource_type") && a.environment == env));
                    if env == "production" {
                        assert!(s("approved_by").is_some_and(|r| !r.is_empty() && r != actor));
                    }
                }
                _ => {}
            }
        }
        for k in ["ai.request", "ai.response", "artifact.stored", "artifact.deleted", "config.change"] {
            assert!(kinds.contains(k), "no {k}");
        }
    }
}
