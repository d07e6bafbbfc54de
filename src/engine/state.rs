//! Event-time state: what the engine remembers between steps so that rules
//! spanning batches are exact under any arrival order within the allowed
//! lateness.
//!
//! - the watermark: largest event time seen minus the allowed lateness;
//! - seen event ids, to drop producer retries;
//! - `history`: recent `ai.request`/`ai.response` events, indexed by
//!   `request_id` and `conversation_id`, kept for the longest pairing horizon
//!   (24 h) behind the watermark, so a step reads only the rows that share a key
//!   with its own events;
//! - deadlines: one open obligation per `request_id` (a response is due) and
//!   per `artifact_id` (a deletion is due), released to the rules once the
//!   watermark passes the deadline.
//!
//! Every piece is dropped once no on-time event can still change a verdict
//! about it, so memory follows the horizons, not the length of the stream.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::mem::size_of;
use std::sync::Arc;

use arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, BooleanArray, Int32Builder, Int64Builder, RecordBatch, StringArray, StringBuilder,
    TimestampNanosecondBuilder,
};
use arrow::compute::{filter_record_batch, interleave_record_batch};
use arrow::datatypes::{Field, Schema, SchemaRef, TimestampNanosecondType};
use smallvec::SmallVec;

use super::spill::{Kind, Spill, Tables};
use crate::event::{col, events_schema, Origin};
use crate::policy::Policy;

pub const NANOS_PER_SEC: i64 = 1_000_000_000;

/// Hash maps keyed by ids on the hot path: a fast keyed hash (ids are not secret,
/// and aHash's random keys still resist collision floods).
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;
pub(crate) type HashSet<K> = std::collections::HashSet<K, ahash::RandomState>;
/// The longest horizon of a pairing rule (`xtenant.conversation`, 24 h).
pub const HISTORY_HORIZON: i64 = 86_400 * NANOS_PER_SEC;

/// Typed views of the columns the state reads.
pub(crate) struct Cols<'a> {
    pub event_id: &'a StringArray,
    pub event_type: &'a StringArray,
    pub time: &'a arrow::array::PrimitiveArray<TimestampNanosecondType>,
    pub tenant_id: &'a StringArray,
    pub request_id: &'a StringArray,
    pub conversation_id: &'a StringArray,
    pub artifact_id: &'a StringArray,
    pub artifact_kind: &'a StringArray,
    pub origin_source: &'a StringArray,
    pub origin_partition: &'a arrow::array::Int32Array,
    pub origin_position: &'a arrow::array::Int64Array,
}

impl<'a> Cols<'a> {
    pub fn of(b: &'a RecordBatch) -> Cols<'a> {
        Cols {
            event_id: b.column(col::EVENT_ID).as_string(),
            event_type: b.column(col::EVENT_TYPE).as_string(),
            time: b.column(col::TIME).as_primitive(),
            tenant_id: b.column(col::TENANT_ID).as_string(),
            request_id: b.column(col::REQUEST_ID).as_string(),
            conversation_id: b.column(col::CONVERSATION_ID).as_string(),
            artifact_id: b.column(col::ARTIFACT_ID).as_string(),
            artifact_kind: b.column(col::ARTIFACT_KIND).as_string(),
            origin_source: b.column(col::ORIGIN_SOURCE).as_string(),
            origin_partition: b.column(col::ORIGIN_PARTITION).as_primitive(),
            origin_position: b.column(col::ORIGIN_POSITION).as_primitive(),
        }
    }

    fn opt<'s>(a: &'s StringArray, i: usize) -> Option<&'s str> {
        a.is_valid(i).then(|| a.value(i))
    }
}

/// A fixed-size key for an id: 128 bits of XXH3, stable across runs and
/// machines (checkpoints hold keys), so the state never keeps an id's string
/// unless an alert may need it.
pub type Key = u128;

#[inline]
pub fn key(id: &str) -> Key {
    twox_hash::XxHash3_128::oneshot(id.as_bytes())
}

/// Keys remembered until a time passes. One hash set answers lookups; the keys
/// are also listed by time bucket, so expiry drops whole buckets and never
/// scans the set. About 40 bytes a key.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct TimedKeys {
    /// Derived from `buckets`; rebuilt on restore.
    #[serde(skip)]
    set: HashSet<Key>,
    buckets: BTreeMap<i64, Vec<Key>>,
    width: i64,
    /// What changed since the last checkpoint, in order (see [`super::checkpoint`]).
    #[serde(skip)]
    log: Vec<KeysOp>,
    /// Whether changes are logged: from the first checkpoint on.
    #[serde(skip)]
    track: bool,
}

/// A change to [`TimedKeys`], replayed in order on restore.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub(crate) enum KeysOp {
    Insert(i64, Key),
    Expire(i64),
}

impl TimedKeys {
    /// `width` is the expiry granularity: a key lives until the cutoff passes
    /// its time, and at most one `width` longer.
    fn new(width: i64) -> TimedKeys {
        TimedKeys { set: HashSet::default(), buckets: BTreeMap::new(), width: width.max(1), log: Vec::new(), track: false }
    }

    pub(crate) fn apply(&mut self, op: KeysOp) {
        match op {
            KeysOp::Insert(t, k) => self.insert(t, k),
            KeysOp::Expire(cutoff) => self.expire(cutoff),
        }
    }

    fn contains(&self, k: Key) -> bool {
        self.set.contains(&k)
    }

    fn insert(&mut self, t: i64, k: Key) {
        if self.set.insert(k) {
            self.buckets.entry(t.div_euclid(self.width)).or_default().push(k);
            if self.track {
                self.log.push(KeysOp::Insert(t, k));
            }
        }
    }

    /// Forgets every key whose time is before `cutoff` (whole buckets only).
    fn expire(&mut self, cutoff: i64) {
        let mut any = false;
        while let Some((&b, _)) = self.buckets.first_key_value() {
            if b.saturating_add(1).saturating_mul(self.width) > cutoff {
                break;
            }
            for k in self.buckets.pop_first().expect("peeked").1 {
                self.set.remove(&k);
            }
            any = true;
        }
        if any && self.track {
            self.log.push(KeysOp::Expire(cutoff));
        }
    }

    fn len(&self) -> usize {
        self.set.len()
    }

    fn bytes(&self) -> usize {
        self.set.capacity() * (size_of::<Key>() + 1)
            + self.buckets.values().map(|v| v.capacity() * size_of::<Key>() + 48).sum::<usize>()
            + self.log.capacity() * size_of::<KeysOp>()
    }

    fn reindex(&mut self) {
        self.set = self.buckets.values().flatten().copied().collect();
    }
}

/// A map whose entries expire by their time, bucketed like [`TimedKeys`].
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct TimedMap<V> {
    map: HashMap<Key, (i64, V)>,
    /// Derived from `map`; rebuilt on restore. A key may be listed in a later
    /// bucket too after its time moved earlier; only its own bucket removes it.
    #[serde(skip)]
    buckets: BTreeMap<i64, Vec<Key>>,
    width: i64,
    /// Keys inserted or removed since the last checkpoint (expiry is replayed from the watermark).
    #[serde(skip)]
    dirty: HashSet<Key>,
    /// Whether changes are noted: from the first checkpoint on.
    #[serde(skip)]
    track: bool,
}

impl<V> TimedMap<V> {
    fn new(width: i64) -> TimedMap<V> {
        TimedMap { map: HashMap::default(), buckets: BTreeMap::new(), width: width.max(1), dirty: HashSet::default(), track: false }
    }

    /// Keeps the entry with the earliest time for `k`.
    fn insert_earliest(&mut self, k: Key, t: i64, v: impl FnOnce() -> V) {
        match self.map.get_mut(&k) {
            Some(e) if t < e.0 => *e = (t, v()),
            Some(_) => return,
            None => {
                self.map.insert(k, (t, v()));
            }
        }
        if self.track {
            self.dirty.insert(k);
        }
        self.buckets.entry(t.div_euclid(self.width)).or_default().push(k);
    }

    fn remove(&mut self, k: Key) -> Option<(i64, V)> {
        let v = self.map.remove(&k);
        if v.is_some() && self.track {
            self.dirty.insert(k);
        }
        v
    }

    /// Sets `k` to what a checkpoint recorded (`None`: absent).
    pub(crate) fn put(&mut self, k: Key, v: Option<(i64, V)>) {
        match v {
            Some(v) => {
                self.map.insert(k, v);
            }
            None => {
                self.map.remove(&k);
            }
        }
    }

    /// The changed keys with their values (`None`: removed).
    pub(crate) fn changes(&self) -> impl Iterator<Item = (Key, Option<&(i64, V)>)> {
        self.dirty.iter().map(|k| (*k, self.map.get(k)))
    }

    fn expire(&mut self, cutoff: i64) {
        while let Some((&b, _)) = self.buckets.first_key_value() {
            if b.saturating_add(1).saturating_mul(self.width) > cutoff {
                break;
            }
            for k in self.buckets.pop_first().expect("peeked").1 {
                if self.map.get(&k).is_some_and(|(t, _)| t.div_euclid(self.width) == b) {
                    self.map.remove(&k);
                }
            }
        }
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn reindex(&mut self) {
        self.buckets.clear();
        for (k, (t, _)) in &self.map {
            self.buckets.entry(t.div_euclid(self.width)).or_default().push(*k);
        }
    }
}

/// What is still owed for one key: a response to a request, or a deletion of an artifact.
///
/// Its strings (the id, the opening event's id, the tenant, the artifact
/// kind) share one allocation, made when it opens.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Obligation {
    text: Box<str>,
    /// Where the id, the event id and the tenant end in `text` (the kind is the rest).
    ends: [u32; 3],
    /// Bit 0: it has a tenant; bit 1: a kind.
    has: u8,
    /// Event time of the earliest event that opened it.
    pub start: i64,
    pub deadline: i64,
    pub origin: Origin,
    /// The earliest fulfilling event seen so far (time, event id).
    pub met: Option<(i64, Box<str>)>,
    /// Where the fulfilling event came from, for the alert's evidence.
    pub met_origin: Option<Origin>,
}

