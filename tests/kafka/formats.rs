//! One `aiwatch run` reads a LiteLLM topic and an OTLP topic (written with
//! `otlp_proto`, one ExportTraceServiceRequest per message) side by side, each
//! in its own format, and finds what `scan` finds in the same records; the
//! canary in every prompt reaches no output, log or metric.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::support::*;

const CANARY: &str = "AIWATCH-CANARY-PROMPT-7f3c";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/formats")
}

/// The records of a varint length-delimited file.
fn delimited(path: &Path) -> Vec<Vec<u8>> {
    aiwatch::sources::file::read_all(&path.display().to_string(), aiwatch::sources::file::Framing::LengthDelimited).unwrap()
}

/// Produces each record as one message, round robin over the partitions.
fn produce_records(topic: &str, records: &[Vec<u8>]) {
    let producer: FutureProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", bootstrap()).set("enable.idempotence", "true").create().unwrap();
    block_on(async {
        for (i, r) in records.iter().enumerate() {
            let record = FutureRecord::<(), [u8]>::to(topic).payload(&r[..]).partition(i as i32 % PARTITIONS);
            producer.send(record, Duration::from_secs(30)).await.unwrap_or_else(|(e, _)| panic!("record {i} not delivered: {e}"));
        }
    });
}

fn scan_format(format: &str, input: &Path, dir: &Path) -> (std::collections::BTreeSet<Violation>, usize) {
    let alerts = dir.join(format!("scan-{format}.jsonl"));
    let dead = dir.join(format!("scan-dead-{format}.jsonl"));
    run_ok(
        aiwatch()
            .args(["scan", "--format", format, "--policy"])
            .arg(fixtures().join("policy.toml"))
            .arg("--adapter")
            .arg(fixtures().join("adapter.toml"))
            .arg("--alerts")
            .arg(&alerts)
            .arg("--dead-letter")
            .arg(&dead)
            .arg(input),
        Duration::from_secs(60),
    );
    (violations_once(&json_lines(&alerts)), json_lines(&dead).len())
}

/// The run config: the LiteLLM topic in `[kafka]`, the OTLP topic as a `[[kafka.source]]`, the test adapter.
fn config(dir: &Path, litellm: &str, otlp: &str) -> RunConfig {
    let mut cfg = RunConfig::new(dir, litellm);
    cfg.policy = fixtures().join("policy.toml");
    cfg.single_step();
    cfg.start_at_beginning();
    cfg.extra = format!(
        "\n[[kafka.source]]\ntopics = [{}]\nformat = \"otlp_proto\"\n\n{}",
        toml_str(otlp),
        std::fs::read_to_string(fixtures().join("adapter.toml")).unwrap()
    );
    cfg
}

fn write(cfg: &RunConfig, dir: &Path) -> PathBuf {
    let toml = cfg.to_toml().replace(&format!("topics = [{}]", toml_str(&cfg.topic)), &format!("topics = [{}]\nformat = \"litellm\"", toml_str(&cfg.topic)));
    let path = dir.join(format!("{}.toml", unique("config")));
    std::fs::write(&path, toml).unwrap();
    path
}

fn assert_no_canary(what: &str, text: &str) {
    assert!(!text.contains(CANARY), "{what}: the canary leaked:\n{text}");
}

