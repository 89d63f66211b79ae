//! PostgreSQL side of the anchoring transaction manager: the rows of
//! `anchor_txs`, and the dead letters a batch's manifest accounts for.
//!
//! Every anchoring transaction is signed, then recorded (`unsent`) together
//! with its batch turning `submitted`, and only then broadcast, so a crash
//! at any point leaves a row from which the same bytes can be sent again.
//! States change only along the machine in `state_transitions`; the
//! database refuses anything else.

use alloy_primitives::{keccak256, Address, B256};
use analytics_primitives::manifest::DeadLetterRecord;
use sqlx::FromRow;
use time::OffsetDateTime;

use crate::error::WorkerError;
use crate::storage::{to_b256, to_i64, Inclusion, InsightRow, Store, INSIGHT_COLUMNS};

/// An anchoring transaction as stored.
#[derive(Debug, Clone, FromRow)]
pub struct AnchorTxRow {
    /// Id.
    pub id: i64,
    /// The batch it anchors.
    pub batch_id: i64,
    /// `unsent`, `broadcast`, `included`, `final`, `replaced`, `failed` or
    /// `reorged`.
    pub state: String,
    /// The signing account, 20 bytes.
    pub sender: Vec<u8>,
    /// Nonce.
    pub nonce: i64,
    /// EIP-1559 fee cap, wei, as decimal text.
    pub max_fee_per_gas: String,
    /// EIP-1559 tip cap, wei, as decimal text.
    pub max_priority_fee_per_gas: String,
    /// Gas limit.
    pub gas_limit: i64,
    /// Transaction hash.
    pub tx_hash: Vec<u8>,
    /// The signed transaction, EIP-2718 encoded.
    pub raw: Vec<u8>,
    /// Chain head when it was broadcast.
    pub sent_at_block: Option<i64>,
    /// When it was recorded.
    pub created_at: OffsetDateTime,
}

impl AnchorTxRow {
    /// Its hash.
    pub fn hash(&self) -> Result<B256, WorkerError> {
        to_b256(&self.tx_hash)
    }

    /// Its fee cap and tip cap, wei.
    pub fn fees(&self) -> Result<(u128, u128), WorkerError> {
        let parse = |text: &str| {
            text.parse::<u128>()
                .map_err(|_| WorkerError::Corrupt(format!("fee {text:?} is not a u128")))
        };
        Ok((parse(&self.max_fee_per_gas)?, parse(&self.max_priority_fee_per_gas)?))
    }

    /// Its signing account.
    pub fn sender(&self) -> Result<Address, WorkerError> {
        Address::try_from(self.sender.as_slice())
            .map_err(|_| WorkerError::Corrupt(format!("anchor tx {} sender", self.id)))
    }

    /// Its nonce.
    pub fn nonce(&self) -> u64 {
        u64::try_from(self.nonce).unwrap_or_default()
    }
}

/// A signed anchoring transaction to record.
#[derive(Debug, Clone)]
pub struct NewAnchorTx<'a> {
    /// The batch it anchors.
    pub batch_id: i64,
    /// The signing account.
    pub sender: Address,
    /// Nonce.
    pub nonce: u64,
    /// Fee cap, wei.
    pub max_fee_per_gas: u128,
    /// Tip cap, wei.
    pub max_priority_fee_per_gas: u128,
    /// Gas limit.
    pub gas_limit: u64,
    /// Hash.
    pub tx_hash: B256,
    /// Signed bytes.
    pub raw: &'a [u8],
}

/// A stored dead letter with its bytes and arrival time.
#[derive(Debug, Clone)]
pub struct StoredDeadLetter {
    /// What the manifest commits to.
    pub record: DeadLetterRecord,
    /// The message exactly as received.
    pub raw: Vec<u8>,
    /// When the worker received it.
    pub received_at: OffsetDateTime,
}