impl Obligation {
    /// An obligation for `key` opened by event `event_id` at `start`, due at `deadline`; `kind` for artifacts.
    pub fn new(key: &str, event_id: &str, tenant: Option<&str>, kind: Option<&str>, (start, deadline): (i64, i64), origin: Origin) -> Obligation {
        let (tenant_text, kind_text) = (tenant.unwrap_or_default(), kind.unwrap_or_default());
        let mut text = String::with_capacity(key.len() + event_id.len() + tenant_text.len() + kind_text.len());
        let mut ends = [0u32; 3];
        for (i, part) in [key, event_id, tenant_text].into_iter().enumerate() {
            text.push_str(part);
            ends[i] = text.len() as u32;
        }
        text.push_str(kind_text);
        Obligation {
            text: text.into_boxed_str(),
            ends,
            has: u8::from(tenant.is_some()) | (u8::from(kind.is_some()) << 1),
            start,
            deadline,
            origin,
            met: None,
            met_origin: None,
        }
    }

    fn part(&self, i: usize) -> &str {
        let from = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        let to = if i == 3 { self.text.len() } else { self.ends[i] as usize };
        &self.text[from..to]
    }

    /// The request or artifact id.
    pub fn key(&self) -> &str {
        self.part(0)
    }

    /// The event that opened it.
    pub fn event_id(&self) -> &str {
        self.part(1)
    }

    pub fn tenant_id(&self) -> Option<&str> {
        (self.has & 1 != 0).then(|| self.part(2))
    }

    /// The artifact kind, for artifacts.
    pub fn kind(&self) -> Option<&str> {
        (self.has & 2 != 0).then(|| self.part(3))
    }
}

/// An early fulfilment: its time, event id and origin.
pub(crate) type Early = (i64, (Box<str>, Origin));

/// A shard's `conversations` rows and where each conversation's are: (key, first row, rows).
type ConversationRows = (RecordBatch, Vec<(Key, usize, usize)>);

/// Obligations come due, with their keys.
type Due = Vec<(Key, Obligation)>;

/// Open obligations keyed by id, released in deadline order.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Deadlines {
    /// Boxed, so the table's slots stay small (24 bytes) and its growth by
    /// doubling costs little; an obligation is about 200 bytes.
    open: HashMap<Key, Box<Obligation>>,
    /// Derived from `open`; rebuilt on restore.
    #[serde(skip)]
    queue: BinaryHeap<Reverse<(i64, Key)>>,
    /// Fulfilments that came before anything opened their key: (event id, origin).
    early: TimedMap<(Box<str>, Origin)>,
    /// Keys already decided, so a retry after the verdict does not reopen them.
    closed: TimedKeys,
    /// How long early fulfilments and decided keys are remembered (event time).
    memory: i64,
    /// Heap bytes of the open obligations' strings, kept as they change.
    #[serde(skip)]
    text: usize,
    /// Open obligations held in the spill store rather than in `open` (see [`super::spill`]).
    #[serde(skip)]
    pub(crate) spilled: usize,
    /// The keys that may be in the spill store, so most events never read it.
    #[serde(skip)]
    maybe_spilled: Bloom,
    /// Keys of `open` changed since the last checkpoint (see [`super::checkpoint`]).
    #[serde(skip)]
    dirty: HashSet<Key>,
    /// Whether changes are noted: from the first checkpoint on (a scan writes none).
    #[serde(skip)]
    track: bool,
}

/// What changed in a [`Deadlines`] since the last checkpoint.
#[derive(Debug, serde::Serialize)]
pub(crate) struct DeadlinesChangesRef<'a> {
    open: Vec<(Key, Option<&'a Obligation>)>,
    early: Vec<(Key, Option<&'a Early>)>,
    closed: &'a [KeysOp],
}

/// [`DeadlinesChangesRef`] as read back.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct DeadlinesChanges {
    open: Vec<(Key, Option<Obligation>)>,
    early: Vec<(Key, Option<Early>)>,
    closed: Vec<KeysOp>,
}

/// A Bloom filter of 128-bit keys (already uniform hashes): about 10 bits a
/// key at its planned size, 7 probes, under 1 % false positives. Keys taken
/// out of the store stay in it until it is rebuilt from the store's keys.
#[derive(Debug, Default)]
struct Bloom {
    bits: Vec<u64>,
    /// Keys inserted since it was built; `None` when it must be rebuilt before use.
    inserted: Option<usize>,
    planned: usize,
}

impl Bloom {
    const PROBES: u64 = 7;

    fn with_plan(keys: usize) -> Bloom {
        let planned = keys.max(1 << 16);
        Bloom { bits: vec![0; (planned * 10).div_ceil(64)], inserted: Some(0), planned }
    }

    fn probes(&self, k: Key) -> impl Iterator<Item = usize> + '_ {
        let (h1, h2) = (k as u64, ((k >> 64) as u64) | 1);
        let n = self.bits.len() as u64 * 64;
        (0..Self::PROBES).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % n) as usize)
    }

    fn insert(&mut self, k: Key) {
        if self.bits.is_empty() {
            *self = Bloom::with_plan(0);
        }
        for b in self.probes(k).collect::<SmallVec<[usize; 7]>>() {
            self.bits[b / 64] |= 1 << (b % 64);
        }
        self.inserted = self.inserted.map(|n| n + 1);
    }

    fn may_contain(&self, k: Key) -> bool {
        !self.bits.is_empty() && self.probes(k).all(|b| self.bits[b / 64] & (1 << (b % 64)) != 0)
    }

    /// Whether it must be rebuilt to stay exact and sharp with `held` keys in the store.
    fn stale(&self, held: usize) -> bool {
        match self.inserted {
            None => held > 0,
            // Overfull, or mostly keys that left the store.
            Some(n) => n > self.planned || (n > 2 * held && n > 1 << 16),
        }
    }

    fn bytes(&self) -> usize {
        self.bits.capacity() * 8
    }
}

fn text_bytes(o: &Obligation) -> usize {
    o.text.len() + o.met.as_ref().map_or(0, |m| m.1.len())
}

/// Expiry granularity of a memory: an eighth of it, so a key is kept at most 12.5 % longer.
fn bucket_width(memory: i64) -> i64 {
    (memory / 8).max(60 * NANOS_PER_SEC)
}

impl Deadlines {
    /// Obligations whose early fulfilments and decided keys are remembered for `memory` of event time.
    pub fn new(memory: i64) -> Deadlines {
        Deadlines {
            open: HashMap::default(),
            queue: BinaryHeap::new(),
            early: TimedMap::new(bucket_width(memory)),
            closed: TimedKeys::new(bucket_width(memory)),
            memory,
            text: 0,
            spilled: 0,
            maybe_spilled: Bloom::default(),
            dirty: HashSet::default(),
            track: false,
        }
    }

    /// Notes changes from now on, for the checkpoints that follow.
    pub(crate) fn track_changes(&mut self) {
        self.track = true;
        self.early.track = true;
        self.closed.track = true;
    }

    /// Notes that `k` changed, once changes are tracked.
    fn note(&mut self, k: Key) {
        if self.track {
            self.dirty.insert(k);
        }
    }

    /// Whether anything changed since the last checkpoint.
    pub(crate) fn changed(&self) -> bool {
        !self.dirty.is_empty() || !self.early.dirty.is_empty() || !self.closed.log.is_empty()
    }

