//! Anchoring: groups waiting insights into Merkle batches, anchors each
//! batch's root with the `InsightAnchor` contract through a persistent
//! transaction manager, and marks batches final once they are deep enough.
//!
//! One batch is in flight at a time, because the contract accepts a root
//! only on top of the last one. Every anchoring transaction is built and
//! signed here, recorded in `anchor_txs` before it is broadcast, and then
//! followed block by block:
//!
//! - a transaction not included after `anchor.stuck_after_blocks` blocks is
//!   replaced by a copy with the same nonce and both EIP-1559 fees raised by
//!   `anchor.fee_bump_percent` (never beyond `anchor.max_fee_per_gas_gwei`);
//! - whichever copy the chain includes anchors the batch, the others become
//!   `replaced`;
//! - a nonce taken by a transaction the node does not know, or a revert,
//!   fails the copies and the batch gets a fresh transaction;
//! - an anchoring block that leaves the canonical chain sends the batch
//!   back to `pending`, and it is anchored again with the same root.
//!
//! A restart resumes from the database: recorded transactions are followed
//! (and sent again, byte for byte, if the pool lost them); a batch the chain
//! already holds is recorded from the contract. The contract refuses a root
//! twice, so nothing is ever anchored twice.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::eips::{BlockNumberOrTag, Encodable2718};
use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address, B256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::{Filter, TransactionReceipt, TransactionRequest};
use alloy::sol_types::SolEvent;
use alloy::transports::RpcError;
use analytics_primitives::insight::BlockStamp;
use analytics_primitives::manifest::{
    DeadLetterDigest, Manifest, MAX_DEAD_LETTERS_PER_BATCH,
};
use analytics_primitives::merkle::MerkleTree;
use anyhow::{bail, Context};
use insight_anchor::InsightAnchor;
use offchain_worker::anchor_txs::{AnchorTxRow, NewAnchorTx};
use offchain_worker::hub::{Channel, Hub, NOTIFY_CHANNEL};
use offchain_worker::stats::Stats;
use offchain_worker::storage::{to_b256, BatchRow, Inclusion, NewBatch, Store};
use serde_json::json;
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::{AnchorConfig, Finality};

/// Settings and handles of the anchoring manager.
pub struct AnchorManager {
    /// Storage.
    pub store: Store,
    /// A provider on the chain (reads, and broadcasts of signed bytes).
    pub provider: DynProvider,
    /// The wallet that signs anchoring transactions.
    pub wallet: EthereumWallet,
    /// The contract.
    pub contract: Address,
    /// The anchoring account.
    pub anchorer: Address,
    /// Chain id.
    pub chain_id: u64,
    /// Chain heads.
    pub heads: watch::Receiver<Option<BlockStamp>>,
    /// Batching and fee settings.
    pub config: AnchorConfig,
    /// Blocks, the anchoring block included, before a batch is final.
    pub confirmations: u64,
    /// Whether depth or the chain's `finalized` block makes a batch final.
    pub finality: Finality,
    /// Broadcasts of status changes.
    pub hub: Hub,
    /// Counters.
    pub stats: Arc<Stats>,
}

const RETRY_DELAY: Duration = Duration::from_secs(2);

const WEI_PER_GWEI: u128 = 1_000_000_000;

