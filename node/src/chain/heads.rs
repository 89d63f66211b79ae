//! Follows the chain head: a new-heads subscription over WebSocket, polling
//! over HTTP when the subscription is unavailable or drops.

use std::time::Duration;

use alloy::eips::BlockNumberOrTag;
use alloy::providers::{DynProvider, Provider, ProviderBuilder, WsConnect};
use analytics_primitives::insight::BlockStamp;
use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Follows new heads and publishes each one on a watch channel.
pub struct HeadFollower {
    http: DynProvider,
    ws_url: String,
    poll_interval: Duration,
    sender: watch::Sender<Option<BlockStamp>>,
}

/// How many polls a subscription failure is followed by before trying to
/// subscribe again.
const POLLS_BEFORE_RESUBSCRIBE: u32 = 30;

impl HeadFollower {
    /// A follower and the receiver of its heads.
    pub fn new(
        http: DynProvider,
        ws_url: String,
        poll_interval: Duration,
    ) -> (Self, watch::Receiver<Option<BlockStamp>>) {
        let (sender, receiver) = watch::channel(None);
        (Self { http, ws_url, poll_interval, sender }, receiver)
    }

    /// Reads the current head once.
    pub async fn latest(provider: &DynProvider) -> anyhow::Result<BlockStamp> {
        let block = provider
            .get_block_by_number(BlockNumberOrTag::Latest)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the chain has no latest block"))?;
        Ok(stamp(&block.header))
    }

    /// Runs until `shutdown` fires.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            if let Err(err) = self.follow_subscription(&shutdown).await {
                debug!(target: "chain::heads", %err, "no head subscription; polling");
            }
            if shutdown.is_cancelled() {
                return;
            }
            for _ in 0..POLLS_BEFORE_RESUBSCRIBE {
                self.poll_once().await;
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(self.poll_interval) => {}
                }
            }
        }
    }

    async fn follow_subscription(
        &self,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let ws = ProviderBuilder::new().connect_ws(WsConnect::new(&self.ws_url)).await?;
        let mut heads = ws.subscribe_blocks().await?.into_stream();
        info!(target: "chain::heads", url = %self.ws_url, "following new heads");
        self.poll_once().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                head = heads.next() => match head {
                    Some(header) => self.publish(stamp(&header)),
                    None => anyhow::bail!("head subscription ended"),
                },
            }
        }
    }

    async fn poll_once(&self) {
        match Self::latest(&self.http).await {
            Ok(head) => self.publish(head),
            Err(err) => warn!(target: "chain::heads", %err, "cannot read the chain head"),
        }
    }

    /// Publishes every head with a new hash: the next block, a reorg, or a
    /// chain that started over (reported, since nothing anchored before
    /// survives it).
    fn publish(&self, head: BlockStamp) {
        self.sender.send_if_modified(|current| {
            let changed = current.is_none_or(|c| c.hash != head.hash);
            if let Some(previous) = current.filter(|c| head.number + 1 < c.number) {
                warn!(
                    target: "chain::heads",
                    from = previous.number,
                    to = head.number,
                    "chain head went back; reorg or chain reset"
                );
            }
            if changed {
                *current = Some(head);
            }
            changed
        });
    }
}

fn stamp(header: &alloy::rpc::types::Header) -> BlockStamp {
    BlockStamp { number: header.number, hash: header.hash, timestamp: header.timestamp }
}
