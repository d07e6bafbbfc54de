//! `aiwatch scan` beside a DuckDB rendering of the rule pack, on the same file
//! in the same run.
//!
//! ```sh
//! cargo bench --bench duckdb                 # AIWATCH_BENCH_EVENTS=200000 for a shorter run
//! ```
//!
//! Generates the scan benchmark's stream (1,000,000 lines: 200 events/s of
//! event time, 20 s disorder, 0.1 % duplicates, 0.05 % malformed) and the demo
//! policy, then runs, one after the other, each as a child process:
//!
//! - `aiwatch scan --policy P --alerts A --dead-letter D FILE` (the release binary);
//! - `python3 benches/duckdb/rules.py --policy P --lateness 60 FILE`: the 13
//!   rules of spec/rules.md as DuckDB SQL over the whole file in one batch.
//!
//! It prints each one's wall time and peak RSS (`wait4`'s `ru_maxrss` of the
//! child), their ratios, and whether the two sets of (rule_id, subject) pairs
//! are equal. If `python3` cannot import `duckdb`, the benchmark makes a venv
//! in the target folder (`duckdb-venv`) and installs it there from PyPI;
//! `AIWATCH_BENCH_PYTHON` names another interpreter. No assertions.

#[path = "common/stream.rs"]
mod stream;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aiwatch::generate::DEMO_POLICY;
use anyhow::{bail, Context as _};

/// Wall time and peak resident set size of one finished child.
struct Measured {
    wall: Duration,
    peak_rss_mib: f64,
}

/// Runs `cmd` to its end, reaping it with `wait4` to read its own peak RSS.
fn run_measured(cmd: &mut Command, what: &str) -> anyhow::Result<Measured> {
    let started = Instant::now();
    let child = cmd.spawn().with_context(|| format!("cannot start {what}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data; wait4 fills it and the status for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err).with_context(|| format!("waiting for {what}"));
        }
    }
    let wall = started.elapsed();
    drop(child); // already reaped above; dropping a Child neither waits nor kills
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        bail!("{what} failed (wait status {status})");
    }
    // ru_maxrss is in KiB on Linux, in bytes on macOS.
    let kib = if cfg!(target_os = "macos") { usage.ru_maxrss as f64 / 1024.0 } else { usage.ru_maxrss as f64 };
    Ok(Measured { wall, peak_rss_mib: kib / 1024.0 })
}

/// The (rule_id, subject) pairs of a JSON Lines file of alerts or violations.
fn pairs(path: &Path) -> anyhow::Result<BTreeSet<(String, String)>> {
    let mut out = BTreeSet::new();
    let file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    for line in BufReader::new(file).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line).with_context(|| format!("{}: not JSON: {line}", path.display()))?;
        let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        match (field("rule_id"), field("subject")) {
            (Some(r), Some(s)) => {
                out.insert((r, s));
            }
            _ => bail!("{}: a line without rule_id and subject: {line}", path.display()),
        }
    }
    Ok(out)
}

fn imports_duckdb(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import duckdb, sys; sys.version_info >= (3, 11) or __import__('tomli')"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A Python that can import duckdb: `AIWATCH_BENCH_PYTHON`, `python3`, or a venv made for it.
fn python_with_duckdb(target_dir: &Path) -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var("AIWATCH_BENCH_PYTHON") {
        let p = PathBuf::from(p);
        if !imports_duckdb(&p) {
            bail!("AIWATCH_BENCH_PYTHON={} cannot import duckdb", p.display());
        }
        return Ok(p);
    }
    let system = PathBuf::from("python3");
    if imports_duckdb(&system) {
        return Ok(system);
    }
    let venv = target_dir.join("duckdb-venv");
    let python = venv.join("bin").join("python");
    if imports_duckdb(&python) {
        return Ok(python);
    }
    eprintln!("python3 cannot import duckdb: installing it into {}", venv.display());
    let ok = Command::new("python3").args(["-m", "venv"]).arg(&venv).status().context("cannot run python3 -m venv")?;
    if !ok.success() {
        bail!("python3 -m venv {} failed (on Debian/Ubuntu: apt-get install python3-venv)", venv.display());
    }
    let ok = Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "duckdb", "tomli; python_version < '3.11'"])
        .status()
        .context("cannot run pip")?;
    if !ok.success() || !imports_duckdb(&python) {
        bail!("could not install duckdb into {}", venv.display());
    }
    Ok(python)
}

