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

use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use arrow::compute::{filter_record_batch, interleave_record_batch};
use arrow::datatypes::TimestampNanosecondType;

use crate::event::{col, Origin};
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

    pub fn origin(&self, i: usize) -> Origin {
        let p = self.origin_partition;
        Origin::from_columns(self.origin_source.value(i), p.is_valid(i).then(|| p.value(i)), self.origin_position.value(i))
    }
}

/// A map whose entries expire by event time, swept now and then rather than every step.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Expiring<V> {
    pub(crate) map: HashMap<String, (i64, V)>,
    pub(crate) swept_at: i64,
}

impl<V> Default for Expiring<V> {
    fn default() -> Self {
        Expiring { map: HashMap::default(), swept_at: i64::MIN }
    }
}

impl<V> Expiring<V> {
    /// Drops entries older than `cutoff`; sweeps at most once per minute of event time.
    fn expire(&mut self, cutoff: i64) {
        if cutoff.saturating_sub(self.swept_at) >= 60 * NANOS_PER_SEC {
            self.map.retain(|_, (t, _)| *t >= cutoff);
            self.swept_at = cutoff;
        }
    }
}

/// What is still owed for one key: a response to a request, or a deletion of an artifact.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Obligation {
    pub key: String,
    /// Event time of the earliest event that opened it.
    pub start: i64,
    pub deadline: i64,
    pub event_id: String,
    pub tenant_id: Option<String>,
    /// `artifact_kind` for artifacts.
    pub kind: Option<String>,
    pub origin: Origin,
    /// The earliest fulfilling event seen so far (time, event id).
    pub met: Option<(i64, String)>,
    /// Where the fulfilling event came from, for the alert's evidence.
    pub met_origin: Option<Origin>,
}

/// Open obligations keyed by id, released in deadline order.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Deadlines {
    open: HashMap<String, Obligation>,
    /// Derived from `open`; rebuilt on restore.
    #[serde(skip)]
    queue: BinaryHeap<Reverse<(i64, String)>>,
    /// Fulfilments that came before anything opened their key: (event id, origin).
    early: Expiring<(String, Origin)>,
    /// Keys already decided, so a retry after the verdict does not reopen them.
    closed: Expiring<()>,
}

impl Deadlines {
    /// Opens (or moves earlier) the obligation for `o.key`.
    fn open(&mut self, mut o: Obligation) {
        if self.closed.map.contains_key(&o.key) {
            return;
        }
        match self.open.get_mut(&o.key) {
            Some(cur) if o.start < cur.start => {
                o.met = cur.met.take();
                o.met_origin = cur.met_origin.take();
                self.queue.push(Reverse((o.deadline, o.key.clone())));
                *cur = o;
            }
            Some(_) => {}
            None => {
                if let Some((t, (id, origin))) = self.early.map.remove(&o.key) {
                    o.met = Some((t, id));
                    o.met_origin = Some(origin);
                }
                self.queue.push(Reverse((o.deadline, o.key.clone())));
                self.open.insert(o.key.clone(), o);
            }
        }
    }

    /// Records a fulfilling event (a response, a deletion) at time `t`.
    fn fulfil(&mut self, key: &str, t: i64, event_id: &str, origin: &Origin) {
        let earlier = |met: &Option<(i64, String)>| met.as_ref().is_none_or(|(m, _)| t < *m);
        if let Some(o) = self.open.get_mut(key) {
            if earlier(&o.met) {
                o.met = Some((t, event_id.to_string()));
                o.met_origin = Some(origin.clone());
            }
        } else if !self.closed.map.contains_key(key) {
            match self.early.map.get_mut(key) {
                Some(e) if t < e.0 => *e = (t, (event_id.to_string(), origin.clone())),
                Some(_) => {}
                None => {
                    self.early.map.insert(key.to_string(), (t, (event_id.to_string(), origin.clone())));
                }
            }
        }
    }

    /// Takes every obligation whose deadline is before `watermark` (or at it, when
    /// `inclusive`: the end of a finite input, after which nothing more arrives).
    /// While streaming, an event exactly at the watermark is still on time, so a
    /// deadline equal to the watermark can still be met and must wait.
    fn due(&mut self, watermark: i64, inclusive: bool) -> Vec<Obligation> {
        let mut out = Vec::new();
        while let Some(Reverse((deadline, _))) = self.queue.peek() {
            if *deadline > watermark || (*deadline == watermark && !inclusive) {
                break;
            }
            let Reverse((deadline, key)) = self.queue.pop().expect("peeked");
            // Entries superseded by an earlier start are skipped here.
            if self.open.get(&key).is_some_and(|o| o.deadline == deadline) {
                let o = self.open.remove(&key).expect("present");
                self.closed.map.insert(key, (o.deadline, ()));
                out.push(o);
            }
        }
        out
    }

