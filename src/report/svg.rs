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
    for k in 0..=4 {
        let v = max * k / 4;
        let y = top + h - h * k as f64 / 4.0;
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

/// Tenants (left) to providers (middle) to regions (right). A tenant-to-provider
/// line is labelled with the data classes sent; its width grows with requests.
/// Providers the policy does not list are drawn red and dashed.
pub fn data_flow(flows: &[Flow], unlisted: &BTreeSet<String>) -> String {
    let tenants: BTreeSet<&str> = flows.iter().map(|f| f.tenants.as_str()).collect();
    let providers: BTreeSet<&str> = flows.iter().map(|f| f.provider.as_str()).collect();
    let regions: BTreeSet<&str> = flows.iter().map(|f| f.region.as_str()).collect();
    let mut tp: BTreeMap<(&str, &str), (u64, BTreeSet<&str>)> = BTreeMap::new();
    let mut pr: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for f in flows {
        let e = tp.entry((&f.tenants, &f.provider)).or_default();
        e.0 += f.requests;
        e.1.extend(f.data_classes.iter().map(String::as_str));
        *pr.entry((&f.provider, &f.region)).or_default() += f.requests;
    }
    let max_req = tp.values().map(|v| v.0).max().unwrap_or(1).max(1) as f64;
    let row = 30.0;
    // Tenant-to-provider labels need room: space providers by their label count.
    let rows = tenants.len().max(providers.len()).max(regions.len()).max(tp.len() / 2 + 1);
    let height = 50.0 + row * rows as f64;
    let (width, node_w) = (900.0, 150.0);
    let (xt, xp, xr) = (10.0, 430.0, 740.0);
    let place = |items: &BTreeSet<&str>| -> BTreeMap<String, f64> {
        let gap = (height - 50.0) / items.len().max(1) as f64;
        items.iter().enumerate().map(|(i, n)| (n.to_string(), 40.0 + gap * (i as f64 + 0.5))).collect()
    };
    let (yt, yp, yr) = (place(&tenants), place(&providers), place(&regions));
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="data flow: tenants to AI providers to regions" class="chart">"#
    );
    for (x, title) in [(xt, "Tenants"), (xp, "AI providers"), (xr, "Vendor regions")] {
        let _ = write!(out, r#"<text x="{}" y="18" text-anchor="middle" class="head">{title}</text>"#, x + node_w / 2.0);
    }
    for ((p, r), n) in &pr {
        let (y1, y2) = (yp[*p], yr[*r]);
        let (x1, x2) = (xp + node_w, xr);
        let _ = write!(
            out,
            r##"<path d="M{x1},{y1} C{},{y1} {},{y2} {x2},{y2}" fill="none" stroke="#999" stroke-width="1.5"><title>{} in {}: {n} requests</title></path>"##,
            (x1 + x2) / 2.0,
            (x1 + x2) / 2.0,
            esc(p),
            esc(r)
        );
    }
    for (i, ((t, p), (n, classes))) in tp.iter().enumerate() {
        let (y1, y2) = (yt[*t], yp[*p]);
        let (x1, x2) = (xt + node_w, xp);
        let sw = 1.0 + 5.0 * (*n as f64 / max_req).sqrt();
        let colour = PALETTE[i % PALETTE.len()];
        let _ = write!(
            out,
            r#"<path d="M{x1},{y1} C{},{y1} {},{y2} {x2},{y2}" fill="none" stroke="{colour}" stroke-opacity="0.75" stroke-width="{sw:.1}"><title>{} to {}: {n} requests</title></path>"#,
            (x1 + x2) / 2.0,
            (x1 + x2) / 2.0,
            esc(t),
            esc(p)
        );
        let label = if classes.is_empty() { "no data classes".to_string() } else { classes.iter().copied().collect::<Vec<_>>().join(", ") };
        // The label sits near the provider end, where lines to one provider fan in apart.
        let (lx, ly) = (x2 - 8.0, y1 + (y2 - y1) * 0.82 - 3.0);
        let _ = write!(out, r#"<text x="{lx}" y="{ly:.1}" text-anchor="end" class="edge" fill="{colour}">{}</text>"#, esc(&label));
    }
    let node = |out: &mut String, x: f64, y: f64, name: &str, bad: bool| {
        let (stroke, dash, fill) = if bad { ("#C00000", r#" stroke-dasharray="4 2""#, "#fde8e8") } else { ("#333", "", "#f4f6f8") };
        let _ = write!(
            out,
            r#"<rect x="{x}" y="{}" width="{node_w}" height="22" rx="4" fill="{fill}" stroke="{stroke}"{dash}/><text x="{}" y="{}" text-anchor="middle" class="node">{}{}</text>"#,
            y - 11.0,
            x + node_w / 2.0,
            y + 4.0,
            esc(name),
            if bad { " (unlisted)" } else { "" }
        );
    };
    for (t, y) in &yt {
        node(&mut out, xt, *y, t, false);
    }
    for (p, y) in &yp {
        node(&mut out, xp, *y, p, unlisted.contains(p));
    }
    for (r, y) in &yr {
        node(&mut out, xr, *y, r, false);
    }
    out.push_str("</svg>");
    out
}