const TX_COLUMNS: &str = "id, batch_id, state, sender, nonce, max_fee_per_gas::text AS max_fee_per_gas, \
     max_priority_fee_per_gas::text AS max_priority_fee_per_gas, gas_limit, tx_hash, raw, \
     sent_at_block, created_at";

type DeadLetterTuple =
    (i64, String, String, i32, Option<i64>, String, Vec<u8>, OffsetDateTime);

fn dead_letter(row: DeadLetterTuple) -> StoredDeadLetter {
    let (id, source, stream, partition, offset, reason, raw, received_at) = row;
    let raw_hash = keccak256(&raw);
    let raw_length = raw.len() as u64;
    let record = DeadLetterRecord {
        id,
        source,
        stream,
        partition,
        offset,
        reason,
        raw_hash,
        raw_length,
    };
    StoredDeadLetter { record, raw, received_at }
}

impl Store {
    /// Records a signed transaction as `unsent` and its batch as
    /// `submitted`, in one transaction.
    pub async fn record_anchor_tx(
        &self,
        tx: NewAnchorTx<'_>,
    ) -> Result<i64, WorkerError> {
        let mut db = self.pool().begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO anchor_txs (batch_id, sender, nonce, max_fee_per_gas, \
             max_priority_fee_per_gas, gas_limit, tx_hash, raw) \
             VALUES ($1, $2, $3, $4::numeric, $5::numeric, $6, $7, $8) RETURNING id",
        )
        .bind(tx.batch_id)
        .bind(tx.sender.to_vec())
        .bind(to_i64(tx.nonce)?)
        .bind(tx.max_fee_per_gas.to_string())
        .bind(tx.max_priority_fee_per_gas.to_string())
        .bind(to_i64(tx.gas_limit)?)
        .bind(tx.tx_hash.to_vec())
        .bind(tx.raw)
        .fetch_one(&mut *db)
        .await?;
        sqlx::query(
            "UPDATE anchor_batches SET status = 'submitted', tx_hash = $2 \
             WHERE id = $1 AND status IN ('pending', 'submitted')",
        )
        .bind(tx.batch_id)
        .bind(tx.tx_hash.to_vec())
        .execute(&mut *db)
        .await?;
        db.commit().await?;
        Ok(id)
    }

    /// The transactions of a batch that may still be included, oldest first.
    pub async fn live_anchor_txs(
        &self,
        batch_id: i64,
    ) -> Result<Vec<AnchorTxRow>, WorkerError> {
        let sql = format!(
            "SELECT {TX_COLUMNS} FROM anchor_txs WHERE batch_id = $1 \
             AND state IN ('unsent', 'broadcast', 'replaced') ORDER BY id"
        );
        Ok(sqlx::query_as(&sql).bind(batch_id).fetch_all(self.pool()).await?)
    }

    /// Every transaction of a batch, oldest first.
    pub async fn anchor_txs(
        &self,
        batch_id: i64,
    ) -> Result<Vec<AnchorTxRow>, WorkerError> {
        let sql = format!(
            "SELECT {TX_COLUMNS} FROM anchor_txs WHERE batch_id = $1 ORDER BY id"
        );
        Ok(sqlx::query_as(&sql).bind(batch_id).fetch_all(self.pool()).await?)
    }

    /// Whether a live copy (not `failed` or `reorged`) has this hash.
    pub async fn anchor_tx_live(&self, hash: B256) -> Result<bool, WorkerError> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM anchor_txs WHERE tx_hash = $1 \
             AND state NOT IN ('failed', 'reorged')",
        )
        .bind(hash.to_vec())
        .fetch_optional(self.pool())
        .await?;
        Ok(found.is_some())
    }

    /// Moves a transaction from `unsent` to `broadcast`.
    pub async fn mark_tx_broadcast(&self, id: i64, head: u64) -> Result<(), WorkerError> {
        sqlx::query(
            "UPDATE anchor_txs SET state = 'broadcast', sent_at_block = $2, \
             updated_at = now() WHERE id = $1 AND state = 'unsent'",
        )
        .bind(id)
        .bind(to_i64(head)?)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Marks one copy `failed` (the node refused it). When no other copy is
    /// left to follow, the batch returns to `pending`.
    pub async fn mark_tx_failed(&self, id: i64, reason: &str) -> Result<(), WorkerError> {
        let mut db = self.pool().begin().await?;
        let batch_id: Option<i64> = sqlx::query_scalar(
            "UPDATE anchor_txs SET state = 'failed', error = $2, updated_at = now() \
             WHERE id = $1 AND state IN ('unsent', 'broadcast') RETURNING batch_id",
        )
        .bind(id)
        .bind(reason)
        .fetch_optional(&mut *db)
        .await?;
        if let Some(batch_id) = batch_id {
            sqlx::query(
                "UPDATE anchor_batches SET status = 'pending', tx_hash = NULL \
                 WHERE id = $1 AND status = 'submitted' AND NOT EXISTS (\
                 SELECT 1 FROM anchor_txs WHERE batch_id = $1 \
                 AND state IN ('unsent', 'broadcast', 'replaced'))",
            )
            .bind(batch_id)
            .execute(&mut *db)
            .await?;
        }
        db.commit().await?;
        Ok(())
    }

    /// Marks the older copies of a batch's transaction `replaced` once a
    /// higher-fee copy was broadcast.
    pub async fn mark_txs_replaced(
        &self,
        batch_id: i64,
        newest: i64,
    ) -> Result<(), WorkerError> {
        sqlx::query(
            "UPDATE anchor_txs SET state = 'replaced', updated_at = now() \
             WHERE batch_id = $1 AND id < $2 AND state = 'broadcast'",
        )
        .bind(batch_id)
        .bind(newest)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Marks every live transaction of a batch `failed` with the reason
    /// and returns the batch to `pending`, so a fresh transaction is made.
    pub async fn fail_anchor_txs(
        &self,
        batch_id: i64,
        reason: &str,
    ) -> Result<(), WorkerError> {
        let mut db = self.pool().begin().await?;
        sqlx::query(
            "UPDATE anchor_txs SET state = 'failed', error = $2, updated_at = now() \
             WHERE batch_id = $1 AND state IN ('unsent', 'broadcast', 'replaced')",
        )
        .bind(batch_id)
        .bind(reason)
        .execute(&mut *db)
        .await?;
        sqlx::query(
            "UPDATE anchor_batches SET status = 'pending', tx_hash = NULL \
             WHERE id = $1 AND status = 'submitted'",
        )
        .bind(batch_id)
        .execute(&mut *db)
        .await?;
        db.commit().await?;
        Ok(())
    }

    /// Records the block that included the batch's root, and which of its
    /// transactions did it (when it is one of ours): that one becomes
    /// `included` and every other live copy `replaced`.
    pub async fn mark_anchored(&self, id: i64, at: Inclusion) -> Result<(), WorkerError> {
        let mut db = self.pool().begin().await?;
        let included = sqlx::query(
            "UPDATE anchor_txs SET state = 'included', block_number = $3, \
             block_hash = $4, updated_at = now() \
             WHERE batch_id = $1 AND tx_hash = $2 \
             AND state IN ('unsent', 'broadcast', 'replaced')",
        )
        .bind(id)
        .bind(at.tx_hash.to_vec())
        .bind(to_i64(at.block_number)?)
        .bind(at.block_hash.to_vec())
        .execute(&mut *db)
        .await?;
        let others = if included.rows_affected() == 1 { "replaced" } else { "failed" };
        sqlx::query(
            "UPDATE anchor_txs SET state = CASE WHEN state = 'unsent' THEN 'failed' \
             ELSE $2 END, updated_at = now() \
             WHERE batch_id = $1 AND state IN ('unsent', 'broadcast')",
        )
        .bind(id)
        .bind(others)
        .execute(&mut *db)
        .await?;
        sqlx::query(
            "UPDATE anchor_batches SET status = 'anchored', tx_hash = $2, \
             onchain_batch = $3, block_number = $4, block_hash = $5, \
             block_timestamp = $6, anchored_at = now() \
             WHERE id = $1 AND status IN ('pending', 'submitted')",
        )
        .bind(id)
        .bind(at.tx_hash.to_vec())
        .bind(to_i64(at.onchain_batch)?)
        .bind(to_i64(at.block_number)?)
        .bind(at.block_hash.to_vec())
        .bind(to_i64(at.block_timestamp)?)
        .execute(&mut *db)
        .await?;
        db.commit().await?;
        Ok(())
    }

    /// Returns a batch whose anchoring block left the canonical chain to
    /// `pending`, forgetting where it was included, so it is anchored
    /// again; its included transaction becomes `reorged`.
    pub async fn mark_reorged(&self, id: i64) -> Result<(), WorkerError> {
        let mut db = self.pool().begin().await?;
        sqlx::query(
            "UPDATE anchor_txs SET state = 'reorged', updated_at = now() \
             WHERE batch_id = $1 AND state = 'included'",
        )
        .bind(id)
        .execute(&mut *db)
        .await?;
        sqlx::query(
            "UPDATE anchor_batches SET status = 'pending', tx_hash = NULL, \
             onchain_batch = NULL, block_number = NULL, block_hash = NULL, \
             block_timestamp = NULL, anchored_at = NULL \
             WHERE id = $1 AND status = 'anchored'",
        )
        .bind(id)
        .execute(&mut *db)
        .await?;
        db.commit().await?;
        Ok(())
    }

    /// Records that the batch reached the required confirmations.
    pub async fn mark_final(&self, id: i64) -> Result<(), WorkerError> {
        let mut db = self.pool().begin().await?;
        sqlx::query(
            "UPDATE anchor_txs SET state = 'final', updated_at = now() \
             WHERE batch_id = $1 AND state = 'included'",
        )
        .bind(id)
        .execute(&mut *db)
        .await?;
        sqlx::query(
            "UPDATE anchor_batches SET status = 'final', finalized_at = now() \
             WHERE id = $1 AND status = 'anchored'",
        )
        .bind(id)
        .execute(&mut *db)
        .await?;
        db.commit().await?;
        Ok(())
    }

    /// The insights of a batch in leaf order.
    pub async fn batch_insights(
        &self,
        batch_id: i64,
    ) -> Result<Vec<InsightRow>, WorkerError> {
        let sql = format!(
            "SELECT {INSIGHT_COLUMNS} FROM insights WHERE batch_id = $1 ORDER BY leaf_index"
        );
        Ok(sqlx::query_as(&sql).bind(batch_id).fetch_all(self.pool()).await?)
    }

    /// Dead letters no batch accounts for yet, oldest first.
    pub async fn unbatched_dead_letters(
        &self,
        limit: usize,
    ) -> Result<Vec<DeadLetterRecord>, WorkerError> {
        let rows: Vec<DeadLetterTuple> = sqlx::query_as(
            "SELECT id, source, stream, partition, \"offset\", reason, raw, received_at \
             FROM dead_letters WHERE batch_id IS NULL ORDER BY id LIMIT $1",
        )
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(|row| dead_letter(row).record).collect())
    }

    /// The dead letters a batch's manifest accounts for, in id order.
    pub async fn batch_dead_letters(
        &self,
        batch_id: i64,
    ) -> Result<Vec<StoredDeadLetter>, WorkerError> {
        let rows: Vec<DeadLetterTuple> = sqlx::query_as(
            "SELECT id, source, stream, partition, \"offset\", reason, raw, received_at \
             FROM dead_letters WHERE batch_id = $1 ORDER BY id",
        )
        .bind(batch_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(dead_letter).collect())
    }
}
