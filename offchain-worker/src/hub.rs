//! Broadcast channels: every stage publishes here, dashboards and
//! subscriptions follow.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::broadcast;

/// Messages kept for slow receivers before they lag.
pub const HUB_CAPACITY: usize = 16_384;

/// The channels a client can follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Metric samples as they are stored.
    Dashboard,
    /// Insights as they are stored.
    Insights,
    /// Anomalies of high or critical severity.
    Alerts,
    /// Anchoring status changes of batches.
    Anchors,
}

/// One broadcast: `{type, data, timestamp}` on the wire.
#[derive(Debug, Clone, Serialize)]
pub struct HubMessage {
    /// The channel.
    #[serde(skip)]
    pub channel: Channel,
    /// The wire type (`dashboard_update`, `insights`, `alert`, `anchor`).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The message's place in its channel: the metric sample id, insight
    /// id or anchoring event id. A client that reconnects hands back the
    /// last position it saw to receive what it missed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
    /// The payload.
    pub data: Value,
    /// Wall-clock time of the broadcast, RFC 3339.
    pub timestamp: String,
    /// Whether another node stored it and this node only relays it.
    #[serde(skip)]
    pub relayed: bool,
}

/// The PostgreSQL notification channel on which nodes announce what they
/// stored, so every node sharing the database can broadcast it.
pub const NOTIFY_CHANNEL: &str = "analytics_broadcast";

/// What one node stored: position ranges per channel, inclusive.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Announcement {
    /// The announcing node's [`Hub::origin`].
    pub origin: String,
    /// `(channel, first position, last position)`.
    pub ranges: Vec<(Channel, i64, i64)>,
}

/// The shared broadcast hub.
#[derive(Debug, Clone)]
pub struct Hub {
    sender: broadcast::Sender<Arc<HubMessage>>,
    origin: Arc<str>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    /// A hub with [`HUB_CAPACITY`] slots.
    pub fn new() -> Self {
        let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
        let origin = format!("{}-{nanos}", std::process::id());
        Self { sender: broadcast::channel(HUB_CAPACITY).0, origin: origin.into() }
    }

    /// This node's identity in [`Announcement`]s.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// An announcement of `ranges` from this node.
    pub fn announcement(&self, ranges: Vec<(Channel, i64, i64)>) -> Announcement {
        Announcement { origin: self.origin.to_string(), ranges }
    }

    /// Publishes on a channel; without receivers the message is dropped.
    pub fn publish(&self, channel: Channel, data: Value) {
        self.publish_at(channel, None, data);
    }

    /// Publishes a message with its position in the channel.
    pub fn publish_at(&self, channel: Channel, position: Option<i64>, data: Value) {
        let _ = self.sender.send(Arc::new(Self::message(channel, position, data)));
    }

    /// Publishes what another node stored, marked as relayed so that
    /// node-local reactions (webhooks) happen on the storing node only.
    pub fn publish_relayed(&self, channel: Channel, position: Option<i64>, data: Value) {
        let message =
            HubMessage { relayed: true, ..Self::message(channel, position, data) };
        let _ = self.sender.send(Arc::new(message));
    }

    /// Builds a message as [`Hub::publish_at`] would send it.
    pub fn message(channel: Channel, position: Option<i64>, data: Value) -> HubMessage {
        let kind = match channel {
            Channel::Dashboard => "dashboard_update",
            Channel::Insights => "insights",
            Channel::Alerts => "alert",
            Channel::Anchors => "anchor",
        };
        let timestamp = analytics_primitives::timestamp::format_millis(now_millis());
        HubMessage { channel, kind, position, data, timestamp, relayed: false }
    }

    /// A receiver of every channel; filter by [`HubMessage::channel`].
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<HubMessage>> {
        self.sender.subscribe()
    }
}

fn now_millis() -> i64 {
    let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX)
}
