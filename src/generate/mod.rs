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
//! Inside this module: `flow` spawns flows and stamps their event times (step 1),
//! `queue` holds the schedule and the reorder buffer (steps 1 and 3), `render` writes
//! events and malformed lines (steps 2 and 4) with the writers of `write`; `catalogue`
//! is the world the traffic comes from, `rng` the seeded PRNG.
//!
//! Deterministic: the same config gives byte-identical output (a hand-written
//! SplitMix64, no hashing of addresses, no clocks).

mod catalogue;
mod flow;
mod queue;
mod render;
mod rng;
#[cfg(test)]
mod tests;
mod write;

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use catalogue::TENANTS;
use flow::{Conv, CONV_SLOTS};
use queue::{Arrival, Sched};
pub use rng::Rng;
use write::{days_from_civil, DAY_NS, HEX, SEC_NS};

/// The policy that generated traffic is meant to be scanned with (`aiwatch generate --print-policy`).
pub const DEMO_POLICY: &str = include_str!("demo-policy.toml");

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

/// The synthetic event source. See the module docs.
pub struct Generator {
    cfg: GeneratorConfig,
    rng: Rng,
    /// Six hex digits from the seed, in every id, so files from different seeds do not collide.
    tag: [u8; 6],
    heap: BinaryHeap<Reverse<Sched>>,
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
    buffer: BinaryHeap<Reverse<Arrival>>,
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
            if let Some(Reverse(top)) = self.buffer.peek() {
                if top.key <= self.fed_max {
                    let Reverse(a) = self.buffer.pop().expect("peeked");
                    out.extend_from_slice(&self.slab[a.slot as usize]);
                    self.free.push(a.slot);
                    self.last_time = a.time;
                    return a.time;
                }
            }
            self.feed();
        }
    }
}