impl AnchorManager {
    /// Runs until `shutdown` fires.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let tick = Duration::from_millis(self.config.interval_ms.clamp(50, 1000));
        let mut last_batch = Instant::now();
        let mut announced = None;
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
            match self.step(new_block, &mut last_batch, &mut announced).await {
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

    /// One round of anchoring. `announced` is the last submitted batch
    /// whose `submitted` status change is known to be recorded.
    async fn step(
        &mut self,
        new_block: bool,
        last_batch: &mut Instant,
        announced: &mut Option<i64>,
    ) -> anyhow::Result<()> {
        let open = self.store.open_batches(self.contract).await?;
        for batch in &open {
            match batch.status.as_str() {
                "pending" => return self.start(batch).await,
                "submitted" => {
                    if *announced != Some(batch.id) {
                        self.announce_submission(batch).await?;
                        *announced = Some(batch.id);
                    }
                    return self.track(batch).await;
                }
                "anchored" => self.finalize(batch).await?,
                _ => {}
            }
        }

        let waiting = self.store.unbatched(self.config.max_batch as i64).await?;
        let full = waiting.len() as u64 >= self.config.max_pending;
        let due = last_batch.elapsed() >= Duration::from_millis(self.config.interval_ms);
        let wanted = full || due || (new_block && self.config.on_new_block);
        if !wanted {
            return Ok(());
        }
        // Dead letters alone make a batch too, once the interval is over,
        // so rejected input is committed even when nothing else arrives.
        if waiting.is_empty() {
            let letters_waiting = !self.store.unbatched_dead_letters(1).await?.is_empty();
            if !(due && letters_waiting) {
                return Ok(());
            }
        }
        self.ensure_contract().await?;
        *last_batch = Instant::now();
        let batch_id = self.form_batch(&waiting).await?;
        let batch = self.store.batch(batch_id).await?.context("batch vanished")?;
        self.start(&batch).await
    }

    /// Forms the next batch: the waiting insights in id order, then the
    /// manifest accounting for the dead letters not yet in any batch.
    async fn form_batch(&self, waiting: &[(i64, B256)]) -> anyhow::Result<i64> {
        let mut hashes: Vec<B256> = waiting.iter().map(|(_, h)| *h).collect();
        let ids: Vec<i64> = waiting.iter().map(|(id, _)| *id).collect();
        let prev_root = match self.store.last_batch(self.contract).await? {
            Some(last) => to_b256(&last.root)?,
            None => self.chain_last_root().await?,
        };
        let letters =
            self.store.unbatched_dead_letters(MAX_DEAD_LETTERS_PER_BATCH).await?;
        let manifest = Manifest {
            prev_root,
            insights: ids.len() as u64,
            dead_letters: DeadLetterDigest::of(&letters)?,
        };
        let (text, manifest_hash) = manifest.canonical()?;
        hashes.push(manifest_hash);
        let tree = MerkleTree::new(&hashes).map_err(|e| anyhow::anyhow!("{e}"))?;
        let letter_ids: Vec<i64> = letters.iter().map(|l| l.id).collect();
        let batch = NewBatch {
            root: tree.root(),
            prev_root,
            insight_ids: &ids,
            manifest: (text, manifest_hash),
            dead_letter_ids: &letter_ids,
            contract: self.contract,
            chain_id: self.chain_id,
        };
        let id = self.store.create_batch(batch).await?;
        debug!(
            target: "chain::anchor",
            batch = id,
            insights = ids.len(),
            dead_letters = letter_ids.len(),
            "batch formed"
        );
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

    /// A pending batch: recorded from the contract if the chain already
    /// holds its root, otherwise given a new transaction.
    async fn start(&self, batch: &BatchRow) -> anyhow::Result<()> {
        self.ensure_contract().await?;
        self.ensure_history(batch).await?;
        if let Some(inclusion) = self.on_chain(batch).await? {
            return self.record_anchored(batch, inclusion).await;
        }
        let request = self.anchor_request(batch)?;
        let latest = self
            .provider
            .get_block_by_number(BlockNumberOrTag::Latest)
            .await?
            .context("no latest block")?;
        let base_fee = u128::from(latest.header.base_fee_per_gas.unwrap_or_default());
        if base_fee > self.fee_ceiling() {
            // Nothing under the ceiling could be included: wait, visibly.
            bail!(
                "the base fee ({} gwei) is above anchor.max_fee_per_gas_gwei = {}; waiting",
                gwei_text(base_fee),
                self.config.max_fee_per_gas_gwei
            );
        }
        let nonce = self.provider.get_transaction_count(self.anchorer).pending().await?;
        let estimate = self.provider.estimate_eip1559_fees().await?;
        let (mut max_fee, mut tip) =
            (estimate.max_fee_per_gas, estimate.max_priority_fee_per_gas);
        // Copies of this nonce that reached a pool and failed may still sit
        // in one: they are outbid, so the new copy is a valid replacement.
        // Copies the node refused, or that were reorged out, are not.
        let percent = u128::from(self.config.fee_bump_percent);
        for earlier in self.store.anchor_txs(batch.id).await? {
            let pooled = earlier.sent_at_block.is_some() && earlier.state != "reorged";
            if pooled && earlier.nonce() == nonce && earlier.sender()? == self.anchorer {
                let (fee, earlier_tip) = earlier.fees()?;
                max_fee = max_fee.max(bump(fee, percent));
                tip = tip.max(bump(earlier_tip, percent));
            }
        }
        max_fee = max_fee.min(self.fee_ceiling());
        tip = tip.min(max_fee);
        // Estimating also runs the call: a root the contract would refuse
        // (wrong previous root, say) fails here with the contract's reason.
        let gas = self.provider.estimate_gas(request.clone()).await.map_err(|e| {
            anyhow::anyhow!("anchor() of batch {} would fail: {e}", batch.id)
        })?;
        let gas_limit = gas + gas / 5;
        let tx = self.sign(request, nonce, max_fee, tip, gas_limit).await?;
        if self.store.anchor_tx_live(tx.hash).await? {
            bail!(
                "anchoring transaction {} of batch {} is already live",
                tx.hash,
                batch.id
            );
        }
        let id = self.store.record_anchor_tx(tx.record(batch.id, self.anchorer)).await?;
        if let Sent::FeeTooLow(reason) = self.broadcast(id, &tx.raw, tx.hash).await? {
            self.store.mark_tx_failed(id, &reason).await?;
            bail!("the node refused the anchoring transaction's fees: {reason}");
        }
        let details = submission(tx.hash, nonce, max_fee, tip);
        self.publish(batch, "submitted", details).await;
        Ok(())
    }

    /// Records and broadcasts the `submitted` status change of a batch when
    /// it is missing: a node stopped between recording its transaction and
    /// announcing it leaves the batch submitted but unannounced.
    async fn announce_submission(&self, batch: &BatchRow) -> anyhow::Result<()> {
        if self.store.has_anchor_event(batch.id, "submitted").await? {
            return Ok(());
        }
        let txs = self.store.live_anchor_txs(batch.id).await?;
        let Some(newest) = txs.last() else {
            return Ok(());
        };
        let (max_fee, tip) = newest.fees()?;
        let details = submission(newest.hash()?, newest.nonce(), max_fee, tip);
        self.publish(batch, "submitted", details).await;
        Ok(())
    }

    /// A submitted batch: looks for a receipt of any of its transactions,
    /// sends again what the pool lost, and replaces a stuck transaction.
    async fn track(&self, batch: &BatchRow) -> anyhow::Result<()> {
        self.ensure_contract().await?;
        self.ensure_history(batch).await?;
        let txs = self.store.live_anchor_txs(batch.id).await?;
        let Some(newest) = txs.last() else {
            // Submitted without a transaction the node can follow.
            if let Some(inclusion) = self.on_chain(batch).await? {
                return self.record_anchored(batch, inclusion).await;
            }
            self.store.fail_anchor_txs(batch.id, "no transaction to follow").await?;
            return Ok(());
        };

        for tx in txs.iter().filter(|tx| tx.state != "unsent") {
            let hash = tx.hash()?;
            let Some(receipt) = self.provider.get_transaction_receipt(hash).await? else {
                continue;
            };
            if !receipt.status() {
                let reason = format!("anchoring transaction {hash} reverted");
                self.store.fail_anchor_txs(batch.id, &reason).await?;
                self.publish(
                    batch,
                    "failed",
                    json!({ "txHash": hash, "reason": reason }),
                )
                .await;
                bail!(reason);
            }
            let inclusion = self.inclusion(&receipt, hash).await?;
            let first = txs.first().map_or(tx.created_at, |t| t.created_at);
            let waited = OffsetDateTime::now_utc() - first;
            let latency_ms = u64::try_from(waited.whole_milliseconds()).unwrap_or(0);
            Stats::bump(&self.stats.anchor_latency_count, 1);
            Stats::bump(&self.stats.anchor_latency_ms_sum, latency_ms);
            info!(
                target: "chain::anchor",
                batch = batch.id,
                leaves = batch.leaf_count,
                block = inclusion.block_number,
                gas = receipt.gas_used,
                copies = txs.len(),
                latency_ms,
                "batch anchored"
            );
            return self.record_anchored(batch, inclusion).await;
        }

        for tx in txs.iter().filter(|tx| tx.state == "unsent") {
            if let Sent::FeeTooLow(reason) =
                self.broadcast(tx.id, &tx.raw, tx.hash()?).await?
            {
                self.store.mark_tx_failed(tx.id, &reason).await?;
                bail!("the node refused a recorded anchoring transaction: {reason}");
            }
        }

        // The nonce went to a transaction the node does not know (or one of
        // its copies was included since the receipts were read).
        let nonce = newest.nonce();
        let sender = newest.sender()?;
        let mined = self.provider.get_transaction_count(sender).latest().await?;
        if mined > nonce {
            if let Some(inclusion) = self.on_chain(batch).await? {
                return self.record_anchored(batch, inclusion).await;
            }
            let reason = format!("nonce {nonce} was used by another transaction");
            warn!(target: "chain::anchor", batch = batch.id, %reason, "sending a new anchoring transaction");
            self.store.fail_anchor_txs(batch.id, &reason).await?;
            self.publish(batch, "failed", json!({ "reason": reason })).await;
            return Ok(());
        }

        // A nonce beyond the account's next one waits behind a gap that
        // nothing will fill (the chain lost the transactions before it).
        let next = self.provider.get_transaction_count(sender).pending().await?;
        if nonce > next {
            let reason =
                format!("nonce {nonce} is past the account's next nonce {next}; the chain lost earlier transactions");
            warn!(target: "chain::anchor", batch = batch.id, %reason, "sending a new anchoring transaction");
            self.store.fail_anchor_txs(batch.id, &reason).await?;
            self.publish(batch, "failed", json!({ "reason": reason })).await;
            return Ok(());
        }

        // A pool that lost the transaction (restarted, or evicted it) gets
        // the same bytes again; one that evicted it because the base fee
        // rose past its fee cap refuses them, which makes it stuck now.
        let head = self.head_number().await?;
        let sent = newest.sent_at_block.and_then(|n| u64::try_from(n).ok());
        let waited = sent.map_or(0, |sent| head.saturating_sub(sent));
        let hash = newest.hash()?;
        if newest.state == "broadcast"
            && self.provider.get_transaction_by_hash(hash).await?.is_none()
        {
            debug!(target: "chain::anchor", %hash, "the pool lost the anchoring transaction; sending it again");
            if let Sent::FeeTooLow(reason) =
                self.broadcast(newest.id, &newest.raw, hash).await?
            {
                debug!(target: "chain::anchor", %hash, %reason, "the pool refuses its fees");
                return self.replace(batch, newest, waited).await;
            }
        }
        if sent.is_some() && waited >= self.config.stuck_after_blocks {
            self.replace(batch, newest, waited).await?;
        }
        Ok(())
    }

    /// Sends a copy of a stuck transaction with the same nonce and both
    /// fees raised, within the ceiling.
    async fn replace(
        &self,
        batch: &BatchRow,
        stuck: &AnchorTxRow,
        waited: u64,
    ) -> anyhow::Result<()> {
        let sender = stuck.sender()?;
        if sender != self.anchorer {
            // Sent by the node that anchored before this one, with a key
            // this node does not hold: it cannot be replaced, so this node
            // sends its own instead (the contract takes the root once).
            let reason = format!("sent by another anchorer, {sender}, and stuck");
            self.store.fail_anchor_txs(batch.id, &reason).await?;
            let details = json!({ "txHash": stuck.hash()?, "reason": reason });
            self.publish(batch, "failed", details).await;
            return Ok(());
        }
        let (old_fee, old_tip) = stuck.fees()?;
        let estimate = self.provider.estimate_eip1559_fees().await?;
        let percent = u128::from(self.config.fee_bump_percent);
        let ceiling = self.fee_ceiling();
        let max_fee = bump(old_fee, percent).max(estimate.max_fee_per_gas).min(ceiling);
        let tip =
            bump(old_tip, percent).max(estimate.max_priority_fee_per_gas).min(max_fee);
        // Nodes accept a replacement only if both fees rise by 10 %.
        let enough = |new: u128, old: u128| new * 10 >= old * 11;
        if !enough(max_fee, old_fee) || !enough(tip, old_tip) {
            // Reported as a failing step: logged once, shown in health, and
            // checked again at every step while the transaction waits.
            // The text stays the same while it lasts, so it is logged once.
            bail!(
                "anchoring transaction {} stuck at the fee ceiling \
                 (anchor.max_fee_per_gas_gwei = {}); waiting",
                stuck.hash()?,
                self.config.max_fee_per_gas_gwei
            );
        }
        let request = self.anchor_request(batch)?;
        let gas_limit = u64::try_from(stuck.gas_limit)?;
        let tx = self.sign(request, stuck.nonce(), max_fee, tip, gas_limit).await?;
        let id = self.store.record_anchor_tx(tx.record(batch.id, self.anchorer)).await?;
        if let Sent::FeeTooLow(reason) = self.broadcast(id, &tx.raw, tx.hash).await? {
            self.store.mark_tx_failed(id, &reason).await?;
            bail!("the node refused the replacement's fees: {reason}");
        }
        self.store.mark_txs_replaced(batch.id, id).await?;
        let old_hash = stuck.hash()?;
        info!(
            target: "chain::anchor",
            batch = batch.id,
            nonce = stuck.nonce(),
            waited_blocks = waited,
            old = %old_hash,
            new = %tx.hash,
            max_fee_gwei = gwei_text(max_fee),
            tip_gwei = gwei_text(tip),
            "stuck anchoring transaction replaced with higher fees"
        );
        let details = json!({
            "txHash": tx.hash,
            "replaces": old_hash,
            "nonce": stuck.nonce(),
            "maxFeePerGas": max_fee.to_string(),
            "maxPriorityFeePerGas": tip.to_string(),
        });
        self.publish(batch, "replaced", details).await;
        Ok(())
    }

    /// Fails when the batch does not belong on this chain and contract: it
    /// was formed for another chain id, or the contract does not hold the
    /// root the batch builds on (the chain was reset, or the contract
    /// redeployed, possibly at the same address). Nothing is sent then.
    async fn ensure_history(&self, batch: &BatchRow) -> anyhow::Result<()> {
        if u64::try_from(batch.chain_id).ok() != Some(self.chain_id) {
            bail!(
                "batch {} was formed for chain id {}, the chain is {}; not anchoring",
                batch.id,
                batch.chain_id,
                self.chain_id
            );
        }
        let prev_root = to_b256(&batch.prev_root)?;
        if prev_root == B256::ZERO {
            return Ok(());
        }
        let contract = InsightAnchor::new(self.contract, self.provider.clone());
        let record =
            contract.anchorOf(prev_root).call().await.context("reading anchorOf")?;
        if record.batchId == 0 {
            bail!(
                "the contract at {} does not hold root {prev_root}, which batch {} \
                 builds on: chain reset or contract replaced? not anchoring",
                self.contract,
                batch.id
            );
        }
        Ok(())
    }

    fn fee_ceiling(&self) -> u128 {
        u128::from(self.config.max_fee_per_gas_gwei) * WEI_PER_GWEI
    }

    /// The call `anchor(root, leafCount, prevRoot)` of a batch.
    fn anchor_request(&self, batch: &BatchRow) -> anyhow::Result<TransactionRequest> {
        let root = to_b256(&batch.root)?;
        let prev_root = to_b256(&batch.prev_root)?;
        let leaves = u64::try_from(batch.leaf_count)?;
        let contract = InsightAnchor::new(self.contract, self.provider.clone());
        let request = contract.anchor(root, leaves, prev_root).into_transaction_request();
        Ok(request.from(self.anchorer))
    }

    /// Signs an EIP-1559 transaction with every field given.
    async fn sign(
        &self,
        request: TransactionRequest,
        nonce: u64,
        max_fee: u128,
        tip: u128,
        gas_limit: u64,
    ) -> anyhow::Result<SignedTx> {
        let envelope = request
            .nonce(nonce)
            .with_chain_id(self.chain_id)
            .with_gas_limit(gas_limit)
            .with_max_fee_per_gas(max_fee)
            .with_max_priority_fee_per_gas(tip)
            .build(&self.wallet)
            .await
            .map_err(|e| anyhow::anyhow!("signing the anchoring transaction: {e}"))?;
        Ok(SignedTx {
            hash: *envelope.tx_hash(),
            raw: envelope.encoded_2718(),
            nonce,
            max_fee,
            tip,
            gas_limit,
        })
    }

    /// Sends recorded bytes and marks them `broadcast`. A node that already
    /// holds them counts as sent; a refusal for fees is returned to the
    /// caller; any other refusal fails that copy (and the batch, when no
    /// other copy remains).
    async fn broadcast(&self, id: i64, raw: &[u8], hash: B256) -> anyhow::Result<Sent> {
        match self.provider.send_raw_transaction(raw).await {
            Ok(_) => {}
            Err(RpcError::ErrorResp(payload))
                if payload.message.to_lowercase().contains("already known") => {}
            Err(RpcError::ErrorResp(payload)) if fees_refused(&payload.message) => {
                return Ok(Sent::FeeTooLow(payload.message.to_string()));
            }
            Err(RpcError::ErrorResp(payload)) => {
                let reason = format!("the node refused {hash}: {}", payload.message);
                self.store.mark_tx_failed(id, &reason).await?;
                bail!(reason);
            }
            Err(err) => {
                return Err(err).context("broadcasting the anchoring transaction")
            }
        }
        let head = self.head_number().await?;
        self.store.mark_tx_broadcast(id, head).await?;
        Ok(Sent::Accepted)
    }

    async fn head_number(&self) -> anyhow::Result<u64> {
        let known = self.heads.borrow().map(|head| head.number);
        match known {
            Some(number) => Ok(number),
            None => Ok(self.provider.get_block_number().await?),
        }
    }

    /// Where the chain recorded the batch's root, if it did.
    async fn on_chain(&self, batch: &BatchRow) -> anyhow::Result<Option<Inclusion>> {
        let root = to_b256(&batch.root)?;
        let contract = InsightAnchor::new(self.contract, self.provider.clone());
        let record = contract.anchorOf(root).call().await.context("reading anchorOf")?;
        if record.batchId == 0 {
            return Ok(None);
        }
        let block = self
            .provider
            .get_block_by_number(record.blockNumber.into())
            .await?
            .context("anchoring block not found")?;
        let tx_hash = self.find_anchoring_tx(root, record.blockNumber).await?;
        Ok(Some(Inclusion {
            tx_hash,
            onchain_batch: record.batchId,
            block_number: record.blockNumber,
            block_hash: block.header.hash,
            block_timestamp: record.timestamp,
        }))
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
        let depth = (head.number + 1).saturating_sub(number);
        let details = match self.finality {
            Finality::Depth if depth >= self.confirmations => {
                json!({ "confirmations": depth })
            }
            Finality::Finalized => {
                let finalized = self
                    .provider
                    .get_block_by_number(BlockNumberOrTag::Finalized)
                    .await
                    .context("reading the chain's finalized block")?
                    .context("the chain reports no finalized block")?;
                if finalized.header.number < number {
                    return Ok(());
                }
                json!({ "confirmations": depth, "finalizedBlock": finalized.header.number })
            }
            Finality::Depth => return Ok(()),
        };
        self.store.mark_final(batch.id).await?;
        Stats::bump(&self.stats.batches_final, 1);
        self.publish(batch, "final", details).await;
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

/// The details of a `submitted` status change.
fn submission(hash: B256, nonce: u64, max_fee: u128, tip: u128) -> serde_json::Value {
    json!({
        "txHash": hash,
        "nonce": nonce,
        "maxFeePerGas": max_fee.to_string(),
        "maxPriorityFeePerGas": tip.to_string(),
    })
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

/// A signed anchoring transaction, ready to record and send.
struct SignedTx {
    hash: B256,
    raw: Vec<u8>,
    nonce: u64,
    max_fee: u128,
    tip: u128,
    gas_limit: u64,
}

impl SignedTx {
    fn record(&self, batch_id: i64, sender: Address) -> NewAnchorTx<'_> {
        NewAnchorTx {
            batch_id,
            sender,
            nonce: self.nonce,
            max_fee_per_gas: self.max_fee,
            max_priority_fee_per_gas: self.tip,
            gas_limit: self.gas_limit,
            tx_hash: self.hash,
            raw: &self.raw,
        }
    }
}

/// `value` raised by `percent` (rounded up, by at least one wei).
fn bump(value: u128, percent: u128) -> u128 {
    value + (value * percent).div_ceil(100).max(1)
}

/// Wei as gwei with three decimals, for logs.
fn gwei_text(wei: u128) -> String {
    let milli = wei / 1_000_000;
    format!("{}.{:03}", milli / 1000, milli % 1000)
}

/// What became of a broadcast.
enum Sent {
    /// The node took the transaction (or already had it).
    Accepted,
    /// The node refused it for its fees: below the base fee, or too small
    /// a raise over a transaction with the same nonce.
    FeeTooLow(String),
}

/// Whether a node's refusal is about fees (geth, anvil and reth word it so).
fn fees_refused(message: &str) -> bool {
    let message = message.to_lowercase();
    message.contains("underpriced")
        || message.contains("less than block base fee")
        || message.contains("fee cap")
}