#[test]
fn a_litellm_topic_and_an_otlp_proto_topic_in_one_run_give_what_scan_gives() {
    let dir = tempfile::tempdir().unwrap();
    // Good and malformed records of each format, as the files hold them.
    let litellm_file = dir.path().join("litellm.jsonl");
    let mut litellm_data = std::fs::read(fixtures().join("litellm/payloads.jsonl")).unwrap();
    litellm_data.extend(std::fs::read(fixtures().join("litellm/malformed.jsonl")).unwrap());
    std::fs::write(&litellm_file, &litellm_data).unwrap();
    let mut otlp_records = delimited(&fixtures().join("otlp/requests.otlp_proto"));
    otlp_records.extend(delimited(&fixtures().join("otlp/malformed.otlp_proto")));
    let otlp_file = dir.path().join("otlp.bin");
    let mut framed = Vec::new();
    for r in &otlp_records {
        prost_varint(r.len(), &mut framed);
        framed.extend(r);
    }
    std::fs::write(&otlp_file, &framed).unwrap();

    let (litellm_scan, litellm_dead) = scan_format("litellm", &litellm_file, dir.path());
    let (otlp_scan, otlp_dead) = scan_format("otlp_proto", &otlp_file, dir.path());
    assert!(litellm_scan.len() >= 10 && otlp_scan.len() >= 4, "{litellm_scan:?} {otlp_scan:?}");
    let want: std::collections::BTreeSet<Violation> = litellm_scan.union(&otlp_scan).cloned().collect();

    let (litellm, otlp) = (unique("litellm"), unique("otlp"));
    create_topic(&litellm, PARTITIONS);
    create_topic(&otlp, PARTITIONS);
    produce_lines(&litellm, &litellm_data);
    produce_records(&otlp, &otlp_records);

    let cfg = config(dir.path(), &litellm, &otlp);
    let path = write(&cfg, dir.path());
    let log = run_until_end(&path, Duration::from_secs(120), &[("AIWATCH_LOG", "debug")]);
    let alerts = json_lines(cfg.alerts());
    assert_same_violations(&violations_once(&alerts), &want, "run --until-end over a litellm and an otlp_proto topic");
    let dead = json_lines(cfg.dead_letters());
    assert_eq!(dead.len(), litellm_dead + otlp_dead, "dead letters of run and scan");
    // Evidence and dead letters name the topic each record came from.
    for a in &alerts {
        for e in a["evidence"]["events"].as_array().into_iter().flatten() {
            let from = if e["event_id"].as_str().unwrap().starts_with("litellm:") { &litellm } else { &otlp };
            assert_eq!(e["topic"].as_str(), Some(from.as_str()), "{a}");
        }
    }
    assert_no_canary("run stderr", &log);
    assert_no_canary("alerts", &std::fs::read_to_string(cfg.alerts()).unwrap());
    let dead_text = std::fs::read_to_string(cfg.dead_letters()).unwrap();
    let canary_hex: String = CANARY.bytes().map(|b| format!("{b:02x}")).collect();
    assert_no_canary("dead letters", &dead_text.replace(&canary_hex, CANARY));

    // A continuous run in another group: the metrics count the skipped spans and carry no text.
    let mut cfg = config(dir.path(), &litellm, &otlp);
    cfg.state_dir = dir.path().join("state2");
    cfg.alerts = Some(dir.path().join("alerts2.jsonl"));
    cfg.dead_letters = Some(dir.path().join("dead2.jsonl"));
    let addr = free_addr();
    cfg.metrics = Some(addr);
    cfg.max_batch_wait_ms = 200;
    let path = write(&cfg, dir.path());
    let mut p = Process::run(&path, false, &[("AIWATCH_LOG", "debug")]);
    let skipped = wait_for(Duration::from_secs(90), "the skipped spans in the metrics", || {
        let samples = scrape(addr)?;
        let n = samples
            .iter()
            .filter(|s| s.name == "aiwatch_skipped_records_total" && s.labels.get("format").map(String::as_str) == Some("otlp_proto"))
            .map(|s| s.value)
            .sum::<f64>();
        (n >= 4.0).then_some(samples)
    });
    let text = http_get(addr, "/metrics").unwrap().1;
    assert!(text.contains("aiwatch_skipped_records_total{format=\"otlp_proto\",reason=\"not_genai_span\"} 4"), "3 HTTP spans and 1 in the malformed records:\n{text}");
    assert!(metric_sum(&skipped, "aiwatch_dead_letters_total") >= (litellm_dead + otlp_dead) as f64);
    assert_no_canary("metrics", &text);
    p.signal("TERM");
    p.wait_ok(Duration::from_secs(60));
    assert_no_canary("run stderr", &p.stderr_text());
    delete_topics(&[&litellm, &otlp]);
}

fn prost_varint(mut n: usize, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A LiteLLM topic of 12 MB: raw batches close at `RawBatch::MAX_BYTES`, long
/// before their record count, and the decoder joins them into steps of the
/// configured size. `run --until-end` still finds what `scan` finds.
#[test]
fn a_litellm_topic_read_in_raw_batches_bounded_by_bytes_gives_what_scan_gives() {
    let dir = tempfile::tempdir().unwrap();
    let templates: Vec<Vec<u8>> = lines_of(&std::fs::read(fixtures().join("litellm/payloads.jsonl")).unwrap())
        .into_iter()
        .filter(|l| l.starts_with(b"{"))
        .map(<[u8]>::to_vec)
        .collect();
    // Fixture call ids are `fx-...-00NN`: a fresh number keeps every payload its own.
    let mut data = Vec::new();
    for n in 0..1_100usize {
        let text = String::from_utf8(templates[n % templates.len()].clone()).unwrap();
        data.extend(text.replace("-00", &format!("-{n:05}-")).into_bytes());
        data.push(b'\n');
    }
    assert!(data.len() > 2 * aiwatch::event::RawBatch::MAX_BYTES, "{} bytes", data.len());
    let file = dir.path().join("litellm.jsonl");
    std::fs::write(&file, &data).unwrap();
    let (want, dead) = scan_format("litellm", &file, dir.path());
    assert!(want.len() >= 100, "{}", want.len());

    let topic = unique("litellm-large");
    create_topic(&topic, PARTITIONS);
    produce_lines(&topic, &data);
    let mut cfg = RunConfig::new(dir.path(), &topic);
    cfg.policy = fixtures().join("policy.toml");
    cfg.single_step();
    cfg.batch_size = 700;
    cfg.start_at_beginning();
    cfg.extra = format!("\n{}", std::fs::read_to_string(fixtures().join("adapter.toml")).unwrap());
    let path = write(&cfg, dir.path());
    run_until_end(&path, Duration::from_secs(120), &[]);
    assert_same_violations(&violations_once(&json_lines(cfg.alerts())), &want, "run --until-end over a 12 MB LiteLLM topic");
    assert_eq!(json_lines(cfg.dead_letters()).len(), dead);
    delete_topics(&[&topic]);
}
