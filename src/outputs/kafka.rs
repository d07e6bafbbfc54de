//! Alerts and dead letters to Kafka topics through one shared producer.

use std::time::Duration;

use async_trait::async_trait;
use futures::future::try_join_all;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::AlertOutput;
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

    async fn send(&mut self, alerts: &[Alert]) -> anyhow::Result<()> {
        let payloads: Vec<(String, String)> = alerts.iter().map(|a| (a.alert_id.clone(), a.to_json_line())).collect();
        let sends = payloads.iter().map(|(key, value)| {
            self.producer.send(FutureRecord::to(&self.topic).key(key).payload(value), Duration::from_secs(30))
        });
        try_join_all(sends).await.map_err(|(e, _)| anyhow::anyhow!("alert topic {}: {e}", self.topic))?;
        Ok(())
    }
}

/// Dead letters as their original bytes, with origin and reason in headers.
pub async fn send_dead_letters(producer: &FutureProducer, topic: &str, dead: &[DeadLetter]) -> anyhow::Result<()> {
    let records: Vec<(OwnedHeaders, &DeadLetter)> = dead
        .iter()
        .map(|d| {
            let mut h = OwnedHeaders::new()
                .insert(Header { key: "aiwatch.reason", value: Some(d.reason.as_str()) })
                .insert(Header { key: "aiwatch.kind", value: Some(d.kind) });
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
            (h, d)
        })
        .collect();
    let sends = records.into_iter().map(|(headers, d)| {
        producer.send(FutureRecord::<(), [u8]>::to(topic).payload(&d.bytes[..]).headers(headers), Duration::from_secs(30))
    });
    try_join_all(sends).await.map_err(|(e, _)| anyhow::anyhow!("dead-letter topic {topic}: {e}"))?;
    Ok(())
}
