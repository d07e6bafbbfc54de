//! The evidence archive at size: generated events spread over 90 days,
//! scanned into an archive, compacted, then queried and reported on.
//!
//! `cargo bench --bench archive` (optionally `-- EVENTS DAYS`; default
//! 10,000,000 events over 90 days; `AIWATCH_BENCH_EVENTS` overrides EVENTS).
//! Runs the real binary for each step and prints its wall time, the archive's
//! size per million events before and after compaction, and the answers, so
//! the figures in docs/benchmarks.md can be checked. No assertions.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn du(dir: &Path) -> (u64, usize) {
    let mut total = (0, 0);
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            let (b, n) = du(&p);
            total.0 += b;
            total.1 += n;
        } else {
            total.0 += e.metadata().map(|m| m.len()).unwrap_or(0);
            total.1 += 1;
        }
    }
    total
}

/// Runs aiwatch with `args`; returns seconds and stdout, stops on failure.
fn aiwatch(label: &str, args: &[&str]) -> anyhow::Result<(f64, String)> {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_aiwatch")).args(args).output()?;
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(out.status.success(), "{label} failed: {}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    if let Some(l) = stderr.lines().find(|l| l.starts_with("aiwatch: ") && !l.contains("state at its peak")) {
        println!("  {l}");
    }
    Ok((secs, String::from_utf8_lossy(&out.stdout).into_owned()))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let events: u64 = std::env::var("AIWATCH_BENCH_EVENTS")
        .ok()
        .or_else(|| args.first().cloned())
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let days: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(90);
    let dir = tempfile::tempdir_in(std::env::var_os("AIWATCH_BENCH_DIR").unwrap_or_else(|| std::env::temp_dir().into()))?;
    let (input, policy, archive, report) =
        (dir.path().join("events.jsonl.gz"), dir.path().join("policy.toml"), dir.path().join("archive"), dir.path().join("report.html"));
    let s = |p: &Path| p.display().to_string();
    let rate = format!("{:.6}", events as f64 / (days as f64 * 86_400.0));
    println!("archive: {events} events over {days} days ({rate} events/s of event time)");

    let (t, policy_text) = aiwatch("generate policy", &["generate", "--print-policy"])?;
    std::fs::write(&policy, policy_text)?;
    let _ = t;
    let (t, _) = aiwatch("generate", &["generate", "--events", &events.to_string(), "--rate", &rate, "--out", &s(&input)])?;
    println!("generate: {t:.1} s, {:.0} MB gzip", std::fs::metadata(&input)?.len() as f64 / 1e6);

    let (t, _) = aiwatch("scan", &["scan", "--policy", &s(&policy), "--alerts", "/dev/null", "--archive", &s(&archive), &s(&input)])?;
    let (bytes, files) = du(&archive);
    println!("scan --archive: {t:.1} s; archive {:.1} MB in {files} files, {:.1} MB per million events", bytes as f64 / 1e6, bytes as f64 / 1e6 / (events as f64 / 1e6));

    let (t, _) = aiwatch("compact", &["archive", "compact", "--archive", &s(&archive), "--through", "2099-12-31"])?;
    let (bytes, files) = du(&archive);
    println!("archive compact: {t:.1} s; archive {:.1} MB in {files} files, {:.1} MB per million events", bytes as f64 / 1e6, bytes as f64 / 1e6 / (events as f64 / 1e6));

    let (_, first) = aiwatch("first day", &["query", "--archive", &s(&archive), "--output", "csv", "SELECT min(date) AS d, max(date) AS l FROM events"])?;
    let row = first.lines().nth(1).unwrap_or_default().to_string();
    let (from, to) = row.split_once(',').unwrap_or(("", ""));
    let mid = {
        let f = chrono::NaiveDate::parse_from_str(from, "%Y-%m-%d")?;
        (f + chrono::Duration::days(days as i64 / 2)).format("%Y-%m-%d").to_string()
    };
    let queries = [
        ("count, all days", "SELECT count(*) FROM events".to_string()),
        ("one day, requests by provider", format!("SELECT provider, count(*) FROM events WHERE date = '{mid}' AND event_type = 'ai.request' GROUP BY 1")),
        (
            "all days, requests by provider and region",
            "SELECT provider, vendor_region, count(*) FROM events WHERE event_type = 'ai.request' GROUP BY 1, 2".to_string(),
        ),
        ("all days, alerts by rule and day", "SELECT rule_id, date, count(*) FROM alerts GROUP BY 1, 2".to_string()),
        ("all days, distinct event ids", "SELECT count(DISTINCT event_id) FROM events".to_string()),
    ];
    for (name, sql) in &queries {
        let (t, out) = aiwatch(name, &["query", "--archive", &s(&archive), "--output", "csv", sql])?;
        println!("query {name}: {t:.2} s ({} result rows)", out.lines().count().saturating_sub(1));
    }
    for format in ["json", "html"] {
        let out = if format == "json" { report.with_extension("json") } else { report.clone() };
        let (t, _) = aiwatch(
            "report",
            &["report", "--archive", &s(&archive), "--from", from, "--to", to, "--policy", &s(&policy), "--format", format, "--out", &s(&out)],
        )?;
        println!("report --format {format} ({from} to {to}): {t:.1} s, {:.1} MB", std::fs::metadata(&out)?.len() as f64 / 1e6);
    }
    Ok(())
}
