//! Where alerts and dead letters go. Every alert output implements
//! [`AlertOutput`]; `aiwatch run` hands each step's alerts to all of them and
//! commits Kafka offsets only once every one has taken them, or refused one
//! for good and that alert went to the alert dead letter ([`dead_letter`]).

pub mod dead_letter;
pub mod delivery;
pub mod http;
pub mod jsonl;
pub mod kafka;

use std::time::Duration;

use async_trait::async_trait;

use crate::alert::Alert;
pub use dead_letter::AlertDeadLetters;
pub use delivery::{Delivery, Route};
pub use jsonl::JsonLines;

/// Why an output did not take one alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Sending it again later may work: the receiver is down, slow or busy
    /// (HTTP 5xx, 408, 429, a timeout, a refused connection, a broker away).
    Transient {
        reason: String,
        /// How long the receiver asked to be left alone (HTTP `Retry-After`).
        retry_after: Option<Duration>,
    },
    /// The receiver refused this alert for good (HTTP 4xx other than 408 and
    /// 429, a 3xx since redirects are not followed, a message too large, an
    /// alert that cannot be serialized): sending it again gives the same answer.
    Permanent {
        /// The receiver's answer in short (`HTTP 400 Bad Request`, `MessageSizeTooLarge`).
        status: String,
        /// A short explanation; never a secret.
        reason: String,
    },
}

impl Failure {
    pub fn transient(reason: impl Into<String>) -> Failure {
        Failure::Transient { reason: reason.into(), retry_after: None }
    }

    pub fn permanent(status: impl Into<String>, reason: impl Into<String>) -> Failure {
        Failure::Permanent { status: status.into(), reason: reason.into() }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Transient { reason, retry_after: Some(d) } => write!(f, "{reason} (retry after {} s)", d.as_secs_f64()),
            Failure::Transient { reason, retry_after: None } => write!(f, "{reason}"),
            Failure::Permanent { status, reason } => write!(f, "refused for good: {status}: {reason}"),
        }
    }
}

/// The alerts of one hand-off that an output did not take: `(index in the
/// slice, why)`, in index order, never empty. Every alert not listed was taken,
/// so a retry sends only these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected(pub Vec<(usize, Failure)>);

impl Rejected {
    /// Alerts `from..n` all failed for the same reason (the output stopped at `from`).
    pub fn from_index(from: usize, n: usize, failure: Failure) -> Rejected {
        Rejected((from..n).map(|i| (i, failure.clone())).collect())
    }
}

/// An on-call destination for alerts.
#[async_trait]
pub trait AlertOutput: Send {
    /// A short fixed name for logs and metric labels (`stdout`, `webhook`, ...).
    fn name(&self) -> &str;
    /// Hands over alerts; `Ok` means the output has taken every one of them,
    /// `Err` lists those it did not take and why.
    async fn send(&mut self, alerts: &[Alert]) -> Result<(), Rejected>;
}

#[async_trait]
impl AlertOutput for JsonLines {
    fn name(&self) -> &str {
        if self.name() == "stdout" { "stdout" } else { "file" }
    }

    async fn send(&mut self, alerts: &[Alert]) -> Result<(), Rejected> {
        // Local writes are quick; a full disk surfaces here as a transient error like any other output's.
        self.write_alerts_checked(alerts)
    }
}
