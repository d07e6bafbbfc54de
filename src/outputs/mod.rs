//! Where alerts and dead letters go. Every alert output implements
//! [`AlertOutput`]; `aiwatch run` hands each step's alerts to all of them and
//! commits Kafka offsets only once every one has accepted them.

pub mod http;
pub mod jsonl;
pub mod kafka;

use async_trait::async_trait;

use crate::alert::Alert;
pub use jsonl::JsonLines;

/// An on-call destination for alerts.
#[async_trait]
pub trait AlertOutput: Send {
    /// A short fixed name for logs and metric labels (`stdout`, `webhook`, ...).
    fn name(&self) -> &str;
    /// Hands over alerts; `Ok` means the output has accepted every one of them.
    async fn send(&mut self, alerts: &[Alert]) -> anyhow::Result<()>;
}

#[async_trait]
impl AlertOutput for JsonLines {
    fn name(&self) -> &str {
        if self.name() == "stdout" { "stdout" } else { "file" }
    }

    async fn send(&mut self, alerts: &[Alert]) -> anyhow::Result<()> {
        // Local writes are quick; a full disk surfaces here as an error like any other output's.
        Ok(self.write_alerts(alerts)?)
    }
}
