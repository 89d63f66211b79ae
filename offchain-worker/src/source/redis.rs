//! Redis pub/sub source.
//!
//! Pub/sub delivers a message only to the subscribers connected when it is
//! published: whatever is published while the worker is disconnected is
//! lost. The source reconnects with capped exponential backoff, subscribes
//! again to every channel, and counts reconnects in [`Stats`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use analytics_primitives::event::StreamKind;
use futures::StreamExt;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::envelope::Envelope;
use crate::stats::Stats;

/// The source kind recorded on events.
pub const SOURCE: &str = "redis";

const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(5);

/// Subscribes to Redis channels and forwards their messages.
#[derive(Debug, Clone)]
pub struct RedisSource {
    url: String,
    channels: BTreeMap<String, StreamKind>,
    stats: Arc<Stats>,
}

/// How one subscription ended.
enum Ended {
    Shutdown,
    Lost(String),
}

impl RedisSource {
    /// A source for `channels` (name to the kind of event it carries).
    pub fn new(
        url: &str,
        channels: BTreeMap<String, StreamKind>,
        stats: Arc<Stats>,
    ) -> Self {
        Self { url: url.to_owned(), channels, stats }
    }

    /// Runs until `shutdown` fires or the pipeline goes away.
    pub async fn run(self, output: mpsc::Sender<Envelope>, shutdown: CancellationToken) {
        let mut delay = FIRST_DELAY;
        let mut subscribed_before = false;
        loop {
            match self
                .subscribe_once(&output, &shutdown, &mut delay, &mut subscribed_before)
                .await
            {
                Ended::Shutdown => break,
                Ended::Lost(cause) => {
                    self.stats.redis_up.store(0, std::sync::atomic::Ordering::Relaxed);
                    warn!(target: "worker::redis", %cause, retry_ms = delay.as_millis() as u64, "subscription lost");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(MAX_DELAY);
        }
        self.stats.redis_up.store(0, std::sync::atomic::Ordering::Relaxed);
    }

    async fn subscribe_once(
        &self,
        output: &mpsc::Sender<Envelope>,
        shutdown: &CancellationToken,
        delay: &mut Duration,
        subscribed_before: &mut bool,
    ) -> Ended {
        let client = match redis::Client::open(self.url.as_str()) {
            Ok(client) => client,
            Err(err) => return Ended::Lost(err.to_string()),
        };
        let mut pubsub = match client.get_async_pubsub().await {
            Ok(pubsub) => pubsub,
            Err(err) => return Ended::Lost(err.to_string()),
        };
        let names: Vec<&str> = self.channels.keys().map(String::as_str).collect();
        if let Err(err) = pubsub.subscribe(&names).await {
            return Ended::Lost(err.to_string());
        }

        if *subscribed_before {
            Stats::bump(&self.stats.redis_reconnects, 1);
        }
        *subscribed_before = true;
        self.stats.redis_up.store(1, std::sync::atomic::Ordering::Relaxed);
        *delay = FIRST_DELAY;
        info!(target: "worker::redis", channels = ?names, "subscribed");

        let mut messages = pubsub.on_message();
        loop {
            let message = tokio::select! {
                () = shutdown.cancelled() => return Ended::Shutdown,
                message = messages.next() => message,
            };
            let Some(message) = message else {
                return Ended::Lost("connection closed".into());
            };
            let channel = message.get_channel_name().to_owned();
            let Some(kind) = self.channels.get(&channel).copied() else { continue };
            let envelope = Envelope {
                source: SOURCE,
                stream: channel,
                kind,
                partition: 0,
                offset: None,
                received_at: OffsetDateTime::now_utc(),
                payload: message.get_payload_bytes().to_vec(),
                ack: None,
            };
            if output.send(envelope).await.is_err() {
                return Ended::Shutdown;
            }
        }
    }
}
