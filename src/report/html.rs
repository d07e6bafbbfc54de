//! The report as one self-contained HTML page: inline CSS and SVG, no scripts,
//! fonts, images or links that load anything, laid out to print on A4 or Letter.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use chrono::{Duration, NaiveDate};

use super::figures::Report;
use super::svg::{data_flow, esc, spark_bars, stacked_bars};

/// Alert and event ids shown per violation in the page; the JSON has them all.
const IDS_SHOWN: usize = 12;
/// Violations listed per rule in the page; the JSON has them all.
const VIOLATIONS_SHOWN: usize = 25;

const STYLE: &str = r#"
body { font-family: "DejaVu Sans", "Liberation Sans", Arial, Helvetica, "Noto Sans CJK JP", "WenQuanYi Micro Hei", sans-serif; color: #111; margin: 24px auto; max-width: 1000px; font-size: 13px; line-height: 1.4; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; border-bottom: 2px solid #0072B2; padding-bottom: 2px; margin-top: 28px; }
h3 { font-size: 14px; margin: 14px 0 4px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 10px; } th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #eef2f6; } td.t { white-space: nowrap; } td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.bad { color: #a00000; font-weight: bold; } .ok { color: #006b3c; } tr.unlisted td { background: #fde8e8; }
.muted { color: #555; } code, .id { font-family: "DejaVu Sans Mono", "Liberation Mono", monospace; font-size: 11px; word-break: break-all; }
.chart { max-width: 100%; height: auto; } svg text { font-family: "DejaVu Sans", "Liberation Sans", Arial, "Noto Sans CJK JP", "WenQuanYi Micro Hei", sans-serif; }
svg .small { font-size: 11px; fill: #222; } svg .tiny { font-size: 9px; fill: #444; } svg .head { font-size: 13px; font-weight: bold; }
svg .node { font-size: 11px; } svg .classes { font-size: 10px; fill: #333; }
section { break-inside: auto; } figure, .keep { break-inside: avoid; margin: 8px 0; } thead { display: table-header-group; } tr { break-inside: avoid; }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; } dl.kv dt { font-weight: bold; } dl.kv dd { margin: 0; }
@page { size: A4; margin: 14mm 12mm; }
@media print { body { margin: 0; max-width: none; font-size: 11px; } h2 { break-after: avoid; } }
"#;

fn days_between(from: &str, to: &str) -> Vec<String> {
    let (Ok(mut d), Ok(end)) = (NaiveDate::parse_from_str(from, "%Y-%m-%d"), NaiveDate::parse_from_str(to, "%Y-%m-%d")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    while d <= end {
        out.push(d.format("%Y-%m-%d").to_string());
        d += Duration::days(1);
    }
    out
}

fn yes_no(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "yes",
        Some(false) => "no",
        None => "—",
    }
}

fn ids(list: &[String]) -> String {
    let shown: Vec<String> = list.iter().take(IDS_SHOWN).map(|i| format!(r#"<span class="id">{}</span>"#, esc(i))).collect();
    let more = list.len().saturating_sub(IDS_SHOWN);
    if more > 0 {
        format!("{} and {more} more (in the JSON report)", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// Renders `r`; `changes_csv` is the file name of the change population beside the report.
pub fn render(r: &Report, changes_csv: Option<&str>) -> String {
    let p = &r.provenance;
    let c = &r.coverage;
    let days = days_between(&p.from, &p.to);
    let mut h = String::new();
    let _ = write!(
        h,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>SOC 2 evidence report {} to {}</title><style>{STYLE}</style></head><body>"#,
        esc(&p.from),
        esc(&p.to)
    );
    let _ = write!(h, r#"<h1>SOC 2 evidence report: AI data flows and controls</h1><p class="muted">Period {} to {} (UTC, both days included). Produced by aiwatch from its monitoring archive; every figure below is a SQL query over that archive.</p>"#, esc(&p.from), esc(&p.to));

    // Period and provenance.
    let _ = write!(h, r#"<section id="provenance"><h2>1. Period and provenance</h2><dl class="kv">"#);
    for (k, v) in [
        ("Period", format!("{} to {}", p.from, p.to)),
        ("Generated at", p.generated_at.clone()),
        ("aiwatch version", p.aiwatch_version.clone()),
        ("Archive", p.archive.clone()),
        ("Policy file", p.policy_file.clone()),
        ("Policy SHA-256", p.policy_sha256.clone()),
        ("Rule pack SHA-256", format!("{} ({} rules)", p.rule_pack_sha256, p.rules.len())),
    ] {
        let _ = write!(h, "<dt>{}</dt><dd><code>{}</code></dd>", esc(k), esc(&v));
    }
    h.push_str("</dl></section>");

    // Monitoring coverage.
    let _ = write!(h, r#"<section id="coverage"><h2>2. Monitoring coverage</h2>"#);
    let _ = write!(
        h,
        r#"<p><b>{}</b> events and <b>{}</b> dead letters (malformed records, kept as metadata) in the period. Archive's first event: <b>{}</b>; last event: <b>{}</b>. In the period: first {}, last {}.</p>"#,
        c.events,
        c.dead_letters,
        esc(c.archive_first_event.as_deref().unwrap_or("none")),
        esc(c.archive_last_event.as_deref().unwrap_or("none")),
        esc(c.period_first_event.as_deref().unwrap_or("none")),
        esc(c.period_last_event.as_deref().unwrap_or("none"))
    );
    let mut by_source: BTreeMap<&str, u64> = BTreeMap::new();
    for d in &c.events_per_day {
        *by_source.entry(&d.source).or_default() += d.events;
    }
    let mut sources: Vec<(&str, u64)> = by_source.into_iter().collect();
    sources.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let top: Vec<&str> = sources.iter().take(7).map(|s| s.0).collect();
    let mut series: Vec<(String, Vec<u64>)> = top.iter().map(|s| (s.to_string(), vec![0; days.len()])).collect();
    if sources.len() > top.len() {
        series.push((format!("{} other sources", sources.len() - top.len()), vec![0; days.len()]));
    }
    for d in &c.events_per_day {
        if let Some(i) = days.iter().position(|x| *x == d.date) {
            let si = top.iter().position(|s| *s == d.source).unwrap_or(series.len() - 1);
            series[si].1[i] += d.events;
        }
    }
    let _ = write!(h, r#"<figure><h3>Events per day, by source (the emitting service; the input file or topic for events that name none)</h3>{}</figure>"#, stacked_bars(&days, &series, 960, 300, "events"));
    if c.days_without_events.is_empty() {
        h.push_str("<p>Every day of the period has events.</p>");
    } else {
        let _ = write!(h, r#"<p class="bad">{} days with no events: {}</p>"#, c.days_without_events.len(), esc(&c.days_without_events.join(", ")));
    }
    let gap_hours: u64 = c.hours_without_events.iter().map(|g| g.hours).sum();
    let _ = write!(h, r#"<h3>Hours with no events</h3><p>{} runs of whole UTC hours without events, {} hours in all.</p>"#, c.hours_without_events.len(), gap_hours);
    if !c.hours_without_events.is_empty() {
        h.push_str(r#"<table><thead><tr><th>From</th><th>To (exclusive)</th><th class="n">Hours</th></tr></thead><tbody>"#);
        let mut longest: Vec<_> = c.hours_without_events.iter().collect();
        longest.sort_by(|a, b| b.hours.cmp(&a.hours).then(a.start.cmp(&b.start)));
        for g in longest.iter().take(20) {
            let _ = write!(h, r#"<tr><td>{}</td><td>{}</td><td class="n">{}</td></tr>"#, esc(&g.start), esc(&g.end), g.hours);
        }
        h.push_str("</tbody></table>");
        if longest.len() > 20 {
            let _ = write!(h, r#"<p class="muted">The 20 longest of {} runs; the JSON report lists them all.</p>"#, longest.len());
        }
    }
    let kinds: BTreeSet<&str> = c.dead_letters_per_day.iter().map(|d| d.kind.as_str()).collect();
    let mut dl_series: Vec<(String, Vec<u64>)> = kinds.iter().map(|k| (k.to_string(), vec![0; days.len()])).collect();
    for d in &c.dead_letters_per_day {
        if let (Some(i), Some(k)) = (days.iter().position(|x| *x == d.date), kinds.iter().position(|k| *k == d.kind)) {
            dl_series[k].1[i] += d.dead_letters;
        }
    }
    if c.dead_letters == 0 {
        h.push_str("<p>No dead letters in the period.</p>");
    } else {
        let _ = write!(h, r#"<figure><h3>Dead letters per day, by reason</h3>{}</figure>"#, stacked_bars(&days, &dl_series, 960, 220, "dead letters"));
    }
    h.push_str("</section>");

    // Controls.
    let _ = write!(h, r#"<section id="controls"><h2>3. Controls</h2><p>For each SOC 2 criterion: what aiwatch checks, with which rules, and the violations found in the period (alerts whose rule maps to the criterion).</p>"#);
    h.push_str(r#"<table><thead><tr><th>Criterion</th><th>Checked by</th><th class="n">Violations</th><th>By severity</th><th>Trend (per day)</th></tr></thead><tbody>"#);
    for ctl in &r.controls {
        let rules: Vec<String> = ctl.rules.iter().map(|x| format!("<code>{}</code> {}", esc(&x.id), esc(&x.title))).collect();
        let sev: Vec<String> = crate::rules::SEVERITIES
            .iter()
            .filter_map(|s| ctl.by_severity.get(*s).map(|n| format!("{s} {n}")))
            .collect();
        let values: Vec<u64> = days.iter().map(|d| ctl.per_day.iter().find(|x| x.date == *d).map_or(0, |x| x.count)).collect();
        let _ = write!(
            h,
            r#"<tr><td><b>{}</b><br><span class="muted">{}</span></td><td>{}</td><td class="n{}">{}</td><td>{}</td><td>{}</td></tr>"#,
            esc(&ctl.criterion),
            esc(&ctl.description),
            if rules.is_empty() { "no rule in the pack".to_string() } else { rules.join("<br>") },
            if ctl.violations > 0 { " bad" } else { "" },
            ctl.violations,
            if sev.is_empty() { "—".to_string() } else { esc(&sev.join(", ")) },
            spark_bars(&days, &values, 220, 46)
        );
    }
    h.push_str("</tbody></table></section>");

    // Vendor inventory.
    let unlisted: BTreeSet<String> = r.vendors.iter().filter(|v| !v.listed).map(|v| v.provider.clone()).collect();
    let _ = write!(h, r#"<section id="vendors"><h2>4. Vendor inventory</h2><p>Every AI provider in the policy or seen in traffic. Providers sent requests but missing from the policy are <span class="bad">highlighted</span>; data classes sent that the policy does not allow for the vendor are in red.</p>"#);
    h.push_str(r#"<table><thead><tr><th>Provider</th><th>In policy</th><th>DPA signed</th><th>Trains on data</th><th>Allowed data classes</th><th class="n">Requests</th><th>Regions seen</th><th>Data classes sent</th></tr></thead><tbody>"#);
    for v in &r.vendors {
        let sent: Vec<String> = v
            .data_classes_sent
            .iter()
            .map(|c| if v.data_classes_not_allowed.contains(c) { format!(r#"<span class="bad">{}</span>"#, esc(c)) } else { esc(c) })
            .collect();
        let _ = write!(
            h,
            r#"<tr{}><td><b>{}</b></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="n">{}</td><td>{}</td><td>{}</td></tr>"#,
            if v.listed { "" } else { r#" class="unlisted""# },
            esc(&v.provider),
            if v.listed { "listed" } else { r#"<span class="bad">not listed</span>"# },
            yes_no(v.dpa_signed),
            yes_no(v.trains_on_customer_data),
            esc(&v.allowed_data_classes.join(", ")),
            v.requests,
            esc(&v.regions.join(", ")),
            sent.join(", ")
        );
    }
    h.push_str("</tbody></table></section>");

    // Data flow.
    let _ = write!(h, r#"<section id="data-flow"><h2>5. Data-flow diagram</h2><p>Which tenants' requests went to which AI provider, processed in which region. Under each provider, the data classes it received; in red, those the policy does not allow for it (all of them, for a provider the policy does not list). Line width grows with the number of requests; the table gives the data classes of every flow.</p>"#);
    if r.data_flow.is_empty() {
        h.push_str("<p>No AI requests in the period.</p>");
    } else {
        let not_allowed: BTreeMap<String, Vec<String>> =
            r.vendors.iter().map(|v| (v.provider.clone(), if v.listed { v.data_classes_not_allowed.clone() } else { v.data_classes_sent.clone() })).collect();
        let _ = write!(h, r#"<figure class="keep">{}</figure>"#, data_flow(&r.data_flow, &unlisted, &not_allowed));
        h.push_str(r#"<table><thead><tr><th>Tenants</th><th>Provider</th><th>Region</th><th class="n">Requests</th><th>Data classes</th></tr></thead><tbody>"#);
        for f in &r.data_flow {
            let _ = write!(
                h,
                r#"<tr><td>{}</td><td>{}</td><td>{}</td><td class="n">{}</td><td>{}</td></tr>"#,
                esc(&f.tenants),
                esc(&f.provider),
                esc(&f.region),
                f.requests,
                esc(&f.data_classes.join(", "))
            );
        }
        h.push_str("</tbody></table>");
    }
    h.push_str("</section>");

    // Change management population.
    let unauthorized = r.changes.iter().filter(|c| !c.authorized).count();
    let unreviewed = r.changes.iter().filter(|c| c.review_required && !c.reviewed).count();
    let _ = write!(
        h,
        r#"<section id="changes"><h2>6. Change management population</h2><p><b>{}</b> AI configuration changes (<code>config.change</code>) in the period: {} not authorized by the policy, {} without the independent review their environment requires.{}</p>"#,
        r.changes.len(),
        unauthorized,
        unreviewed,
        changes_csv.map(|f| format!(" The population is also in <code>{}</code> beside this report, ready for sampling.", esc(f))).unwrap_or_default()
    );
    h.push_str(r#"<table><thead><tr><th>Time (UTC)</th><th>Event id</th><th>Actor</th><th>Approved by</th><th>Environment</th><th>Resource</th><th>Change</th><th>Authorized</th><th>Reviewed</th></tr></thead><tbody>"#);
    for ch in &r.changes {
        let _ = write!(
            h,
            r#"<tr><td class="t">{}</td><td class="id">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="{}">{}</td><td class="{}">{}</td></tr>"#,
            esc(ch.time.get(..19).map(|t| t.replacen('T', " ", 1)).as_deref().unwrap_or(&ch.time)),
            esc(&ch.event_id),
            esc(ch.actor_id.as_deref().unwrap_or("—")),
            esc(ch.approved_by.as_deref().unwrap_or("—")),
            esc(&ch.environment),
            esc(ch.resource.as_deref().or(ch.resource_type.as_deref()).unwrap_or("—")),
            esc(ch.change_id.as_deref().unwrap_or("—")),
            if ch.authorized { "ok" } else { "bad" },
            if ch.authorized { "yes" } else { "no" },
            if ch.review_required && !ch.reviewed { "bad" } else { "ok" },
            match (ch.reviewed, ch.review_required) {
                (true, _) => "yes",
                (false, true) => "no",
                (false, false) => "not required",
            }
        );
    }
    h.push_str("</tbody></table></section>");

    // Findings.
    let _ = write!(h, r#"<section id="findings"><h2>7. Findings</h2><p>Violations per rule: each is identified by its <code>alert_id</code> (stable for a rule and subject) and the ids of the events that make it; no event text is shown. aiwatch records no resolutions, so every violation counts as open; <i>repeated</i> ones fired more than once in the period.</p>"#);
    if r.findings.is_empty() {
        h.push_str("<p>No violations in the period.</p>");
    }
    h.push_str(r#"<table><thead><tr><th>Rule</th><th>Severity</th><th class="n">Alerts</th><th class="n">Open</th><th class="n">Repeated</th></tr></thead><tbody>"#);
    for f in &r.findings {
        let _ = write!(
            h,
            r#"<tr><td><code>{}</code> {}</td><td>{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td></tr>"#,
            esc(&f.rule_id),
            esc(&f.title),
            esc(&f.severity),
            f.alerts,
            f.open,
            f.repeated
        );
    }
    h.push_str("</tbody></table>");
    for f in &r.findings {
        let _ = write!(h, r#"<h3><code>{}</code>: {} violation{}</h3><table><thead><tr><th>alert_id</th><th class="n">Times</th><th>First</th><th>Last</th><th>Event ids</th></tr></thead><tbody>"#, esc(&f.rule_id), f.open, if f.open == 1 { "" } else { "s" });
        for v in f.violations.iter().take(VIOLATIONS_SHOWN) {
            let _ = write!(
                h,
                r#"<tr><td class="id">{}</td><td class="n">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                esc(&v.alert_id),
                v.times,
                esc(&v.first),
                esc(&v.last),
                ids(&v.event_ids)
            );
        }
        h.push_str("</tbody></table>");
        if f.violations.len() > VIOLATIONS_SHOWN {
            let _ = write!(h, r#"<p class="muted">{} of {} violations shown (most repeated first); the JSON report lists them all.</p>"#, VIOLATIONS_SHOWN, f.violations.len());
        }
    }
    h.push_str("</section>");

    // Rules, for reference.
    h.push_str(r#"<section id="rules"><h2>Appendix: rule pack</h2><table><thead><tr><th>Rule</th><th>File</th><th>SHA-256 of its text</th></tr></thead><tbody>"#);
    for rule in &p.rules {
        let _ = write!(h, r#"<tr><td><code>{}</code></td><td>{}</td><td class="id">{}</td></tr>"#, esc(&rule.id), esc(&rule.file), esc(&rule.sha256));
    }
    h.push_str("</tbody></table></section></body></html>\n");
    h
}
