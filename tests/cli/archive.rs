//! The Parquet archive end to end: `scan --archive`, `query --archive`,
//! `archive compact`, read back by aiwatch, DuckDB and through a local S3 server.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// Counts from the scan summary on stderr: (events, dead letters, alerts).
fn summary_counts(stderr: &str) -> (u64, u64, u64) {
    let first = stderr.lines().find(|l| l.contains(" events (")).unwrap_or_else(|| panic!("no summary in {stderr}"));
    let events = first.trim_start_matches("aiwatch: ").split(' ').next().unwrap().parse().unwrap();
    let dead = first.split(", ").find(|p| p.ends_with(" dead letters")).unwrap().split(' ').next().unwrap().parse().unwrap();
    let alerts = stderr
        .lines()
        .find_map(|l| l.strip_prefix("aiwatch: ").and_then(|r| r.strip_suffix(" alerts")))
        .unwrap_or_else(|| panic!("no alert count in {stderr}"))
        .parse()
        .unwrap();
    (events, dead, alerts)
}

fn scan_archive(archive: &str, extra: &[&str]) -> (u64, u64, u64) {
    let out = run_ok(
        aiwatch()
            .arg("scan")
            .arg("--policy")
            .arg(examples().join("policy.toml"))
            .arg("--alerts")
            .arg("/dev/null")
            .arg("--archive")
            .arg(archive)
            .args(extra)
            .arg(examples().join("events.jsonl")),
    );
    summary_counts(&String::from_utf8_lossy(&out.stderr))
}

/// One JSON object per result row of `query --archive ARCHIVE SQL`.
fn query_archive(archive: &str, sql: &str) -> Vec<serde_json::Value> {
    let out = run_ok(aiwatch().args(["query", "--archive", archive, "--output", "jsonl", sql]));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect()
}

const COUNTS: &str = "SELECT (SELECT count(*) FROM events) AS events, (SELECT count(*) FROM dead_letters) AS dead, \
                      (SELECT count(*) FROM alerts) AS alerts";

fn archive_counts(archive: &str) -> (u64, u64, u64) {
    let row = &query_archive(archive, COUNTS)[0];
    (row["events"].as_u64().unwrap(), row["dead"].as_u64().unwrap(), row["alerts"].as_u64().unwrap())
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out)
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned())
            }
        }
    }
    let mut v = Vec::new();
    walk(dir, dir, &mut v);
    v.sort();
    v
}

fn events_per_day(archive: &str) -> BTreeMap<String, u64> {
    query_archive(archive, "SELECT date, count(*) AS n FROM events GROUP BY date ORDER BY date")
        .iter()
        .map(|r| (r["date"].as_str().unwrap().to_string(), r["n"].as_u64().unwrap()))
        .collect()
}

#[test]
fn scan_archive_then_query_counts_equal_the_scan_summary() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let a = archive.to_str().unwrap();
    let (events, dead, alerts) = scan_archive(a, &[]);
    assert_eq!((dead, alerts), (14, 206), "the example stream's summary changed");
    assert!(events > 1000);
    assert_eq!(archive_counts(a), (events, dead, alerts));

    // Hive layout: TABLE/date=YYYY-MM-DD/LABEL.parquet, and nothing else.
    let layout = files(&archive);
    assert!(!layout.is_empty());
    for f in &layout {
        let parts: Vec<&str> = f.split('/').collect();
        assert_eq!(parts.len(), 3, "{f}");
        assert!(["events", "alerts", "dead_letters"].contains(&parts[0]), "{f}");
        assert!(parts[1].starts_with("date=") && parts[1].len() == 15, "{f}");
        assert!(parts[2].ends_with("-000000.parquet"), "{f}");
    }
    // Dead letters keep where and why, never the record's bytes.
    let cols = query_archive(a, "SELECT * FROM dead_letters LIMIT 1");
    let keys: Vec<&String> = cols[0].as_object().unwrap().keys().collect();
    assert!(!keys.iter().any(|k| k.contains("raw") || k.contains("bytes")), "{keys:?}");
    // A replay of the same input rewrites the same files: same names, same counts.
    scan_archive(a, &[]);
    assert_eq!(files(&archive), layout);
    assert_eq!(archive_counts(a), (events, dead, alerts));
}

