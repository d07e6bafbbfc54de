//! The adapter formats end to end, on the real-library fixtures of
//! `tests/fixtures/formats/` (see its README for the expected mapping): the
//! events each format maps to, the alerts of every rule it can express, dead
//! letters for the malformed cases, skipped spans, duplicates, and the
//! canary that must never leave the engine.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::support::{aiwatch, run_ok, violations};

const CANARY: &str = "AIWATCH-CANARY-PROMPT-7f3c";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/formats")
}

fn litellm() -> PathBuf {
    fixtures().join("litellm/payloads.jsonl")
}

/// `SELECT`s the mapped events of `input` as CSV rows (header dropped).
fn query(format: &str, sql: &str, input: &Path) -> Vec<Vec<String>> {
    let out = run_ok(aiwatch().args(["query", "--format", format, "--output", "csv", "--adapter"]).arg(fixtures().join("adapter.toml")).arg(sql).arg(input));
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines().skip(1).map(|l| l.split(',').map(str::to_string).collect()).collect()
}

const REQUESTS: &str = "SELECT event_id, tenant_id, actor_id, provider, operation, vendor_region, array_to_string(data_classes, '|'), \
    array_to_string(context_tenant_ids, '|'), conversation_id, input_tokens FROM events WHERE event_type = 'ai.request' ORDER BY origin_position, event_id";
const RESPONSES: &str =
    "SELECT event_id, tenant_id, request_id, provider, operation, output_tokens, status FROM events WHERE event_type = 'ai.response' ORDER BY origin_position, event_id";

fn row(fields: &[&str]) -> Vec<String> {
    fields.iter().map(|s| s.to_string()).collect()
}

#[test]
fn litellm_payloads_map_as_the_fixture_readme_says() {
    let got = query("litellm", REQUESTS, &litellm());
    let want = [
        ["fx-openai-chat-0001", "acme", "user:alice", "openai", "chat", "", "customer_data|pii", "acme", "conv-acme-0001", "10"],
        ["fx-anthropic-chat-0002", "globex", "user:bob", "anthropic", "chat", "", "internal|phi", "globex|acme", "conv-globex-0002", "10"],
        ["fx-bedrock-chat-0003", "acme", "svc:triage-bot", "aws.bedrock", "chat", "eu-central-1", "", "", "conv-acme-0003", "10"],
        ["fx-vertex-chat-0004", "initech", "user:carol", "gcp.vertex_ai", "chat", "us-central1", "customer_data", "", "", "10"],
        ["fx-azure-chat-0005", "acme", "user:alice", "azure.ai.openai", "chat", "swedencentral", "", "", "", "10"],
        ["fx-openai-fail-0006", "acme", "user:alice", "openai", "chat", "", "", "", "", "0"],
        ["fx-anthropic-fail-0007", "globex", "user:dave", "anthropic", "chat", "", "", "", "", "0"],
        ["fx-openai-embed-0008", "acme", "svc:indexer", "openai", "embeddings", "", "customer_data", "", "", "10"],
        ["fx-openai-embed-0009", "initech", "", "openai", "embeddings", "", "", "", "", "10"],
        ["fx-openai-stream-0010", "acme", "user:erin", "openai", "chat", "", "", "", "", "49"],
        ["fx-mistral-chat-0011", "", "user:frank", "mistral_ai", "chat", "", "", "", "", "10"],
        ["fx-array-openai-0012", "acme", "user:alice", "openai", "chat", "", "", "", "", "10"],
        ["fx-array-textcompletion-0013", "acme", "user:alice", "text-completion-openai", "text_completion", "", "", "", "", "10"],
    ];
    let want: Vec<Vec<String>> = want
        .iter()
        .map(|r| {
            let mut v = row(r);
            v[0] = format!("litellm:{}:request", r[0]);
            v
        })
        .collect();
    assert_eq!(got, want);

    let got = query("litellm", RESPONSES, &litellm());
    assert_eq!(got.len(), 13, "every payload gives a response too");
    for r in &got {
        let call = r[0].strip_prefix("litellm:").and_then(|s| s.strip_suffix(":response")).expect("derived id");
        assert_eq!(r[2], call, "request_id is the call id");
        let failed = call.contains("-fail-");
        assert_eq!(r[6], if failed { "error" } else { "ok" }, "{call}");
    }
    assert_eq!(got[0][5], "20");
    let latency = query("litellm", "SELECT latency_ms, time FROM events WHERE event_id = 'litellm:fx-openai-chat-0001:response'", &litellm());
    assert!((latency[0][0].parse::<f64>().unwrap() - 94.954).abs() < 0.001, "{latency:?}");
    let times = query("litellm", "SELECT time FROM events WHERE event_id = 'litellm:fx-openai-chat-0001:request'", &litellm());
    assert_eq!(times[0][0], "2026-11-29T01:30:28.469124Z");
}