    /// What changed since the last checkpoint, to write.
    pub(crate) fn changes(&self) -> DeadlinesChangesRef<'_> {
        DeadlinesChangesRef {
            open: self.dirty.iter().map(|k| (*k, self.open.get(k).map(|o| &**o))).collect(),
            early: self.early.changes().collect(),
            closed: &self.closed.log,
        }
    }

    /// Forgets what changed: a checkpoint holds it now.
    pub(crate) fn clear_changes(&mut self) {
        self.dirty = HashSet::default();
        self.early.dirty = HashSet::default();
        self.closed.log = Vec::new();
    }

    /// Applies changes read back from a checkpoint, after [`Deadlines::reindex`]
    /// of its base; reindex again after the last.
    pub(crate) fn apply(&mut self, changes: DeadlinesChanges) {
        for (k, o) in changes.open {
            match o {
                Some(o) => {
                    self.open.insert(k, Box::new(o));
                }
                None => {
                    self.open.remove(&k);
                }
            }
        }
        for (k, v) in changes.early {
            self.early.put(k, v);
        }
        // The decided keys' index is current (the base was reindexed), so their ops replay exactly.
        for op in changes.closed {
            self.closed.apply(op);
        }
        self.closed.log.clear();
    }

    /// Rebuilds the filter of spilled keys from the store when it needs it
    /// (after a restore, when overfull or mostly stale).
    fn sharpen(&mut self, d: &Tables<'_>) {
        if self.maybe_spilled.stale(self.spilled) {
            let keys = d.keys();
            let mut bloom = Bloom::with_plan(2 * keys.len());
            for k in keys {
                bloom.insert(k);
            }
            self.maybe_spilled = bloom;
        }
    }

    /// Opens (or moves earlier) the obligation for `k`; `make` builds it only when needed.
    /// `disk`: the spill store's tables, given when some of these obligations are spilled.
    fn open(&mut self, k: Key, start: i64, make: impl FnOnce() -> Obligation, disk: Option<&mut Tables<'_>>) {
        if let Some(cur) = self.open.get_mut(&k) {
            if start < cur.start {
                let mut o = make();
                o.met = cur.met.take();
                o.met_origin = cur.met_origin.take();
                self.queue.push(Reverse((o.deadline, k)));
                self.text = (self.text + text_bytes(&o)).saturating_sub(text_bytes(cur));
                **cur = o;
                self.note(k);
            }
            return;
        }
        if self.closed.contains(k) {
            return;
        }
        if let Some(d) = disk.filter(|_| self.maybe_spilled.may_contain(k)) {
            if let Some(cur) = d.get(k) {
                if start < cur.start {
                    let mut o = make();
                    o.met = cur.met;
                    o.met_origin = cur.met_origin;
                    d.unindex(k, cur.deadline);
                    d.put(k, &o);
                }
                return;
            }
        }
        let mut o = make();
        if let Some((t, (id, origin))) = self.early.remove(k) {
            o.met = Some((t, id));
            o.met_origin = Some(origin);
        }
        self.queue.push(Reverse((o.deadline, k)));
        self.text += text_bytes(&o);
        self.open.insert(k, Box::new(o));
        self.note(k);
    }

    /// Records a fulfilling event (a response, a deletion) at time `t`.
    fn fulfil(&mut self, k: Key, t: i64, event_id: &str, origin: impl FnOnce() -> Origin, disk: Option<&mut Tables<'_>>) {
        if let Some(o) = self.open.get_mut(&k) {
            if o.met.as_ref().is_none_or(|(m, _)| t < *m) {
                self.text = self.text.saturating_sub(o.met.as_ref().map_or(0, |m| m.1.len())) + event_id.len();
                o.met = Some((t, event_id.into()));
                o.met_origin = Some(origin());
                self.note(k);
            }
            return;
        }
        if self.closed.contains(k) {
            return;
        }
        if let Some(d) = disk.filter(|_| self.maybe_spilled.may_contain(k)) {
            if let Some(mut o) = d.get(k) {
                if o.met.as_ref().is_none_or(|(m, _)| t < *m) {
                    o.met = Some((t, event_id.into()));
                    o.met_origin = Some(origin());
                    d.update(k, &o);
                }
                return;
            }
        }
        self.early.insert_earliest(k, t, || (event_id.into(), origin()));
    }

    /// Takes every obligation whose deadline is before `watermark` (or at it, when
    /// `inclusive`: the end of a finite input, after which nothing more arrives).
    /// While streaming, an event exactly at the watermark is still on time, so a
    /// deadline equal to the watermark can still be met and must wait.
    fn due(&mut self, watermark: i64, inclusive: bool, disk: Option<&mut Tables<'_>>) -> Vec<(Key, Obligation)> {
        let mut out = Vec::new();
        while let Some(Reverse((deadline, _))) = self.queue.peek() {
            if *deadline > watermark || (*deadline == watermark && !inclusive) {
                break;
            }
            let Reverse((deadline, k)) = self.queue.pop().expect("peeked");
            // Entries superseded by an earlier start are skipped here.
            if self.open.get(&k).is_some_and(|o| o.deadline == deadline) {
                let o = self.open.remove(&k).expect("present");
                self.note(k);
                self.text = self.text.saturating_sub(text_bytes(&o));
                // Remembered from its earliest event: a key opened again within
                // `memory` of that is the same request or artifact.
                self.closed.insert(o.start, k);
                out.push((k, *o));
            }
        }
        if let Some(d) = disk {
            let spilled = d.take_due(watermark, inclusive);
            if !spilled.is_empty() {
                self.spilled -= spilled.len();
                for (k, o) in spilled {
                    self.closed.insert(o.start, k);
                    out.push((k, o));
                }
                // The order an all-in-memory state releases them in.
                out.sort_by_key(|(k, o)| (o.deadline, *k));
            }
        }
        out
    }

    /// Moves the open obligations due after `cutoff` from memory to the spill store.
    fn spill_due_after(&mut self, cutoff: i64, d: &mut Tables<'_>) {
        let before = self.open.len();
        let mut kept = HashMap::default();
        for (k, o) in self.open.drain() {
            if o.deadline > cutoff {
                d.put(k, &o);
                self.maybe_spilled.insert(k);
                self.spilled += 1;
                // Field by field: `open` is being drained.
                if self.track {
                    self.dirty.insert(k);
                }
            } else {
                kept.insert(k, o);
            }
        }
        if kept.len() == before {
            self.open = kept;
            return;
        }
        // Rebuilt at their size, so the memory of the spilled ones is given back.
        self.open = kept;
        self.reindex_open();
    }

    fn expire(&mut self, watermark: i64) {
        let cutoff = watermark.saturating_sub(self.memory);
        self.early.expire(cutoff);
        self.closed.expire(cutoff);
    }

    /// Open obligations, in memory and spilled.
    pub fn open_len(&self) -> usize {
        self.open.len() + self.spilled
    }

    pub fn closed_len(&self) -> usize {
        self.closed.len()
    }

    pub fn early_len(&self) -> usize {
        self.early.len()
    }

    /// An estimate of the heap bytes held.
    fn bytes(&self) -> usize {
        self.open.capacity() * (size_of::<(Key, Box<Obligation>)>() + 1)
            + self.open.len() * size_of::<Obligation>()
            + self.text
            + self.queue.capacity() * size_of::<(i64, Key)>()
            + self.early.map.capacity() * (size_of::<(Key, (i64, (Box<str>, Origin)))>() + 1)
            + self.closed.bytes()
            + self.maybe_spilled.bytes()
            + (self.dirty.capacity() + self.early.dirty.capacity()) * (size_of::<Key>() + 1)
    }

    /// The deadline queue and the text bytes, from `open`.
    fn reindex_open(&mut self) {
        self.queue = self.open.iter().map(|(k, o)| Reverse((o.deadline, *k))).collect();
        self.text = self.open.values().map(|o| text_bytes(o)).sum();
    }

    /// Rebuilds what is derived from the stored parts, after a restore.
    pub(crate) fn reindex(&mut self) {
        self.reindex_open();
        self.maybe_spilled = Bloom { inserted: None, ..Bloom::default() };
        self.early.reindex();
        self.closed.reindex();
    }
}

/// A retained step's worth of history rows, in the narrowed history layout.
#[derive(Debug)]
struct Segment {
    batch: RecordBatch,
}

/// Where a retained row is: (segment id, row).
type RowRef = (u64, u32);

/// The events-schema columns history always keeps: what it indexes by, and
/// what evidence needs (ids, times, origins).
const HISTORY_KEY_COLUMNS: [usize; 8] = [
    col::EVENT_ID,
    col::EVENT_TYPE,
    col::TIME,
    col::TENANT_ID,
    col::REQUEST_ID,
    col::ORIGIN_SOURCE,
    col::ORIGIN_PARTITION,
    col::ORIGIN_POSITION,
];

/// A request that stands for its conversation (see [`Conversations`]).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Rep {
    tenant: Option<Key>,
    /// The event id, then the tenant id: one allocation.
    text: Box<str>,
    /// Where the event id ends in `text`.
    split: u32,
    time: i64,
    origin: Origin,
}

impl Rep {
    fn new(event_id: &str, tenant_id: Option<&str>, time: i64, origin: Origin) -> Rep {
        let mut text = String::with_capacity(event_id.len() + tenant_id.map_or(0, str::len));
        text.push_str(event_id);
        text.push_str(tenant_id.unwrap_or_default());
        Rep { tenant: tenant_id.map(key), text: text.into_boxed_str(), split: event_id.len() as u32, time, origin }
    }

    fn event_id(&self) -> &str {
        &self.text[..self.split as usize]
    }

    fn tenant_id(&self) -> Option<&str> {
        self.tenant.map(|_| &self.text[self.split as usize..])
    }
}

/// One conversation's summary.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Conversation {
    id: Box<str>,
    reps: Vec<Rep>,
    /// The newest expiry bucket it is listed in.
    #[serde(skip)]
    listed: i64,
}

/// Conversations are listed by the hour of their newest request, for expiry.
const CONVERSATION_BUCKET: i64 = 3600 * NANOS_PER_SEC;

/// A summary of recent conversations, not every request. Per conversation and
/// tenant, requests are kept so that no three kept ones lie within 48 h: a
/// request between two kept ones at most 48 h apart adds nothing, since any
/// time within 24 h of it is within 24 h of one of them. Whether two tenants
/// used a conversation within 24 h of each other is unchanged, and a
/// conversation costs O(tenants), however many requests share it.
#[derive(Debug, Default)]
pub(crate) struct Conversations {
    map: HashMap<Key, Conversation>,
    /// Conversation keys by the hour of their newest request.
    buckets: BTreeMap<i64, Vec<Key>>,
    /// Requests older than this no longer stand for a conversation.
    cutoff: i64,
    reps: usize,
    /// Conversations changed since the last checkpoint (expiry is replayed from the watermark).
    dirty: HashSet<Key>,
    /// Whether changes are noted: from the first checkpoint on.
    pub(crate) track: bool,
}

impl Conversations {
    fn new() -> Conversations {
        Conversations { cutoff: i64::MIN, ..Default::default() }
    }

