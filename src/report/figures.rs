//! The report's figures, each from one SQL query over the archive (tables
//! `events`, `alerts`, `dead_letters`, partition column `date`) and the policy
//! tables, restricted to the period with `date BETWEEN from AND to` so only the
//! period's files are read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::Context as _;
use chrono::{Duration, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use datafusion::prelude::SessionContext;
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::archive::{tables, Target};
use crate::engine::{session, EngineConfig};
use crate::policy::Policy;
use crate::rules::Rule;

/// What a report is made from.
pub struct ReportInput {
    pub archive: Target,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub policy_path: PathBuf,
    pub rules: Vec<Rule>,
    /// Tenants drawn one by one in the data-flow diagram; the rest are grouped.
    pub max_tenants: usize,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub provenance: Provenance,
    pub coverage: Coverage,
    pub controls: Vec<Control>,
    pub vendors: Vec<VendorRow>,
    pub data_flow: Vec<Flow>,
    pub changes: Vec<Change>,
    pub findings: Vec<Finding>,
}

#[derive(Debug, Serialize)]
pub struct Provenance {
    pub from: String,
    pub to: String,
    pub generated_at: String,
    pub aiwatch_version: String,
    pub archive: String,
    pub policy_file: String,
    pub policy_sha256: String,
    /// SHA-256 over the rules' files and texts, in id order.
    pub rule_pack_sha256: String,
    pub rules: Vec<RuleRef>,
}

#[derive(Debug, Serialize)]
pub struct RuleRef {
    pub id: String,
    pub file: String,
    pub sha256: String,
    pub builtin: bool,
}

#[derive(Debug, Serialize)]
pub struct Coverage {
    pub events: u64,
    pub events_per_day: Vec<DaySourceCount>,
    pub days_without_events: Vec<String>,
    /// Runs of whole UTC hours in the period with no event: [start, end).
    pub hours_without_events: Vec<Gap>,
    pub dead_letters: u64,
    pub dead_letters_per_day: Vec<DayKindCount>,
    /// The archive's first and last event (all of it, not only the period).
    pub archive_first_event: Option<String>,
    pub archive_last_event: Option<String>,
    pub period_first_event: Option<String>,
    pub period_last_event: Option<String>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct DaySourceCount {
    pub date: String,
    /// The emitting service (`source`), or, when the event names none, the
    /// input it was read from (file or Kafka topic).
    pub source: String,
    pub events: u64,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct DayKindCount {
    pub date: String,
    pub kind: String,
    pub dead_letters: u64,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Gap {
    pub start: String,
    pub end: String,
    pub hours: u64,
}

#[derive(Debug, Serialize)]
pub struct Control {
    pub criterion: String,
    pub description: String,
    pub rules: Vec<ControlRule>,
    pub violations: u64,
    pub by_severity: BTreeMap<String, u64>,
    pub per_day: Vec<DayCount>,
}

#[derive(Debug, Serialize)]
pub struct ControlRule {
    pub id: String,
    pub title: String,
    pub severity: String,
    pub checks: String,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct DayCount {
    pub date: String,
    pub count: u64,
}

#[derive(Debug, Serialize)]
pub struct VendorRow {
    pub provider: String,
    /// Whether the policy lists it; an unlisted provider is unapproved.
    pub listed: bool,
    pub dpa_signed: Option<bool>,
    pub trains_on_customer_data: Option<bool>,
    pub allowed_data_classes: Vec<String>,
    pub requests: u64,
    pub regions: Vec<String>,
    pub data_classes_sent: Vec<String>,
    /// Classes sent that the policy does not allow for this vendor.
    pub data_classes_not_allowed: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Flow {
    /// A tenant, or `N other tenants` when there are many.
    pub tenants: String,
    pub provider: String,
    pub region: String,
    pub requests: u64,
    pub data_classes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Change {
    pub event_id: String,
    pub time: String,
    pub tenant_id: Option<String>,
    pub actor_id: Option<String>,
    pub approved_by: Option<String>,
    pub environment: String,
    pub resource_type: Option<String>,
    pub resource: Option<String>,
    pub change_id: Option<String>,
    /// An [[change_authorization]] entry names its actor, resource type and environment.
    pub authorized: bool,
    /// Its environment is listed in approval_required_in.
    pub review_required: bool,
    /// approved_by is present and is not the actor.
    pub reviewed: bool,
    pub alert_ids: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Finding {
    pub rule_id: String,
    pub title: String,
    pub severity: String,
    /// Alerts emitted in the period.
    pub alerts: u64,
    /// Distinct violations (alert ids); aiwatch records no resolutions, so each is open.
    pub open: u64,
    /// Violations that fired more than once in the period.
    pub repeated: u64,
    pub violations: Vec<Violation>,
}

#[derive(Debug, Serialize)]
pub struct Violation {
    pub alert_id: String,
    pub times: u64,
    pub first: String,
    pub last: String,
    pub event_ids: Vec<String>,
}

/// Runs `sql` and returns its rows as JSON objects (nulls left out).
pub async fn rows(ctx: &SessionContext, sql: &str) -> anyhow::Result<Vec<Map<String, Value>>> {
    let started = std::time::Instant::now();
    let batches = ctx.sql(sql).await.with_context(|| format!("report query cannot be planned: {sql}"))?.collect().await.with_context(|| format!("report query failed: {sql}"))?;
    let mut buf = Vec::new();
    {
        let mut w = arrow::json::ArrayWriter::new(&mut buf);
        for b in &batches {
            w.write(b)?;
        }
        w.finish()?;
    }
    tracing::debug!(took_ms = started.elapsed().as_millis() as u64, sql, "report query");
    if buf.is_empty() {
        return Ok(Vec::new());
    }
    Ok(serde_json::from_slice(&buf)?)
}

fn s(r: &Map<String, Value>, k: &str) -> String {
    r.get(k).and_then(Value::as_str).unwrap_or_default().to_string()
}
fn opt(r: &Map<String, Value>, k: &str) -> Option<String> {
    r.get(k).and_then(Value::as_str).map(str::to_string)
}
fn n(r: &Map<String, Value>, k: &str) -> u64 {
    r.get(k).and_then(Value::as_u64).unwrap_or_default()
}
fn b(r: &Map<String, Value>, k: &str) -> bool {
    r.get(k).and_then(Value::as_bool).unwrap_or_default()
}
fn list(r: &Map<String, Value>, k: &str) -> Vec<String> {
    r.get(k).and_then(Value::as_array).map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

/// A timestamp as the JSON writer gives it, in RFC 3339 with a `Z`.
fn time(r: &Map<String, Value>, k: &str) -> Option<String> {
    let t = opt(r, k)?;
    let trimmed = t.trim_end_matches('Z').trim_end_matches("+00:00");
    NaiveDateTime::parse_from_str(trimmed, "%Y-%m-%dT%H:%M:%S%.f")
        .map(|t| t.and_utc().to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .ok()
        .or(Some(t))
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of a rule pack: each rule's id, file and text, in id order.
pub fn rule_pack_sha256(rules: &[Rule]) -> String {
    let mut sorted: Vec<&Rule> = rules.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    let mut h = Sha256::new();
    for r in sorted {
        for part in [&r.id, &r.file, &r.sql] {
            h.update(part.as_bytes());
            h.update([0u8]);
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Computes every figure of the report.
pub async fn build(input: &ReportInput) -> anyhow::Result<Report> {
    anyhow::ensure!(input.from <= input.to, "--from {} is after --to {}: the period is empty", input.from, input.to);
    let policy_bytes = std::fs::read(&input.policy_path).with_context(|| format!("cannot read the policy {}", input.policy_path.display()))?;
    let policy = std::sync::Arc::new(Policy::load(&input.policy_path)?);
    let ctx = session(&policy, &EngineConfig::default())?;
    tables::register(&ctx, &input.archive).with_context(|| format!("cannot open the archive {}", input.archive.display))?;
    let (from, to) = (input.from.format("%Y-%m-%d").to_string(), input.to.format("%Y-%m-%d").to_string());
    let period = format!("date BETWEEN '{from}' AND '{to}'");

    let mut rule_refs: Vec<RuleRef> = input
        .rules
        .iter()
        .map(|r| RuleRef { id: r.id.clone(), file: r.file.clone(), sha256: sha256_hex(r.sql.as_bytes()), builtin: r.builtin })
        .collect();
    rule_refs.sort_by(|a, b| a.id.cmp(&b.id));
    let provenance = Provenance {
        from: from.clone(),
        to: to.clone(),
        generated_at: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        aiwatch_version: env!("CARGO_PKG_VERSION").to_string(),
        archive: input.archive.display.clone(),
        policy_file: input.policy_path.display().to_string(),
        policy_sha256: sha256_hex(&policy_bytes),
        rule_pack_sha256: rule_pack_sha256(&input.rules),
        rules: rule_refs,
    };

    let coverage = coverage(&ctx, &period, input.from, input.to).await?;
    let controls = controls(&ctx, &period, &input.rules).await?;
    let (flows, flow_classes) = request_flows(&ctx, &period).await?;
    let vendors = vendors(&ctx, &flows, &flow_classes).await?;
    let data_flow = data_flow(&flows, &flow_classes, input.max_tenants);
    let changes = changes(&ctx, &period).await?;
    let findings = findings(&ctx, &period, &input.rules).await?;
    Ok(Report { provenance, coverage, controls, vendors, data_flow, changes, findings })
}

async fn coverage(ctx: &SessionContext, period: &str, from: NaiveDate, to: NaiveDate) -> anyhow::Result<Coverage> {
    let per_day: Vec<DaySourceCount> = rows(
        ctx,
        &format!("SELECT date, coalesce(source, origin_source) AS source, count(*) AS events FROM events WHERE {period} GROUP BY 1, 2 ORDER BY 1, 2"),
    )
    .await?
    .iter()
    .map(|r| DaySourceCount { date: s(r, "date"), source: s(r, "source"), events: n(r, "events") })
    .collect();
    let events = per_day.iter().map(|d| d.events).sum();
    let days_with: BTreeSet<&str> = per_day.iter().map(|d| d.date.as_str()).collect();
    let mut days_without_events = Vec::new();
    let mut d = from;
    while d <= to {
        let day = d.format("%Y-%m-%d").to_string();
        if !days_with.contains(day.as_str()) {
            days_without_events.push(day);
        }
        d += Duration::days(1);
    }

    let hours: BTreeSet<i64> = rows(ctx, &format!("SELECT DISTINCT CAST(to_unixtime(date_trunc('hour', time)) AS BIGINT) AS h FROM events WHERE {period}"))
        .await?
        .iter()
        .filter_map(|r| r.get("h").and_then(Value::as_i64))
        .collect();
    let start = from.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp();
    let end = (to + Duration::days(1)).and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp();
    let mut hours_without_events = Vec::new();
    let mut gap_start: Option<i64> = None;
    let mut h = start;
    let fmt = |t: i64| chrono::DateTime::from_timestamp(t, 0).expect("in range").to_rfc3339_opts(SecondsFormat::Secs, true);
    while h <= end {
        let empty = h < end && !hours.contains(&h);
        match (empty, gap_start) {
            (true, None) => gap_start = Some(h),
            (false, Some(g)) => {
                hours_without_events.push(Gap { start: fmt(g), end: fmt(h), hours: ((h - g) / 3600) as u64 });
                gap_start = None;
            }
            _ => {}
        }
        h += 3600;
    }

    let dead_letters_per_day: Vec<DayKindCount> =
        rows(ctx, &format!("SELECT date, kind, count(*) AS n FROM dead_letters WHERE {period} GROUP BY 1, 2 ORDER BY 1, 2"))
            .await?
            .iter()
            .map(|r| DayKindCount { date: s(r, "date"), kind: s(r, "kind"), dead_letters: n(r, "n") })
            .collect();
    let dead_letters = dead_letters_per_day.iter().map(|d| d.dead_letters).sum();
    let all = rows(ctx, "SELECT min(time) AS first, max(time) AS last FROM events").await?;
    let within = rows(ctx, &format!("SELECT min(time) AS first, max(time) AS last FROM events WHERE {period}")).await?;
    let get = |v: &Vec<Map<String, Value>>, k: &str| v.first().and_then(|r| time(r, k));
    Ok(Coverage {
        events,
        events_per_day: per_day,
        days_without_events,
        hours_without_events,
        dead_letters,
        dead_letters_per_day,
        archive_first_event: get(&all, "first"),
        archive_last_event: get(&all, "last"),
        period_first_event: get(&within, "first"),
        period_last_event: get(&within, "last"),
    })
}

async fn controls(ctx: &SessionContext, period: &str, rules: &[Rule]) -> anyhow::Result<Vec<Control>> {
    let mut criteria: Vec<(String, String)> = super::CRITERIA.iter().map(|(c, d)| (c.to_string(), d.to_string())).collect();
    for r in rules {
        for c in &r.controls {
            if !criteria.iter().any(|(k, _)| k == c) {
                criteria.push((c.clone(), "(a criterion a user rule maps to)".to_string()));
            }
        }
    }
    let alerts_by = format!("(SELECT unnest(controls) AS criterion, severity AS sev, date AS day FROM alerts WHERE {period})");
    let sev = rows(ctx, &format!("SELECT criterion, sev, count(*) AS n FROM {alerts_by} GROUP BY 1, 2")).await?;
    let days = rows(ctx, &format!("SELECT criterion, day, count(*) AS n FROM {alerts_by} GROUP BY 1, 2 ORDER BY 1, 2")).await?;
    Ok(criteria
        .into_iter()
        .map(|(criterion, description)| {
            let mut by_severity = BTreeMap::new();
            for r in sev.iter().filter(|r| s(r, "criterion") == criterion) {
                by_severity.insert(s(r, "sev"), n(r, "n"));
            }
            let per_day =
                days.iter().filter(|r| s(r, "criterion") == criterion).map(|r| DayCount { date: s(r, "day"), count: n(r, "n") }).collect();
            let rules = rules
                .iter()
                .filter(|r| r.controls.contains(&criterion))
                .map(|r| ControlRule { id: r.id.clone(), title: r.title.clone(), severity: r.severity.clone(), checks: r.description.clone() })
                .collect();
            Control { violations: by_severity.values().sum(), criterion, description, rules, by_severity, per_day }
        })
        .collect())
}

/// `ai.request`s of the period by tenant, provider and region (`n`), and the
/// data classes of each such flow (`dc`): two scans that the vendor inventory
/// and the data-flow diagram share.
async fn request_flows(ctx: &SessionContext, period: &str) -> anyhow::Result<(Vec<Map<String, Value>>, Vec<Map<String, Value>>)> {
    let base = format!(
        "SELECT coalesce(tenant_id, '(no tenant)') AS tenant, coalesce(provider, '(not set)') AS vendor, \
         coalesce(vendor_region, '(not set)') AS region, data_classes AS classes FROM events WHERE {period} AND event_type = 'ai.request'"
    );
    let flows = rows(ctx, &format!("SELECT tenant, vendor, region, count(*) AS n FROM ({base}) GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")).await?;
    let classes =
        rows(ctx, &format!("SELECT DISTINCT tenant, vendor, region, dc FROM (SELECT tenant, vendor, region, unnest(classes) AS dc FROM ({base})) ORDER BY 1, 2, 3, 4")).await?;
    Ok((flows, classes))
}

async fn vendors(ctx: &SessionContext, flows: &[Map<String, Value>], flow_classes: &[Map<String, Value>]) -> anyhow::Result<Vec<VendorRow>> {
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    let mut regions: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in flows {
        *seen.entry(s(r, "vendor")).or_default() += n(r, "n");
        if s(r, "region") != "(not set)" {
            regions.entry(s(r, "vendor")).or_default().insert(s(r, "region"));
        }
    }
    let mut classes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in flow_classes {
        classes.entry(s(r, "vendor")).or_default().insert(s(r, "dc"));
    }
    let listed = rows(ctx, "SELECT provider AS vendor, dpa_signed, trains_on_customer_data, allowed_data_classes FROM policy_vendors").await?;
    let mut names: BTreeSet<String> = seen.keys().cloned().collect();
    names.extend(listed.iter().map(|r| s(r, "vendor")));
    Ok(names
        .into_iter()
        .map(|provider| {
            let policy = listed.iter().find(|r| s(r, "vendor") == provider);
            let allowed = policy.map(|r| list(r, "allowed_data_classes")).unwrap_or_default();
            let sent: Vec<String> = classes.get(&provider).map(|c| c.iter().cloned().collect()).unwrap_or_default();
            VendorRow {
                listed: policy.is_some(),
                dpa_signed: policy.map(|r| b(r, "dpa_signed")),
                trains_on_customer_data: policy.map(|r| b(r, "trains_on_customer_data")),
                requests: seen.get(&provider).copied().unwrap_or(0),
                regions: regions.get(&provider).map(|c| c.iter().cloned().collect()).unwrap_or_default(),
                data_classes_not_allowed: sent.iter().filter(|c| !allowed.contains(c)).cloned().collect(),
                data_classes_sent: sent,
                allowed_data_classes: allowed,
                provider,
            }
        })
        .collect())
}

fn data_flow(flows: &[Map<String, Value>], classes: &[Map<String, Value>], max_tenants: usize) -> Vec<Flow> {
    // Tenants by requests; past `max_tenants`, the smaller ones are drawn as one group.
    let mut per_tenant: BTreeMap<String, u64> = BTreeMap::new();
    for r in flows {
        *per_tenant.entry(s(r, "tenant")).or_default() += n(r, "n");
    }
    let mut ranked: Vec<(&String, &u64)> = per_tenant.iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let keep: BTreeSet<&str> = if ranked.len() > max_tenants {
        ranked.iter().take(max_tenants.saturating_sub(1)).map(|(t, _)| t.as_str()).collect()
    } else {
        ranked.iter().map(|(t, _)| t.as_str()).collect()
    };
    let others = per_tenant.len() - keep.len();
    let group = |t: &str| if keep.contains(t) { t.to_string() } else { format!("{others} other tenants") };
    let mut merged: BTreeMap<(String, String, String), (u64, BTreeSet<String>)> = BTreeMap::new();
    for r in flows {
        merged.entry((group(&s(r, "tenant")), s(r, "vendor"), s(r, "region"))).or_default().0 += n(r, "n");
    }
    for r in classes {
        if let Some(e) = merged.get_mut(&(group(&s(r, "tenant")), s(r, "vendor"), s(r, "region"))) {
            e.1.insert(s(r, "dc"));
        }
    }
    merged
        .into_iter()
        .map(|((tenants, provider, region), (requests, dc))| Flow { tenants, provider, region, requests, data_classes: dc.into_iter().collect() })
        .collect()
}

async fn changes(ctx: &SessionContext, period: &str) -> anyhow::Result<Vec<Change>> {
    let list = rows(
        ctx,
        &format!(
            "SELECT e.event_id, e.time, e.tenant_id, e.actor_id, e.approved_by, e.environment, e.resource_type, e.resource, e.change_id, \
               a.actor_id IS NOT NULL AS authorized, r.environment IS NOT NULL AS review_required, \
               (e.approved_by IS NOT NULL AND e.approved_by <> '' AND e.approved_by <> coalesce(e.actor_id, '')) AS reviewed \
             FROM events e \
             LEFT JOIN (SELECT DISTINCT actor_id, resource_type, environment FROM policy_change_authorizations) a \
               ON a.actor_id = e.actor_id AND a.resource_type = e.resource_type AND a.environment = e.environment \
             LEFT JOIN (SELECT DISTINCT environment FROM policy_approval_required) r ON r.environment = e.environment \
             WHERE e.{period} AND e.event_type = 'config.change' ORDER BY e.time, e.event_id"
        ),
    )
    .await?;
    let alerts = rows(
        ctx,
        &format!("SELECT DISTINCT eid, aid FROM (SELECT unnest(evidence_event_ids) AS eid, alert_id AS aid FROM alerts WHERE {period}) ORDER BY 1, 2"),
    )
    .await?;
    let mut by_event: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in alerts {
        by_event.entry(s(&r, "eid")).or_default().push(s(&r, "aid"));
    }
    Ok(list
        .iter()
        .map(|r| Change {
            alert_ids: by_event.get(&s(r, "event_id")).cloned().unwrap_or_default(),
            event_id: s(r, "event_id"),
            time: time(r, "time").unwrap_or_default(),
            tenant_id: opt(r, "tenant_id"),
            actor_id: opt(r, "actor_id"),
            approved_by: opt(r, "approved_by"),
            environment: s(r, "environment"),
            resource_type: opt(r, "resource_type"),
            resource: opt(r, "resource"),
            change_id: opt(r, "change_id"),
            authorized: b(r, "authorized"),
            review_required: b(r, "review_required"),
            reviewed: b(r, "reviewed"),
        })
        .collect())
}

async fn findings(ctx: &SessionContext, period: &str, rules: &[Rule]) -> anyhow::Result<Vec<Finding>> {
    let per_alert = rows(
        ctx,
        &format!(
            "SELECT rule_id, max(title) AS title, max(severity) AS severity, alert_id, count(*) AS times, min(time) AS first, max(time) AS last \
             FROM alerts WHERE {period} GROUP BY rule_id, alert_id ORDER BY rule_id, times DESC, alert_id"
        ),
    )
    .await?;
    let evidence = rows(
        ctx,
        &format!("SELECT DISTINCT aid, eid FROM (SELECT alert_id AS aid, unnest(evidence_event_ids) AS eid FROM alerts WHERE {period}) ORDER BY 1, 2"),
    )
    .await?;
    let mut events_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in evidence {
        events_of.entry(s(&r, "aid")).or_default().push(s(&r, "eid"));
    }
    let mut by_rule: BTreeMap<String, Finding> = BTreeMap::new();
    for r in &per_alert {
        let rule_id = s(r, "rule_id");
        let f = by_rule.entry(rule_id.clone()).or_insert_with(|| {
            let rule = rules.iter().find(|x| x.id == rule_id);
            Finding {
                title: rule.map(|x| x.title.clone()).unwrap_or_else(|| s(r, "title")),
                severity: rule.map(|x| x.severity.clone()).unwrap_or_else(|| s(r, "severity")),
                rule_id: rule_id.clone(),
                alerts: 0,
                open: 0,
                repeated: 0,
                violations: Vec::new(),
            }
        });
        let times = n(r, "times");
        f.alerts += times;
        f.open += 1;
        f.repeated += u64::from(times > 1);
        let alert_id = s(r, "alert_id");
        f.violations.push(Violation {
            event_ids: events_of.get(&alert_id).cloned().unwrap_or_default(),
            alert_id,
            times,
            first: time(r, "first").unwrap_or_default(),
            last: time(r, "last").unwrap_or_default(),
        });
    }
    let rank = |sev: &str| crate::rules::SEVERITIES.iter().position(|s| *s == sev).unwrap_or(usize::MAX);
    let mut out: Vec<Finding> = by_rule.into_values().collect();
    out.sort_by(|a, b| rank(&a.severity).cmp(&rank(&b.severity)).then(a.rule_id.cmp(&b.rule_id)));
    Ok(out)
}

/// The change-management population as CSV, one row per `config.change`, for sampling.
pub fn changes_csv(changes: &[Change]) -> String {
    fn field(v: &str) -> String {
        if v.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", v.replace('"', "\"\""))
        } else {
            v.to_string()
        }
    }
    let mut out = String::from("event_id,time,tenant_id,actor_id,approved_by,environment,resource_type,resource,change_id,authorized,review_required,reviewed,alert_ids\n");
    for c in changes {
        let cells = [
            c.event_id.clone(),
            c.time.clone(),
            c.tenant_id.clone().unwrap_or_default(),
            c.actor_id.clone().unwrap_or_default(),
            c.approved_by.clone().unwrap_or_default(),
            c.environment.clone(),
            c.resource_type.clone().unwrap_or_default(),
            c.resource.clone().unwrap_or_default(),
            c.change_id.clone().unwrap_or_default(),
            c.authorized.to_string(),
            c.review_required.to_string(),
            c.reviewed.to_string(),
            c.alert_ids.join(" "),
        ];
        out.push_str(&cells.iter().map(|c| field(c)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_change_csv_quotes_what_needs_quoting() {
        let c = Change {
            event_id: "ev-1".into(),
            time: "2026-01-01T00:00:00Z".into(),
            tenant_id: None,
            actor_id: Some("user:a".into()),
            approved_by: Some("x, \"y\"".into()),
            environment: "production".into(),
            resource_type: Some("model".into()),
            resource: None,
            change_id: None,
            authorized: false,
            review_required: true,
            reviewed: true,
            alert_ids: vec!["aw-1".into(), "aw-2".into()],
        };
        let csv = changes_csv(&[c]);
        let line = csv.lines().nth(1).unwrap();
        assert_eq!(line, "ev-1,2026-01-01T00:00:00Z,,user:a,\"x, \"\"y\"\"\",production,model,,,false,true,true,aw-1 aw-2");
        assert_eq!(csv.lines().next().unwrap().split(',').count(), 13);
    }

    #[test]
    fn the_rule_pack_hash_follows_the_rules_not_their_order() {
        let mut rules = crate::rules::builtin();
        let h = rule_pack_sha256(&rules);
        rules.reverse();
        assert_eq!(rule_pack_sha256(&rules), h);
        rules[0].sql.push(' ');
        assert_ne!(rule_pack_sha256(&rules), h);
    }
}
