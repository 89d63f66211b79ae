//! Anchoring: groups waiting insights into Merkle batches, anchors each
//! batch's root with the `InsightAnchor` contract, and marks batches final
//! once they are deep enough.
//!
//! One batch is in flight at a time, because the contract accepts a root
//! only on top of the last one. Every step is recorded in PostgreSQL before
//! the next, so a restart resumes: a batch formed but not known on chain is
//! sent again (the contract refuses a root twice, so this cannot double
//! anchor), and one the chain already holds is recorded from the contract.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::{Filter, TransactionReceipt};
use alloy::sol_types::SolEvent;
use analytics_primitives::insight::BlockStamp;
use analytics_primitives::merkle::MerkleTree;
use anyhow::{bail, Context};
use insight_anchor::InsightAnchor;
use offchain_worker::hub::{Channel, Hub, NOTIFY_CHANNEL};
use offchain_worker::stats::Stats;
use offchain_worker::storage::{to_b256, BatchRow, Inclusion, NewBatch, Store};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::AnchorConfig;

/// Settings and handles of the anchoring manager.
pub struct AnchorManager {
    /// Storage.
    pub store: Store,
    /// A provider that signs with the anchoring key.
    pub provider: DynProvider,
    /// The contract.
    pub contract: Address,
    /// The anchoring account.
    pub anchorer: Address,
    /// Chain id.
    pub chain_id: u64,
    /// Chain heads.
    pub heads: watch::Receiver<Option<BlockStamp>>,
    /// Batching settings.
    pub config: AnchorConfig,
    /// Blocks, the anchoring block included, before a batch is final.
    pub confirmations: u64,
    /// Broadcasts of status changes.
    pub hub: Hub,
    /// Counters.
    pub stats: Arc<Stats>,
}

const RETRY_DELAY: Duration = Duration::from_secs(2);

