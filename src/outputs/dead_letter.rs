//! The alert dead letter: alerts an output refused for good (HTTP 4xx, a
//! message too large, ...), each with the output's answer, so a person can see
//! them and send them on by hand while the stream goes on.
//!
//! A record (a JSON line in a file, or a message keyed by `alert_id`):
//! `{"dead_lettered_at", "output", "status", "reason", "tries", "alert_id",
//! "rule_id", "alert": {...}}`. Without a configured destination each one is
//! logged at error level, alert included (alerts hold ids, never prompt text).

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::kafka::too_large;
use super::JsonLines;
use crate::alert::Alert;

/// One alert refused for good by one output.
pub struct Refused<'a> {
    pub alert: &'a Alert,
    /// The output's name (`webhook`, `kafka`, ...).
    pub output: &'a str,
    /// The output's answer in short: `HTTP 400 Bad Request`, `MessageSizeTooLarge`.
    pub status: &'a str,
    pub reason: &'a str,
    /// How many times it was sent.
    pub tries: u32,
}

impl Refused<'_> {
    /// The record; `with_alert = false` leaves the alert body out (for a topic
    /// that refuses the whole as too large).
    fn to_json(&self, with_alert: bool) -> serde_json::Value {
        serde_json::json!({
            "dead_lettered_at": crate::alert::now(),
            "output": self.output,
            "status": self.status,
            "reason": self.reason,
            "tries": self.tries,
            "alert_id": self.alert.alert_id,
            "rule_id": self.alert.rule_id,
            "alert": if with_alert { serde_json::to_value(self.alert).unwrap_or_default() } else { serde_json::Value::Null },
        })
    }
}

/// Where refused alerts go.
pub enum AlertDeadLetters {
    Kafka { producer: FutureProducer, topic: String },
    File(JsonLines),
    Log,
}

impl AlertDeadLetters {
    /// Writes one refused alert. An error means it could not be written now
    /// (the topic or the disk is away): the alert stays undelivered and is
    /// tried again, so offsets stay held.
    pub async fn send(&mut self, r: &Refused<'_>) -> anyhow::Result<()> {
        match self {
            AlertDeadLetters::Log => {
                tracing::error!(output = r.output, status = r.status, reason = r.reason, tries = r.tries,
                    alert = %r.to_json(true)["alert"], "alert refused for good by an output (configure [alert_dead_letter] to keep it)");
                Ok(())
            }
            AlertDeadLetters::File(f) => Ok(f.write_json_line(&r.to_json(true))?),
            AlertDeadLetters::Kafka { producer, topic } => match send_record(producer, topic, r, true).await {
                Ok(()) => Ok(()),
                Err(e) if too_large(&e) => {
                    tracing::warn!(alert_id = %r.alert.alert_id, error = %e, "refused alert too large for the alert dead-letter topic; sending it without its body");
                    send_record(producer, topic, r, false).await.map_err(|e| anyhow::anyhow!("alert dead-letter topic {topic}: {e}"))
                }
                Err(e) => anyhow::bail!("alert dead-letter topic {topic}: {e}"),
            },
        }
    }
}

/// The record as a message keyed by `alert_id`, with output, status and reason as headers too.
async fn send_record(producer: &FutureProducer, topic: &str, r: &Refused<'_>, with_alert: bool) -> Result<(), KafkaError> {
    let headers = OwnedHeaders::new()
        .insert(Header { key: "aiwatch.output", value: Some(r.output) })
        .insert(Header { key: "aiwatch.status", value: Some(r.status) })
        .insert(Header { key: "aiwatch.reason", value: Some(r.reason) });
    let value = r.to_json(with_alert).to_string();
    let record = FutureRecord::to(topic).key(r.alert.alert_id.as_str()).payload(&value).headers(headers);
    producer.send(record, Duration::from_secs(30)).await.map(|_| ()).map_err(|(e, _)| e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Evidence;

    #[tokio::test]
    async fn a_refused_alert_is_written_with_the_outputs_answer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("refused.jsonl");
        let alert = Alert {
            alert_id: "aw-1".into(),
            rule_id: "r.x".into(),
            category: "c".into(),
            severity: "high".into(),
            subject: "s".into(),
            tenant_id: None,
            time: "t".into(),
            detected_at: "t".into(),
            summary: "x".into(),
            controls: vec![],
            evidence: Evidence { event_ids: vec!["e1".into()], events: vec![] },
            title: "T".into(),
            remediation: String::new(),
        };
        let mut d = AlertDeadLetters::File(JsonLines::append(Some(&path)).unwrap());
        d.send(&Refused { alert: &alert, output: "webhook", status: "HTTP 400 Bad Request", reason: "no", tries: 3 }).await.unwrap();
        let line: serde_json::Value = serde_json::from_str(std::fs::read_to_string(&path).unwrap().trim()).unwrap();
        assert_eq!(line["status"], "HTTP 400 Bad Request");
        assert_eq!(line["output"], "webhook");
        assert_eq!(line["alert"]["alert_id"], "aw-1");
        assert_eq!(line["tries"], 3);
    }
}
