//! The two time-ordered queues between flows and output: the schedule (every event of the
//! flows spawned so far, by event time) and the reorder buffer (rendered events, by arrival key).

use std::cmp::Reverse;

use super::flow::Payload;
use super::write::{MS_NS, SEC_NS};
use super::Generator;

/// An event of a flow, waiting for its event time. Ordered by `(time, seq)`; `seq` is unique, so
/// `fmt` and `p` never decide. The heap holds `Reverse<Sched>`: the earliest is on top.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Sched {
    pub(super) time: i64,
    seq: u64,
    pub(super) fmt: u8,
    pub(super) p: Payload,
}

/// A rendered event waiting in the reorder buffer. Ordered by `(key, seq)`; `seq` is unique. The
/// buffer holds `Reverse<Arrival>`: the smallest key is on top.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Arrival {
    pub(super) key: i64,
    seq: u64,
    pub(super) time: i64,
    pub(super) slot: u32,
}

impl Generator {
    /// The next event in event-time order at or after the start time.
    pub(super) fn next_ordered(&mut self) -> Sched {
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
            if let Some(Reverse(top)) = self.heap.peek() {
                if top.time <= self.next_flow {
                    return self.heap.pop().expect("peeked").0;
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

    pub(super) fn push(&mut self, (time, fmt): (i64, u8), p: Payload) {
        self.seq += 1;
        self.scheduled += 1;
        self.heap.push(Reverse(Sched { time, seq: self.seq, fmt, p }));
    }

    /// Moves the next event in event-time order into the reorder buffer (twice when duplicated).
    pub(super) fn feed(&mut self) {
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
        self.buffer.push(Reverse(Arrival { key: time + jitter, seq: self.arrivals, time, slot }));
    }
}