    fn expire(&mut self, cutoff: i64) {
        self.early.expire(cutoff);
        self.closed.expire(cutoff);
    }

    pub fn open_len(&self) -> usize {
        self.open.len()
    }

    /// Rebuilds the deadline queue after a restore.
    pub(crate) fn reindex(&mut self) {
        self.queue = self.open.values().map(|o| Reverse((o.deadline, o.key.clone()))).collect();
    }
}

/// A retained step's worth of history rows.
#[derive(Debug)]
struct Segment {
    batch: RecordBatch,
    max_time: i64,
}

/// Recent requests and responses, indexed by the keys the pairing rules join on.
#[derive(Debug, Default)]
pub struct History {
    segments: BTreeMap<u64, Segment>,
    next_id: u64,
    by_request: HashMap<String, Vec<(u64, u32)>>,
    by_conversation: HashMap<String, Vec<(u64, u32)>>,
    rows: usize,
}

fn keeps_history(event_type: &str) -> bool {
    event_type == "ai.request" || event_type == "ai.response"
}

impl History {
    /// Retained rows that share a `request_id` or `conversation_id` with `batch`.
    fn slice(&self, batch: &RecordBatch) -> Option<RecordBatch> {
        if self.rows == 0 {
            return None;
        }
        let c = Cols::of(batch);
        let mut refs: HashSet<(u64, u32)> = HashSet::default();
        let mut seen_req: HashSet<&str> = HashSet::default();
        let mut seen_conv: HashSet<&str> = HashSet::default();
        for i in 0..batch.num_rows() {
            if !keeps_history(c.event_type.value(i)) {
                continue;
            }
            if let Some(r) = Cols::opt(c.request_id, i) {
                if seen_req.insert(r) {
                    refs.extend(self.by_request.get(r).into_iter().flatten());
                }
            }
            if let Some(k) = Cols::opt(c.conversation_id, i) {
                if seen_conv.insert(k) {
                    refs.extend(self.by_conversation.get(k).into_iter().flatten());
                }
            }
        }
        if refs.is_empty() {
            return None;
        }
        let mut refs: Vec<_> = refs.into_iter().collect();
        refs.sort_unstable();
        let mut ids: Vec<u64> = refs.iter().map(|r| r.0).collect();
        ids.dedup();
        let batches: Vec<&RecordBatch> = ids.iter().map(|id| &self.segments[id].batch).collect();
        let indices: Vec<(usize, usize)> =
            refs.iter().map(|(seg, row)| (ids.binary_search(seg).expect("segment listed"), *row as usize)).collect();
        Some(interleave_record_batch(&batches, &indices).expect("history segments share the events schema"))
    }

    /// The rows of `batch` that history keeps.
    fn relevant(batch: &RecordBatch) -> Option<RecordBatch> {
        let c = Cols::of(batch);
        let mask: arrow::array::BooleanArray = (0..batch.num_rows())
            .map(|i| {
                Some(keeps_history(c.event_type.value(i)) && (c.request_id.is_valid(i) || c.conversation_id.is_valid(i)))
            })
            .collect();
        if mask.true_count() == 0 {
            return None;
        }
        Some(filter_record_batch(batch, &mask).expect("mask fits batch"))
    }

    fn insert(&mut self, rows: RecordBatch) {
        let id = self.next_id;
        self.next_id += 1;
        let c = Cols::of(&rows);
        let mut max_time = i64::MIN;
        for i in 0..rows.num_rows() {
            max_time = max_time.max(c.time.value(i));
            if let Some(r) = Cols::opt(c.request_id, i) {
                self.by_request.entry(r.to_string()).or_default().push((id, i as u32));
            }
            if let Some(k) = Cols::opt(c.conversation_id, i) {
                self.by_conversation.entry(k.to_string()).or_default().push((id, i as u32));
            }
        }
        self.rows += rows.num_rows();
        self.segments.insert(id, Segment { batch: rows, max_time });
    }

