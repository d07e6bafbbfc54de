//! HTTP alert outputs: a generic JSON webhook and the Alertmanager v2 API.
//! Both retry a transient failure with exponential backoff and hand back a
//! [`Failure`] per alert they did not take: transient ones are retried by
//! `aiwatch run` (offsets held), permanent refusals go to the alert dead letter.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::{AlertOutput, Failure, Rejected};
use crate::alert::Alert;
use crate::config::OutputConfig;
use crate::rules::Rule;

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

/// A link with placeholders filled from the alert: `{rule_id}`, `{alert_id}`,
/// `{category}`, `{priority}` (the rule's own severity), `{severity}` (as
/// mapped) and `{tenant_id}` (empty when there is none). Values are
/// percent-encoded; `{{` and `}}` stand for braces. A template is checked when
/// the config is read: an http(s) URL, known placeholders, balanced braces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlTemplate(Vec<Piece>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field(&'static str),
}

impl UrlTemplate {
    pub const FIELDS: [&'static str; 6] = ["rule_id", "alert_id", "category", "priority", "severity", "tenant_id"];

    pub fn parse(template: &str) -> Result<UrlTemplate, String> {
        if !crate::rules::is_http_url(template) {
            return Err("must be an http:// or https:// URL with a host and no spaces".into());
        }
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut chars = template.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    text.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => return Err(format!("`{{{name}` has no closing `}}` (write `{{{{` for a brace)")),
                        }
                    }
                    let Some(field) = Self::FIELDS.iter().find(|f| **f == name) else {
                        return Err(format!("unknown placeholder `{{{name}}}`; the placeholders are {{{}}}", Self::FIELDS.join("}, {")));
                    };
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                    pieces.push(Piece::Field(field));
                }
                '}' => return Err("a `}` without its `{` (write `}}` for a brace)".into()),
                c => text.push(c),
            }
        }
        pieces.push(Piece::Text(text));
        Ok(UrlTemplate(pieces))
    }

    /// The link for one alert; `field` gives each placeholder's value.
    pub fn render<'a>(&self, field: impl Fn(&str) -> &'a str) -> String {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Field(f) => {
                    for b in field(f).bytes() {
                        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                            out.push(b as char);
                        } else {
                            out.push_str(&format!("%{b:02X}"));
                        }
                    }
                }
            }
        }
        out
    }
}

/// What the Alertmanager output tells on-call about a rule beyond the alert itself.
#[derive(Debug, Clone, Default)]
struct RuleNotes {
    description: String,
    runbook_url: String,
}

/// Alertmanager API v2: all of a step's alerts in one POST to /api/v2/alerts,
/// with on-call conventions: the rule's severity as `priority`, `severity`
/// mapped through a table, `endsAt` far enough ahead that Alertmanager keeps
/// the page open, and the rule's description and runbook as annotations.
pub struct Alertmanager {
    client: reqwest::Client,
    endpoint: String,
    generator_url: Option<UrlTemplate>,
    dashboard_url: Option<UrlTemplate>,
    runbook_url: Option<UrlTemplate>,
    expires_after: Duration,
    severity_map: BTreeMap<String, String>,
    rules: HashMap<String, RuleNotes>,
    max_retries: u32,
}

impl Alertmanager {
    /// An output with the default conventions: the default severity table,
    /// pages that end 24 h after each post, and the built-in rules' notes.
    /// `generator_url` is a [`UrlTemplate`], or `None` to omit `generatorURL`.
    pub fn new(url: &str, generator_url: Option<String>, max_retries: u32, timeout_ms: u64) -> anyhow::Result<Alertmanager> {
        let endpoint = format!("{}/api/v2/alerts", url.trim_end_matches('/'));
        let template = |what: &str, t: Option<&String>| -> anyhow::Result<Option<UrlTemplate>> {
            t.map(|t| UrlTemplate::parse(t).map_err(|e| anyhow::anyhow!("alertmanager `{what}` {t:?}: {e}"))).transpose()
        };
        let am = Alertmanager {
            client: client(timeout_ms)?,
            endpoint,
            generator_url: template("generator_url", generator_url.as_ref())?,
            dashboard_url: None,
            runbook_url: None,
            expires_after: Duration::from_secs(86_400),
            severity_map: crate::config::default_severity_map(),
            rules: HashMap::new(),
            max_retries,
        };
        Ok(am.with_rules(&crate::rules::builtin()))
    }

