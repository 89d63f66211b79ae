//! Broadcasts across nodes. Every node that stores something announces the
//! new positions with a PostgreSQL notification ([`NOTIFY_CHANNEL`]); every
//! node listens, fetches what other nodes stored from the shared database
//! and broadcasts it to its own clients, with the same positions. Nodes
//! therefore serve the same streams whichever node ingested the events.
//!
//! Notifications are not stored: what is announced while a node's listener
//! is reconnecting is not relayed live, but clients that resume from their
//! last position still receive it from the database.

use std::time::Duration;

use offchain_worker::hub::{Announcement, Channel, Hub, NOTIFY_CHANNEL};
use offchain_worker::messages::stored_after;
use offchain_worker::storage::Store;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Most positions fetched for one announced range.
const MAX_RANGE: i64 = 10_000;
const RETRY: Duration = Duration::from_secs(1);

/// Relays other nodes' announcements to the local hub until `shutdown`.
pub async fn run(store: Store, hub: Hub, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        if let Err(err) = listen(&store, &hub, &shutdown).await {
            warn!(target: "relay", %err, "notification listener lost; reconnecting");
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(RETRY) => {}
            }
        }
    }
}

async fn listen(
    store: &Store,
    hub: &Hub,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let mut listener = PgListener::connect_with(store.pool()).await?;
    listener.listen(NOTIFY_CHANNEL).await?;
    info!(target: "relay", "following other nodes' broadcasts");
    loop {
        let notification = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            notification = listener.try_recv() => notification?,
        };
        let Some(notification) = notification else {
            anyhow::bail!("connection closed");
        };
        let announcement: Announcement =
            match serde_json::from_str(notification.payload()) {
                Ok(announcement) => announcement,
                Err(err) => {
                    warn!(target: "relay", %err, "unreadable announcement ignored");
                    continue;
                }
            };
        if announcement.origin != hub.origin() {
            relay(store, hub, &announcement).await?;
        }
    }
}

async fn relay(
    store: &Store,
    hub: &Hub,
    announcement: &Announcement,
) -> anyhow::Result<()> {
    for &(channel, first, last) in &announcement.ranges {
        let count = (last - first + 1).clamp(0, MAX_RANGE);
        let messages = stored_after(store, channel, first - 1, count).await?;
        debug!(target: "relay", ?channel, count = messages.len(), "relaying");
        for message in messages {
            let alert = channel == Channel::Insights && is_alert(&message.data);
            if alert {
                hub.publish_relayed(
                    Channel::Alerts,
                    message.position,
                    message.data.clone(),
                );
            }
            hub.publish_relayed(channel, message.position, message.data);
        }
    }
    Ok(())
}

fn is_alert(data: &serde_json::Value) -> bool {
    matches!(data["severity"].as_str(), Some("high" | "critical"))
}