fn otlp_inputs() -> [(&'static str, PathBuf); 2] {
    [("otlp_proto", fixtures().join("otlp/requests.otlp_proto")), ("otlp_json", fixtures().join("otlp/requests.otlp_json.jsonl"))]
}

#[test]
fn otlp_requests_map_the_same_in_both_encodings_as_the_readme_says() {
    let want = [
        ["cfe86bef87136efeb4bd2b742c78149e:e8f717cf36e8c649", "acme", "user:alice", "openai", "chat", "", "pii|customer_data", "acme", "conv-otel-0001", "42"],
        ["83fb40d4e4e554d955f44b82cc267d98:2b39001a79f625ce", "globex", "user:bob", "openai", "chat", "", "internal", "globex|acme", "conv-otel-0002", "42"],
        ["b3241282df8a483665b7c3782338c7c4:c4b154a41cb777f5", "acme", "svc:indexer", "openai", "embeddings", "", "customer_data", "", "", "16"],
        ["ef6f9177d5eb850b4540e3e220ca0cb9:fb5f88c31778ca09", "acme", "user:alice", "openai", "chat", "", "", "", "conv-otel-0004", ""],
        ["5e11bbf9c4486e449dc0eb5910448084:eb26ec3947bb8e74", "globex", "", "openai", "chat", "", "", "", "", ""],
        ["da44e5af75544f41bbd659eee51a5901:0e788c0139f53335", "initech", "svc:initech-batch", "openai", "chat", "", "", "", "", "42"],
        ["fe32090a6dc23dfa326fe7a35887a0d2:ffac39ae16ae59af", "acme", "svc:triage-bot", "openai", "chat", "eu-central-1", "", "", "", "42"],
    ];
    let want: BTreeSet<Vec<String>> = want
        .iter()
        .map(|r| {
            let mut v = row(r);
            v[0] = format!("otel:{}:request", r[0]);
            v
        })
        .collect();
    let mut results = Vec::new();
    for (format, input) in otlp_inputs() {
        let got: BTreeSet<Vec<String>> = query(format, REQUESTS, &input).into_iter().collect();
        assert_eq!(got, want, "{format}");
        let responses = query(format, "SELECT request_id, status, environment, source, output_tokens, latency_ms FROM events WHERE event_type = 'ai.response' ORDER BY request_id", &input);
        let status: Vec<(&str, &str)> = responses.iter().map(|r| (&r[0][..8], r[1].as_str())).collect();
        assert_eq!(
            status,
            [("5e11bbf9", "error"), ("83fb40d4", "ok"), ("b3241282", "ok"), ("cfe86bef", "ok"), ("da44e5af", "ok"), ("ef6f9177", "error"), ("fe32090a", "ok")],
            "{format}"
        );
        let initech = responses.iter().find(|r| r[0].starts_with("da44e5af")).unwrap();
        assert_eq!((initech[2].as_str(), initech[3].as_str()), ("staging", "initech-assistant"));
        let first = responses.iter().find(|r| r[0].starts_with("cfe86bef")).unwrap();
        assert_eq!((first[4].as_str(), first[5].as_str()), ("17", "9.235602"));
        // Every column but the origin ones (they name the file).
        let sql = "SELECT * EXCLUDE (origin_source, origin_partition, origin_position) FROM events ORDER BY event_id";
        let out = run_ok(aiwatch().args(["query", "--format", format, "--output", "jsonl", sql]).arg(&input));
        results.push(String::from_utf8(out.stdout).unwrap());
    }
    assert_eq!(results[0].lines().count(), 14);
    assert_eq!(results[0], results[1], "otlp_proto and otlp_json give the same events");
}

/// Scans `input` in `format` with the format policy; returns the violations and stderr.
fn scan(dir: &Path, format: &str, inputs: &[&Path]) -> (BTreeSet<(String, String)>, String) {
    let alerts = dir.join(format!("alerts-{format}.jsonl"));
    let out = run_ok(
        aiwatch()
            .args(["scan", "--format", format, "--policy"])
            .arg(fixtures().join("policy.toml"))
            .arg("--adapter")
            .arg(fixtures().join("adapter.toml"))
            .arg("--alerts")
            .arg(&alerts)
            .arg("--dead-letter")
            .arg(dir.join(format!("dead-{format}.jsonl")))
            .args(inputs),
    );
    (violations(&alerts), String::from_utf8(out.stderr).unwrap())
}

fn set(pairs: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    pairs.iter().map(|(r, s)| (r.to_string(), s.to_string())).collect()
}

#[test]
fn litellm_payloads_fire_every_rule_the_format_can_express() {
    let dir = tempfile::tempdir().unwrap();
    let (got, stderr) = scan(dir.path(), "litellm", &[&litellm()]);
    let want = set(&[
        ("vendor.data_class", "litellm:fx-openai-chat-0001:request"),
        ("vendor.data_class", "litellm:fx-vertex-chat-0004:request"),
        ("vendor.trains_on_data", "litellm:fx-anthropic-chat-0002:request"),
        ("xtenant.context", "litellm:fx-anthropic-chat-0002:request"),
        ("vendor.region", "litellm:fx-bedrock-chat-0003:request"),
        ("vendor.region", "litellm:fx-vertex-chat-0004:request"),
        ("vendor.region", "litellm:fx-azure-chat-0005:request"),
        ("logging.missing_actor", "litellm:fx-openai-embed-0009:request"),
        ("vendor.unapproved", "litellm:fx-mistral-chat-0011:request"),
        ("vendor.unapproved", "litellm:fx-array-textcompletion-0013:request"),
    ]);
    assert_eq!(got, want, "{stderr}");
    assert!(stderr.contains("aiwatch: 26 events (0 duplicates dropped"), "{stderr}");
}

#[test]
fn otlp_requests_fire_the_same_alerts_in_both_encodings_and_skip_other_spans() {
    let dir = tempfile::tempdir().unwrap();
    let want = set(&[
        ("vendor.data_class", "otel:cfe86bef87136efeb4bd2b742c78149e:e8f717cf36e8c649:request"),
        ("xtenant.context", "otel:83fb40d4e4e554d955f44b82cc267d98:2b39001a79f625ce:request"),
        ("logging.missing_actor", "otel:5e11bbf9c4486e449dc0eb5910448084:eb26ec3947bb8e74:request"),
        ("vendor.region", "otel:fe32090a6dc23dfa326fe7a35887a0d2:ffac39ae16ae59af:request"),
    ]);
    for (format, input) in otlp_inputs() {
        let (got, stderr) = scan(dir.path(), format, &[&input]);
        assert_eq!(got, want, "{format}: {stderr}");
        assert!(stderr.contains("aiwatch: 14 events"), "{stderr}");
        assert!(stderr.contains(&format!("skipped as not their format's own: 3 not_genai_span ({format})")), "{stderr}");
    }
}

#[test]
fn records_delivered_twice_are_dropped_as_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let (once, _) = scan(dir.path(), "litellm", &[&litellm()]);
    let (twice, stderr) = scan(dir.path(), "litellm", &[&litellm(), &litellm()]);
    assert_eq!(once, twice);
    assert!(stderr.contains("26 events (26 duplicates dropped"), "{stderr}");
    for (format, input) in otlp_inputs() {
        let (_, stderr) = scan(dir.path(), format, &[&input, &input]);
        assert!(stderr.contains("14 events (14 duplicates dropped"), "{format}: {stderr}");
    }
}

