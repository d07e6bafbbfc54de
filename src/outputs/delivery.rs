//! Hands each step's alerts to every output, at least once, without getting stuck.
//!
//! Each output keeps its own progress within the step: a retry sends an output
//! only the alerts it has not taken yet, never the ones it took before a later
//! one failed. A transient failure (the receiver is down, slow or busy) is
//! retried with backoff, honouring `Retry-After`, while consumption waits: the
//! step's alerts are all that is held, so memory stays bounded, and its offsets
//! stay uncommitted. An alert refused for good is tried [`PERMANENT_TRIES`]
//! times, then goes to the alert dead letter with the output's answer and is
//! counted in `aiwatch_alerts_dead_lettered_total{output}`; the stream moves
//! on. An output with `on_permanent_error = "block"` retries it for ever instead.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::watch;

use super::dead_letter::{AlertDeadLetters, Refused};
use super::{AlertOutput, Failure};
use crate::alert::Alert;
use crate::config::OnPermanentError;
use crate::telemetry::Metrics;

/// Sends of an alert an output refuses for good before it goes to the alert dead letter.
pub const PERMANENT_TRIES: u32 = 3;
/// The wait before the first retry; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// One output and what to do when it refuses an alert for good.
pub struct Route {
    pub output: Box<dyn AlertOutput>,
    pub on_permanent_error: OnPermanentError,
}

/// Every output of `aiwatch run`, and where refused alerts go.
pub struct Delivery {
    pub routes: Vec<Route>,
    pub dead: AlertDeadLetters,
}

