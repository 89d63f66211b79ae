//! Critical-anomaly response: HTTP webhooks called off the pipeline's path.
//!
//! A watcher follows the hub's `alerts` channel (which the pipeline and
//! the relay publish after the PostgreSQL commit) and hands each anomaly
//! of a configured severity to every target's bounded queue without
//! waiting: a full queue drops the notification, counts it and logs a
//! warning. One task per target POSTs the notifications in order, each
//! with a timeout and a capped exponential backoff between attempts, and
//! logs one line per outcome. Ingestion never waits for a webhook.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use analytics_primitives::insight::Severity;
use offchain_worker::hub::{Channel, HubMessage};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::ConfigError;

/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The `[webhooks]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Notifications waiting per target; beyond, new ones are dropped and
    /// counted. Default 256.
    pub queue_capacity: usize,
    /// The targets (`[[webhooks.targets]]`); none by default.
    pub targets: Vec<WebhookTarget>,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self { queue_capacity: 256, targets: Vec::new() }
    }
}

/// One webhook target.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookTarget {
    /// `http` or `https` URL that receives a JSON POST per anomaly.
    pub url: String,
    /// Time allowed for one attempt, connecting included. Milliseconds;
    /// default 2000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Further attempts after a failed one (an error, a timeout or a status
    /// other than 2xx). Default 3.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Wait before the first retry, doubled at each further one up to
    /// 10 s. Milliseconds; default 500.
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    /// Anomaly severities that call this target. Default `["critical"]`.
    #[serde(default = "default_severities")]
    pub severities: Vec<Severity>,
}

fn default_timeout_ms() -> u64 {
    2_000
}

fn default_retries() -> u32 {
    3
}

fn default_backoff_ms() -> u64 {
    500
}

fn default_severities() -> Vec<Severity> {
    vec![Severity::Critical]
}

impl WebhooksConfig {
    /// Checks every target.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.queue_capacity == 0 {
            let reason = "must be greater than 0";
            return Err(ConfigError::new("webhooks.queue_capacity", reason));
        }
        for (i, target) in self.targets.iter().enumerate() {
            let field = |name: &str| format!("webhooks.targets[{i}].{name}");
            let scheme = url::Url::parse(&target.url).map(|u| u.scheme().to_owned());
            if !matches!(scheme.as_deref(), Ok("http" | "https")) {
                return Err(ConfigError::new(field("url"), "expected an http(s) URL"));
            }
            if target.timeout_ms == 0 {
                return Err(ConfigError::new(
                    field("timeout_ms"),
                    "must be greater than 0",
                ));
            }
            if target.severities.is_empty() {
                return Err(ConfigError::new(field("severities"), "must not be empty"));
            }
        }
        Ok(())
    }
}

/// Counters of the webhooks.
#[derive(Debug, Default)]
pub struct WebhookStats {
    /// Notifications delivered.
    pub delivered: AtomicU64,
    /// Notifications given up after every attempt failed.
    pub failed: AtomicU64,
    /// Notifications dropped because a target's queue was full.
    pub dropped: AtomicU64,
}

/// Spawns the watcher and one sender per target on `tasks`; nothing when
/// no target is configured.
pub fn spawn(
    config: &WebhooksConfig,
    alerts: broadcast::Receiver<Arc<HubMessage>>,
    tasks: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Arc<WebhookStats>> {
    let stats = Arc::new(WebhookStats::default());
    if config.targets.is_empty() {
        return Ok(stats);
    }
    let client = reqwest::Client::builder().build()?;
    let mut queues = Vec::new();
    for target in &config.targets {
        let (sender, receiver) = mpsc::channel(config.queue_capacity);
        queues.push((target.severities.clone(), sender));
        let sender = Sender {
            target: target.clone(),
            client: client.clone(),
            stats: stats.clone(),
        };
        tasks.spawn(sender.run(receiver, shutdown.clone()));
    }
    let watcher = Watcher { queues, stats: stats.clone() };
    tasks.spawn(watcher.run(alerts, shutdown.clone()));
    info!(target: "webhooks", targets = config.targets.len(), "webhooks ready");
    Ok(stats)
}

/// An anomaly to notify: the body of the POST.
#[derive(Debug, Clone)]
struct Notification {
    insight: i64,
    severity: Severity,
    body: Value,
}

/// Follows the alerts and fills the targets' queues.
struct Watcher {
    queues: Vec<(Vec<Severity>, mpsc::Sender<Notification>)>,
    stats: Arc<WebhookStats>,
}

impl Watcher {
    async fn run(
        self,
        mut alerts: broadcast::Receiver<Arc<HubMessage>>,
        shutdown: CancellationToken,
    ) {
        loop {
            let message = tokio::select! {
                () = shutdown.cancelled() => return,
                message = alerts.recv() => message,
            };
            match message {
                Ok(message) => self.offer(&message),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    let dropped = self.stats.dropped.fetch_add(missed, Ordering::Relaxed);
                    warn!(target: "webhooks", missed, dropped_total = dropped + missed, "alerts missed while lagging");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    fn offer(&self, message: &HubMessage) {
        let Some(notification) = notification(message) else { return };
        for (severities, queue) in &self.queues {
            if !severities.contains(&notification.severity) {
                continue;
            }
            if queue.try_send(notification.clone()).is_err() {
                let dropped = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                warn!(target: "webhooks", insight = notification.insight, dropped_total = dropped, "webhook queue full; notification dropped");
            }
        }
    }
}

/// The notification of an anomaly alert; `None` for anything else.
fn notification(message: &HubMessage) -> Option<Notification> {
    // An alert relayed from another node was that node's to report.
    if message.relayed
        || message.channel != Channel::Alerts
        || message.data["kind"] != "anomaly"
    {
        return None;
    }
    let severity: Severity =
        serde_json::from_value(message.data["severity"].clone()).ok()?;
    let insight = message.position.or_else(|| message.data["id"].as_i64())?;
    let body = json!({
        "type": "critical_anomaly",
        "actions": ["scale_up", "emergency_notification"],
        "insight": message.data,
    });
    Some(Notification { insight, severity, body })
}

/// Delivers one target's notifications in order.
struct Sender {
    target: WebhookTarget,
    client: reqwest::Client,
    stats: Arc<WebhookStats>,
}

impl Sender {
    async fn run(
        self,
        mut queue: mpsc::Receiver<Notification>,
        shutdown: CancellationToken,
    ) {
        loop {
            let notification = tokio::select! {
                () = shutdown.cancelled() => return,
                next = queue.recv() => match next {
                    Some(notification) => notification,
                    None => return,
                },
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.deliver(&notification) => {}
            }
        }
    }

    async fn deliver(&self, notification: &Notification) {
        let url = self.target.url.as_str();
        let attempts = self.target.retries.saturating_add(1);
        let mut backoff = Duration::from_millis(self.target.backoff_ms);
        for attempt in 1..=attempts {
            match self.attempt(&notification.body).await {
                Ok(status) => {
                    self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                    info!(target: "webhooks", url, insight = notification.insight, attempt, status, "webhook delivered");
                    return;
                }
                Err(reason) if attempt < attempts => {
                    debug!(target: "webhooks", url, insight = notification.insight, attempt, %reason, "webhook attempt failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(reason) => {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    error!(target: "webhooks", url, insight = notification.insight, attempts, %reason, "webhook failed; notification lost");
                }
            }
        }
    }

    /// One POST; the status on success.
    async fn attempt(&self, body: &Value) -> Result<u16, String> {
        let request = self
            .client
            .post(&self.target.url)
            .timeout(Duration::from_millis(self.target.timeout_ms))
            .json(body);
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        if status.is_success() {
            Ok(status.as_u16())
        } else {
            Err(format!("status {status}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use offchain_worker::hub::Hub;

    use super::*;

    #[test]
    fn only_anomaly_alerts_become_notifications() {
        // (channel, data, severity notified)
        let cases = [
            (
                Channel::Alerts,
                json!({"kind": "anomaly", "severity": "critical"}),
                Some(Severity::Critical),
            ),
            (
                Channel::Alerts,
                json!({"kind": "anomaly", "severity": "high"}),
                Some(Severity::High),
            ),
            (Channel::Alerts, json!({"kind": "business", "severity": "high"}), None),
            (Channel::Insights, json!({"kind": "anomaly", "severity": "critical"}), None),
            (Channel::Alerts, json!({"kind": "anomaly", "severity": "dire"}), None),
        ];
        for (channel, data, expected) in cases {
            let message = Hub::message(channel, Some(7), data.clone());
            let got = notification(&message).map(|n| (n.insight, n.severity));
            assert_eq!(got, expected.map(|s| (7, s)), "{channel:?} {data}");
        }
    }

    #[test]
    fn alerts_relayed_from_other_nodes_are_not_notified() {
        let data = json!({"kind": "anomaly", "severity": "critical"});
        let local = Hub::message(Channel::Alerts, Some(7), data.clone());
        assert!(notification(&local).is_some());
        let relayed = HubMessage { relayed: true, ..local };
        assert!(notification(&relayed).is_none());
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let (sender, mut queue) = mpsc::channel(2);
        let stats = Arc::new(WebhookStats::default());
        let watcher = Watcher { queues: vec![(vec![Severity::Critical], sender)], stats };
        // (position, severity): the third critical one finds the queue full.
        let alerts = [(1, "critical"), (2, "high"), (3, "critical"), (4, "critical")];
        for (position, severity) in alerts {
            let data = json!({"kind": "anomaly", "severity": severity});
            watcher.offer(&Hub::message(Channel::Alerts, Some(position), data));
        }
        assert_eq!(watcher.stats.dropped.load(Ordering::Relaxed), 1);
        let queued: Vec<i64> =
            std::iter::from_fn(|| queue.try_recv().ok()).map(|n| n.insight).collect();
        assert_eq!(queued, [1, 3]);
    }

    #[test]
    fn bad_targets_name_the_field() {
        let target = |url: &str| WebhookTarget {
            url: url.into(),
            timeout_ms: 1,
            retries: 0,
            backoff_ms: 0,
            severities: vec![Severity::Critical],
        };
        // (config, field)
        let cases = [
            (
                WebhooksConfig { queue_capacity: 0, targets: vec![] },
                "webhooks.queue_capacity",
            ),
            (
                WebhooksConfig { queue_capacity: 1, targets: vec![target("ftp://x")] },
                "webhooks.targets[0].url",
            ),
            (
                WebhooksConfig {
                    queue_capacity: 1,
                    targets: vec![WebhookTarget { timeout_ms: 0, ..target("http://a") }],
                },
                "webhooks.targets[0].timeout_ms",
            ),
            (
                WebhooksConfig {
                    queue_capacity: 1,
                    targets: vec![WebhookTarget {
                        severities: vec![],
                        ..target("http://a")
                    }],
                },
                "webhooks.targets[0].severities",
            ),
        ];
        for (config, field) in cases {
            assert_eq!(config.validate().unwrap_err().field, field);
        }
        assert!(WebhooksConfig::default().validate().is_ok());
    }
}
