//! Property tests and fuzzing on stable (proptest): whatever bytes come in,
//! the decoder, the policy parser, the rule-header parser and checkpoint
//! restore answer with a value or an error, never a panic.
//!
//! A short run is part of `cargo test` (a few thousand cases each). The long
//! run (docs/fuzzing.md) sets the number of cases:
//! `PROPTEST_CASES=10000000 cargo test --release --lib fuzz_`.

use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::Config;

use crate::decode::{DecodeOptions, Decoded, Decoder, Formats};
use crate::formats::{Adapter, Format};
use crate::engine::{Engine, EngineConfig};
use crate::event::{Origin, RawBatch};
use crate::generate::DEMO_POLICY;
use crate::policy::Policy;
use crate::rules::Rule;

/// `PROPTEST_CASES` if set, else `cases`; no regression files in the source tree.
fn config(cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(cases);
    Config { cases, failure_persistence: None, ..Config::default() }
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, serde_json::Value::Number)),
        ".{0,40}".prop_map(serde_json::Value::from),
        // Times near and past the edges the engine computes with.
        prop_oneof![
            Just("1969-12-31T23:59:59Z"),
            Just("2199-12-31T23:59:59.999999999Z"),
            Just("2262-04-11T23:47:16Z"),
            Just("9999-12-31T23:59:59+14:00"),
            Just("2026-11-01T00:00:00Z"),
            Just("2026-11-01T00:00:00"),
        ]
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..6).prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON object with the events schema's field names (and others) set to any values.
fn event_object() -> impl Strategy<Value = Vec<u8>> {
    const FIELDS: &[&str] = &[
        "event_id", "event_type", "time", "tenant_id", "actor_id", "environment", "source", "request_id", "provider", "model",
        "operation", "vendor_region", "data_classes", "context_tenant_ids", "conversation_id", "input_tokens", "prompt_sha256",
        "status", "output_tokens", "latency_ms", "artifact_id", "artifact_kind", "storage_region", "resource_type", "resource",
        "change_id", "approved_by", "unknown_field",
    ];
    let event_type = prop_oneof![
        Just("ai.request"), Just("ai.response"), Just("artifact.stored"), Just("artifact.deleted"), Just("config.changed"), Just("x"),
    ];
    (prop::collection::btree_map(prop::sample::select(FIELDS), json_value(), 0..12), event_type, any::<bool>()).prop_map(
        |(fields, ty, typed)| {
            let mut o: serde_json::Map<String, serde_json::Value> = fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            if typed {
                o.insert("event_type".into(), ty.into());
                o.entry("event_id").or_insert_with(|| "e1".into());
                o.entry("time").or_insert_with(|| "2026-11-01T00:00:00Z".into());
            }
            serde_json::to_vec(&o).expect("a JSON object serializes")
        },
    )
}

/// Decodes `records` as one batch and checks that each is an event, a dead letter or blank.
fn decode_accounts_for_every_record(records: &[Vec<u8>]) -> Result<(), TestCaseError> {
    let mut raw = RawBatch::default();
    for (i, r) in records.iter().enumerate() {
        raw.push(r, Origin::Kafka { topic: "t".into(), partition: 0, offset: i as i64 });
    }
    let d = Decoder::new().decode(&raw);
    prop_assert_eq!(d.events.num_rows() + d.dead_letters.len() + d.blank, records.len());
    Ok(())
}

/// Decodes `records` in an adapter format: never a panic, and every record read.
fn decode_in(format: Format, records: &[Vec<u8>]) -> Result<Decoded, TestCaseError> {
    let mut raw = RawBatch::default();
    for (i, r) in records.iter().enumerate() {
        raw.push(r, Origin::Kafka { topic: "t".into(), partition: 0, offset: i as i64 });
    }
    let d = Decoder::with_formats(DecodeOptions::default(), Formats::one(format, Adapter::default())).decode(&raw);
    prop_assert_eq!(d.records + d.blank, records.len());
    Ok(d)
}

/// A LiteLLM payload's keys (top level and the paths the mapping reads) set to any values.
fn litellm_payload() -> impl Strategy<Value = Vec<u8>> {
    const KEYS: &[&str] = &[
        "litellm_call_id", "startTime", "endTime", "custom_llm_provider", "model", "call_type", "api_base", "hidden_params", "metadata",
        "request_tags", "end_user", "model_parameters", "prompt_tokens", "completion_tokens", "messages", "response", "status",
    ];
    let metadata = prop::collection::btree_map(
        prop::sample::select(&["user_api_key_team_id", "user_api_key_org_id", "user_api_key_end_user_id", "user_api_key_user_id", "spend_logs_metadata", "requester_metadata"][..]),
        json_value(),
        0..6,
    );
    (prop::collection::btree_map(prop::sample::select(KEYS), json_value(), 0..12), metadata, any::<bool>()).prop_map(|(fields, metadata, typed)| {
        let mut o: serde_json::Map<String, serde_json::Value> = fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        if typed {
            o.insert("litellm_call_id".into(), "c1".into());
            o.insert("startTime".into(), 1_795_915_800.5.into());
            o.insert("endTime".into(), 1_795_915_801.25.into());
            o.insert("metadata".into(), serde_json::Value::Object(metadata.into_iter().map(|(k, v)| (k.to_string(), v)).collect()));
        }
        serde_json::to_vec(&o).expect("a JSON object serializes")
    })
}