/// Each dead letter's (line, kind, a piece of its reason).
fn dead_letters(dir: &Path, format: &str, input: &Path) -> (Vec<(u64, String, String)>, String) {
    let (_, stderr) = scan(dir, format, &[input]);
    let text = std::fs::read_to_string(dir.join(format!("dead-{format}.jsonl"))).unwrap();
    let dead = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["origin"]["line"].as_u64().unwrap(), v["kind"].as_str().unwrap().to_string(), v["reason"].as_str().unwrap().to_string())
        })
        .collect();
    (dead, stderr)
}

fn check_dead(got: &[(u64, String, String)], want: &[(u64, &str, &str)]) {
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for (g, w) in got.iter().zip(want) {
        assert_eq!((g.0, g.1.as_str()), (w.0, w.1), "{g:?}");
        assert!(g.2.contains(w.2), "line {}: {:?} does not say {:?}", g.0, g.2, w.2);
    }
}

#[test]
fn malformed_litellm_records_are_dead_letters_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let (got, stderr) = dead_letters(dir.path(), "litellm", &fixtures().join("litellm/malformed.jsonl"));
    check_dead(
        &got,
        &[
            (1, "invalid_json", "not valid JSON"),
            (2, "not_object", "not a LiteLLM payload"),
            (3, "not_object", "not a LiteLLM payload"),
            (4, "not_object", "payload 0 of the array"),
            (4, "not_object", "payload 1 of the array"),
            (5, "missing_field", "`litellm_call_id`"),
            (6, "empty_field", "`litellm_call_id`"),
            (7, "wrong_type", "`litellm_call_id` must be a string"),
            (8, "wrong_type", "`startTime` must be a number"),
            (9, "missing_field", "`endTime`"),
            (10, "missing_field", "`startTime`"),
            (11, "wrong_type", "`startTime` must be a number"),
            (12, "wrong_type", "`prompt_tokens` must be an integer"),
            (13, "wrong_type", "`metadata.spend_logs_metadata.data_classes`"),
            (14, "wrong_type", "`metadata.user_api_key_team_id` must be a string"),
            (15, "wrong_type", "`metadata.requester_metadata.context_tenant_ids`"),
            (16, "missing_field", "payload 1 of the array"),
        ],
    );
    assert!(stderr.contains("aiwatch: 2 events"), "the good payload of line 16 maps: {stderr}");
}