    /// Adds a request to its conversation `k` (`id`).
    fn add(&mut self, k: Key, id: &str, rep: Rep) {
        let bucket = rep.time.div_euclid(CONVERSATION_BUCKET);
        let conversation = self.map.entry(k).or_insert_with(|| Conversation { id: id.into(), reps: Vec::new(), listed: i64::MIN });
        conversation.reps.push(rep);
        self.reps += 1;
        if bucket > conversation.listed {
            conversation.listed = bucket;
            self.buckets.entry(bucket).or_default().push(k);
        }
        if self.track {
            self.dirty.insert(k);
        }
    }

    /// Brings a conversation the step touched to its summary.
    fn summarise(&mut self, k: Key) {
        let cutoff = self.cutoff;
        let conversation = self.map.get_mut(&k).expect("touched");
        let before = conversation.reps.len();
        conversation.reps.retain(|r| r.time >= cutoff);
        summarise(&mut conversation.reps);
        self.reps -= before - conversation.reps.len();
    }

    /// The summaries of `touched` (sorted) as `conversations` table rows, and where each one's rows are.
    fn rows(&self, touched: &[Key]) -> Option<ConversationRows> {
        if touched.is_empty() {
            return None;
        }
        let mut conversation_id = StringBuilder::new();
        let mut tenant = StringBuilder::new();
        let mut time = TimestampNanosecondBuilder::new().with_timezone("UTC");
        let mut event = StringBuilder::new();
        let mut source = StringBuilder::new();
        let mut partition = Int32Builder::new();
        let mut position = Int64Builder::new();
        let mut spans = Vec::with_capacity(touched.len());
        let mut at = 0;
        for k in touched {
            let conversation = &self.map[k];
            spans.push((*k, at, conversation.reps.len()));
            at += conversation.reps.len();
            for r in &conversation.reps {
                conversation_id.append_value(&conversation.id);
                tenant.append_option(r.tenant_id());
                time.append_value(r.time);
                event.append_value(r.event_id());
                let (s, p, q) = r.origin.columns();
                source.append_value(s);
                partition.append_option(p);
                position.append_value(q);
            }
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(conversation_id.finish()),
            Arc::new(tenant.finish()),
            Arc::new(time.finish()),
            Arc::new(event.finish()),
            Arc::new(source.finish()),
            Arc::new(partition.finish()),
            Arc::new(position.finish()),
        ];
        Some((RecordBatch::try_new(conversations_schema(), columns).expect("conversation columns"), spans))
    }

    /// Forgets requests older than 24 h behind `watermark`.
    fn expire(&mut self, watermark: i64) {
        let cutoff = watermark.saturating_sub(HISTORY_HORIZON);
        self.cutoff = self.cutoff.max(cutoff);
        while let Some((&bucket, _)) = self.buckets.first_key_value() {
            if (bucket + 1).saturating_mul(CONVERSATION_BUCKET) > cutoff {
                break;
            }
            for k in self.buckets.pop_first().expect("peeked").1 {
                let Some(conversation) = self.map.get_mut(&k) else { continue };
                let before = conversation.reps.len();
                conversation.reps.retain(|r| r.time >= cutoff);
                self.reps -= before - conversation.reps.len();
                // Listed in a later bucket too when it has newer requests; gone when it has none.
                if conversation.reps.is_empty() {
                    self.map.remove(&k);
                }
            }
        }
    }

    fn bytes(&self) -> usize {
        self.map.capacity() * (size_of::<(Key, Conversation)>() + 1)
            + self.reps * (size_of::<Rep>() + 40)
            + self.dirty.capacity() * (size_of::<Key>() + 1)
    }

    /// Every summary, for a checkpoint's base.
    pub(crate) fn all(&self) -> &HashMap<Key, Conversation> {
        &self.map
    }

    /// The summaries changed since the last checkpoint (`None`: gone).
    pub(crate) fn changes(&self) -> Vec<(Key, Option<&Conversation>)> {
        self.dirty.iter().map(|k| (*k, self.map.get(k))).collect()
    }

    pub(crate) fn clear_changes(&mut self) {
        self.dirty = HashSet::default();
    }

    /// Sets a summary to what a checkpoint recorded; [`Conversations::reindex`] after the last.
    pub(crate) fn put(&mut self, k: Key, c: Option<Conversation>) {
        match c {
            Some(c) => {
                self.map.insert(k, c);
            }
            None => {
                self.map.remove(&k);
            }
        }
    }

    /// Rebuilds the expiry buckets and counts from the summaries.
    pub(crate) fn reindex(&mut self) {
        self.buckets.clear();
        self.reps = 0;
        for (k, conversation) in &mut self.map {
            let newest = conversation.reps.iter().map(|r| r.time).max().unwrap_or(i64::MIN);
            conversation.listed = newest.div_euclid(CONVERSATION_BUCKET);
            self.buckets.entry(conversation.listed).or_default().push(*k);
            self.reps += conversation.reps.len();
        }
    }

    pub(crate) fn from_map(map: HashMap<Key, Conversation>) -> Conversations {
        let mut c = Conversations { map, ..Conversations::new() };
        c.reindex();
        c
    }
}

/// Recent requests and responses that have a `request_id`, kept for the
/// longest `horizon` of the loaded rules that read `history` (24 h when one
/// declares none) and only the columns those rules read (found in their plans)
/// plus [`HISTORY_KEY_COLUMNS`]; indexed by `request_id`, so each step's
/// `history` table holds the retained rows sharing a `request_id` with its
/// events. Rows are immutable segments, each checkpointed once.
#[derive(Debug)]
pub struct History {
    segments: BTreeMap<u64, Segment>,
    /// Segments by newest row time, for expiry.
    by_age: BinaryHeap<Reverse<(i64, u64)>>,
    /// Recent small segments, merged once there are enough of them.
    small: Vec<u64>,
    next_id: u64,
    by_request: HashMap<Key, SmallVec<[RowRef; 2]>>,
    /// Events-schema columns kept, ascending; `schema` is their projection.
    columns: Vec<usize>,
    schema: SchemaRef,
    /// How long rows are kept for `history` (event time behind the watermark).
    horizon: i64,
    rows: usize,
    /// Bytes of the retained segments' arrays.
    batch_bytes: usize,
}

/// A segment under this many rows is small; this many small ones are merged.
const SMALL_SEGMENT: usize = 1024;
const MERGE_AFTER: usize = 16;

fn keeps_history(event_type: &str) -> bool {
    event_type == "ai.request" || event_type == "ai.response"
}

/// Per tenant, drops requests that lie between two kept ones at most `2 * HISTORY_HORIZON` apart.
fn summarise(reps: &mut Vec<Rep>) {
    reps.sort_unstable_by(|a, b| (a.tenant, a.time, a.event_id()).cmp(&(b.tenant, b.time, b.event_id())));
    let mut kept: Vec<Rep> = Vec::with_capacity(reps.len());
    for r in reps.drain(..) {
        let n = kept.len();
        if n >= 2 && kept[n - 1].tenant == r.tenant && kept[n - 2].tenant == r.tenant && r.time.saturating_sub(kept[n - 2].time) <= 2 * HISTORY_HORIZON {
            kept[n - 1] = r;
        } else {
            kept.push(r);
        }
    }
    *reps = kept;
}

/// The `history` table's schema: the events schema with every column nullable
/// (columns no rule reads are not kept, and read as NULL).
pub fn history_schema() -> SchemaRef {
    static SCHEMA: std::sync::OnceLock<SchemaRef> = std::sync::OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let fields: Vec<Field> = events_schema().fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect();
            Arc::new(Schema::new(fields))
        })
        .clone()
}

/// The `conversations` table's schema (see [`History`]).
pub fn conversations_schema() -> SchemaRef {
    static SCHEMA: std::sync::OnceLock<SchemaRef> = std::sync::OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let e = events_schema();
            let cols = [col::CONVERSATION_ID, col::TENANT_ID, col::TIME, col::EVENT_ID, col::ORIGIN_SOURCE, col::ORIGIN_PARTITION, col::ORIGIN_POSITION];
            Arc::new(Schema::new(cols.iter().map(|i| e.field(*i).clone()).collect::<Vec<_>>()))
        })
        .clone()
}

impl History {
    /// History keeping `read` (events-schema columns rules read from it)
    /// besides its key columns, for `horizon` of event time (at most 24 h; the
    /// conversation summary always covers 24 h).
    pub fn new(read: &[usize], horizon: i64) -> History {
        let mut columns: Vec<usize> = read.iter().chain(HISTORY_KEY_COLUMNS.iter()).copied().collect();
        columns.sort_unstable();
        columns.dedup();
        let schema = Arc::new(history_schema().project(&columns).expect("columns of the events schema"));
        History {
            segments: BTreeMap::new(),
            by_age: BinaryHeap::new(),
            small: Vec::new(),
            next_id: 0,
            by_request: HashMap::default(),
            columns,
            schema,
            horizon: horizon.clamp(0, HISTORY_HORIZON),
            rows: 0,
            batch_bytes: 0,
        }
    }

    /// Position of an events-schema column in the narrowed layout.
    fn at(&self, events_col: usize) -> usize {
        self.columns.binary_search(&events_col).expect("key columns are kept")
    }

