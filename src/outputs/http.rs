//! HTTP alert outputs: a generic JSON webhook and the Alertmanager v2 API.
//! Both retry with exponential backoff; when retries run out the step fails,
//! and `aiwatch run` holds back offset commits until the output takes the alerts.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderName, HeaderValue};

use super::AlertOutput;
use crate::alert::Alert;

/// POST with retries; 2xx is success, 4xx other than 408/429 is a permanent refusal.
async fn post_json(req: impl Fn() -> reqwest::RequestBuilder, max_retries: u32, what: &str) -> anyhow::Result<()> {
    let mut delay = Duration::from_millis(100);
    let mut attempt = 0;
    loop {
        let outcome = req().send().await;
        let retryable = match outcome {
            Ok(resp) if resp.status().is_success() => return Ok(()),
            Ok(resp) => {
                let s = resp.status();
                let err = anyhow::anyhow!("{what} answered HTTP {s}");
                if s.is_client_error() && s != reqwest::StatusCode::REQUEST_TIMEOUT && s != reqwest::StatusCode::TOO_MANY_REQUESTS {
                    return Err(err.context("the receiver refused the request; check its URL and credentials"));
                }
                err
            }
            Err(e) => anyhow::anyhow!("{what}: {}", without_url(&e)),
        };
        if attempt >= max_retries {
            return Err(retryable.context(format!("gave up after {} attempts", attempt + 1)));
        }
        attempt += 1;
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// reqwest errors print the URL, which may carry a token in its query; keep the kind only.
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_request() {
        "request failed"
    } else {
        "error"
    };
    kind.to_string()
}

fn client(timeout_ms: u64) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder().timeout(Duration::from_millis(timeout_ms)).build()?)
}

/// Each alert as its own JSON POST, with an optional secret header.
pub struct Webhook {
    client: reqwest::Client,
    url: String,
    auth: Option<(HeaderName, HeaderValue)>,
    max_retries: u32,
}

impl Webhook {
    pub fn new(url: String, auth: Option<(String, String)>, max_retries: u32, timeout_ms: u64) -> anyhow::Result<Webhook> {
        let auth = match auth {
            Some((name, value)) => {
                let mut v = HeaderValue::from_str(&value).map_err(|_| anyhow::anyhow!("webhook auth header value is not a valid header value"))?;
                v.set_sensitive(true);
                Some((HeaderName::from_bytes(name.as_bytes())?, v))
            }
            None => None,
        };
        Ok(Webhook { client: client(timeout_ms)?, url, auth, max_retries })
    }
}

#[async_trait]
impl AlertOutput for Webhook {
    fn name(&self) -> &str {
        "webhook"
    }

    async fn send(&mut self, alerts: &[Alert]) -> anyhow::Result<()> {
        for a in alerts {
            let body = a.to_json_line();
            post_json(
                || {
                    let mut r = self.client.post(&self.url).header("content-type", "application/json").body(body.clone());
                    if let Some((k, v)) = &self.auth {
                        r = r.header(k, v);
                    }
                    r
                },
                self.max_retries,
                "webhook",
            )
            .await?;
        }
        Ok(())
    }
}

/// Alertmanager API v2: all of a step's alerts in one POST to /api/v2/alerts.
pub struct Alertmanager {
    client: reqwest::Client,
    endpoint: String,
    generator_url: String,
    max_retries: u32,
}

impl Alertmanager {
    pub fn new(url: &str, generator_url: String, max_retries: u32, timeout_ms: u64) -> anyhow::Result<Alertmanager> {
        let endpoint = format!("{}/api/v2/alerts", url.trim_end_matches('/'));
        Ok(Alertmanager { client: client(timeout_ms)?, endpoint, generator_url, max_retries })
    }

    /// The postable alert: identity and routing in labels, the text in annotations.
    pub fn payload(&self, alerts: &[Alert]) -> serde_json::Value {
        serde_json::Value::Array(
            alerts
                .iter()
                .map(|a| {
                    let mut labels = serde_json::json!({
                        "alertname": a.rule_id,
                        "rule_id": a.rule_id,
                        "category": a.category,
                        "severity": a.severity,
                        "alert_id": a.alert_id,
                        "source": "aiwatch",
                    });
                    if let Some(t) = &a.tenant_id {
                        labels["tenant_id"] = serde_json::Value::String(t.clone());
                    }
                    serde_json::json!({
                        "labels": labels,
                        "annotations": {
                            "summary": a.summary,
                            "title": a.title,
                            "controls": a.controls.join(", "),
                            "subject": a.subject,
                            "remediation": a.remediation,
                        },
                        "startsAt": a.time,
                        "generatorURL": self.generator_url,
                    })
                })
                .collect(),
        )
    }
}

#[async_trait]
impl AlertOutput for Alertmanager {
    fn name(&self) -> &str {
        "alertmanager"
    }

    async fn send(&mut self, alerts: &[Alert]) -> anyhow::Result<()> {
        if alerts.is_empty() {
            return Ok(());
        }
        let body = serde_json::to_vec(&self.payload(alerts))?;
        post_json(
            || self.client.post(&self.endpoint).header("content-type", "application/json").body(body.clone()),
            self.max_retries,
            "alertmanager",
        )
        .await
    }
}
