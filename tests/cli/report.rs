//! `aiwatch report`: every figure of the JSON equals an independent SQL query
//! over the archive, and the HTML renders in headless Chromium with no request.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::archive::archive_deps;
use crate::support::*;

/// An archive of the example stream, its first and last day.
fn example_archive(dir: &Path) -> (String, String, String) {
    let archive = dir.join("archive");
    let a = archive.to_str().unwrap().to_string();
    run_ok(
        aiwatch()
            .arg("scan")
            .arg("--policy")
            .arg(examples().join("policy.toml"))
            .arg("--alerts")
            .arg("/dev/null")
            .args(["--archive", &a])
            .arg(examples().join("events.jsonl")),
    );
    let r = &q(&a, "SELECT min(date) AS f, max(date) AS t FROM events")[0];
    (a, r["f"].as_str().unwrap().to_string(), r["t"].as_str().unwrap().to_string())
}

fn q(archive: &str, sql: &str) -> Vec<Value> {
    let out = run_ok(aiwatch().args(["query", "--archive", archive, "--output", "jsonl", "--policy"]).arg(examples().join("policy.toml")).arg(sql));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn count(archive: &str, sql: &str) -> u64 {
    q(archive, sql).first().map_or(0, |r| r["n"].as_u64().unwrap())
}

fn report(archive: &str, from: &str, to: &str, out: &Path, format: &str) {
    run_ok(
        aiwatch()
            .args(["report", "--archive", archive, "--from", from, "--to", to, "--format", format, "--policy"])
            .arg(examples().join("policy.toml"))
            .arg("--out")
            .arg(out),
    );
}

#[test]
fn every_figure_of_the_json_report_equals_an_independent_query() {
    let dir = tempfile::tempdir().unwrap();
    let (a, from, to) = example_archive(dir.path());
    // One day before and after: days without events must show as gaps.
    let day = |d: &str, k: i64| (chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap() + chrono::Duration::days(k)).to_string();
    let (from, to) = (day(&from, -1), day(&to, 1));
    let out = dir.path().join("report.json");
    report(&a, &from, &to, &out, "json");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let period = format!("date BETWEEN '{from}' AND '{to}'");

    // Provenance.
    use sha2::Digest as _;
    let policy_sha: String = sha2::Sha256::digest(std::fs::read(examples().join("policy.toml")).unwrap()).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(r["provenance"]["policy_sha256"], policy_sha.as_str());
    assert_eq!(r["provenance"]["aiwatch_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(r["provenance"]["rule_pack_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(r["provenance"]["rules"].as_array().unwrap().len(), std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("queries")).unwrap().filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "sql")).count());

    // Coverage.
    let c = &r["coverage"];
    assert_eq!(c["events"].as_u64().unwrap(), count(&a, &format!("SELECT count(*) AS n FROM events WHERE {period}")));
    assert!(c["events"].as_u64().unwrap() > 1000);
    let per_day: BTreeMap<(String, String), u64> = c["events_per_day"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| ((d["date"].as_str().unwrap().into(), d["source"].as_str().unwrap().into()), d["events"].as_u64().unwrap()))
        .collect();
    // Independently: by the UTC date of `time`, not by the partition column.
    let expected: BTreeMap<(String, String), u64> = q(
        &a,
        "SELECT to_char(time, '%Y-%m-%d') AS d, CASE WHEN source IS NULL THEN origin_source ELSE source END AS s, count(event_id) AS n FROM events GROUP BY 1, 2",
    )
    .iter()
    .map(|x| ((x["d"].as_str().unwrap().into(), x["s"].as_str().unwrap().into()), x["n"].as_u64().unwrap()))
    .collect();
    assert_eq!(per_day, expected);
    let days_without: Vec<&str> = c["days_without_events"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(days_without.contains(&from.as_str()) && days_without.contains(&to.as_str()), "{days_without:?}");
    for d in &days_without {
        assert_eq!(count(&a, &format!("SELECT count(*) AS n FROM events WHERE date = '{d}'")), 0);
    }
    let mut gap_hours = 0;
    for g in c["hours_without_events"].as_array().unwrap() {
        let (s, e) = (g["start"].as_str().unwrap(), g["end"].as_str().unwrap());
        assert_eq!(count(&a, &format!("SELECT count(*) AS n FROM events WHERE time >= TIMESTAMP '{s}' AND time < TIMESTAMP '{e}'")), 0, "{g}");
        gap_hours += g["hours"].as_u64().unwrap();
    }
    let busy_hours = count(&a, &format!("SELECT count(DISTINCT date_trunc('hour', time)) AS n FROM events WHERE {period}"));
    let days = chrono::NaiveDate::parse_from_str(&to, "%Y-%m-%d").unwrap().signed_duration_since(chrono::NaiveDate::parse_from_str(&from, "%Y-%m-%d").unwrap()).num_days() as u64 + 1;
    assert_eq!(gap_hours + busy_hours, 24 * days, "every hour of the period is either a gap or has events");
    assert_eq!(c["dead_letters"].as_u64().unwrap(), count(&a, &format!("SELECT count(*) AS n FROM dead_letters WHERE {period}")));
    assert_eq!(c["dead_letters"].as_u64().unwrap(), 14);
    let dl: u64 = c["dead_letters_per_day"].as_array().unwrap().iter().map(|d| d["dead_letters"].as_u64().unwrap()).sum();
    assert_eq!(dl, 14);
    let first_last = &q(&a, "SELECT to_char(min(time), '%Y-%m-%dT%H:%M:%S%.f') AS f, to_char(max(time), '%Y-%m-%dT%H:%M:%S%.f') AS l FROM events")[0];
    let strip = |v: &Value| v.as_str().unwrap().trim_end_matches('Z').trim_end_matches('0').trim_end_matches('.').to_string();
    assert_eq!(strip(&c["archive_first_event"]), strip(&first_last["f"]));
    assert_eq!(strip(&c["archive_last_event"]), strip(&first_last["l"]));

    // Controls: violations per criterion by array_has, not by unnest.
    let controls = r["controls"].as_array().unwrap();
    for crit in ["CC6.1", "CC6.3", "CC6.7", "CC7.2", "CC8.1", "CC9.2", "C1.1", "C1.2", "P4.2", "P4.3", "P6.1"] {
        let ctl = controls.iter().find(|x| x["criterion"] == crit).unwrap_or_else(|| panic!("{crit} missing"));
        assert!(!ctl["rules"].as_array().unwrap().is_empty(), "{crit} has no rule");
        let n = count(&a, &format!("SELECT count(*) AS n FROM alerts WHERE {period} AND array_has(controls, '{crit}')"));
        assert_eq!(ctl["violations"].as_u64().unwrap(), n, "{crit}");
        for sev in q(&a, &format!("SELECT severity, count(*) AS n FROM alerts WHERE {period} AND array_has(controls, '{crit}') GROUP BY severity")) {
            assert_eq!(ctl["by_severity"][sev["severity"].as_str().unwrap()], sev["n"], "{crit}");
        }
        let trend: u64 = ctl["per_day"].as_array().unwrap().iter().map(|d| d["count"].as_u64().unwrap()).sum();
        assert_eq!(trend, n, "{crit}");
    }
    assert!(controls.iter().map(|x| x["violations"].as_u64().unwrap()).sum::<u64>() > 0);

    // Vendors: requests per provider, unlisted ones.
    let requests = format!("FROM events WHERE {period} AND event_type = 'ai.request'");
    for v in r["vendors"].as_array().unwrap() {
        let p = v["provider"].as_str().unwrap();
        let n = count(&a, &format!("SELECT count(*) AS n {requests} AND provider = '{p}'"));
        assert_eq!(v["requests"].as_u64().unwrap(), n, "{p}");
        let listed = count(&a, &format!("SELECT count(*) AS n FROM policy_vendors WHERE provider = '{p}'")) == 1;
        assert_eq!(v["listed"].as_bool().unwrap(), listed, "{p}");
    }
    assert!(r["vendors"].as_array().unwrap().iter().any(|v| v["listed"] == false), "the example sends to an unlisted provider");
    let flows: u64 = r["data_flow"].as_array().unwrap().iter().map(|f| f["requests"].as_u64().unwrap()).sum();
    assert_eq!(flows, count(&a, &format!("SELECT count(*) AS n {requests}")));

    // Change population, checked against the engine's own change alerts.
    let changes = r["changes"].as_array().unwrap();
    assert_eq!(changes.len() as u64, count(&a, &format!("SELECT count(*) AS n FROM events WHERE {period} AND event_type = 'config.change'")));
    let unauthorized = changes.iter().filter(|c| c["authorized"] == false).count() as u64;
    assert_eq!(unauthorized, count(&a, &format!("SELECT count(*) AS n FROM alerts WHERE {period} AND rule_id = 'change.unauthorized'")));
    let unreviewed = changes.iter().filter(|c| c["review_required"] == true && c["reviewed"] == false).count() as u64;
    assert_eq!(unreviewed, count(&a, &format!("SELECT count(*) AS n FROM alerts WHERE {period} AND rule_id = 'change.unreviewed'")));

    // Findings: alerts and distinct violations per rule.
    let findings = r["findings"].as_array().unwrap();
    let per_rule = q(&a, &format!("SELECT rule_id, count(*) AS alerts, count(DISTINCT alert_id) AS open FROM alerts WHERE {period} GROUP BY rule_id"));
    assert_eq!(findings.len(), per_rule.len());
    for x in per_rule {
        let f = findings.iter().find(|f| f["rule_id"] == x["rule_id"]).unwrap();
        assert_eq!(f["alerts"], x["alerts"]);
        assert_eq!(f["open"], x["open"]);
        assert_eq!(f["violations"].as_array().unwrap().len() as u64, x["open"].as_u64().unwrap());
    }
    let total: u64 = findings.iter().map(|f| f["alerts"].as_u64().unwrap()).sum();
    assert_eq!(total, 206);

    // No text of events anywhere: the example's summaries never appear.
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(!text.contains("\"summary\""));
}

/// Chromium's own background services (component updates, network time,
/// sign-in), which it contacts whatever the page holds, even with background
/// networking disabled; any other request counts as made by the page.
const BROWSER_SERVICES: [&str; 3] = ["update.googleapis.com", "accounts.google.com", "clients2.google.com"];

/// A listener that records the first line of every request: Chromium's proxy,
/// so every request it makes is seen.
fn recording_proxy() -> (u16, Arc<Mutex<Vec<String>>>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            let _ = c.set_read_timeout(Some(Duration::from_millis(500)));
            let mut buf = [0u8; 2048];
            let n = c.read(&mut buf).unwrap_or(0);
            // A connection closed or idle without a byte asked for nothing (Chromium
            // opens spare connections to its proxy, and one from an earlier page
            // can end after the list was cleared).
            if n > 0 {
                s.lock().unwrap().push(String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_string());
            }
        }
    });
    (port, seen)
}