fn main() -> anyhow::Result<()> {
    let events: u64 = std::env::var("AIWATCH_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let aiwatch = PathBuf::from(env!("CARGO_BIN_EXE_aiwatch"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/duckdb/rules.py");
    // target/release/aiwatch -> target
    let target_dir = aiwatch.parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_else(std::env::temp_dir);
    let python = python_with_duckdb(&target_dir)?;

    let dir = tempfile::tempdir()?;
    let input = dir.path().join("events.jsonl");
    let policy = dir.path().join("demo-policy.toml");
    std::fs::write(&policy, DEMO_POLICY)?;
    let bytes = stream::write_scan_stream(&input, events)?;

    let alerts = dir.path().join("alerts.jsonl");
    let scan_log = dir.path().join("scan.log");
    let scan = run_measured(
        Command::new(&aiwatch)
            .arg("scan")
            .arg("--policy")
            .arg(&policy)
            .arg("--alerts")
            .arg(&alerts)
            .arg("--dead-letter")
            .arg(dir.path().join("dead.jsonl"))
            .arg(&input)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&scan_log)?),
        "aiwatch scan",
    )
    .map_err(|e| e.context(std::fs::read_to_string(&scan_log).unwrap_or_default()))?;

    let violations = dir.path().join("violations.jsonl");
    let duck_log = dir.path().join("duckdb.log");
    let duck = run_measured(
        Command::new(&python)
            .arg(&script)
            .arg("--policy")
            .arg(&policy)
            .args(["--lateness", "60"])
            .arg(&input)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&violations)?)
            .stderr(std::fs::File::create(&duck_log)?),
        "benches/duckdb/rules.py",
    )
    .map_err(|e| e.context(std::fs::read_to_string(&duck_log).unwrap_or_default()))?;

    // Each tool's own account of the run, as it printed it.
    for log in [&scan_log, &duck_log] {
        for l in std::fs::read_to_string(log)?.lines().filter(|l| l.contains(" events")) {
            println!("{l}");
        }
    }

    let ours = pairs(&alerts)?;
    let theirs = pairs(&violations)?;
    let w = |m: &Measured| m.wall.as_secs_f64();
    println!();
    println!("{:<16} {:>8} {:>14} {:>11}", "tool", "wall s", "peak RSS MiB", "violations");
    println!("{:<16} {:>8.2} {:>14.0} {:>11}", "aiwatch scan", w(&scan), scan.peak_rss_mib, ours.len());
    println!("{:<16} {:>8.2} {:>14.0} {:>11}", "duckdb", w(&duck), duck.peak_rss_mib, theirs.len());
    println!("{:<16} {:>8.2} {:>14.2}", "aiwatch/duckdb", w(&scan) / w(&duck), scan.peak_rss_mib / duck.peak_rss_mib);
    println!("({events} lines, {:.0} MB: aiwatch {:.0} lines/s, duckdb {:.0} lines/s)", bytes as f64 / 1e6, events as f64 / w(&scan), events as f64 / w(&duck));

    if ours == theirs {
        println!("violation sets equal: yes ({} pairs)", ours.len());
    } else {
        let only_ours: Vec<_> = ours.difference(&theirs).collect();
        let only_theirs: Vec<_> = theirs.difference(&ours).collect();
        println!(
            "violation sets equal: no (aiwatch {}, duckdb {}; {} only in aiwatch, {} only in duckdb)",
            ours.len(),
            theirs.len(),
            only_ours.len(),
            only_theirs.len()
        );
        for (r, s) in only_ours.iter().take(10) {
            println!("  only in aiwatch: {r} {s}");
        }
        for (r, s) in only_theirs.iter().take(10) {
            println!("  only in duckdb:  {r} {s}");
        }
    }
    Ok(())
}
