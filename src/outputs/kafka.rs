//! Alerts and dead letters to Kafka topics through one shared producer.

use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::{AlertOutput, Failure, Rejected};
use crate::alert::Alert;
use crate::decode::DeadLetter;
use crate::event::Origin;

/// One message per alert, keyed by `alert_id` so compaction and consumers can drop repeats.
pub struct KafkaAlerts {
    pub producer: FutureProducer,
    pub topic: String,
}

#[async_trait]
impl AlertOutput for KafkaAlerts {
    fn name(&self) -> &str {
        "kafka"
    }

    /// Every alert at once; each one's delivery report says whether it was taken.
    async fn send(&mut self, alerts: &[Alert]) -> Result<(), Rejected> {
        let mut refused = Vec::new();
        let mut payloads = Vec::with_capacity(alerts.len());
        for (i, a) in alerts.iter().enumerate() {
            match a.try_json_line() {
                Ok(value) => payloads.push((i, &a.alert_id, value)),
                Err(e) => refused.push((i, Failure::permanent("not serializable", e.to_string()))),
            }
        }
        let sends = payloads.iter().map(|(_, key, value)| {
            self.producer.send(FutureRecord::to(&self.topic).key(key.as_str()).payload(value), Duration::from_secs(30))
        });
        let outcomes = join_all(sends).await;
        for ((i, key, value), outcome) in payloads.iter().zip(outcomes) {
            let Err((mut e, _)) = outcome else { continue };
            if too_large(&e) {
                // The broker refuses a whole batch for one large message: alone, a small one goes through.
                let alone = self.producer.send(FutureRecord::to(&self.topic).key(key.as_str()).payload(value), Duration::from_secs(30));
                match alone.await {
                    Ok(_) => continue,
                    Err((again, _)) => e = again,
                }
            }
            refused.push((*i, produce_failure(&self.topic, &e)));
        }
        refused.sort_by_key(|(i, _)| *i);
        if refused.is_empty() { Ok(()) } else { Err(Rejected(refused)) }
    }
}

/// A produce error as a [`Failure`]. librdkafka retries what can be retried
/// until `message.timeout.ms`; a delivery report that still fails is a refusal
/// for good when it is about this message (its size, its contents, the
/// topic's policy or rights), and transient otherwise (the broker is away).
pub fn produce_failure(topic: &str, e: &KafkaError) -> Failure {
    use RDKafkaErrorCode as C;
    match e.rdkafka_error_code() {
        Some(
            code @ (C::MessageSizeTooLarge
            | C::InvalidMessageSize
            | C::MessageBatchTooLarge
            | C::InvalidMessage
            | C::InvalidRecord
            | C::PolicyViolation
            | C::TopicAuthorizationFailed
            | C::InvalidTopic),
        ) => Failure::permanent(format!("{code:?}"), format!("topic {topic} refused the message: {e}")),
        _ => Failure::transient(format!("topic {topic}: {e}")),
    }
}

/// Whether the producer or the broker refused a message for its size: sending it again cannot help.
pub fn too_large(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize | RDKafkaErrorCode::MessageBatchTooLarge)
    )
}

/// Origin, reason, length and hash of a dead letter, as message headers.
fn dead_letter_headers(d: &DeadLetter) -> OwnedHeaders {
    let mut h = OwnedHeaders::new()
        .insert(Header { key: "aiwatch.reason", value: Some(d.reason.as_str()) })
        .insert(Header { key: "aiwatch.kind", value: Some(d.kind) })
        .insert(Header { key: "aiwatch.length", value: Some(&d.len.to_string()) })
        .insert(Header { key: "aiwatch.sha256", value: Some(d.sha256.as_str()) })
        .insert(Header { key: "aiwatch.raw_truncated", value: Some(if d.truncated() { "true" } else { "false" }) });
    match &d.origin {
        Origin::Kafka { topic, partition, offset } => {
            h = h
                .insert(Header { key: "aiwatch.origin.topic", value: Some(&**topic) })
                .insert(Header { key: "aiwatch.origin.partition", value: Some(&partition.to_string()) })
                .insert(Header { key: "aiwatch.origin.offset", value: Some(&offset.to_string()) });
        }
        other => {
            h = h.insert(Header { key: "aiwatch.origin", value: Some(&other.to_string()) });
        }
    }
    h
}

/// Dead letters as their kept bytes (no value when raw bytes are off), with
/// origin, reason, length and hash in headers.
///
/// A dead letter refused for its size (over the producer's `message.max.bytes`
/// or the topic's limit) is sent again alone (the broker refuses a whole batch
/// for one large message), then with headers only; one refused even so is
/// logged and left out, never fatal. Returns how many were left out. Other
/// errors (the broker is unreachable) fail the call, so offsets stay uncommitted.
pub async fn send_dead_letters(producer: &FutureProducer, topic: &str, dead: &[DeadLetter]) -> anyhow::Result<usize> {
    async fn send(producer: &FutureProducer, topic: &str, d: &DeadLetter, with_bytes: bool) -> Result<(), KafkaError> {
        let mut record = FutureRecord::<(), [u8]>::to(topic).headers(dead_letter_headers(d));
        if let Some(bytes) = d.bytes.as_deref().filter(|_| with_bytes) {
            record = record.payload(bytes);
        }
        producer.send(record, Duration::from_secs(30)).await.map(|_| ()).map_err(|(e, _)| e)
    }
    let outcomes = join_all(dead.iter().map(|d| send(producer, topic, d, true))).await;
    let mut left_out = 0;
    for (d, outcome) in dead.iter().zip(outcomes) {
        let Err(e) = outcome else { continue };
        if !too_large(&e) {
            anyhow::bail!("dead-letter topic {topic}: {e}");
        }
        // The broker refuses a whole batch for one large message: alone, a small one goes through.
        let Err(e) = send(producer, topic, d, true).await else { continue };
        if !too_large(&e) {
            anyhow::bail!("dead-letter topic {topic}: {e}");
        }
        tracing::warn!(origin = %d.origin, length = d.len, error = %e, "dead letter too large for the dead-letter topic; sending its headers only");
        if let Err(e) = send(producer, topic, d, false).await {
            tracing::error!(origin = %d.origin, sha256 = %d.sha256, error = %e, "dead letter refused by the dead-letter topic even without its bytes; left out");
            left_out += 1;
        }
    }
    Ok(left_out)
}
