//! HTTP alert outputs: a generic JSON webhook and the Alertmanager v2 API.
//! Both retry a transient failure with exponential backoff and hand back a
//! [`Failure`] per alert they did not take: transient ones are retried by
//! `aiwatch run` (offsets held), permanent refusals go to the alert dead letter.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::{AlertOutput, Failure, Rejected};
use crate::alert::Alert;

/// At most this much of a refusal's body is kept as its reason.
const REASON_BYTES: usize = 200;
/// A `Retry-After` longer than this is cut to it.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// POST with retries. 2xx is success; 4xx other than 408/429, and 3xx (not
/// followed), are permanent refusals and not retried; the rest (5xx, 408,
/// 429, timeouts, connection errors) are retried `max_retries` times. An
/// answer with `Retry-After` ends the retries at once, so the caller waits
/// that long where a shutdown can still interrupt it.
async fn post_json(req: impl Fn() -> reqwest::RequestBuilder, max_retries: u32, what: &str, secret: Option<&[u8]>) -> Result<(), Failure> {
    let mut delay = Duration::from_millis(100);
    let mut attempt = 0;
    loop {
        let failure = match req().send().await {
            Ok(resp) if resp.status().is_success() => return Ok(()),
            Ok(resp) => {
                let s = resp.status();
                let status = format!("HTTP {s}");
                if s.is_redirection() {
                    return Err(Failure::permanent(
                        status,
                        "redirects are not followed (they could carry the auth header to another host); set the url to the final address",
                    ));
                }
                if s.is_client_error() && s != reqwest::StatusCode::REQUEST_TIMEOUT && s != reqwest::StatusCode::TOO_MANY_REQUESTS {
                    let body = short_body(resp, secret).await;
                    let said = if body.is_empty() { String::new() } else { format!(": {body}") };
                    return Err(Failure::permanent(status, format!("{what} refused the alert{said}")));
                }
                let retry_after = retry_after(resp.headers());
                let failure = Failure::Transient { reason: format!("{what} answered {status}"), retry_after };
                if retry_after.is_some() {
                    return Err(failure);
                }
                failure
            }
            Err(e) => Failure::transient(format!("{what}: {}", without_url(&e))),
        };
        if attempt >= max_retries {
            return Err(match failure {
                Failure::Transient { reason, retry_after } => {
                    Failure::Transient { reason: format!("{reason}; gave up after {} attempts", attempt + 1), retry_after }
                }
                permanent => permanent,
            });
        }
        attempt += 1;
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// `Retry-After` as seconds or an HTTP date, at most [`MAX_RETRY_AFTER`].
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match v.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
            (at.with_timezone(&chrono::Utc) - chrono::Utc::now()).to_std().unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// The start of a refusal's body as one printable line, with the secret (should
/// a receiver echo it) replaced.
async fn short_body(mut resp: reqwest::Response, secret: Option<&[u8]>) -> String {
    let mut body = Vec::new();
    while body.len() < 4 * REASON_BYTES {
        match resp.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let mut text: String = String::from_utf8_lossy(&body).chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if let Some(secret) = secret.filter(|s| !s.is_empty()) {
        text = text.replace(&*String::from_utf8_lossy(secret), "<redacted>");
    }
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.char_indices().nth(REASON_BYTES) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
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

    /// One POST per alert, in order: a refused alert does not stop the next;
    /// a transient failure does (the receiver is away), and the rest wait for the retry.
    async fn send(&mut self, alerts: &[Alert]) -> Result<(), Rejected> {
        let mut refused = Vec::new();
        let secret = self.auth.as_ref().map(|(_, v)| v.as_bytes());
        for (i, a) in alerts.iter().enumerate() {
            let body = match a.try_json_line() {
                Ok(body) => body,
                Err(e) => {
                    refused.push((i, Failure::permanent("not serializable", e.to_string())));
                    continue;
                }
            };
            let sent = post_json(
                || {
                    let mut r = self.client.post(&self.url).header("content-type", "application/json").body(body.clone());
                    if let Some((k, v)) = &self.auth {
                        r = r.header(k, v);
                    }
                    r
                },
                self.max_retries,
                "webhook",
                secret,
            )
            .await;
            match sent {
                Ok(()) => {}
                Err(f @ Failure::Permanent { .. }) => refused.push((i, f)),
                Err(f) => {
                    refused.extend(Rejected::from_index(i, alerts.len(), f).0);
                    break;
                }
            }
        }
        if refused.is_empty() { Ok(()) } else { Err(Rejected(refused)) }
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

    async fn post(&self, alerts: &[Alert]) -> Result<(), Failure> {
        let body = serde_json::to_vec(&self.payload(alerts)).map_err(|e| Failure::permanent("not serializable", e.to_string()))?;
        post_json(
            || self.client.post(&self.endpoint).header("content-type", "application/json").body(body.clone()),
            self.max_retries,
            "alertmanager",
            None,
        )
        .await
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

    /// All alerts in one POST; when Alertmanager refuses that for good, each
    /// alert is posted alone, so only the ones it refuses are set aside.
    async fn send(&mut self, alerts: &[Alert]) -> Result<(), Rejected> {
        if alerts.is_empty() {
            return Ok(());
        }
        match self.post(alerts).await {
            Ok(()) => return Ok(()),
            Err(f @ Failure::Transient { .. }) => return Err(Rejected::from_index(0, alerts.len(), f)),
            Err(f) if alerts.len() == 1 => return Err(Rejected(vec![(0, f)])),
            Err(f) => tracing::warn!(failure = %f, alerts = alerts.len(), "alertmanager refused a batch of alerts; posting them one by one"),
        }
        let mut refused = Vec::new();
        for (i, a) in alerts.iter().enumerate() {
            match self.post(std::slice::from_ref(a)).await {
                Ok(()) => {}
                Err(f @ Failure::Permanent { .. }) => refused.push((i, f)),
                Err(f) => {
                    refused.extend(Rejected::from_index(i, alerts.len(), f).0);
                    break;
                }
            }
        }
        if refused.is_empty() { Ok(()) } else { Err(Rejected(refused)) }
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
        let e = post_json(|| c.post(&url).header("x-api-key", "CANARY").body("{}"), 3, "webhook", Some(b"CANARY")).await.unwrap_err();
        let text = format!("{e}");
        assert!(matches!(e, Failure::Permanent { .. }), "{text}");
        assert!(text.contains("307") && text.contains("redirects are not followed"), "{text}");
        assert!(!text.contains("CANARY"));
        assert_eq!(hits.load(Ordering::SeqCst), 0, "the redirect target was contacted");
    }

    #[tokio::test]
    async fn a_4xx_is_a_permanent_refusal_with_a_short_reason_and_no_secret() {
        let body = format!("bad alert; you sent x-api-key CANARY {}", "z".repeat(1000));
        let (url, hits) = server(format!("HTTP/1.1 400 Bad Request\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())).await;
        let c = client(2000).unwrap();
        let e = post_json(|| c.post(&url).body("{}"), 3, "webhook", Some(b"CANARY")).await.unwrap_err();
        let Failure::Permanent { status, reason } = &e else { panic!("{e:?}") };
        assert_eq!(status, "HTTP 400 Bad Request");
        assert!(reason.contains("bad alert") && reason.contains("<redacted>") && !reason.contains("CANARY"), "{reason}");
        assert!(reason.len() < 300, "{reason}");
        assert_eq!(hits.load(Ordering::SeqCst), 1, "a permanent refusal is not retried here");
    }

    #[tokio::test]
    async fn a_429_hands_its_retry_after_back_and_a_5xx_is_retried() {
        let (url, hits) = server("HTTP/1.1 429 Too Many Requests\r\nretry-after: 7\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into()).await;
        let c = client(2000).unwrap();
        let e = post_json(|| c.post(&url).body("{}"), 3, "webhook", None).await.unwrap_err();
        assert_eq!(e, Failure::Transient { reason: "webhook answered HTTP 429 Too Many Requests".into(), retry_after: Some(Duration::from_secs(7)) });
        assert_eq!(hits.load(Ordering::SeqCst), 1);

        let (url, hits) = server("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into()).await;
        let e = post_json(|| c.post(&url).body("{}"), 2, "webhook", None).await.unwrap_err();
        assert!(matches!(&e, Failure::Transient { retry_after: None, reason } if reason.contains("503") && reason.contains("3 attempts")), "{e:?}");
        assert_eq!(hits.load(Ordering::SeqCst), 3);
    }
}