#[test]
fn a_one_day_query_reads_only_that_days_files() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let a = archive.to_str().unwrap();
    scan_archive(a, &[]);
    let per_day = events_per_day(a);
    assert!(per_day.len() >= 2, "the example stream spans several days: {per_day:?}");
    let (day, n) = per_day.iter().next().map(|(d, n)| (d.clone(), *n)).unwrap();

    // Make every other day's files unreadable: a query that opened one would fail.
    for f in files(&archive) {
        if !f.contains(&format!("date={day}/")) {
            std::fs::write(archive.join(&f), b"not a parquet file").unwrap();
        }
    }
    let sql = format!("SELECT count(*) AS n, count(DISTINCT event_id) AS ids FROM events WHERE date = '{day}'");
    let row = &query_archive(a, &sql)[0];
    assert_eq!(row["n"].as_u64().unwrap(), n);
    assert_eq!(row["ids"].as_u64().unwrap(), n);
    // The same query over every day does open the broken files, and says which.
    let out = aiwatch().args(["query", "--archive", a, "SELECT count(DISTINCT event_id) FROM events"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("parquet") || err.contains("Parquet"), "{err}");
}

#[test]
fn query_writes_csv_jsonl_and_parquet_files() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let a = archive.to_str().unwrap();
    scan_archive(a, &[]);
    let sql = "SELECT rule_id, count(*) AS n FROM alerts GROUP BY rule_id ORDER BY rule_id";
    let csv = dir.path().join("out.csv");
    run_ok(aiwatch().args(["query", "--archive", a, "--output", "csv", "--out"]).arg(&csv).arg(sql));
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.starts_with("rule_id,n\n"), "{text}");
    let total: u64 = text.lines().skip(1).map(|l| l.rsplit(',').next().unwrap().parse::<u64>().unwrap()).sum();
    assert_eq!(total, 206);

    let pq = dir.path().join("out.parquet");
    run_ok(aiwatch().args(["query", "--archive", a, "--output", "parquet", "--out"]).arg(&pq).arg(sql));
    assert_eq!(&std::fs::read(&pq).unwrap()[..4], b"PAR1");
    // Parquet without --out is refused with what to do.
    let out = aiwatch().args(["query", "--archive", a, "--output", "parquet", sql]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--out FILE"));
    // A missing archive says so.
    let out = aiwatch().args(["query", "--archive"]).arg(dir.path().join("nope")).arg(sql).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("scan --archive"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn compact_merges_each_day_into_one_file_drops_replayed_rows_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let a = archive.to_str().unwrap();
    let counts = scan_archive(a, &[]);
    let per_day = events_per_day(a);
    // A replay that flushed at other boundaries: the same rows under other names.
    for f in files(&archive) {
        std::fs::copy(archive.join(&f), archive.join(f.replace("-000000.parquet", "-replay.parquet"))).unwrap();
    }
    let doubled = archive_counts(a);
    assert_eq!(doubled, (counts.0 * 2, counts.1 * 2, counts.2 * 2));

    let out = run_ok(aiwatch().args(["archive", "compact", "--archive", a, "--through", "2099-12-31"]));
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(msg.contains("repeated rows dropped"), "{msg}");
    assert_eq!(archive_counts(a), counts);
    assert_eq!(events_per_day(a), per_day);
    let after = files(&archive);
    assert!(after.iter().all(|f| f.ends_with("/compacted.parquet")), "{after:?}");
    let partitions: std::collections::BTreeSet<&str> = after.iter().map(|f| f.rsplit_once('/').unwrap().0).collect();
    assert_eq!(partitions.len(), after.len(), "one file per partition");

    // Again: nothing to do, nothing changes.
    let out = run_ok(aiwatch().args(["archive", "compact", "--archive", a, "--through", "2099-12-31"]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("compacted 0 partitions"));
    assert_eq!(files(&archive), after);
    // New files for a compacted day join its file.
    scan_archive(a, &[]);
    run_ok(aiwatch().args(["archive", "compact", "--archive", a, "--through", "2099-12-31"]));
    assert_eq!(files(&archive), after);
    assert_eq!(archive_counts(a), counts);
}

/// `python=` and `chromium=` from scripts/archive-deps.sh, which installs them when missing.
pub fn archive_deps() -> (PathBuf, Option<PathBuf>) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/archive-deps.sh");
    let out = Command::new("bash").arg(&script).stderr(Stdio::inherit()).output().expect("run scripts/archive-deps.sh");
    assert!(out.status.success(), "scripts/archive-deps.sh failed (it installs duckdb, moto[server] and chromium)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let get = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)).map(str::to_string).filter(|s| !s.is_empty());
    (PathBuf::from(get("python=").expect("python path")), get("chromium=").map(PathBuf::from))
}

#[test]
fn duckdb_reads_the_archive_with_equal_counts() {
    let (python, _) = archive_deps();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let a = archive.to_str().unwrap();
    let counts = scan_archive(a, &[]);
    let per_day = events_per_day(a);
    let script = r#"
import duckdb, json, sys
root = sys.argv[1]
def q(sql): return duckdb.sql(sql).fetchall()
src = lambda t: f"read_parquet('{root}/{t}/*/*.parquet', hive_partitioning = true)"
out = {
  "events": q(f"SELECT count(*) FROM {src('events')}")[0][0],
  "dead": q(f"SELECT count(*) FROM {src('dead_letters')}")[0][0],
  "alerts": q(f"SELECT count(*) FROM {src('alerts')}")[0][0],
  "days": {str(d): n for d, n in q(f"SELECT date, count(*) FROM {src('events')} GROUP BY date")},
  "distinct_ids": q(f"SELECT count(DISTINCT event_id) FROM {src('events')}")[0][0],
}
print(json.dumps(out))
"#;
    let out = Command::new(&python).arg("-c").arg(script).arg(a).output().expect("run python");
    assert!(out.status.success(), "duckdb: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["events"].as_u64().unwrap(), v["dead"].as_u64().unwrap(), v["alerts"].as_u64().unwrap()), counts);
    assert_eq!(v["distinct_ids"].as_u64().unwrap(), counts.0);
    let duck_days: BTreeMap<String, u64> =
        v["days"].as_object().unwrap().iter().map(|(k, n)| (k.clone(), n.as_u64().unwrap())).collect();
    assert_eq!(duck_days, per_day);
}

/// A moto S3 server on a free port of 127.0.0.1, stopped when dropped.
struct Moto {
    child: Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_moto(python: &Path) -> Moto {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(python)
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let moto = Moto { child, port };
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto_server did not listen on 127.0.0.1:{port} within 60 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    moto
}

#[test]
fn s3_round_trip_against_a_local_s3_server() {
    let (python, _) = archive_deps();
    let moto = start_moto(&python);
    let endpoint = format!("http://127.0.0.1:{}", moto.port);
    // Credentials come from the environment only.
    let s3 = |cmd: &mut Command| -> std::process::Output {
        cmd.env("AWS_ENDPOINT_URL", &endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ALLOW_HTTP", "true")
            .output()
            .unwrap()
    };
    // Make the bucket with a plain S3 call (moto accepts any credentials).
    let mk = Command::new(&python)
        .arg("-c")
        .arg("import boto3,sys; boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='t', aws_secret_access_key='t').create_bucket(Bucket='evidence')")
        .arg(&endpoint)
        .output()
        .unwrap();
    assert!(mk.status.success(), "create bucket: {}", String::from_utf8_lossy(&mk.stderr));

    let url = "s3://evidence/aiwatch/archive";
    let out = s3(aiwatch()
        .arg("scan")
        .arg("--policy")
        .arg(examples().join("policy.toml"))
        .arg("--alerts")
        .arg("/dev/null")
        .args(["--archive", url])
        .arg(examples().join("events.jsonl")));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let counts = summary_counts(&String::from_utf8_lossy(&out.stderr));

    let q = |sql: &str| {
        let out = s3(aiwatch().args(["query", "--archive", url, "--output", "jsonl", sql]));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let rows: Vec<serde_json::Value> =
            String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        rows
    };
    let row = &q(COUNTS)[0];
    assert_eq!((row["events"].as_u64().unwrap(), row["dead"].as_u64().unwrap(), row["alerts"].as_u64().unwrap()), counts);

    // Compaction works on the store too and keeps every row.
    let out = s3(aiwatch().args(["archive", "compact", "--archive", url, "--through", "2099-12-31"]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let row = &q(COUNTS)[0];
    assert_eq!((row["events"].as_u64().unwrap(), row["dead"].as_u64().unwrap(), row["alerts"].as_u64().unwrap()), counts);
    let listed = Command::new(&python)
        .arg("-c")
        .arg("import boto3,sys; c=boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='t', aws_secret_access_key='t'); print('\\n'.join(o['Key'] for o in c.list_objects_v2(Bucket='evidence')['Contents']))")
        .arg(&endpoint)
        .output()
        .unwrap();
    let keys = String::from_utf8_lossy(&listed.stdout);
    assert!(keys.lines().count() > 0 && keys.lines().all(|k| k.starts_with("aiwatch/archive/") && k.ends_with("/compacted.parquet")), "{keys}");

    // The report reads the store too.
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let out = s3(aiwatch()
        .args(["report", "--archive", url, "--from", "2026-10-01", "--to", "2026-11-30", "--format", "json", "--policy"])
        .arg(examples().join("policy.toml"))
        .arg("--out")
        .arg(&json));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(r["coverage"]["events"].as_u64().unwrap(), counts.0);
    assert_eq!(r["coverage"]["dead_letters"].as_u64().unwrap(), counts.1);
    drop(moto);
}