    /// The rows of `events` that history keeps (requests and responses with a `request_id`), narrowed.
    fn relevant(&self, events: &RecordBatch) -> Option<RecordBatch> {
        let c = Cols::of(events);
        let mask: BooleanArray =
            (0..events.num_rows()).map(|i| Some(keeps_history(c.event_type.value(i)) && c.request_id.is_valid(i))).collect();
        if mask.true_count() == 0 {
            return None;
        }
        let narrowed = events.project(&self.columns).expect("columns of the events schema");
        let narrowed = RecordBatch::try_new(self.schema.clone(), narrowed.columns().to_vec()).expect("same columns, nullable");
        Some(filter_record_batch(&narrowed, &mask).expect("mask fits batch"))
    }

    /// Takes a step's new events in and returns its `history` table.
    fn step(&mut self, events: &RecordBatch) -> Option<RecordBatch> {
        self.relevant(events).and_then(|rows| {
            let touched = self.insert(rows, true);
            let mut refs: Vec<RowRef> = touched.iter().flat_map(|k| self.by_request[k].iter().copied()).collect();
            refs.sort_unstable();
            refs.dedup();
            let history = self.gather(&refs).map(|b| self.widen(&b));
            self.merge_small();
            history
        })
    }

    /// Indexes narrowed `rows` as the segment `next_id`; returns the request keys it touched when asked.
    fn insert(&mut self, rows: RecordBatch, report: bool) -> Vec<Key> {
        let id = self.next_id;
        self.next_id += 1;
        let request_id = rows.column(self.at(col::REQUEST_ID)).as_string::<i32>().clone();
        let time = rows.column(self.at(col::TIME)).as_primitive::<TimestampNanosecondType>().clone();
        let mut touched = Vec::new();
        let mut max_time = i64::MIN;
        for i in 0..rows.num_rows() {
            max_time = max_time.max(time.value(i));
            if request_id.is_valid(i) {
                let k = key(request_id.value(i));
                let refs = self.by_request.entry(k).or_default();
                if report && refs.last().is_none_or(|r| r.0 != id) {
                    touched.push(k);
                }
                refs.push((id, i as u32));
            }
        }
        self.rows += rows.num_rows();
        self.batch_bytes += rows.get_array_memory_size();
        if rows.num_rows() < SMALL_SEGMENT {
            self.small.push(id);
        }
        self.by_age.push(Reverse((max_time, id)));
        self.segments.insert(id, Segment { batch: rows });
        touched
    }

    /// Merges recent small segments into one, so a slow stream of small steps
    /// does not pay a segment's fixed cost per step for the whole horizon.
    fn merge_small(&mut self) {
        if self.small.len() < MERGE_AFTER {
            return;
        }
        let ids = std::mem::take(&mut self.small);
        let batches: Vec<RecordBatch> = ids.iter().filter_map(|id| self.segments.get(id).map(|s| s.batch.clone())).collect();
        for id in &ids {
            if self.segments.contains_key(id) {
                self.drop_segment(*id);
            }
        }
        if !batches.is_empty() {
            let merged = arrow::compute::concat_batches(&self.schema, &batches).expect("segments share one layout");
            self.insert(merged, false);
        }
    }

    /// The retained rows at `refs` (sorted), in the narrowed layout.
    fn gather(&self, refs: &[RowRef]) -> Option<RecordBatch> {
        if refs.is_empty() {
            return None;
        }
        let mut ids: Vec<u64> = refs.iter().map(|r| r.0).collect();
        ids.dedup();
        let batches: Vec<&RecordBatch> = ids.iter().map(|id| &self.segments[id].batch).collect();
        let indices: Vec<(usize, usize)> =
            refs.iter().map(|(seg, row)| (ids.binary_search(seg).expect("segment listed"), *row as usize)).collect();
        Some(interleave_record_batch(&batches, &indices).expect("history segments share one layout"))
    }

    /// A narrowed batch in the `history` table's schema: columns not kept read as NULL.
    fn widen(&self, b: &RecordBatch) -> RecordBatch {
        let schema = history_schema();
        let mut kept = self.columns.iter().zip(b.columns()).peekable();
        let cols: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| match kept.peek() {
                Some((c, a)) if **c == i => {
                    let a = (*a).clone();
                    kept.next();
                    a
                }
                _ => new_null_array(f.data_type(), b.num_rows()),
            })
            .collect();
        RecordBatch::try_new(schema, cols).expect("history columns")
    }

    /// Forgets the rows older than the horizon behind `watermark`: no on-time event can pair with them any more.
    fn expire(&mut self, watermark: i64) {
        let cutoff = watermark.saturating_sub(self.horizon);
        while let Some(Reverse((max_time, id))) = self.by_age.peek().copied() {
            if max_time >= cutoff {
                break;
            }
            self.by_age.pop();
            if self.segments.contains_key(&id) {
                self.drop_segment(id);
            }
        }
    }

    /// Removes a segment and its index entries (its `by_age` entry is skipped when popped).
    fn drop_segment(&mut self, id: u64) {
        let seg = self.segments.remove(&id).expect("listed");
        self.rows -= seg.batch.num_rows();
        self.batch_bytes = self.batch_bytes.saturating_sub(seg.batch.get_array_memory_size());
        let request_id = seg.batch.column(self.at(col::REQUEST_ID)).as_string::<i32>();
        for i in 0..seg.batch.num_rows() {
            if request_id.is_valid(i) {
                let k = key(request_id.value(i));
                if let Some(v) = self.by_request.get_mut(&k) {
                    v.retain(|r| r.0 != id);
                    if v.is_empty() {
                        self.by_request.remove(&k);
                    }
                }
            }
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }


    /// An estimate of the heap bytes held.
    fn bytes(&self) -> usize {
        self.batch_bytes
            + self.by_request.capacity() * (size_of::<(Key, SmallVec<[RowRef; 2]>)>() + 1)
            + (self.rows.saturating_sub(2 * self.by_request.len())) * size_of::<RowRef>()
            + self.segments.len() * 64
    }

    /// The retained segments with their ids, oldest first (for checkpoints).
    pub(crate) fn segments(&self) -> impl Iterator<Item = (u64, &RecordBatch)> {
        self.segments.iter().map(|(id, s)| (*id, &s.batch))
    }

    pub(crate) fn next_segment_id(&self) -> u64 {
        self.next_id
    }


    /// Restores segments written by [`History::segments`] (keeping their ids)
    /// and the conversation summaries. Segments of another layout (a
    /// different rule set) are brought to this one by column name; a column
    /// they lack reads as NULL.
    pub(crate) fn restore(&mut self, segments: Vec<(u64, RecordBatch)>, next_id: u64) {
        let columns = std::mem::take(&mut self.columns);
        *self = History::new(&columns, self.horizon);
        for (id, b) in segments {
            let b = self.to_layout(b);
            self.next_id = id;
            self.insert(b, false);
        }
        self.small.clear();
        self.next_id = self.next_id.max(next_id);
    }

    fn to_layout(&self, b: RecordBatch) -> RecordBatch {
        if b.schema().fields() == self.schema.fields() {
            return b;
        }
        let cols: Vec<ArrayRef> = self
            .schema
            .fields()
            .iter()
            .map(|f| match b.column_by_name(f.name()) {
                Some(a) if a.data_type() == f.data_type() => a.clone(),
                _ => new_null_array(f.data_type(), b.num_rows()),
            })
            .collect();
        RecordBatch::try_new(self.schema.clone(), cols).expect("a layout of nullable columns")
    }
}

/// What one step hands to the rules.
#[derive(Debug)]
pub struct StepInput {
    /// The step's new events, duplicates removed.
    pub events: RecordBatch,
    /// The `history` table: retained and new requests and responses sharing a `request_id` with `events`.
    pub history: Option<RecordBatch>,
    /// The `conversations` table: the requests standing for each conversation of `events`.
    pub conversations: Option<RecordBatch>,
    pub due_requests: Vec<Obligation>,
    pub due_artifacts: Vec<Obligation>,
    pub duplicates: usize,
    /// Events older than the watermark when they arrived.
    pub late: usize,
    /// The watermark and the newest event time after this step.
    pub watermark: Option<i64>,
    pub max_seen: Option<i64>,
}