impl AnchorManager {
    /// Runs until `shutdown` fires.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let tick = Duration::from_millis(self.config.interval_ms.clamp(50, 1000));
        let mut last_batch = Instant::now();
        let mut lock = AnchorLock::default();
        loop {
            let new_block = tokio::select! {
                () = shutdown.cancelled() => break,
                changed = self.heads.changed() => changed.is_ok(),
                () = tokio::time::sleep(tick) => false,
            };
            if !lock.hold(&self.store).await {
                continue;
            }
            match self.step(new_block, &mut last_batch).await {
                Ok(()) => {
                    let failed = self.stats.anchor_failures.swap(0, Ordering::Relaxed);
                    if failed > 0 {
                        info!(target: "chain::anchor", failed, "anchoring works again");
                    }
                }
                Err(err) => {
                    let failed =
                        self.stats.anchor_failures.fetch_add(1, Ordering::Relaxed);
                    let cause = format!("{err:#}");
                    let previous = self
                        .stats
                        .last_anchor_error
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .replace(cause.clone());
                    // A cause that persists (a chain reset, a node down) is
                    // logged once, then at debug level while it lasts; health
                    // reports it all along.
                    if failed > 0 && previous.as_deref() == Some(cause.as_str()) {
                        debug!(target: "chain::anchor", err = %cause, failed, "anchoring step failed again");
                    } else {
                        warn!(target: "chain::anchor", err = %cause, "anchoring step failed; retrying");
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(RETRY_DELAY) => {}
                    }
                }
            }
        }
        debug!(target: "chain::anchor", "anchoring stopped");
    }

    async fn step(
        &mut self,
        new_block: bool,
        last_batch: &mut Instant,
    ) -> anyhow::Result<()> {
        let open = self.store.open_batches(self.contract).await?;
        for batch in &open {
            match batch.status.as_str() {
                "pending" | "submitted" => return self.resume(batch).await,
                "anchored" => self.finalize(batch).await?,
                _ => {}
            }
        }

        let waiting = self.store.unbatched(self.config.max_batch as i64).await?;
        if waiting.is_empty() {
            return Ok(());
        }
        let full = waiting.len() as u64 >= self.config.max_pending;
        let due = last_batch.elapsed() >= Duration::from_millis(self.config.interval_ms);
        if !(full || due || (new_block && self.config.on_new_block)) {
            return Ok(());
        }
        self.ensure_contract().await?;
        *last_batch = Instant::now();
        let batch_id = self.form_batch(&waiting).await?;
        let batch = self.store.batch(batch_id).await?.context("batch vanished")?;
        self.send(&batch).await
    }

    async fn form_batch(&self, waiting: &[(i64, B256)]) -> anyhow::Result<i64> {
        let hashes: Vec<B256> = waiting.iter().map(|(_, h)| *h).collect();
        let ids: Vec<i64> = waiting.iter().map(|(id, _)| *id).collect();
        let tree = MerkleTree::new(&hashes).map_err(|e| anyhow::anyhow!("{e}"))?;
        let prev_root = match self.store.last_batch(self.contract).await? {
            Some(last) => to_b256(&last.root)?,
            None => self.chain_last_root().await?,
        };
        let batch = NewBatch {
            root: tree.root(),
            prev_root,
            insight_ids: &ids,
            contract: self.contract,
            chain_id: self.chain_id,
        };
        let id = self.store.create_batch(batch).await?;
        debug!(target: "chain::anchor", batch = id, leaves = ids.len(), "batch formed");
        Ok(id)
    }

    async fn chain_last_root(&self) -> anyhow::Result<B256> {
        let contract = InsightAnchor::new(self.contract, self.provider.clone());
        contract.lastRoot().call().await.context("reading lastRoot")
    }

    /// Fails when the contract has no code: the chain was reset or is not
    /// the one the contract was deployed on. A transaction to the address
    /// would then be a plain call that anchors nothing, so none is sent.
    async fn ensure_contract(&self) -> anyhow::Result<()> {
        let code = self.provider.get_code_at(self.contract).await;
        if code.context("reading the contract code")?.is_empty() {
            bail!("no contract code at {}: chain reset? not anchoring", self.contract);
        }
        Ok(())
    }

    /// Picks up a batch that was formed but is not known to be anchored.
    async fn resume(&self, batch: &BatchRow) -> anyhow::Result<()> {
        self.ensure_contract().await?;
        let root = to_b256(&batch.root)?;
        let contract = InsightAnchor::new(self.contract, self.provider.clone());
        let record = contract.anchorOf(root).call().await.context("reading anchorOf")?;
        if record.batchId == 0 {
            if self.still_pending(batch).await? {
                return Ok(());
            }
            return self.send(batch).await;
        }
        let block = self
            .provider
            .get_block_by_number(record.blockNumber.into())
            .await?
            .context("anchoring block not found")?;
        let known = batch.tx_hash.as_deref().map(to_b256).transpose()?;
        let tx_hash = match known {
            Some(hash) => hash,
            None => self.find_anchoring_tx(root, record.blockNumber).await?,
        };
        let inclusion = Inclusion {
            tx_hash,
            onchain_batch: record.batchId,
            block_number: record.blockNumber,
            block_hash: block.header.hash,
            block_timestamp: record.timestamp,
        };
        self.record_anchored(batch, inclusion).await
    }

    /// Whether the batch's transaction is still waiting in the mempool, in
    /// which case sending another would only revert.
    async fn still_pending(&self, batch: &BatchRow) -> anyhow::Result<bool> {
        let Some(hash) = batch.tx_hash.as_deref().map(to_b256).transpose()? else {
            return Ok(false);
        };
        let known = self.provider.get_transaction_by_hash(hash).await?;
        Ok(known.is_some_and(|tx| tx.block_number.is_none()))
    }

    /// The transaction that anchored `root` in `block`, from its event.
    async fn find_anchoring_tx(&self, root: B256, block: u64) -> anyhow::Result<B256> {
        let filter = Filter::new()
            .address(self.contract)
            .event_signature(InsightAnchor::Anchored::SIGNATURE_HASH)
            .topic2(root)
            .from_block(block)
            .to_block(block);
        let logs = self.provider.get_logs(&filter).await?;
        let log = logs.first().context("no Anchored event for a recorded root")?;
        log.transaction_hash.context("Anchored event without a transaction hash")
    }

    async fn send(&self, batch: &BatchRow) -> anyhow::Result<()> {
        let root = to_b256(&batch.root)?;
        let prev_root = to_b256(&batch.prev_root)?;
        let leaves = u64::try_from(batch.leaf_count)?;
        let contract = InsightAnchor::new(self.contract, self.provider.clone());
        // The nonce comes from the chain each time: after a reorg the
        // account's count goes back, and a remembered nonce would leave the
        // transaction queued behind a gap forever.
        let nonce = self.provider.get_transaction_count(self.anchorer).pending().await?;
        let pending = contract
            .anchor(root, leaves, prev_root)
            .nonce(nonce)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("anchor({root}) rejected: {e}"))?;
        let tx_hash = *pending.tx_hash();
        self.store.mark_submitted(batch.id, tx_hash).await?;
        self.publish(batch, "submitted", json!({ "txHash": tx_hash })).await;
        let started = Instant::now();

        let timeout = Duration::from_millis(self.config.receipt_timeout_ms);
        let receipt = pending
            .with_timeout(Some(timeout))
            .get_receipt()
            .await
            .context("waiting for the anchoring receipt")?;
        let inclusion = self.inclusion(&receipt, tx_hash).await?;
        let latency_ms = started.elapsed().as_millis() as u64;
        Stats::bump(&self.stats.anchor_latency_count, 1);
        Stats::bump(&self.stats.anchor_latency_ms_sum, latency_ms);
        info!(
            target: "chain::anchor",
            batch = batch.id,
            leaves,
            block = inclusion.block_number,
            gas = receipt.gas_used,
            latency_ms,
            "batch anchored"
        );
        self.record_anchored(batch, inclusion).await
    }

    async fn inclusion(
        &self,
        receipt: &TransactionReceipt,
        tx_hash: B256,
    ) -> anyhow::Result<Inclusion> {
        if !receipt.status() {
            bail!("anchoring transaction {tx_hash} reverted");
        }
        let event = receipt
            .inner
            .logs()
            .iter()
            .find_map(|log| log.log_decode::<InsightAnchor::Anchored>().ok())
            .context("receipt has no Anchored event")?;
        let data = event.inner.data;
        Ok(Inclusion {
            tx_hash,
            onchain_batch: data.batchId,
            block_number: data.blockNumber,
            block_hash: receipt.block_hash.context("receipt without block hash")?,
            block_timestamp: data.timestamp,
        })
    }

    async fn record_anchored(
        &self,
        batch: &BatchRow,
        at: Inclusion,
    ) -> anyhow::Result<()> {
        self.store.mark_anchored(batch.id, at).await?;
        Stats::bump(&self.stats.batches_anchored, 1);
        let details = json!({
            "txHash": at.tx_hash,
            "onchainBatch": at.onchain_batch,
            "blockNumber": at.block_number,
            "blockHash": at.block_hash,
            "blockTimestamp": at.block_timestamp,
        });
        self.publish(batch, "anchored", details).await;
        Ok(())
    }

    /// Watches an anchored batch: back to pending when its block left the
    /// canonical chain (it is then anchored again, same root, same proofs),
    /// final once deep enough.
    async fn finalize(&self, batch: &BatchRow) -> anyhow::Result<()> {
        let Some(head) = *self.heads.borrow() else { return Ok(()) };
        let Some(number) = batch.block_number.and_then(|n| u64::try_from(n).ok()) else {
            return Ok(());
        };
        let block = self.provider.get_block_by_number(number.into()).await?;
        let canonical = block.map(|b| b.header.hash);
        let recorded = batch.block_hash.as_deref().map(to_b256).transpose()?;
        if canonical != recorded {
            warn!(
                target: "chain::anchor",
                batch = batch.id,
                block = number,
                "anchoring block left the canonical chain; anchoring again"
            );
            self.store.mark_reorged(batch.id).await?;
            let details = json!({ "droppedBlock": number, "droppedHash": recorded });
            self.publish(batch, "reorged", details).await;
            return Ok(());
        }
        if head.number + 1 < number + self.confirmations {
            return Ok(());
        }
        self.store.mark_final(batch.id).await?;
        Stats::bump(&self.stats.batches_final, 1);
        let depth = head.number + 1 - number;
        self.publish(batch, "final", json!({ "confirmations": depth })).await;
        Ok(())
    }

    /// Records a status change and broadcasts it with its position.
    async fn publish(&self, batch: &BatchRow, status: &str, details: serde_json::Value) {
        let data = json!({
            "batchId": batch.id,
            "root": format!("0x{}", alloy::hex::encode(&batch.root)),
            "leafCount": batch.leaf_count,
            "status": status,
            "details": details,
        });
        let position = match self.store.insert_anchor_event(batch.id, status, &data).await
        {
            Ok(position) => Some(position),
            Err(err) => {
                warn!(target: "chain::anchor", %err, "status change not recorded for resume");
                None
            }
        };
        self.hub.publish_at(Channel::Anchors, position, data);
        if let Some(position) = position {
            let ranges = vec![(Channel::Anchors, position, position)];
            let payload = serde_json::to_string(&self.hub.announcement(ranges));
            if let Ok(payload) = payload {
                let _ = self.store.notify(NOTIFY_CHANNEL, &payload).await;
            }
        }
    }
}