    /// The output an `[[output]]` of kind `alertmanager` describes, with the
    /// notes (description, runbook) of the rules in force.
    pub fn from_config<'a>(config: &OutputConfig, rules: impl IntoIterator<Item = &'a Rule>) -> anyhow::Result<Alertmanager> {
        let OutputConfig::Alertmanager {
            url, generator_url, dashboard_url, runbook_url, expires_after_seconds, severity_map, max_retries, timeout_ms, ..
        } = config
        else {
            anyhow::bail!("not an alertmanager output");
        };
        let parse = |what: &str, t: &Option<String>| -> anyhow::Result<Option<UrlTemplate>> {
            t.as_deref().map(|t| UrlTemplate::parse(t).map_err(|e| anyhow::anyhow!("alertmanager `{what}` {t:?}: {e}"))).transpose()
        };
        let mut am = Alertmanager::new(url, generator_url.clone(), *max_retries, *timeout_ms)?;
        am.dashboard_url = parse("dashboard_url", dashboard_url)?;
        am.runbook_url = parse("runbook_url", runbook_url)?;
        am.expires_after = Duration::from_secs(*expires_after_seconds);
        am.severity_map.extend(severity_map.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(am.with_rules(rules))
    }

    /// Takes the description and runbook of these rules (a rule of the same id replaces the one known).
    pub fn with_rules<'a>(mut self, rules: impl IntoIterator<Item = &'a Rule>) -> Alertmanager {
        for r in rules {
            self.rules.insert(r.id.clone(), RuleNotes { description: r.description.clone(), runbook_url: r.runbook_url.clone() });
        }
        self
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

    /// The postable alerts: identity and routing in labels, the text and links
    /// in annotations. `endsAt` is now plus `expires_after`; a violation is
    /// posted once, so its page stays open that long unless someone resolves it.
    pub fn payload(&self, alerts: &[Alert]) -> serde_json::Value {
        let ends_at = (chrono::Utc::now() + self.expires_after).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        serde_json::Value::Array(
            alerts
                .iter()
                .map(|a| {
                    let severity = self.severity_map.get(&a.severity).map_or(a.severity.as_str(), String::as_str);
                    let notes = self.rules.get(&a.rule_id);
                    let field = |name: &str| -> &str {
                        match name {
                            "rule_id" => &a.rule_id,
                            "alert_id" => &a.alert_id,
                            "category" => &a.category,
                            "priority" => &a.severity,
                            "severity" => severity,
                            "tenant_id" => a.tenant_id.as_deref().unwrap_or(""),
                            _ => "",
                        }
                    };
                    let mut labels = serde_json::json!({
                        "alertname": a.rule_id,
                        "rule_id": a.rule_id,
                        "category": a.category,
                        "severity": severity,
                        "priority": a.severity,
                        "alert_id": a.alert_id,
                        "source": "aiwatch",
                    });
                    if let Some(t) = &a.tenant_id {
                        labels["tenant_id"] = serde_json::Value::String(t.clone());
                    }
                    let description = notes.map(|n| n.description.as_str()).filter(|d| !d.is_empty()).unwrap_or(&a.title);
                    let mut annotations = serde_json::json!({
                        "summary": a.summary,
                        "description": description,
                        "title": a.title,
                        "controls": a.controls.join(", "),
                        "subject": a.subject,
                    });
                    let mut annotate = |key: &str, value: String| {
                        if !value.is_empty() {
                            annotations[key] = serde_json::Value::String(value);
                        }
                    };
                    annotate("remediation", a.remediation.clone());
                    let runbook = match notes.map(|n| n.runbook_url.as_str()).filter(|r| !r.is_empty()) {
                        Some(r) => r.to_string(),
                        None => self.runbook_url.as_ref().map(|t| t.render(field)).unwrap_or_default(),
                    };
                    annotate("runbook_url", runbook);
                    annotate("dashboard_url", self.dashboard_url.as_ref().map(|t| t.render(field)).unwrap_or_default());
                    let mut alert = serde_json::json!({
                        "labels": labels,
                        "annotations": annotations,
                        "startsAt": a.time,
                        "endsAt": ends_at,
                    });
                    if let Some(g) = &self.generator_url {
                        alert["generatorURL"] = serde_json::Value::String(g.render(field));
                    }
                    alert
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

    /// A server that answers 200 and hands over each request's body.
    async fn capture() -> (String, tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = Vec::new();
                let mut chunk = vec![0; 64 << 10];
                let (head, body_len) = loop {
                    let n = s.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "the client closed before its request ended");
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        let len = head
                            .lines()
                            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap()))
                            .unwrap_or(0);
                        buf.drain(..end + 4);
                        break (head, len);
                    }
                };
                while buf.len() < body_len {
                    let n = s.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                }
                let request_line = head.lines().next().unwrap_or_default().to_string();
                tx.send((request_line, buf)).unwrap();
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
            }
        });
        (url, rx)
    }

    fn alert(rule: &Rule, tenant: Option<&str>) -> Alert {
        Alert {
            alert_id: crate::alert::alert_id(&rule.id, "e1"),
            rule_id: rule.id.clone(),
            category: rule.category.clone(),
            severity: rule.severity.clone(),
            subject: "e1".into(),
            tenant_id: tenant.map(String::from),
            time: "2026-11-01T00:00:00Z".into(),
            detected_at: crate::alert::now(),
            summary: "request r1 was sent to provider acme, which is not a listed vendor".into(),
            controls: vec!["CC9.2".into(), "CC6.7".into()],
            evidence: crate::alert::Evidence { event_ids: vec!["e1".into()], events: Vec::new() },
            title: rule.title.clone(),
            remediation: rule.remediation.clone(),
        }
    }

    fn seconds_from_now(rfc3339: &serde_json::Value) -> i64 {
        let t = chrono::DateTime::parse_from_rfc3339(rfc3339.as_str().expect("a time string")).expect("RFC 3339");
        (t.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds()
    }

    #[tokio::test]
    async fn the_alertmanager_payload_carries_ends_at_priority_severity_and_runbook_url() {
        let (url, mut bodies) = capture().await;
        let config: OutputConfig = toml::from_str(&format!(
            "kind = \"alertmanager\"\nurl = \"{url}/\"\nexpires_after_seconds = 3600\n\
             generator_url = \"https://grafana.example.com/d/aiwatch?var-rule={{rule_id}}\"\n\
             dashboard_url = \"https://grafana.example.com/d/aiwatch?var-tenant={{tenant_id}}&var-priority={{priority}}\"\n\
             runbook_url = \"https://wiki.example.com/soc2/{{category}}#{{rule_id}}\"\n\
             [severity_map]\nhigh = \"critical\"\n"
        ))
        .unwrap();
        let with_runbook = Rule::parse(
            "-- id: vendor.acme\n-- title: Sent to Acme\n-- category: vendor\n-- severity: high\n\
             -- description: A model call went to Acme.\n-- runbook: https://wiki.example.com/soc2/acme\nSELECT 1\n",
            "acme.sql",
            false,
        )
        .unwrap();
        let without = Rule::parse("-- id: change.odd\n-- title: Odd change\n-- category: change\n-- severity: low\nSELECT 1\n", "odd.sql", false).unwrap();
        let mut am = Alertmanager::from_config(&config, [&with_runbook, &without]).unwrap();
        am.send(&[alert(&with_runbook, Some("t/1 x")), alert(&without, None)]).await.unwrap();

        let (request_line, body) = bodies.recv().await.unwrap();
        assert!(request_line.starts_with("POST /api/v2/alerts "), "{request_line}");
        let posted: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let [acme, odd] = posted.as_array().unwrap().as_slice() else { panic!("{posted}") };
        assert_eq!(acme["labels"]["priority"], "high");
        assert_eq!(acme["labels"]["severity"], "critical", "high is mapped through the configured table");
        assert_eq!(acme["labels"]["tenant_id"], "t/1 x");
        assert_eq!(acme["annotations"]["runbook_url"], "https://wiki.example.com/soc2/acme", "the rule's own runbook first");
        assert_eq!(acme["annotations"]["description"], "A model call went to Acme.");
        assert_eq!(acme["annotations"]["summary"], "request r1 was sent to provider acme, which is not a listed vendor");
        assert_eq!(acme["annotations"]["dashboard_url"], "https://grafana.example.com/d/aiwatch?var-tenant=t%2F1%20x&var-priority=high");
        assert_eq!(acme["generatorURL"], "https://grafana.example.com/d/aiwatch?var-rule=vendor.acme");
        assert_eq!(acme["startsAt"], "2026-11-01T00:00:00Z");
        assert!((3590..=3600).contains(&seconds_from_now(&acme["endsAt"])), "{}", acme["endsAt"]);

        assert_eq!(odd["labels"]["priority"], "low");
        assert_eq!(odd["labels"]["severity"], "info", "the rest of the default table stays");
        assert!(odd["labels"].get("tenant_id").is_none());
        assert_eq!(odd["annotations"]["runbook_url"], "https://wiki.example.com/soc2/change#change.odd", "the template for a rule with no runbook");
        assert_eq!(odd["annotations"]["description"], "Odd change", "the title when the rule has no description");
        assert_eq!(odd["annotations"]["dashboard_url"], "https://grafana.example.com/d/aiwatch?var-tenant=&var-priority=low");

        // The defaults: 24 h, the default table, no generatorURL and no links at all.
        let config: OutputConfig = toml::from_str(&format!("kind = \"alertmanager\"\nurl = \"{url}\"\n")).unwrap();
        let mut am = Alertmanager::from_config(&config, [&without]).unwrap();
        am.send(&[alert(&with_runbook, None), alert(&without, None)]).await.unwrap();
        let (_, body) = bodies.recv().await.unwrap();
        let posted: serde_json::Value = serde_json::from_slice(&body).unwrap();
        for a in posted.as_array().unwrap() {
            assert!(a.get("generatorURL").is_none(), "no placeholder generatorURL: {a}");
            assert!(a["annotations"].get("dashboard_url").is_none() && a["annotations"].get("runbook_url").is_none(), "{a}");
            let left = seconds_from_now(&a["endsAt"]);
            assert!((86_390..=86_400).contains(&left), "{left}");
        }
        assert_eq!(posted[0]["labels"]["severity"], "error");
        assert_eq!(posted[1]["labels"]["severity"], "info");
    }

    #[test]
    fn url_templates_are_checked_and_filled() {
        let t = UrlTemplate::parse("https://x.example/{rule_id}?q={{literal}}&a={alert_id}").unwrap();
        assert_eq!(t.render(|f| if f == "rule_id" { "a.b" } else { "aw-1" }), "https://x.example/a.b?q={literal}&a=aw-1");
        for (bad, says) in [
            ("https://x.example/{tenant}", "unknown placeholder `{tenant}`"),
            ("https://x.example/}", "without its `{`"),
            ("https://x.example/{rule_id", "no closing `}`"),
            ("/relative/{rule_id}", "http:// or https://"),
            ("https://github.com/aiwatch/aiwatch#rules {rule_id}", "no spaces"),
        ] {
            let e = UrlTemplate::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
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