impl Delivery {
    /// Returns once every output has taken each alert or it went to the alert
    /// dead letter; fails only when shutdown is requested first (the step is
    /// then not committed).
    pub async fn deliver(&mut self, alerts: &[Alert], metrics: &Metrics, stop: &watch::Receiver<bool>) -> anyhow::Result<()> {
        if alerts.is_empty() {
            return Ok(());
        }
        let Delivery { routes, dead } = self;
        // Per output: the alerts (indices into `alerts`) it has not taken, and the sends of each refused one.
        let mut pending: Vec<Vec<usize>> = vec![(0..alerts.len()).collect(); routes.len()];
        let mut tries: Vec<HashMap<usize, u32>> = vec![HashMap::new(); routes.len()];
        let mut backoff = FIRST_BACKOFF;
        loop {
            let mut wait = backoff;
            for (o, route) in routes.iter_mut().enumerate() {
                if pending[o].is_empty() {
                    continue;
                }
                let name = route.output.name().to_string();
                let label = [name.as_str()];
                let batch: Cow<[Alert]> = if pending[o].len() == alerts.len() {
                    Cow::Borrowed(alerts)
                } else {
                    Cow::Owned(pending[o].iter().map(|i| alerts[*i].clone()).collect())
                };
                let rejected = match route.output.send(&batch).await {
                    Ok(()) => {
                        pending[o].clear();
                        metrics.output_up.with_label_values(&label).set(1);
                        continue;
                    }
                    Err(r) => r,
                };
                metrics.output_errors.with_label_values(&label).inc();
                let (mut still, mut transient, mut first) = (Vec::new(), 0, None);
                for (j, failure) in rejected.0 {
                    // An index outside what was sent would be an output's bug: nothing to retry for it.
                    let Some(&at) = pending[o].get(j) else { continue };
                    first.get_or_insert_with(|| failure.to_string());
                    match failure {
                        Failure::Transient { retry_after, .. } => {
                            transient += 1;
                            wait = wait.max(retry_after.unwrap_or_default());
                            still.push(at);
                        }
                        Failure::Permanent { status, reason } => {
                            let sent = tries[o].entry(at).or_insert(0);
                            *sent += 1;
                            if route.on_permanent_error == OnPermanentError::Block || *sent < PERMANENT_TRIES {
                                still.push(at);
                                continue;
                            }
                            let a = &alerts[at];
                            let refused = Refused { alert: a, output: &name, status: &status, reason: &reason, tries: *sent };
                            match dead.send(&refused).await {
                                Ok(()) => {
                                    metrics.alerts_dead_lettered.with_label_values(&label).inc();
                                    tracing::warn!(output = %name, alert_id = %a.alert_id, rule_id = %a.rule_id, status = %status, reason = %reason,
                                        tries = *sent, "output refused an alert for good; it went to the alert dead letter");
                                }
                                Err(e) => {
                                    metrics.output_errors.with_label_values(&["alert_dead_letter"]).inc();
                                    tracing::error!(output = %name, alert_id = %a.alert_id, error = %format!("{e:#}"),
                                        "cannot write a refused alert to the alert dead letter; holding back offset commits and retrying");
                                    still.push(at);
                                }
                            }
                        }
                    }
                }
                metrics.output_up.with_label_values(&label).set(if transient > 0 { 0 } else { 1 });
                if !still.is_empty() {
                    tracing::error!(output = %name, alerts = still.len(), transient, first = %first.unwrap_or_default(),
                        "output did not take every alert; holding back offset commits and retrying");
                }
                pending[o] = still;
            }
            if pending.iter().all(Vec::is_empty) {
                return Ok(());
            }
            if *stop.borrow() {
                anyhow::bail!("shutting down with alerts not taken by every output; their offsets stay uncommitted");
            }
            let mut stop_changed = stop.clone();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop_changed.changed() => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;

    use super::*;
    use crate::alert::Evidence;
    use crate::outputs::{JsonLines, Rejected};

    fn alert(n: usize) -> Alert {
        Alert {
            alert_id: format!("aw-{n}"),
            rule_id: "r.x".into(),
            category: "c".into(),
            severity: "high".into(),
            subject: format!("s{n}"),
            tenant_id: None,
            time: "t".into(),
            detected_at: "t".into(),
            summary: "x".into(),
            controls: vec![],
            evidence: Evidence { event_ids: vec![], events: vec![] },
            title: "T".into(),
            remediation: String::new(),
        }
    }

    /// Takes what `answer` allows and records every alert it was sent, per call.
    struct Scripted {
        calls: Arc<Mutex<Vec<Vec<String>>>>,
        answer: Box<dyn Fn(usize, &Alert) -> Option<Failure> + Send>,
    }

    #[async_trait]
    impl AlertOutput for Scripted {
        fn name(&self) -> &str {
            "scripted"
        }

        async fn send(&mut self, alerts: &[Alert]) -> Result<(), Rejected> {
            let call = {
                let mut calls = self.calls.lock().unwrap();
                calls.push(alerts.iter().map(|a| a.alert_id.clone()).collect());
                calls.len() - 1
            };
            let failed: Vec<_> = alerts.iter().enumerate().filter_map(|(i, a)| (self.answer)(call, a).map(|f| (i, f))).collect();
            if failed.is_empty() { Ok(()) } else { Err(Rejected(failed)) }
        }
    }

    fn delivery(answer: impl Fn(usize, &Alert) -> Option<Failure> + Send + 'static, dead: &std::path::Path, on: OnPermanentError) -> (Delivery, Arc<Mutex<Vec<Vec<String>>>>) {
        let calls = Arc::default();
        let output = Box::new(Scripted { calls: Arc::clone(&calls), answer: Box::new(answer) });
        let dead = AlertDeadLetters::File(JsonLines::append(Some(dead)).unwrap());
        (Delivery { routes: vec![Route { output, on_permanent_error: on }], dead }, calls)
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_sends_only_what_the_output_did_not_take() {
        let dir = tempfile::tempdir().unwrap();
        // The first call takes alerts 0 and 2 only; every later call takes all.
        let (mut d, calls) = delivery(
            |call, a| (call == 0 && a.alert_id != "aw-0" && a.alert_id != "aw-2").then(|| Failure::transient("busy")),
            &dir.path().join("dead"),
            OnPermanentError::DeadLetter,
        );
        let (_tx, stop) = watch::channel(false);
        let metrics = Metrics::new();
        d.deliver(&(0..4).map(alert).collect::<Vec<_>>(), &metrics, &stop).await.unwrap();
        assert_eq!(*calls.lock().unwrap(), [vec!["aw-0", "aw-1", "aw-2", "aw-3"], vec!["aw-1", "aw-3"]]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_refusal_goes_to_the_dead_letter_after_a_few_tries_and_the_rest_is_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join("dead");
        let (mut d, calls) = delivery(
            |_, a| (a.alert_id == "aw-1").then(|| Failure::permanent("HTTP 400 Bad Request", "bad")),
            &dead,
            OnPermanentError::DeadLetter,
        );
        let (_tx, stop) = watch::channel(false);
        let metrics = Metrics::new();
        d.deliver(&(0..3).map(alert).collect::<Vec<_>>(), &metrics, &stop).await.unwrap();
        let calls = calls.lock().unwrap();
        assert_eq!(calls.len(), PERMANENT_TRIES as usize);
        assert!(calls[1..].iter().all(|c| c == &["aw-1"]), "{calls:?}");
        let line: serde_json::Value = serde_json::from_str(std::fs::read_to_string(&dead).unwrap().trim()).unwrap();
        assert_eq!((line["alert_id"].as_str(), line["status"].as_str()), (Some("aw-1"), Some("HTTP 400 Bad Request")));
        assert_eq!(metrics.alerts_dead_lettered.with_label_values(&["scripted"]).get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn block_retries_a_refused_alert_until_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join("dead");
        let (mut d, calls) = delivery(|_, _| Some(Failure::permanent("HTTP 403 Forbidden", "no")), &dead, OnPermanentError::Block);
        let (tx, stop) = watch::channel(false);
        let metrics = Metrics::new();
        let alerts = vec![alert(0)];
        let run = d.deliver(&alerts, &metrics, &stop);
        tokio::pin!(run);
        assert!(tokio::time::timeout(Duration::from_secs(120), &mut run).await.is_err(), "a blocked alert was given up");
        tx.send(true).unwrap();
        assert!(run.await.is_err(), "shutdown with an undelivered alert is an error");
        assert!(calls.lock().unwrap().len() > PERMANENT_TRIES as usize);
        assert!(!dead.exists() || std::fs::read_to_string(&dead).unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured() {
        let dir = tempfile::tempdir().unwrap();
        let (mut d, calls) = delivery(
            |call, _| (call == 0).then(|| Failure::Transient { reason: "429".into(), retry_after: Some(Duration::from_secs(7)) }),
            &dir.path().join("dead"),
            OnPermanentError::DeadLetter,
        );
        let (_tx, stop) = watch::channel(false);
        let started = tokio::time::Instant::now();
        d.deliver(&[alert(0)], &Metrics::new(), &stop).await.unwrap();
        assert_eq!(calls.lock().unwrap().len(), 2);
        assert!(started.elapsed() >= Duration::from_secs(7), "{:?}", started.elapsed());
    }
}
