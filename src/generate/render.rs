//! Rendering scheduled events to JSON the way different producers write it (field order,
//! separators, escapes, optional fields), and the malformed lines the engine must dead-letter.

use super::catalogue::*;
use super::flow::{Change, Payload, Req, Resp, OPS, OP_EMBED};
use super::queue::Sched;
use super::write::{push_hex, push_pad, push_time, push_u, J, PREC_UNIT, SEC_NS};
use super::Generator;

impl Generator {
    /// Renders one event; cosmetic choices (field order, escapes, optional fields) are drawn here.
    pub(super) fn render(&mut self, ev: &Sched, out: &mut Vec<u8>) {
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
    pub(super) fn render_malformed(&mut self, t: i64, out: &mut Vec<u8>) {
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