/// The requests of `seen` that are not Chromium's own services.
fn page_requests(seen: &Mutex<Vec<String>>) -> Vec<String> {
    seen.lock().unwrap().iter().filter(|l| !BROWSER_SERVICES.iter().any(|h| l.contains(h))).cloned().collect()
}

#[test]
fn html_report_renders_in_chromium_to_png_and_pdf_with_no_request() {
    let (_, chromium) = archive_deps();
    let chromium = chromium.expect("scripts/archive-deps.sh installs chromium (as root) or finds it on PATH");
    let dir = tempfile::tempdir().unwrap();
    let (a, from, to) = example_archive(dir.path());
    let html = dir.path().join("report.html");
    report(&a, &from, &to, &html, "html");
    let page = std::fs::read_to_string(&html).unwrap();
    for forbidden in ["<script", "<img", "<link", "<iframe", "@import", "url(", "src=", "href="] {
        assert!(!page.contains(forbidden), "the page holds {forbidden}");
    }
    // The CSV beside it holds the population.
    let csv = std::fs::read_to_string(dir.path().join("report-changes.csv")).unwrap();
    let changes = count(&a, "SELECT count(*) AS n FROM events WHERE event_type = 'config.change'");
    assert_eq!(csv.lines().count() as u64, changes + 1);

    let (port, requests) = recording_proxy();
    let profile = dir.path().join("profile");
    let chrome = |page: &Path, extra: &[String]| {
        let out = Command::new(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-default-apps",
                "--hide-scrollbars",
                "--window-size=1100,2600",
                "--run-all-compositor-stages-before-draw",
                "--virtual-time-budget=2000",
                &format!("--proxy-server=http://127.0.0.1:{port}"),
                "--proxy-bypass-list=<-loopback>",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(format!("file://{}", page.display()))
            .output()
            .expect("run chromium");
        assert!(out.status.success(), "chromium: {}", String::from_utf8_lossy(&out.stderr));
        out
    };
    let png = dir.path().join("report.png");
    let pdf = dir.path().join("report.pdf");
    // The proxy sees what a page loads: a page with one image from the network makes one request.
    let control = dir.path().join("control.html");
    std::fs::write(&control, r#"<html><body><img src="http://aiwatch-control.invalid/pixel.png"></body></html>"#).unwrap();
    chrome(&control, &["--dump-dom".into()]);
    let control_requests = page_requests(&requests);
    assert!(control_requests.iter().any(|l| l.contains("aiwatch-control.invalid")), "the proxy saw no request of the control page: {control_requests:?}");
    requests.lock().unwrap().clear();

    chrome(&html, &[format!("--screenshot={}", png.display())]);
    chrome(&html, &[format!("--print-to-pdf={}", pdf.display()), "--no-pdf-header-footer".into()]);
    let dom = String::from_utf8(chrome(&html, &["--dump-dom".into()]).stdout).unwrap();
    assert_eq!(page_requests(&requests), Vec::<String>::new(), "the report made network requests");

    assert_eq!(&std::fs::read(&png).unwrap()[..8], b"\x89PNG\r\n\x1a\n");
    let pdf_bytes = std::fs::read(&pdf).unwrap();
    assert!(pdf_bytes.starts_with(b"%PDF"));
    let pages = pdf_bytes.windows(10).filter(|w| w == b"/Type /Pag" || w == b"/Type/Page").count();
    assert!(pages >= 2, "the report prints on several pages");
    for id in ["provenance", "coverage", "controls", "vendors", "data-flow", "changes", "findings"] {
        assert!(dom.contains(&format!(r#"<section id="{id}">"#)), "section {id} missing");
    }
    // The charts and the diagram are there: the events chart, 11+ trend charts, the flow.
    assert!(dom.matches("<svg").count() >= 14, "{} charts", dom.matches("<svg").count());
    assert!(dom.contains("aria-label=\"data flow"));
    assert!(dom.contains("(not in the policy)"));
    // Keep the renders for a person to look at.
    if let Some(keep) = std::env::var_os("AIWATCH_REPORT_RENDERS") {
        let keep = Path::new(&keep);
        std::fs::create_dir_all(keep).unwrap();
        for f in ["report.png", "report.pdf", "report.html", "report-changes.csv"] {
            std::fs::copy(dir.path().join(f), keep.join(f)).unwrap();
        }
    }
}