/// Key of the PostgreSQL advisory lock that elects the one anchoring node.
pub const ANCHOR_LOCK_KEY: i64 = 0x616e_6368_6f72;

/// The anchoring lock: a session-level advisory lock on a connection of its
/// own. When the holder dies its connection closes, PostgreSQL releases
/// the lock, and a standby node takes it on its next attempt.
#[derive(Default)]
struct AnchorLock {
    connection: Option<sqlx::PgConnection>,
    standby_logged: bool,
}

impl AnchorLock {
    /// Whether this node holds the lock, trying to take it when not.
    async fn hold(&mut self, store: &Store) -> bool {
        if let Some(connection) = &mut self.connection {
            if sqlx::query("SELECT 1").execute(&mut *connection).await.is_ok() {
                return true;
            }
            warn!(target: "chain::anchor", "lost the anchoring lock's connection");
            self.connection = None;
        }
        match Self::try_take(store).await {
            Ok(Some(connection)) => {
                info!(target: "chain::anchor", "anchoring lock taken; this node anchors");
                self.connection = Some(connection);
                self.standby_logged = false;
                true
            }
            Ok(None) => {
                if !self.standby_logged {
                    info!(target: "chain::anchor", "another node anchors; standing by");
                    self.standby_logged = true;
                }
                false
            }
            Err(err) => {
                warn!(target: "chain::anchor", %err, "cannot try the anchoring lock");
                false
            }
        }
    }

    async fn try_take(store: &Store) -> Result<Option<sqlx::PgConnection>, sqlx::Error> {
        let mut connection = store.pool().acquire().await?.detach();
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(ANCHOR_LOCK_KEY)
            .fetch_one(&mut connection)
            .await?;
        Ok(taken.then_some(connection))
    }
}
