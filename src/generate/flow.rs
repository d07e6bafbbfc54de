//! Flows: one AI call (request, response, stored artifacts and their deletions), one config
//! change, or one event the built-in rules ignore, with at most one injected violation;
//! and the time stamps (UTC offset, fraction digits) their events are written with.

use super::catalogue::*;
use super::write::{DAY_NS, MS_NS, OFFSETS, PREC_UNIT, PREC_WEIGHTS, SEC_NS};
use super::Generator;

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

// Events of a flow

const OP_CHAT: u8 = 0;
const OP_TEXT: u8 = 1;
pub(super) const OP_EMBED: u8 = 2;
pub(super) const OPS: [&str; 3] = ["chat", "text_completion", "embeddings"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Req {
    pub(super) n: u64,
    pub(super) conv_n: u64,
    pub(super) conv_hex: u32,
    pub(super) tokens: u32,
    pub(super) tenant: u8,
    pub(super) actor: u8,
    pub(super) provider: u8,
    pub(super) model: u8,
    pub(super) op: u8,
    /// REGIONS index, 255 = absent.
    pub(super) region: u8,
    pub(super) classes: u8,
    /// 0 absent, 1 null, 2 [], 3 [own], 4 [own, other], 5 [other]
    pub(super) ctx: u8,
    pub(super) ctx_other: u8,
    /// 0 absent, 1 null, 2 present
    pub(super) conv: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Resp {
    pub(super) n: u64,
    pub(super) latency_us: u64,
    pub(super) out_tokens: u32,
    pub(super) tenant: u8,
    pub(super) provider: u8,
    pub(super) model: u8,
    pub(super) op: u8,
    pub(super) error: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Change {
    pub(super) no: u32,
    pub(super) actor: u8,
    pub(super) rtype: u8,
    pub(super) resource: u8,
    /// 0 absent (= production), 1 "production", 2 "staging"
    pub(super) env: u8,
    /// 0 absent, 1 "", 2 same as the actor, 3+k REVIEWERS[k]
    pub(super) approved: u8,
    /// 255 = none
    pub(super) tenant: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Payload {
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

/// One conversation slot of a tenant.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Conv {
    hex: u32,
    n: u64,
    turns_left: u8,
    actor: u8,
    provider: u8,
}
pub(super) const CONV_SLOTS: usize = 24;

/// Deletion plan for a stored artifact.
#[derive(Clone, Copy, PartialEq)]
enum Deletion {
    /// In time for the tenant's retention (or sometimes never, when the kind has no deadline).
    Compliant,
    Never,
    Late,
}

impl Generator {
    // ---- time stamps ------------------------------------------------------

    pub(super) fn pick_fmt(&mut self) -> (u8, usize) {
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

    // ---- flows ------------------------------------------------------------

    pub(super) fn spawn(&mut self, t: i64) {
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
}