/// Entries held by kind, and an estimate of their bytes, for metrics and the scan summary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateStats {
    pub entries: Vec<(&'static str, usize)>,
    pub bytes: usize,
    /// `bytes` by part of the state.
    pub parts: Vec<(&'static str, usize)>,
}

impl StateStats {
    pub fn total(&self) -> usize {
        self.entries.iter().map(|e| e.1).sum()
    }
}

/// All event-time state of the engine.
///
/// The keyed parts (seen event ids, open obligations, decided and early keys,
/// conversation summaries) are split into key-hash [`Shard`]s: each id's key
/// picks its shard, so a step's work on one shard never touches another's.
/// Large steps run the shards on parallel threads (history beside them), and
/// each shard is checkpointed on its own and incrementally (see
/// [`super::checkpoint`]). The answer does not depend on the shard count.
#[derive(Debug)]
pub struct State {
    pub(crate) lateness: i64,
    pub(crate) max_seen: Option<i64>,
    pub(crate) watermark: i64,
    pub history: History,
    pub(crate) shards: Vec<Shard>,
    pub(crate) spill_config: SpillConfig,
    /// How long decided and early keys are remembered: (requests, artifacts).
    memory: (i64, i64),
    over_limit_warned: bool,
    /// While over the limit after a spill, the state bytes at which to try again.
    next_spill_try: usize,
}

/// One key-hash shard of the keyed state.
#[derive(Debug)]
pub(crate) struct Shard {
    /// Seen event ids by minute of event time: a retry has its original's time.
    pub(crate) seen: BTreeMap<i64, HashSet<Key>>,
    pub(crate) requests: Deadlines,
    pub(crate) artifacts: Deadlines,
    pub(crate) conversations: Conversations,
    /// Open obligations moved to disk past the memory limit; opened at the shard's first spill.
    pub(crate) spill: Option<Spill>,
    /// The spill store's file; `None` for a scratch file.
    pub(crate) spill_path: Option<std::path::PathBuf>,
    /// Whether `seen` changed since the last checkpoint.
    pub(crate) seen_changed: bool,
}

/// When and where the state spills open obligations to disk.
#[derive(Debug, Clone)]
pub struct SpillConfig {
    /// Estimated state bytes past which open obligations move to disk.
    pub memory_limit: usize,
    /// The store's file (each shard's is named after it, see [`super::spill::shard_file`]);
    /// `None` uses scratch files in the temporary folder, removed at exit.
    pub path: Option<std::path::PathBuf>,
    /// Only obligations due further than this past the watermark spill (event time, nanoseconds).
    pub min_ahead: i64,
}

impl Default for SpillConfig {
    fn default() -> Self {
        SpillConfig { memory_limit: DEFAULT_STATE_MEMORY_LIMIT, path: None, min_ahead: 3600 * NANOS_PER_SEC }
    }
}

/// The default `state_memory_limit`: 512 MiB.
pub const DEFAULT_STATE_MEMORY_LIMIT: usize = 512 << 20;

/// The default number of key-hash shards.
pub const DEFAULT_SHARDS: usize = 8;
/// The most shards a state may have.
pub const MAX_SHARDS: usize = 256;

const SEEN_BUCKET: i64 = 60 * NANOS_PER_SEC;

/// Steps of at least this many events run their shards on parallel threads;
/// smaller ones cost less than the threads would.
const PARALLEL_ROWS: usize = 4096;

/// The shard of a key among `n`: its top bits, spread evenly.
#[inline]
pub fn shard_of(k: Key, n: usize) -> usize {
    (((k >> 64) as u64 as u128 * n as u128) >> 64) as usize
}

/// Runs `f` on every shard and `beside` once, on rayon's pool (one thread a
/// core, kept for the life of the process) when `parallel`, else one after
/// the other on this thread. Results come in shard order, whatever ran where.
pub(crate) fn each_shard<R: Send, S: Send>(
    shards: &mut [Shard],
    parallel: bool,
    f: impl Fn(usize, &mut Shard) -> R + Sync + Send,
    beside: impl FnOnce() -> S + Send,
) -> (Vec<R>, S) {
    use rayon::prelude::*;
    if !parallel {
        let out = shards.iter_mut().enumerate().map(|(i, s)| f(i, s)).collect();
        return (out, beside());
    }
    let (out, side) = rayon::join(|| shards.par_iter_mut().enumerate().map(|(i, s)| f(i, s)).collect::<Vec<R>>(), beside);
    (out, side)
}

/// A row of a step and the key it is routed by.
type Routed = (u32, Key);

/// What one shard's step gives back.
struct ShardStep {
    due_requests: Vec<(Key, Obligation)>,
    due_artifacts: Vec<(Key, Obligation)>,
    /// The summaries of the conversations it added requests to, in key order,
    /// and where each one's rows are: (key, first row, rows).
    conversations: Option<ConversationRows>,
}

impl Shard {
    fn new(memory: (i64, i64), spill_path: Option<std::path::PathBuf>) -> Shard {
        Shard {
            seen: BTreeMap::new(),
            requests: Deadlines::new(memory.0),
            artifacts: Deadlines::new(memory.1),
            conversations: Conversations::new(),
            spill: None,
            spill_path,
            seen_changed: false,
        }
    }

    /// Records the event ids at `rows`; returns the rows already seen.
    fn dedup(&mut self, c: &Cols<'_>, rows: &[Routed]) -> Vec<u32> {
        if !rows.is_empty() {
            self.seen_changed = true;
        }
        rows.iter()
            .filter(|(i, k)| !self.seen.entry(c.time.value(*i as usize).div_euclid(SEEN_BUCKET)).or_default().insert(*k))
            .map(|(i, _)| *i)
            .collect()
    }

    /// Opens and fulfils the obligations of `ops`, adds the requests of `convs`
    /// to their conversations, then releases what `watermark` makes due and
    /// forgets what it makes irrelevant.
    #[allow(clippy::too_many_arguments)]
    fn step(&mut self, c: &Cols<'_>, ops: &[Routed], convs: &[Routed], policy: &Policy, watermark: i64, lateness: i64) -> ShardStep {
        let mut origins = Origins::default();
        // The spill store's tables, in one transaction for the step, when anything is spilled.
        let spill = self.spill.take();
        let txn = spill.as_ref().filter(|_| self.requests.spilled + self.artifacts.spilled > 0).map(Spill::begin);
        let (due_requests, due_artifacts) = {
            let open = |kind: Kind, d: &mut Deadlines| match (&spill, &txn) {
                (Some(s), Some(t)) if d.spilled > 0 => {
                    let tables = Tables::open(s, t, kind);
                    d.sharpen(&tables);
                    Some(tables)
                }
                _ => None,
            };
            let mut requests = open(Kind::Requests, &mut self.requests);
            let mut artifacts = open(Kind::Artifacts, &mut self.artifacts);
            for &(i, k) in ops {
                self.track_deadlines(c, i as usize, k, policy, &mut origins, requests.as_mut(), artifacts.as_mut());
            }
            (self.requests.due(watermark, false, requests.as_mut()), self.artifacts.due(watermark, false, artifacts.as_mut()))
        };
        if let (Some(s), Some(t)) = (&spill, txn) {
            s.commit(t);
        }
        self.spill = spill;
        let mut touched = Vec::with_capacity(convs.len());
        for &(i, k) in convs {
            let i = i as usize;
            let rep = Rep::new(c.event_id.value(i), Cols::opt(c.tenant_id, i), c.time.value(i), origins.of(c, i));
            self.conversations.add(k, c.conversation_id.value(i), rep);
            touched.push(k);
        }
        touched.sort_unstable();
        touched.dedup();
        for k in &touched {
            self.conversations.summarise(*k);
        }
        // Built before expiry: a late request still sees its conversation.
        let conversations = self.conversations.rows(&touched);
        self.expire(watermark, lateness);
        ShardStep { due_requests, due_artifacts, conversations }
    }

    #[allow(clippy::too_many_arguments)]
    fn track_deadlines(
        &mut self,
        c: &Cols<'_>,
        i: usize,
        k: Key,
        policy: &Policy,
        origins: &mut Origins,
        spilled_requests: Option<&mut Tables<'_>>,
        spilled_artifacts: Option<&mut Tables<'_>>,
    ) {
        let t = c.time.value(i);
        let tenant = Cols::opt(c.tenant_id, i);
        let mut obligation =
            |key: &str, deadline: i64, kind: Option<&str>| Obligation::new(key, c.event_id.value(i), tenant, kind, (t, deadline), origins.of(c, i));
        match c.event_type.value(i) {
            "ai.request" => {
                let r = c.request_id.value(i);
                let deadline = t.saturating_add(policy.response_timeout_seconds.saturating_mul(NANOS_PER_SEC));
                self.requests.open(k, t, || obligation(r, deadline, None), spilled_requests);
            }
            "ai.response" => self.requests.fulfil(k, t, c.event_id.value(i), || origins.of(c, i), spilled_requests),
            "artifact.stored" => {
                // Retention is the tenant's: without a tenant (or kind) there is no deadline to miss.
                let (Some(kind), Some(tenant)) = (Cols::opt(c.artifact_kind, i), tenant) else {
                    return;
                };
                if let Some(secs) = policy.retention_seconds(tenant, kind) {
                    let a = c.artifact_id.value(i);
                    let deadline = t.saturating_add(secs.saturating_mul(NANOS_PER_SEC));
                    self.artifacts.open(k, t, || obligation(a, deadline, Some(kind)), spilled_artifacts);
                }
            }
            "artifact.deleted" => self.artifacts.fulfil(k, t, c.event_id.value(i), || origins.of(c, i), spilled_artifacts),
            _ => {}
        }
    }

    /// The end of a finite input: every obligation due at `watermark`, inclusive.
    fn finish(&mut self, watermark: i64) -> (Due, Due) {
        match self.spill.take() {
            Some(s) => {
                let txn = s.begin();
                let due = {
                    let mut requests = Tables::open(&s, &txn, Kind::Requests);
                    let mut artifacts = Tables::open(&s, &txn, Kind::Artifacts);
                    (self.requests.due(watermark, true, Some(&mut requests)), self.artifacts.due(watermark, true, Some(&mut artifacts)))
                };
                s.commit(txn);
                self.spill = Some(s);
                due
            }
            None => (self.requests.due(watermark, true, None), self.artifacts.due(watermark, true, None)),
        }
    }

    /// Forgets what no on-time event can still change.
    pub(crate) fn expire(&mut self, watermark: i64, lateness: i64) {
        if watermark == i64::MIN {
            return;
        }
        self.requests.expire(watermark);
        self.artifacts.expire(watermark);
        self.conversations.expire(watermark);
        // A retry carries its original's time; once that time is a lateness
        // behind the watermark, a retry would be late anyway.
        let seen_cutoff = watermark.saturating_sub(lateness).div_euclid(SEEN_BUCKET);
        while let Some((&bucket, _)) = self.seen.first_key_value() {
            if bucket >= seen_cutoff {
                break;
            }
            self.seen.pop_first();
            self.seen_changed = true;
        }
    }

    /// Moves this shard's open obligations due after `cutoff` to its spill
    /// store: the artifacts', then the requests' when `requests_too` says so
    /// (given the state's bytes after the artifacts moved).
    fn spill_due_after(&mut self, cutoff: i64, stores: usize, requests_too: impl FnOnce(&Shard) -> bool) {
        let spill = match self.spill.take() {
            Some(s) => s,
            None => Spill::open(self.spill_path.as_deref(), true, stores).unwrap_or_else(|e| panic!("{e}")),
        };
        let txn = spill.begin();
        {
            let mut artifacts = Tables::open(&spill, &txn, Kind::Artifacts);
            self.artifacts.spill_due_after(cutoff, &mut artifacts);
        }
        if requests_too(self) {
            let mut requests = Tables::open(&spill, &txn, Kind::Requests);
            self.requests.spill_due_after(cutoff, &mut requests);
        }
        spill.commit(txn);
        self.spill = Some(spill);
    }

    fn seen_len(&self) -> usize {
        self.seen.values().map(HashSet::len).sum()
    }

    fn seen_bytes(&self) -> usize {
        self.seen.values().map(|s| s.capacity() * (size_of::<Key>() + 1) + 64).sum()
    }

    fn bytes(&self) -> usize {
        self.requests.bytes() + self.artifacts.bytes() + self.conversations.bytes() + self.seen_bytes()
    }

    /// Whether anything changed since the last checkpoint.
    pub(crate) fn changed(&self) -> bool {
        self.seen_changed || self.requests.changed() || self.artifacts.changed() || !self.conversations.dirty.is_empty()
    }

    /// Forgets what changed: a checkpoint holds it now. Changes are noted from
    /// the first checkpoint on (before it, the first base holds everything).
    pub(crate) fn clear_changes(&mut self) {
        self.requests.track_changes();
        self.artifacts.track_changes();
        self.conversations.track = true;
        self.seen_changed = false;
        self.requests.clear_changes();
        self.artifacts.clear_changes();
        self.conversations.clear_changes();
    }
}

impl State {
    /// `history_columns`: the events-schema columns the rules read from `history`.
    ///
    /// A decided request id (and a response seen before its request) is
    /// remembered for the longest of 24 h and the response timeout; a decided
    /// artifact id (and a deletion seen before its store) for the longest of
    /// 24 h and the longest retention period.
    ///
    /// `history_horizon`: how long history rows are kept (event time, nanoseconds).
    /// `shards`: how many key-hash shards (1 to [`MAX_SHARDS`]).
    pub fn new(
        lateness_seconds: u64,
        policy: &Policy,
        history_columns: &[usize],
        history_horizon: i64,
        spill_config: SpillConfig,
        shards: usize,
    ) -> State {
        let secs = |s: i64| HISTORY_HORIZON.max(s.saturating_mul(NANOS_PER_SEC));
        let mut state = State {
            lateness: (lateness_seconds as i64).saturating_mul(NANOS_PER_SEC),
            max_seen: None,
            watermark: i64::MIN,
            history: History::new(history_columns, history_horizon),
            shards: Vec::new(),
            spill_config,
            memory: (secs(policy.response_timeout_seconds), secs(policy.max_retention_seconds())),
            over_limit_warned: false,
            next_spill_try: 0,
        };
        state.reshard(shards);
        state
    }

    /// Empties the keyed state into `n` new shards (a checkpoint of another shard count is restored into them).
    pub(crate) fn reshard(&mut self, n: usize) {
        let n = n.clamp(1, MAX_SHARDS);
        let path = self.spill_config.path.clone();
        self.shards = (0..n).map(|i| Shard::new(self.memory, path.as_deref().map(|p| super::spill::shard_file(p, i)))).collect();
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    pub fn watermark(&self) -> Option<i64> {
        (self.watermark != i64::MIN).then_some(self.watermark)
    }

    pub fn max_seen(&self) -> Option<i64> {
        self.max_seen
    }

    /// Takes a decoded batch into the state and returns what the rules see for it.
    ///
    /// `hold`, when given, caps the event time the watermark may follow: a
    /// source with several partitions passes the smallest newest-event-time of
    /// the partitions it has not caught up with, so reading one partition's
    /// backlog ahead of another's does not make the other's events late.
    pub fn step(&mut self, batch: RecordBatch, policy: &Policy, hold: Option<i64>) -> StepInput {
        let n = self.shards.len();
        let parallel = batch.num_rows() >= PARALLEL_ROWS;
        let (events, duplicates) = self.drop_duplicates(batch, parallel);
        let c = Cols::of(&events);

        // Late events count against the watermark before this step; the new
        // one follows the step's newest event time.
        let mut late = 0;
        let mut ops: Vec<Vec<Routed>> = vec![Vec::new(); n];
        let mut convs: Vec<Vec<Routed>> = vec![Vec::new(); n];
        for i in 0..events.num_rows() {
            let t = c.time.value(i);
            late += usize::from(t < self.watermark);
            self.max_seen = Some(self.max_seen.map_or(t, |m| m.max(t)));
            let by = match c.event_type.value(i) {
                "ai.request" => {
                    if c.conversation_id.is_valid(i) {
                        let k = key(c.conversation_id.value(i));
                        convs[shard_of(k, n)].push((i as u32, k));
                    }
                    c.request_id
                }
                "ai.response" => c.request_id,
                "artifact.stored" | "artifact.deleted" => c.artifact_id,
                _ => continue,
            };
            if by.is_valid(i) {
                let k = key(by.value(i));
                ops[shard_of(k, n)].push((i as u32, k));
            }
        }
        if let Some(m) = self.max_seen {
            let bound = hold.map_or(m, |h| m.min(h));
            self.watermark = self.watermark.max(bound.saturating_sub(self.lateness));
        }

        let (watermark, lateness) = (self.watermark, self.lateness);
        let history = &mut self.history;
        let (steps, history_table) = each_shard(
            &mut self.shards,
            parallel,
            |s, shard| shard.step(&c, &ops[s], &convs[s], policy, watermark, lateness),
            || {
                let table = history.step(&events);
                history.expire(watermark);
                table
            },
        );
        let (mut due_requests, mut due_artifacts, mut tables) = (Vec::new(), Vec::new(), Vec::new());
        for s in steps {
            due_requests.extend(s.due_requests);
            due_artifacts.extend(s.due_artifacts);
            tables.extend(s.conversations);
        }
        let conversations = State::conversations_table(tables);
        self.keep_within_limit();
        StepInput {
            events,
            history: history_table,
            conversations,
            due_requests: in_release_order(due_requests),
            due_artifacts: in_release_order(due_artifacts),
            duplicates,
            late,
            watermark: self.watermark(),
            max_seen: self.max_seen,
        }
    }

    /// The end of a finite input: the watermark moves to the largest event time seen.
    pub fn finish(&mut self) -> StepInput {
        if let Some(m) = self.max_seen {
            self.watermark = self.watermark.max(m);
        }
        let watermark = self.watermark;
        let (mut due_requests, mut due_artifacts) = (Vec::new(), Vec::new());
        for (r, a) in each_shard(&mut self.shards, false, |_, shard| shard.finish(watermark), || ()).0 {
            due_requests.extend(r);
            due_artifacts.extend(a);
        }
        StepInput {
            events: RecordBatch::new_empty(events_schema()),
            history: None,
            conversations: None,
            due_requests: in_release_order(due_requests),
            due_artifacts: in_release_order(due_artifacts),
            duplicates: 0,
            late: 0,
            watermark: self.watermark(),
            max_seen: self.max_seen,
        }
    }

    fn drop_duplicates(&mut self, batch: RecordBatch, parallel: bool) -> (RecordBatch, usize) {
        let n = self.shards.len();
        let c = Cols::of(&batch);
        let mut rows: Vec<Vec<Routed>> = vec![Vec::new(); n];
        for i in 0..batch.num_rows() {
            let k = key(c.event_id.value(i));
            rows[shard_of(k, n)].push((i as u32, k));
        }
        let repeated: Vec<u32> = each_shard(&mut self.shards, parallel, |s, shard| shard.dedup(&c, &rows[s]), || ()).0.concat();
        if repeated.is_empty() {
            return (batch, 0);
        }
        let mut keep = vec![true; batch.num_rows()];
        for i in &repeated {
            keep[*i as usize] = false;
        }
        (filter_record_batch(&batch, &BooleanArray::from(keep)).expect("mask fits batch"), repeated.len())
    }

    /// The `conversations` table: the summaries the shards' steps touched, in key order.
    fn conversations_table(parts: Vec<ConversationRows>) -> Option<RecordBatch> {
        let mut spans: Vec<(Key, usize, usize, usize)> =
            parts.iter().enumerate().flat_map(|(p, (_, spans))| spans.iter().map(move |&(k, at, n)| (k, p, at, n))).collect();
        if spans.is_empty() {
            return None;
        }
        if parts.len() == 1 {
            return parts.into_iter().next().map(|p| p.0);
        }
        spans.sort_unstable();
        let indices: Vec<(usize, usize)> = spans.iter().flat_map(|&(_, p, at, n)| (at..at + n).map(move |r| (p, r))).collect();
        let batches: Vec<&RecordBatch> = parts.iter().map(|p| &p.0).collect();
        Some(interleave_record_batch(&batches, &indices).expect("conversation tables share one layout"))
    }

    /// Past the memory limit, moves the open obligations in memory to the
    /// spill stores: the artifacts' (the longest lived) first, then the
    /// requests' if the state is still over.
    ///
    /// Only obligations due more than `min_ahead` past the watermark move: one
    /// due sooner would cost a write and a read for little memory. While the
    /// state stays over the limit after a spill (history is large), the next
    /// try waits until it has grown by an eighth of the limit, so the cost
    /// stays amortised.
    fn keep_within_limit(&mut self) {
        let limit = self.spill_config.memory_limit;
        let bytes = self.bytes();
        if bytes <= limit || bytes < self.next_spill_try {
            return;
        }
        let cutoff = self.watermark.saturating_add(self.spill_config.min_ahead);
        // The other parts' bytes, so each shard can tell whether the state is still over after its artifacts moved.
        let history = self.history.bytes();
        let n = self.shards.len();
        let mut shard_bytes: Vec<usize> = self.shards.iter().map(Shard::bytes).collect();
        for s in 0..n {
            let others: usize = history + shard_bytes.iter().enumerate().filter(|(j, _)| *j != s).map(|(_, b)| b).sum::<usize>();
            self.shards[s].spill_due_after(cutoff, n, |shard| others + shard.bytes() > limit);
            shard_bytes[s] = self.shards[s].bytes();
        }
        let after = self.bytes();
        if after > limit {
            self.next_spill_try = after.saturating_add(limit / 8);
            self.warn_over_limit(limit);
        } else {
            self.next_spill_try = 0;
        }
    }

    fn warn_over_limit(&mut self, limit: usize) {
        // At a limit of 0 (tests) every step is over it by design.
        if !self.over_limit_warned && limit > 0 {
            self.over_limit_warned = true;
            tracing::warn!(
                limit_bytes = limit,
                state_bytes = self.bytes(),
                "the state is over state_memory_limit with the open obligations due later than an hour spilled: history, \
                 decided ids and obligations due soon stay in memory; raise state_memory_limit, or shorten the rules' horizon \
                 (see the README, Monitor Kafka continuously)"
            );
        }
    }

    /// The estimated heap bytes of the state (what `state_memory_limit` bounds).
    pub fn bytes(&self) -> usize {
        self.history.bytes() + self.shards.iter().map(Shard::bytes).sum::<usize>()
    }

    /// Entries held by kind and an estimate of their bytes.
    pub fn stats(&self) -> StateStats {
        let sum = |f: &dyn Fn(&Shard) -> usize| self.shards.iter().map(f).sum::<usize>();
        let (requests, artifacts) = (sum(&|s| s.requests.bytes()), sum(&|s| s.artifacts.bytes()));
        let (seen, conversations) = (sum(&|s| s.seen_bytes()), sum(&|s| s.conversations.bytes()));
        StateStats {
            entries: vec![
                ("history_rows", self.history.rows()),
                ("conversation_reps", sum(&|s| s.conversations.reps)),
                ("open_requests", sum(&|s| s.requests.open_len())),
                ("open_artifacts", sum(&|s| s.artifacts.open_len())),
                ("decided_requests", sum(&|s| s.requests.closed_len())),
                ("decided_artifacts", sum(&|s| s.artifacts.closed_len())),
                ("early_fulfilments", sum(&|s| s.requests.early_len() + s.artifacts.early_len())),
                ("seen_ids", sum(&|s| s.seen_len())),
                ("spilled_obligations", sum(&|s| s.requests.spilled + s.artifacts.spilled)),
            ],
            bytes: self.bytes(),
            parts: vec![
                ("history", self.history.bytes()),
                ("conversations", conversations),
                ("requests", requests),
                ("artifacts", artifacts),
                ("seen", seen),
            ],
        }
    }

    /// Number of entries held, for the state-size metric.
    pub fn size(&self) -> usize {
        self.stats().total()
    }
}

/// Due obligations from every shard, in the order one shard would release
/// them: by deadline, then key.
fn in_release_order(mut due: Vec<(Key, Obligation)>) -> Vec<Obligation> {
    due.sort_unstable_by_key(|(k, o)| (o.deadline, *k));
    due.into_iter().map(|(_, o)| o).collect()
}

/// Origins built for one step, sharing one allocation per source name.
#[derive(Default)]
struct Origins {
    last: Option<Arc<str>>,
}

impl Origins {
    fn of(&mut self, c: &Cols<'_>, i: usize) -> Origin {
        let source = c.origin_source.value(i);
        let name = match &self.last {
            Some(s) if &**s == source => s.clone(),
            _ => {
                let s: Arc<str> = source.into();
                self.last = Some(s.clone());
                s
            }
        };
        let p = c.origin_partition;
        match p.is_valid(i).then(|| p.value(i)) {
            Some(partition) => Origin::Kafka { topic: name, partition, offset: c.origin_position.value(i) },
            None if source == "generator" => Origin::Generated { seq: c.origin_position.value(i) as u64 },
            None => Origin::File { path: name, line: c.origin_position.value(i) as u64 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ob(k: &str, start: i64, deadline: i64) -> Obligation {
        Obligation::new(k, &format!("e-{start}"), None, None, (start, deadline), Origin::Generated { seq: 0 })
    }

    fn open(d: &mut Deadlines, k: &str, start: i64, deadline: i64) {
        d.open(key(k), start, || ob(k, start, deadline), None);
    }

    #[test]
    fn deadlines_release_in_order_and_keep_the_earliest_start() {
        let mut d = Deadlines::new(HISTORY_HORIZON);
        open(&mut d, "a", 10, 20);
        open(&mut d, "b", 5, 15);
        open(&mut d, "a", 8, 18); // an earlier request for the same key counts
        d.fulfil(key("b"), 16, "r", || Origin::Generated { seq: 1 }, None);
        assert!(d.due(14, true, None).is_empty());
        assert!(d.due(15, false, None).is_empty(), "a deadline equal to the watermark can still be met");
        let due: Vec<_> = d.due(18, true, None).into_iter().map(|(_, o)| (o.key().to_string(), o.deadline, o.met.map(|m| m.0))).collect();
        assert_eq!(due, vec![("b".into(), 15, Some(16)), ("a".into(), 18, None)]);
        assert!(d.due(100, true, None).is_empty(), "the superseded entry of `a` is skipped");
        open(&mut d, "a", 30, 40);
        assert!(d.due(100, true, None).is_empty(), "a decided key is not reopened");
    }

    #[test]
    fn a_fulfilment_before_the_obligation_counts() {
        let mut d = Deadlines::new(HISTORY_HORIZON);
        d.fulfil(key("x"), 3, "resp", || Origin::Generated { seq: 2 }, None);
        d.fulfil(key("x"), 2, "resp0", || Origin::Generated { seq: 3 }, None);
        open(&mut d, "x", 5, 9);
        assert_eq!(d.due(9, true, None)[0].1.met, Some((2, "resp0".into())));
    }

    #[test]
    fn the_filter_of_spilled_keys_has_no_false_negatives_and_few_false_positives() {
        let mut b = Bloom::with_plan(100_000);
        for i in 0..100_000 {
            b.insert(key(&format!("in-{i}")));
        }
        assert!((0..100_000).all(|i| b.may_contain(key(&format!("in-{i}")))));
        let false_positives = (0..100_000).filter(|i| b.may_contain(key(&format!("out-{i}")))).count();
        assert!(false_positives < 2_000, "{false_positives} in 100,000");
        assert!(!b.stale(100_000) && Bloom { inserted: None, ..Bloom::default() }.stale(1));
    }

    #[test]
    fn decided_keys_expire_by_bucket_after_their_memory() {
        let hour = 3600 * NANOS_PER_SEC;
        let mut d = Deadlines::new(24 * hour);
        open(&mut d, "a", 0, hour);
        assert_eq!(d.due(2 * hour, true, None).len(), 1);
        d.expire(24 * hour);
        assert_eq!(d.closed_len(), 1, "kept for its memory");
        open(&mut d, "a", 2 * hour, 3 * hour);
        assert_eq!(d.open_len(), 0, "still decided");
        d.expire(hour + 24 * hour + bucket_width(24 * hour));
        assert_eq!(d.closed_len(), 0, "gone a bucket after its memory");
        d.fulfil(key("late"), 5, "r", || Origin::Generated { seq: 0 }, None);
        d.expire(i64::MAX);
        assert_eq!(d.early_len(), 0);
    }

    fn rep(tenant: u8, hours: i64, row: u32) -> Rep {
        Rep { tenant: Some(tenant as Key), text: row.to_string().into(), split: row.to_string().len() as u32, time: hours * 3600 * NANOS_PER_SEC, origin: Origin::Generated { seq: 0 } }
    }

    /// Whether two tenants' requests lie within 24 h of each other.
    fn crosses(reps: &[Rep]) -> bool {
        reps.iter().any(|a| reps.iter().any(|b| a.tenant != b.tenant && (a.time - b.time).abs() <= HISTORY_HORIZON))
    }

    #[test]
    fn a_conversation_summary_keeps_o_tenants_and_every_crossing() {
        // One tenant every hour for 10 days: a handful kept.
        // (Two days on, two days off, so the answer depends on where the other tenant comes.)
        let all: Vec<Rep> = (0..240).filter(|h| (h / 24) % 4 < 2).map(|h| rep(1, h, h as u32)).collect();
        let mut reps = all.clone();
        summarise(&mut reps);
        assert!(reps.len() <= 12, "{} kept", reps.len());
        // For every other-tenant time, crossing within 24 h is unchanged by the summary.
        for probe in -30..280 {
            let mut with = all.clone();
            with.push(rep(2, probe, 999));
            let mut summary = reps.clone();
            summary.push(rep(2, probe, 999));
            summarise(&mut summary);
            assert_eq!(crosses(&with), crosses(&summary), "probe at hour {probe}");
        }
    }
}
