//! Checks of the contract's state beyond one record: the chain of roots,
//! and the record proven from a block's state root.

use alloy::eips::BlockNumberOrTag;
use alloy::primitives::{keccak256, Address, B256, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::rlp;
use alloy::rpc::types::Filter;
use alloy::sol_types::{SolEvent, SolValue};
use alloy::trie::proof::verify_proof;
use alloy::trie::{Nibbles, TrieAccount};
use anyhow::Context;
use insight_anchor::InsightAnchor;

use super::Verdict;

/// Storage slot of the `anchors` mapping (see `InsightAnchor.sol`).
const ANCHORS_SLOT: u64 = 1;

/// The record `anchorOf(root)` returned.
pub(crate) type Record = InsightAnchor::anchorOfReturn;

/// Follows the chain of roots one step back: the `Anchored` event of the
/// root names the previous root, which must be recorded as the batch
/// before (or be zero for batch 1). `expected_prev` is the previous root
/// the auditor's document claims, if any.
pub(crate) async fn continuity(
    provider: &DynProvider,
    contract: Address,
    root: B256,
    record: &Record,
    expected_prev: Option<B256>,
    verdict: &mut Verdict,
) -> anyhow::Result<()> {
    let filter = Filter::new()
        .address(contract)
        .event_signature(InsightAnchor::Anchored::SIGNATURE_HASH)
        .topic2(root)
        .from_block(record.blockNumber)
        .to_block(record.blockNumber);
    let logs = provider.get_logs(&filter).await.context("reading Anchored events")?;
    let events: Vec<_> = logs
        .iter()
        .filter_map(|log| log.log_decode::<InsightAnchor::Anchored>().ok())
        .map(|log| log.inner.data)
        .collect();
    let [event] = events.as_slice() else {
        let line = format!(
            "expected one Anchored event for the root in block {}, found {}",
            record.blockNumber,
            events.len()
        );
        verdict.note(false, line);
        return Ok(());
    };
    let agrees = event.batchId == record.batchId && event.leafCount == record.leafCount;
    verdict.note(
        agrees,
        format!("Anchored event of batch {} matches the record", event.batchId),
    );
    let prev = event.prevRoot;
    if let Some(claimed) = expected_prev {
        verdict.note(
            claimed == prev,
            format!("previous root {prev} (the batch document says {claimed})"),
        );
    }
    if prev == B256::ZERO {
        verdict.note(
            record.batchId == 1,
            format!(
                "chain of roots: batch {} has no previous root, so it must be batch 1",
                record.batchId
            ),
        );
        return Ok(());
    }
    let anchor = InsightAnchor::new(contract, provider.clone());
    let before = anchor.anchorOf(prev).call().await.context("calling anchorOf")?;
    let linked = before.batchId != 0 && before.batchId + 1 == record.batchId;
    verdict.note(
        linked,
        format!(
            "chain of roots: batch {} follows batch {} ({prev})",
            record.batchId, before.batchId
        ),
    );
    Ok(())
}

/// Proves the root's record from the latest block's state root: the block
/// header must hash to the block's hash, the account proof must lead from
/// the state root to the contract's account (whose code must be the
/// `InsightAnchor` of the committed artifact), and the storage proof from
/// the account's storage root to the record's slot, whose word must decode
/// to the record. Returns the number and hash of the block whose state was
/// proven, for a second endpoint to confirm.
pub(crate) async fn storage_proof(
    provider: &DynProvider,
    contract: Address,
    root: B256,
    record: &Record,
    verdict: &mut Verdict,
) -> anyhow::Result<(u64, B256)> {
    let block = provider
        .get_block_by_number(BlockNumberOrTag::Latest)
        .await?
        .context("no latest block")?;
    let number = block.header.number;
    let header_ok = block.header.inner.hash_slow() == block.header.hash;
    verdict.note(
        header_ok,
        format!("block {number}'s header hashes to {}", block.header.hash),
    );
    let state_root = block.header.state_root;

    let slot = keccak256((root, U256::from(ANCHORS_SLOT)).abi_encode());
    let proof = provider
        .get_proof(contract, vec![slot])
        .number(number)
        .await
        .context("eth_getProof")?;

    let account = TrieAccount {
        nonce: proof.nonce,
        balance: proof.balance,
        storage_root: proof.storage_hash,
        code_hash: proof.code_hash,
    };
    let account_key = Nibbles::unpack(keccak256(contract));
    let account_ok = verify_proof(
        state_root,
        account_key,
        Some(rlp::encode(account)),
        &proof.account_proof,
    )
    .is_ok();
    verdict.note(
        account_ok,
        format!("account proof of {contract} against state root {state_root}"),
    );
    let code_ok = proof.code_hash == keccak256(&InsightAnchor::DEPLOYED_BYTECODE);
    verdict.note(
        code_ok,
        format!("the account's code hash {} is InsightAnchor's", proof.code_hash),
    );

    let state_block = (number, block.header.hash);
    let Some(entry) = proof.storage_proof.first() else {
        verdict.note(false, "eth_getProof returned no storage proof".into());
        return Ok(state_block);
    };
    let word = entry.value;
    let expected = (!word.is_zero()).then(|| rlp::encode(word));
    let storage_ok = verify_proof(
        proof.storage_hash,
        Nibbles::unpack(keccak256(slot)),
        expected,
        &entry.proof,
    )
    .is_ok();
    verdict.note(
        storage_ok,
        format!("storage proof of slot {slot} against the account's storage root"),
    );

    // Little-endian 64-bit limbs: batchId, blockNumber, timestamp, leafCount.
    let limbs = word.as_limbs();
    let decoded = (limbs[0], limbs[1], limbs[2], limbs[3]);
    let matches = decoded
        == (record.batchId, record.blockNumber, record.timestamp, record.leafCount);
    verdict.note(
        matches,
        format!(
            "the proven slot holds batch {}, block {}, time {}, {} leaves, as of block {number}",
            decoded.0, decoded.1, decoded.2, decoded.3
        ),
    );
    Ok(state_block)
}
