//! Alert records (spec `alerts.md`): one violation, identified by rule and subject.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::event::Origin;

/// The evidence of an alert: the events that make the violation and where they came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evidence {
    pub event_ids: Vec<String>,
    /// One entry per event whose origin the engine still holds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<serde_json::Value>,
}

/// One violation, as handed to outputs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub alert_id: String,
    pub rule_id: String,
    pub category: String,
    pub severity: String,
    pub subject: String,
    pub tenant_id: Option<String>,
    pub time: String,
    pub detected_at: String,
    pub summary: String,
    pub controls: Vec<String>,
    pub evidence: Evidence,
    pub title: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub remediation: String,
}

/// The stable identity of a violation: the same (rule, subject) always gives the same id.
pub fn alert_id(rule_id: &str, subject: &str) -> String {
    let mut h = Sha256::new();
    h.update(rule_id.as_bytes());
    h.update([0u8]);
    h.update(subject.as_bytes());
    let digest = h.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("aw-{hex}")
}

/// RFC 3339 in UTC with a `Z`, as alerts carry times.
pub fn format_time(nanos: i64) -> String {
    DateTime::<Utc>::from_timestamp_nanos(nanos).to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

pub fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Alert {
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("alerts serialize")
    }

    /// The JSON line, or why it cannot be made (outputs refuse such an alert for good).
    pub fn try_json_line(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// Attaches the origins the engine knows for the evidence events.
    pub fn with_origins<'a>(mut self, lookup: impl Fn(&str) -> Option<&'a Origin>) -> Alert {
        self.evidence.events =
            self.evidence.event_ids.iter().filter_map(|id| lookup(id).map(|o| o.to_json(id))).collect();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_id_depends_only_on_rule_and_subject() {
        assert_eq!(alert_id("a.b", "x"), alert_id("a.b", "x"));
        assert_ne!(alert_id("a.b", "x"), alert_id("a.bx", ""));
        assert_eq!(alert_id("a.b", "x").len(), 35);
    }

    #[test]
    fn times_are_utc_with_z() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(1_500_000), "1970-01-01T00:00:00.001500Z");
    }
}