#[test]
fn malformed_otlp_records_are_dead_letters_naming_the_field_in_both_encodings() {
    let dir = tempfile::tempdir().unwrap();
    let spans: [(&str, &str); 11] = [
        ("missing_field", "`traceId`"),
        ("missing_field", "`traceId`"),
        ("missing_field", "`spanId`"),
        ("wrong_type", "`gen_ai.usage.input_tokens` must be an integer"),
        ("wrong_type", "`gen_ai.usage.output_tokens` must be an integer"),
        ("wrong_type", "`aiwatch.data_classes` must be an array of strings"),
        ("wrong_type", "`aiwatch.context_tenant_ids` must be an array of strings"),
        ("wrong_type", "`tenant.id` must be a string"),
        ("missing_field", "`startTimeUnixNano`"),
        ("wrong_type", "`gen_ai.operation.name` must be a string"),
        ("wrong_type", "`gen_ai.usage.input_tokens` must be an integer"),
    ];
    let mut json: Vec<(u64, &str, &str)> =
        vec![(1, "invalid_json", "not valid JSON"), (2, "not_object", "not a JSON object"), (3, "not_object", "not a JSON object"), (4, "not_otlp", "not an OTLP/JSON")];
    json.extend(spans.iter().enumerate().map(|(i, (k, r))| (i as u64 + 5, *k, *r)));
    json.push((16, "not_otlp", "not an OTLP/JSON"));
    let (got, stderr) = dead_letters(dir.path(), "otlp_json", &fixtures().join("otlp/malformed.jsonl"));
    check_dead(&got, &json);
    assert!(stderr.contains("aiwatch: 2 events") && stderr.contains("1 not_genai_span (otlp_json)"), "{stderr}");

    let mut proto: Vec<(u64, &str, &str)> = vec![(1, "invalid_protobuf", "protobuf"), (2, "invalid_protobuf", "protobuf")];
    proto.extend(spans.iter().enumerate().map(|(i, (k, r))| (i as u64 + 3, *k, *r)));
    let (got, stderr) = dead_letters(dir.path(), "otlp_proto", &fixtures().join("otlp/malformed.otlp_proto"));
    check_dead(&got, &proto);
    assert!(stderr.contains("aiwatch: 2 events") && stderr.contains("1 not_genai_span (otlp_proto)"), "{stderr}");
}

