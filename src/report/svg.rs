//! Inline SVG charts for the report: plain shapes and text, sized in the
//! page's own units, legible on screen and on paper, no scripts or fonts.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::figures::Flow;

/// Okabe-Ito colours: distinguishable with colour blindness and in greyscale print.
pub const PALETTE: [&str; 8] = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#8C6D1F", "#555555"];

/// Escapes text for HTML and SVG.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The smallest 1, 2 or 5 times a power of ten at or above `v`.
fn nice_max(v: u64) -> u64 {
    let mut p = 1u64;
    loop {
        for m in [1, 2, 5] {
            if m * p >= v.max(1) {
                return m * p;
            }
        }
        p *= 10;
    }
}

/// Bars per day, stacked by series (one colour each, with a legend).
pub fn stacked_bars(days: &[String], series: &[(String, Vec<u64>)], width: u32, height: u32, unit: &str) -> String {
    let (left, right, top, bottom) = (56.0, 12.0, 14.0 + 16.0 * series.len().div_ceil(4) as f64, 34.0);
    let (w, h) = (width as f64 - left - right, height as f64 - top - bottom);
    let totals: Vec<u64> = (0..days.len()).map(|i| series.iter().map(|(_, v)| v[i]).sum()).collect();
    let max = nice_max(totals.iter().copied().max().unwrap_or(0));
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="{} per day" class="chart">"#,
        esc(unit)
    );
    // Legend.
    for (i, (name, _)) in series.iter().enumerate() {
        let (x, y) = (left + (i % 4) as f64 * (w / 4.0), 12.0 + 16.0 * (i / 4) as f64);
        let _ = write!(
            out,
            r#"<rect x="{x}" y="{}" width="10" height="10" fill="{}"/><text x="{}" y="{}" class="small">{}</text>"#,
            y - 9.0,
            PALETTE[i % PALETTE.len()],
            x + 14.0,
            y,
            esc(name)
        );
    }
    // Axes and grid.
    let ticks = [4, 5, 2, 1].into_iter().find(|n| max.is_multiple_of(*n)).unwrap_or(1);
    for k in 0..=ticks {
        let v = max * k / ticks;
        let y = top + h - h * k as f64 / ticks as f64;
        let _ = write!(
            out,
            r##"<line x1="{left}" x2="{}" y1="{y}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end" class="small">{v}</text>"##,
            left + w,
            left - 4.0,
            y + 4.0
        );
    }
    let slot = w / days.len().max(1) as f64;
    let bar = (slot * 0.8).max(1.0);
    for (i, _) in days.iter().enumerate() {
        let mut y = top + h;
        for (si, (name, values)) in series.iter().enumerate() {
            let v = values[i];
            if v == 0 {
                continue;
            }
            let bh = h * v as f64 / max as f64;
            y -= bh;
            let _ = write!(
                out,
                r#"<rect x="{:.2}" y="{y:.2}" width="{bar:.2}" height="{bh:.2}" fill="{}"><title>{} {}: {v}</title></rect>"#,
                left + slot * i as f64 + (slot - bar) / 2.0,
                PALETTE[si % PALETTE.len()],
                esc(&days[i]),
                esc(name)
            );
        }
    }
    // Day labels: at most eight, evenly spread.
    let step = days.len().div_ceil(8).max(1);
    for (i, d) in days.iter().enumerate().filter(|(i, _)| i % step == 0) {
        let x = left + slot * i as f64 + slot / 2.0;
        let _ = write!(out, r#"<text x="{x:.2}" y="{}" text-anchor="middle" class="small">{}</text>"#, top + h + 16.0, esc(d));
    }
    let _ = write!(out, r##"<line x1="{left}" x2="{}" y1="{}" y2="{}" stroke="#333"/></svg>"##, left + w, top + h, top + h);
    out
}

/// A small bar chart of one count per day (the violations trend of a criterion).
pub fn spark_bars(days: &[String], values: &[u64], width: u32, height: u32) -> String {
    let max = values.iter().copied().max().unwrap_or(0);
    let (left, bottom) = (2.0, 12.0);
    let (w, h) = (width as f64 - 4.0, height as f64 - bottom - 10.0);
    let mut out = format!(r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="violations per day" class="spark">"#);
    let slot = w / days.len().max(1) as f64;
    for (i, v) in values.iter().enumerate() {
        if *v == 0 {
            continue;
        }
        let bh = (h * *v as f64 / max.max(1) as f64).max(1.5);
        let _ = write!(
            out,
            r##"<rect x="{:.2}" y="{:.2}" width="{:.2}" height="{bh:.2}" fill="#D55E00"><title>{}: {v}</title></rect>"##,
            left + slot * i as f64 + slot * 0.1,
            10.0 + h - bh,
            (slot * 0.8).max(0.8),
            esc(&days[i])
        );
    }
    let _ = write!(
        out,
        r##"<line x1="{left}" x2="{}" y1="{}" y2="{}" stroke="#999"/><text x="{left}" y="8" class="tiny">max {max}/day</text><text x="{left}" y="{}" class="tiny">{}</text><text x="{}" y="{}" text-anchor="end" class="tiny">{}</text></svg>"##,
        left + w,
        10.0 + h,
        10.0 + h,
        height as f64 - 1.0,
        esc(days.first().map(String::as_str).unwrap_or("")),
        left + w,
        height as f64 - 1.0,
        esc(days.last().map(String::as_str).unwrap_or(""))
    );
    out
}

/// Tenants (left) to AI providers (middle) to vendor regions (right). Each
/// provider's box lists the data classes it received, those the policy does
/// not allow for it in red; providers the policy does not list are drawn red
/// and dashed. A tenant's lines have the tenant's colour and grow with its
/// requests. (Per-line labels do not stay legible past a few tenants; the
/// table under the diagram gives the classes of every flow.)
pub fn data_flow(flows: &[Flow], unlisted: &BTreeSet<String>, not_allowed: &BTreeMap<String, Vec<String>>) -> String {
    let tenants: BTreeSet<&str> = flows.iter().map(|f| f.tenants.as_str()).collect();
    let providers: BTreeSet<&str> = flows.iter().map(|f| f.provider.as_str()).collect();
    let regions: BTreeSet<&str> = flows.iter().map(|f| f.region.as_str()).collect();
    let mut tp: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    let mut pr: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    let mut classes: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for f in flows {
        *tp.entry((&f.tenants, &f.provider)).or_default() += f.requests;
        *pr.entry((&f.provider, &f.region)).or_default() += f.requests;
        classes.entry(&f.provider).or_default().extend(f.data_classes.iter().map(String::as_str));
    }
    let max_req = tp.values().copied().max().unwrap_or(1).max(1) as f64;
    let (width, tw, pw, rw) = (900.0, 150.0, 230.0, 150.0);
    let (xt, xp, xr) = (10.0, 335.0, 740.0);
    let (tenant_h, provider_h, region_h) = (24.0, 48.0, 24.0);
    let height = 50.0
        + (tenants.len() as f64 * (tenant_h + 12.0))
            .max(providers.len() as f64 * (provider_h + 14.0))
            .max(regions.len() as f64 * (region_h + 12.0));
    let place = |items: &BTreeSet<&str>| -> BTreeMap<String, f64> {
        let gap = (height - 44.0) / items.len().max(1) as f64;
        items.iter().enumerate().map(|(i, n)| (n.to_string(), 38.0 + gap * (i as f64 + 0.5))).collect()
    };
    let (yt, yp, yr) = (place(&tenants), place(&providers), place(&regions));
    let colour_of: BTreeMap<&str, &str> = tenants.iter().enumerate().map(|(i, t)| (*t, PALETTE[i % PALETTE.len()])).collect();
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="data flow: tenants to AI providers to regions" class="chart">"#
    );
    for (x, w, title) in [(xt, tw, "Tenants"), (xp, pw, "AI providers (data classes received)"), (xr, rw, "Vendor regions")] {
        let _ = write!(out, r#"<text x="{}" y="18" text-anchor="middle" class="head">{title}</text>"#, x + w / 2.0);
    }
    let curve = |out: &mut String, x1: f64, y1: f64, x2: f64, y2: f64, stroke: &str, sw: f64, title: String| {
        let _ = write!(
            out,
            r#"<path d="M{x1},{y1:.1} C{mx:.1},{y1:.1} {mx:.1},{y2:.1} {x2},{y2:.1}" fill="none" stroke="{stroke}" stroke-opacity="0.8" stroke-width="{sw:.1}"><title>{}</title></path>"#,
            esc(&title),
            mx = (x1 + x2) / 2.0
        );
    };
    for ((p, r), n) in &pr {
        curve(&mut out, xp + pw, yp[*p], xr, yr[*r], "#888", 1.2 + 3.0 * (*n as f64 / max_req).sqrt(), format!("{p} in {r}: {n} requests"));
    }
    for ((t, p), n) in &tp {
        curve(&mut out, xt + tw, yt[*t], xp, yp[*p], colour_of[t], 1.0 + 5.0 * (*n as f64 / max_req).sqrt(), format!("{t} to {p}: {n} requests"));
    }
    for (t, y) in &yt {
        let _ = write!(
            out,
            r##"<rect x="{xt}" y="{:.1}" width="{tw}" height="{tenant_h}" rx="4" fill="#f4f6f8" stroke="{}" stroke-width="2"/><text x="{}" y="{:.1}" text-anchor="middle" class="node">{}</text>"##,
            y - tenant_h / 2.0,
            colour_of[t.as_str()],
            xt + tw / 2.0,
            y + 4.0,
            esc(t)
        );
    }
    for (p, y) in &yp {
        let bad = unlisted.contains(p);
        let (stroke, dash, fill) = if bad { ("#C00000", r#" stroke-dasharray="5 3""#, "#fde8e8") } else { ("#333", "", "#f4f6f8") };
        let _ = write!(
            out,
            r#"<rect x="{xp}" y="{:.1}" width="{pw}" height="{provider_h}" rx="4" fill="{fill}" stroke="{stroke}"{dash}/><text x="{}" y="{:.1}" text-anchor="middle" class="node"><tspan font-weight="bold">{}</tspan>{}</text>"#,
            y - provider_h / 2.0,
            xp + pw / 2.0,
            y - 8.0,
            esc(p),
            if bad { " (not in the policy)" } else { "" }
        );
        // The classes on up to two lines under the name.
        let bad_classes = not_allowed.get(p.as_str());
        let list: Vec<&str> = classes.get(p.as_str()).map(|c| c.iter().copied().collect()).unwrap_or_default();
        let label = |c: &str| {
            if bad_classes.is_some_and(|b| b.iter().any(|x| x == c)) {
                format!(r##"<tspan fill="#C00000" font-weight="bold">{}</tspan>"##, esc(c))
            } else {
                esc(c)
            }
        };
        let lines: Vec<Vec<&str>> = if list.is_empty() {
            vec![vec!["no data classes"]]
        } else {
            let mut lines = vec![Vec::new()];
            let mut len = 0;
            for c in &list {
                if len + c.len() > 34 && !lines.last().expect("a line").is_empty() {
                    lines.push(Vec::new());
                    len = 0;
                }
                len += c.len() + 2;
                lines.last_mut().expect("a line").push(*c);
            }
            lines
        };
        for (i, line) in lines.iter().take(2).enumerate() {
            let text: Vec<String> = line.iter().map(|c| label(c)).collect();
            let _ = write!(
                out,
                r#"<text x="{}" y="{:.1}" text-anchor="middle" class="classes">{}</text>"#,
                xp + pw / 2.0,
                y + 6.0 + 12.0 * i as f64,
                text.join(", ")
            );
        }
    }
    for (r, y) in &yr {
        let _ = write!(
            out,
            r##"<rect x="{xr}" y="{:.1}" width="{rw}" height="{region_h}" rx="4" fill="#f4f6f8" stroke="#333"/><text x="{}" y="{:.1}" text-anchor="middle" class="node">{}</text>"##,
            y - region_h / 2.0,
            xr + rw / 2.0,
            y + 4.0,
            esc(r)
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_maxima_are_round() {
        assert_eq!(nice_max(0), 1);
        assert_eq!(nice_max(7), 10);
        assert_eq!(nice_max(532), 1000);
        assert_eq!(nice_max(200), 200);
        assert_eq!(nice_max(201), 500);
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc(r#"<a href="x">&'"#), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }

    #[test]
    fn every_flow_is_drawn_and_unlisted_providers_are_marked() {
        let flows = vec![
            Flow { tenants: "acme".into(), provider: "openai".into(), region: "us-east-1".into(), requests: 5, data_classes: vec!["pii".into()] },
            Flow { tenants: "globex".into(), provider: "shadow".into(), region: "eu-west-1".into(), requests: 1, data_classes: vec![] },
        ];
        let unlisted = BTreeSet::from(["shadow".to_string()]);
        let svg = data_flow(&flows, &unlisted, &BTreeMap::from([("openai".to_string(), vec!["pii".to_string()])]));
        assert!(svg.contains(">shadow</tspan> (not in the policy)"));
        for name in ["acme", "globex", "openai", "us-east-1", "eu-west-1", "no data classes"] {
            assert!(svg.contains(name), "{name}");
        }
        assert_eq!(svg.matches("<path").count(), 4, "two tenant lines, two region lines");
        assert!(svg.contains(r##"fill="#C00000" font-weight="bold">pii"##));
    }
}