    /// Drops segments whose newest row is older than `cutoff`.
    fn expire(&mut self, cutoff: i64) {
        let old: Vec<u64> = self.segments.iter().filter(|(_, s)| s.max_time < cutoff).map(|(id, _)| *id).collect();
        for id in old {
            let seg = self.segments.remove(&id).expect("listed");
            self.rows -= seg.batch.num_rows();
            let c = Cols::of(&seg.batch);
            let unlink = |index: &mut HashMap<String, Vec<(u64, u32)>>, key: &str| {
                if let Some(v) = index.get_mut(key) {
                    v.retain(|r| r.0 != id);
                    if v.is_empty() {
                        index.remove(key);
                    }
                }
            };
            for i in 0..seg.batch.num_rows() {
                if let Some(r) = Cols::opt(c.request_id, i) {
                    unlink(&mut self.by_request, r);
                }
                if let Some(k) = Cols::opt(c.conversation_id, i) {
                    unlink(&mut self.by_conversation, k);
                }
            }
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The retained segments with their ids, oldest first (for checkpoints).
    pub(crate) fn segments(&self) -> impl Iterator<Item = (u64, &RecordBatch)> {
        self.segments.iter().map(|(id, s)| (*id, &s.batch))
    }

    pub(crate) fn next_segment_id(&self) -> u64 {
        self.next_id
    }

    /// Restores segments written by [`History::segments`], keeping their ids.
    pub(crate) fn restore(&mut self, segments: Vec<(u64, RecordBatch)>, next_id: u64) {
        *self = History::default();
        for (id, b) in segments {
            self.next_id = id;
            self.insert(b);
        }
        self.next_id = self.next_id.max(next_id);
    }
}

/// What one step hands to the rules.
#[derive(Debug)]
pub struct StepInput {
    /// The step's new events, duplicates removed.
    pub events: RecordBatch,
    /// Retained history rows sharing a key with `events`, then `events`' own history rows.
    pub history: Vec<RecordBatch>,
    pub due_requests: Vec<Obligation>,
    pub due_artifacts: Vec<Obligation>,
    pub duplicates: usize,
    /// Events older than the watermark when they arrived.
    pub late: usize,
}

/// All event-time state of the engine.
#[derive(Debug)]
pub struct State {
    pub(crate) lateness: i64,
    /// How long a fulfilment seen before its obligation (a response before its
    /// request, a deletion before its store) and a decided key are remembered.
    pub(crate) obligation_memory: i64,
    pub(crate) max_seen: Option<i64>,
    pub(crate) watermark: i64,
    /// Seen event ids by minute of event time: a retry has its original's time.
    pub(crate) seen: BTreeMap<i64, HashSet<String>>,
    pub history: History,
    pub requests: Deadlines,
    pub artifacts: Deadlines,
}

const SEEN_BUCKET: i64 = 60 * NANOS_PER_SEC;

impl State {
    /// `policy` sets how long early fulfilments are kept: the longest of 24 h,
    /// the response timeout and the longest retention period.
    pub fn new(lateness_seconds: u64, policy: &Policy) -> State {
        let longest = policy.response_timeout_seconds.max(policy.max_retention_seconds());
        State {
            lateness: lateness_seconds as i64 * NANOS_PER_SEC,
            obligation_memory: HISTORY_HORIZON.max(longest.saturating_mul(NANOS_PER_SEC)),
            max_seen: None,
            watermark: i64::MIN,
            seen: BTreeMap::new(),
            history: History::default(),
            requests: Deadlines::default(),
            artifacts: Deadlines::default(),
        }
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
        let (events, duplicates) = self.drop_duplicates(batch);
        let c = Cols::of(&events);
        let mut late = 0;
        for i in 0..events.num_rows() {
            let t = c.time.value(i);
            if t < self.watermark {
                late += 1;
            }
            self.max_seen = Some(self.max_seen.map_or(t, |m| m.max(t)));
            self.track_deadlines(&c, i, t, policy);
        }

        let mut history = Vec::new();
        if let Some(slice) = self.history.slice(&events) {
            history.push(slice);
        }
        if let Some(own) = History::relevant(&events) {
            history.push(own.clone());
            self.history.insert(own);
        }

        if let Some(m) = self.max_seen {
            let bound = hold.map_or(m, |h| m.min(h));
            self.watermark = self.watermark.max(bound.saturating_sub(self.lateness));
        }
        let due_requests = self.requests.due(self.watermark, false);
        let due_artifacts = self.artifacts.due(self.watermark, false);
        self.expire();
        StepInput { events, history, due_requests, due_artifacts, duplicates, late }
    }

    /// The end of a finite input: the watermark moves to the largest event time seen.
    pub fn finish(&mut self) -> StepInput {
        if let Some(m) = self.max_seen {
            self.watermark = self.watermark.max(m);
        }
        StepInput {
            events: RecordBatch::new_empty(crate::event::events_schema()),
            history: Vec::new(),
            due_requests: self.requests.due(self.watermark, true),
            due_artifacts: self.artifacts.due(self.watermark, true),
            duplicates: 0,
            late: 0,
        }
    }

    fn drop_duplicates(&mut self, batch: RecordBatch) -> (RecordBatch, usize) {
        let c = Cols::of(&batch);
        let keep: arrow::array::BooleanArray = (0..batch.num_rows())
            .map(|i| {
                let bucket = c.time.value(i).div_euclid(SEEN_BUCKET);
                let id = c.event_id.value(i);
                let set = self.seen.entry(bucket).or_default();
                Some(if set.contains(id) { false } else { set.insert(id.to_string()) })
            })
            .collect();
        let dropped = keep.len() - keep.true_count();
        if dropped == 0 {
            return (batch, 0);
        }
        (filter_record_batch(&batch, &keep).expect("mask fits batch"), dropped)
    }

    fn track_deadlines(&mut self, c: &Cols<'_>, i: usize, t: i64, policy: &Policy) {
        let tenant = Cols::opt(c.tenant_id, i);
        let obligation = |key: &str, deadline: i64, kind: Option<&str>| Obligation {
            key: key.to_string(),
            start: t,
            deadline,
            event_id: c.event_id.value(i).to_string(),
            tenant_id: tenant.map(str::to_string),
            kind: kind.map(str::to_string),
            origin: c.origin(i),
            met: None,
            met_origin: None,
        };
        match c.event_type.value(i) {
            "ai.request" => {
                if let Some(r) = Cols::opt(c.request_id, i) {
                    let deadline = t.saturating_add(policy.response_timeout_seconds * NANOS_PER_SEC);
                    self.requests.open(obligation(r, deadline, None));
                }
            }
            "ai.response" => {
                if let Some(r) = Cols::opt(c.request_id, i) {
                    self.requests.fulfil(r, t, c.event_id.value(i), &c.origin(i));
                }
            }
            "artifact.stored" => {
                // Retention is the tenant's: without a tenant (or kind) there is no deadline to miss.
                let (Some(a), Some(kind), Some(tenant)) = (Cols::opt(c.artifact_id, i), Cols::opt(c.artifact_kind, i), tenant) else {
                    return;
                };
                if let Some(secs) = policy.retention_seconds(tenant, kind) {
                    self.artifacts.open(obligation(a, t.saturating_add(secs * NANOS_PER_SEC), Some(kind)));
                }
            }
            "artifact.deleted" => {
                if let Some(a) = Cols::opt(c.artifact_id, i) {
                    self.artifacts.fulfil(a, t, c.event_id.value(i), &c.origin(i));
                }
            }
            _ => {}
        }
    }

    /// Forgets what no on-time event can still change.
    fn expire(&mut self) {
        if self.watermark == i64::MIN {
            return;
        }
        self.history.expire(self.watermark.saturating_sub(HISTORY_HORIZON));
        let obligation_cutoff = self.watermark.saturating_sub(self.obligation_memory);
        self.requests.expire(obligation_cutoff);
        self.artifacts.expire(obligation_cutoff);
        // A retry carries its original's time; once that time is a lateness
        // behind the watermark, a retry would be late anyway.
        let seen_cutoff = self.watermark.saturating_sub(self.lateness).div_euclid(SEEN_BUCKET);
        while let Some((&bucket, _)) = self.seen.first_key_value() {
            if bucket >= seen_cutoff {
                break;
            }
            self.seen.pop_first();
        }
    }

    /// Number of entries held, for the state-size metric.
    pub fn size(&self) -> usize {
        self.history.rows() + self.requests.open_len() + self.artifacts.open_len() + self.seen.values().map(HashSet::len).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ob(key: &str, start: i64, deadline: i64) -> Obligation {
        Obligation {
            key: key.into(),
            start,
            deadline,
            event_id: format!("e-{start}"),
            tenant_id: None,
            kind: None,
            origin: Origin::Generated { seq: 0 },
            met: None,
            met_origin: None,
        }
    }

    #[test]
    fn deadlines_release_in_order_and_keep_the_earliest_start() {
        let mut d = Deadlines::default();
        d.open(ob("a", 10, 20));
        d.open(ob("b", 5, 15));
        d.open(ob("a", 8, 18)); // an earlier request for the same key counts
        d.fulfil("b", 16, "r", &Origin::Generated { seq: 1 });
        assert!(d.due(14, true).is_empty());
        assert!(d.due(15, false).is_empty(), "a deadline equal to the watermark can still be met");
        let due: Vec<_> = d.due(18, true).into_iter().map(|o| (o.key, o.deadline, o.met.map(|m| m.0))).collect();
        assert_eq!(due, vec![("b".into(), 15, Some(16)), ("a".into(), 18, None)]);
        assert!(d.due(100, true).is_empty(), "the superseded entry of `a` is skipped");
        d.open(ob("a", 30, 40));
        assert!(d.due(100, true).is_empty(), "a decided key is not reopened");
    }

    #[test]
    fn a_fulfilment_before_the_obligation_counts() {
        let mut d = Deadlines::default();
        d.fulfil("x", 3, "resp", &Origin::Generated { seq: 2 });
        d.fulfil("x", 2, "resp0", &Origin::Generated { seq: 3 });
        d.open(ob("x", 5, 9));
        assert_eq!(d.due(9, true)[0].met, Some((2, "resp0".into())));
    }
}