/// The real OTLP requests of the fixtures, whole.
fn otlp_fixture_requests() -> Vec<Vec<u8>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/formats/otlp/requests.otlp_proto");
    crate::sources::file::read_all(path, crate::sources::file::Framing::LengthDelimited).expect("the OTLP fixture reads")
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn fuzz_adapter_formats_arbitrary_bytes(records in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 1..8)) {
        for format in [Format::Litellm, Format::OtlpJson, Format::OtlpProto] {
            decode_in(format, &records)?;
        }
    }

    #[test]
    fn fuzz_litellm_payloads(records in prop::collection::vec(litellm_payload(), 1..6), as_array in any::<bool>()) {
        let records = if as_array {
            let joined: Vec<u8> = [b"[".to_vec(), records.join(&b","[..]), b"]".to_vec()].concat();
            vec![joined]
        } else {
            records
        };
        decode_in(Format::Litellm, &records)?;
    }

    /// Real requests with bytes overwritten: deep into the span mapping of both encodings.
    #[test]
    fn fuzz_otlp_mutated_requests(pick in 0usize..6, flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)) {
        let requests = otlp_fixture_requests();
        let mut bytes = requests[pick % requests.len()].clone();
        for (at, b) in &flips {
            let i = at.index(bytes.len());
            bytes[i] = *b;
        }
        decode_in(Format::OtlpProto, &[bytes.clone()])?;
        // The same request, when it still decodes, in OTLP/JSON.
        use prost::Message as _;
        if let Ok(req) = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(&bytes[..]) {
            if let Ok(json) = serde_json::to_vec(&req) {
                decode_in(Format::OtlpJson, &[json])?; // NaN doubles have no JSON form
            }
        }
    }

    #[test]
    fn fuzz_decoder_arbitrary_bytes(records in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 1..8)) {
        decode_accounts_for_every_record(&records)?;
    }

    #[test]
    fn fuzz_decoder_arbitrary_event_objects(records in prop::collection::vec(event_object(), 1..8)) {
        decode_accounts_for_every_record(&records)?;
    }

    #[test]
    fn fuzz_policy_arbitrary_text(text in ".{0,300}") {
        if let Err(e) = Policy::parse(&text, "fuzz.toml") {
            prop_assert!(e.contains("line "), "a policy error names no line: {e}");
        }
    }

    /// The demo policy with a span cut out and text put in its place: deep into the checks.
    #[test]
    fn fuzz_policy_edited(at in 0..DEMO_POLICY.len(), cut in 0usize..40, insert in "[a-z_=\"\\[\\]\n0-9., -]{0,20}") {
        let mut text = DEMO_POLICY.to_string();
        let at = (0..=at).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        let end = ((at + cut).min(text.len())..=text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(text.len());
        text.replace_range(at..end, &insert);
        if let Err(e) = Policy::parse(&text, "fuzz.toml") {
            prop_assert!(e.contains("line "), "a policy error names no line: {e}");
        }
    }

    #[test]
    fn fuzz_rule_header(
        lines in prop::collection::vec(
            (prop::sample::select(&["id", "title", "category", "severity", "controls", "description", "remediation", "x", ""][..]), ".{0,30}", any::<bool>()),
            0..10,
        ),
        body in ".{0,60}",
    ) {
        let mut text = String::new();
        for (key, value, continued) in lines {
            if continued { text.push_str(&format!("--   {value}\n")) } else { text.push_str(&format!("-- {key}: {value}\n")) }
        }
        text.push_str(&body);
        if let Err(e) = Rule::parse(&text, "fuzz.sql", false) {
            prop_assert!(e.line >= 1 && e.line <= text.lines().count() + 1 && !e.message.is_empty(), "an error without its line: {e}");
        }
    }
}

/// One engine for all restore cases: building one per case would dominate.
fn engine() -> (tokio::runtime::Runtime, Engine) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let policy = Arc::new(Policy::parse(DEMO_POLICY, "demo").expect("demo policy"));
    let engine = rt.block_on(Engine::new(policy, crate::rules::builtin(), &EngineConfig::default())).expect("engine");
    (rt, engine)
}

#[test]
fn fuzz_checkpoint_restore() {
    use proptest::test_runner::TestRunner;
    use sha2::Digest as _;

    let (_rt, engine) = engine();
    let engine = std::cell::RefCell::new(engine);
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    engine.borrow_mut().write_checkpoint(&good, serde_json::json!([["t", 0, 7]])).unwrap();
    let good_bytes = std::fs::read(&good).unwrap();
    let path = dir.path().join("ckpt");
    let mut runner = TestRunner::new(config(2000));

    // Arbitrary bytes, and the good checkpoint with a byte changed or its end cut: always an error.
    let damaged = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..400),
        (0..good_bytes.len(), 1u8..=255).prop_map({
            let good = good_bytes.clone();
            move |(at, x)| {
                let mut b = good.clone();
                b[at] ^= x;
                b
            }
        }),
        (0..good_bytes.len()).prop_map({
            let good = good_bytes.clone();
            move |n| good[..n].to_vec()
        }),
    ];
    runner
        .run(&damaged, |bytes| {
            std::fs::write(&path, &bytes).unwrap();
            prop_assert!(engine.borrow_mut().restore_checkpoint(&path).is_err(), "damaged bytes were restored");
            Ok(())
        })
        .unwrap();

    // Arbitrary snapshots behind the right magic and a valid checksum: the decoder must not panic either.
    let bodies = prop::collection::vec(any::<u8>(), 0..400);
    runner
        .run(&bodies, |body| {
            let mut bytes = b"AIWCKPT5".to_vec();
            bytes.extend_from_slice(&body);
            let digest = sha2::Sha256::digest(&bytes);
            bytes.extend_from_slice(b"AIWSUM01");
            bytes.extend_from_slice(&digest);
            std::fs::write(&path, &bytes).unwrap();
            let _ = engine.borrow_mut().restore_checkpoint(&path);
            Ok(())
        })
        .unwrap();
}