#[test]
fn dead_letters_of_adapter_formats_carry_their_record_with_the_text_hashed() {
    let dir = tempfile::tempdir().unwrap();
    dead_letters(dir.path(), "litellm", &fixtures().join("litellm/malformed.jsonl"));
    let text = std::fs::read_to_string(dir.path().join("dead-litellm.jsonl")).unwrap();
    let line5: serde_json::Value = text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).find(|v| v["origin"]["line"] == 5).unwrap();
    let raw: serde_json::Value = serde_json::from_str(line5["raw"].as_str().unwrap()).unwrap();
    let hash = raw["messages"].as_str().expect("messages replaced by a string");
    assert!(hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit()), "{hash}");
    assert!(raw["startTime"].is_number(), "other fields are kept: {raw}");
}

/// Every output of every command on every fixture, with the canary looked for in each.
#[test]
fn the_canary_never_leaves_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = [
        ("litellm", fixtures().join("litellm/payloads.jsonl")),
        ("litellm", fixtures().join("litellm/malformed.jsonl")),
        ("otlp_json", fixtures().join("otlp/requests.otlp_json.jsonl")),
        ("otlp_json", fixtures().join("otlp/malformed.jsonl")),
        ("otlp_proto", fixtures().join("otlp/requests.otlp_proto")),
        ("otlp_proto", fixtures().join("otlp/malformed.otlp_proto")),
    ];
    let mut checked = 0;
    for (i, (format, input)) in inputs.iter().enumerate() {
        assert!(std::fs::read(input).unwrap().windows(CANARY.len()).any(|w| w == CANARY.as_bytes()), "{} holds no canary", input.display());
        // With a dead-letter file, and without one (each dead letter is then a warning), with debug logs.
        for dead in [Some(dir.path().join(format!("dead{i}.jsonl"))), None] {
            let alerts = dir.path().join(format!("alerts{i}.jsonl"));
            let mut cmd = aiwatch();
            cmd.env("AIWATCH_LOG", "debug").args(["scan", "--format", format, "--policy"]).arg(fixtures().join("policy.toml")).arg("--alerts").arg(&alerts);
            if let Some(d) = &dead {
                cmd.arg("--dead-letter").arg(d);
            }
            let out = run_ok(cmd.arg(input));
            let mut texts = vec![String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned()];
            texts.push(std::fs::read_to_string(&alerts).unwrap());
            if let Some(d) = &dead {
                texts.push(String::from_utf8_lossy(&std::fs::read(d).unwrap()).into_owned());
                // Proto dead letters are hex: look for the canary's bytes inside.
                let hex: String = CANARY.bytes().map(|b| format!("{b:02x}")).collect();
                texts.push(texts.last().unwrap().replace(&hex, CANARY));
            }
            for t in &texts {
                assert!(!t.contains(CANARY), "{format} {}: the canary leaked:\n{t}", input.display());
                checked += t.len();
            }
        }
        // Every column of every mapped event.
        let out = run_ok(aiwatch().args(["query", "--format", format, "--output", "jsonl", "SELECT * FROM events"]).arg(input));
        let all = String::from_utf8_lossy(&out.stdout);
        assert!(!all.contains(CANARY) && !String::from_utf8_lossy(&out.stderr).contains(CANARY), "{format}: the canary is in an event");
    }
    assert!(checked > 10_000, "the outputs were not empty");
}

#[test]
fn an_unknown_format_or_adapter_key_is_an_error_naming_it() {
    let out = aiwatch().args(["scan", "--format", "otlp", "--policy"]).arg(fixtures().join("policy.toml")).arg(litellm()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("otlp_proto") && err.contains("litellm"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let adapter = dir.path().join("adapter.toml");
    std::fs::write(&adapter, "[adapter]\nactor_keys = [\"end_user\"]\notel_tenant_key = [\"x\"]\n").unwrap();
    let out = aiwatch().args(["scan", "--format", "litellm", "--adapter"]).arg(&adapter).arg("--policy").arg(fixtures().join("policy.toml")).arg(litellm()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("otel_tenant_key") && err.contains("line 3") && err.contains("adapter.toml"), "{err}");
}

#[test]
fn rules_test_runs_fixtures_written_in_adapter_formats() {
    let out = run_ok(aiwatch().args(["rules", "test", "--rules"]).arg(fixtures().join("rules")).args(["--format", "litellm"]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(" 0 failed"), "{text}");
    for case in ["litellm: one conversation, two tenants", "otlp_json: one conversation, two tenants", "litellm: a response past the timeout", "otlp_json: a response past the timeout"] {
        assert!(text.contains(case), "{case} did not run:\n{text}");
    }
}
