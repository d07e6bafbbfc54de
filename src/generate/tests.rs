//! Tests of the generator: determinism, valid and malformed lines, bounded disorder, duplicates,
//! rate, and agreement with the demo policy.

use super::catalogue::*;
use super::write::{civil_from_days, days_from_civil, SEC_NS};
use super::{Generator, GeneratorConfig, DEMO_POLICY};
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
