//! The typed event a hand-written consumer would parse each message into:
//! the floor the Kafka and stage benchmarks compare `aiwatch run` with.

/// What a typical hand-written consumer parses each message into: the event's
/// fields as owned, typed values (serde_json, no validation beyond types).
#[allow(dead_code)] // parsed, not read: the cost is the point
#[derive(serde::Deserialize)]
pub struct TypedEvent {
    event_id: String,
    event_type: String,
    time: String,
    tenant_id: Option<String>,
    actor_id: Option<String>,
    environment: Option<String>,
    source: Option<String>,
    request_id: Option<String>,
    provider: Option<String>,
    model: Option<String>,
    operation: Option<String>,
    vendor_region: Option<String>,
    data_classes: Option<Vec<String>>,
    context_tenant_ids: Option<Vec<String>>,
    conversation_id: Option<String>,
    input_tokens: Option<i64>,
    prompt_sha256: Option<String>,
    status: Option<String>,
    output_tokens: Option<i64>,
    latency_ms: Option<f64>,
    artifact_id: Option<String>,
    artifact_kind: Option<String>,
    storage_region: Option<String>,
    resource_type: Option<String>,
    resource: Option<String>,
    change_id: Option<String>,
    approved_by: Option<String>,
}

