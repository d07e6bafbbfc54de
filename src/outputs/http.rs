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
                if s.is_redirection() {
                    return Err(err.context("redirects are not followed (they could carry the auth header to another host); set the url to the final address"));
                }
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

/// Redirects are not followed: a redirect to another host would carry the
/// auth header there (reqwest strips only `Authorization`, `Cookie` and a few
/// others across hosts, not a custom header), so a 3xx is a refusal.
fn client(timeout_ms: u64) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder().timeout(Duration::from_millis(timeout_ms)).redirect(reqwest::redirect::Policy::none()).build()?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A one-purpose HTTP server: answers every request with `response`, counts connections.
    async fn server(response: String) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let mut buf = vec![0; 64 << 10];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(response.as_bytes()).await;
            }
        });
        (url, hits)
    }

    #[tokio::test]
    async fn a_redirect_is_not_followed_so_the_auth_header_stays_home() {
        let (elsewhere, hits) = server("HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into()).await;
        // `localhost` against 127.0.0.1: another host name for the redirect.
        let elsewhere = elsewhere.replace("127.0.0.1", "localhost");
        let (url, _) = server(format!("HTTP/1.1 307 Temporary Redirect\r\nlocation: {elsewhere}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")).await;
        let c = client(2000).unwrap();
        let e = post_json(|| c.post(&url).header("x-api-key", "CANARY").body("{}"), 3, "webhook").await.unwrap_err();
        let text = format!("{e:#}");
        assert!(text.contains("307") && text.contains("redirects are not followed"), "{text}");
        assert!(!text.contains("CANARY"));
        assert_eq!(hits.load(Ordering::SeqCst), 0, "the redirect target was contacted");
    }
}
