//! Verification of a whole exported batch: every leaf recomputed from its
//! content, the manifest and the dead letters it accounts for, the root
//! rebuilt from all leaves, and the root checked on chain with its place in
//! the chain of roots.

use alloy::primitives::{Address, B256};
use alloy::providers::{DynProvider, Provider};
use analytics_primitives::canonical::to_canonical_json;
use analytics_primitives::keccak256;
use analytics_primitives::manifest::{DeadLetterDigest, DeadLetterRecord, Manifest};
use analytics_primitives::merkle::MerkleTree;
use anyhow::Context;
use insight_anchor::InsightAnchor;
use serde::Deserialize;
use serde_json::Value;

use super::chain::{continuity, storage_proof};
use super::{
    agreement, cross_check, depth, pick_contract, seconds_text, Verdict, VerifyArgs,
};
use crate::rpc::server::EXPORT_RAW_LIMIT;

/// The part of an exported batch the verifier reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BatchDocument {
    batch: BatchHeader,
    leaves: Vec<Leaf>,
    manifest: Option<Value>,
    #[serde(default)]
    dead_letters: Vec<DeadLetter>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchHeader {
    id: Option<i64>,
    root: Option<B256>,
    contract: Option<Address>,
    chain_id: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Leaf {
    id: Option<i64>,
    leaf_index: usize,
    hash: Option<B256>,
    insight: Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeadLetter {
    id: i64,
    source: String,
    stream: String,
    partition: i32,
    offset: Option<i64>,
    reason: String,
    raw_hash: B256,
    raw_length: u64,
    raw: Option<String>,
}

pub(crate) async fn check(
    provider: &DynProvider,
    document: &BatchDocument,
    args: &VerifyArgs,
) -> anyhow::Result<Verdict> {
    let mut verdict = Verdict { verified: true, lines: Vec::new() };
    let label = document.batch.id.map_or_else(String::new, |id| format!(" {id}"));
    verdict.note(true, format!("batch{label}: {} insight leaves", document.leaves.len()));

    // 1. Every insight leaf, recomputed from its content, in leaf order.
    let mut values = Vec::with_capacity(document.leaves.len() + 1);
    let mut leaves_ok = true;
    for (position, leaf) in document.leaves.iter().enumerate() {
        let hash = keccak256(to_canonical_json(&leaf.insight)?.as_bytes());
        let claimed_ok = leaf.hash.is_none_or(|claimed| claimed == hash);
        if leaf.leaf_index != position || !claimed_ok {
            leaves_ok = false;
            let id = leaf.id.map_or_else(|| "?".into(), |id| id.to_string());
            verdict.note(
                false,
                format!(
                    "leaf {position} (insight {id}, index {}): hash {hash} {}",
                    leaf.leaf_index,
                    agreement(claimed_ok)
                ),
            );
        }
        values.push(hash);
    }
    verdict.note(leaves_ok, "every insight hash recomputed from its content".into());

    // 2. The manifest and the dead letters it accounts for.
    let Some(content) = &document.manifest else {
        verdict.note(false, "the batch has no manifest leaf".into());
        return Ok(verdict);
    };
    let manifest = Manifest::from_content(content).context("reading the manifest")?;
    let (_, manifest_hash) = manifest.canonical()?;
    values.push(manifest_hash);
    verdict.note(
        manifest.insights == document.leaves.len() as u64,
        format!("manifest counts {} insight leaves", manifest.insights),
    );
    let mut by_hash_only = 0;
    let mut letters = Vec::with_capacity(document.dead_letters.len());
    for letter in &document.dead_letters {
        match &letter.raw {
            Some(hex) => {
                let raw = hex
                    .strip_prefix("0x")
                    .and_then(|digits| alloy::hex::decode(digits).ok())
                    .with_context(|| {
                        format!("dead letter {}: raw is not 0x-prefixed hex", letter.id)
                    })?;
                let same = keccak256(&raw) == letter.raw_hash
                    && raw.len() as u64 == letter.raw_length;
                if !same {
                    let line = format!(
                        "dead letter {}: rawHash or rawLength differs from its bytes",
                        letter.id
                    );
                    verdict.note(false, line);
                }
            }
            None if letter.raw_length > EXPORT_RAW_LIMIT as u64 => by_hash_only += 1,
            None => {
                let line = format!(
                    "dead letter {}: its {} bytes are withheld (only letters over 64 KiB \
                     may be exported by hash)",
                    letter.id, letter.raw_length
                );
                verdict.note(false, line);
            }
        }
        letters.push(DeadLetterRecord {
            id: letter.id,
            source: letter.source.clone(),
            stream: letter.stream.clone(),
            partition: letter.partition,
            offset: letter.offset,
            reason: letter.reason.clone(),
            raw_hash: letter.raw_hash,
            raw_length: letter.raw_length,
        });
    }
    if by_hash_only > 0 {
        verdict.lines.push(format!(
            "     {by_hash_only} dead letters exported by hash only (larger than 64 KiB)"
        ));
    }
    let digest = DeadLetterDigest::of(&letters)?;
    let committed = manifest.dead_letters;
    verdict.note(
        digest == committed,
        format!(
            "{} dead letters rejected since the previous batch, digest {} {}",
            committed.count,
            committed.digest,
            agreement(digest == committed)
        ),
    );

    // 3. The root of all leaves.
    let tree = MerkleTree::new(&values).map_err(|e| anyhow::anyhow!("{e}"))?;
    let root = tree.root();
    verdict.note(true, format!("Merkle root {root} from {} leaves", values.len()));
    if let Some(claimed) = document.batch.root {
        verdict.note(
            claimed == root,
            format!("document's root field {claimed} {}", agreement(claimed == root)),
        );
    }

    // 4. The chain.
    let chain_id = provider.get_chain_id().await.context("cannot reach the chain")?;
    if let Some(claimed) = document.batch.chain_id {
        verdict.note(
            claimed == chain_id,
            format!("chain id {chain_id} (document: {claimed})"),
        );
    }
    let Some(contract) =
        pick_contract(provider, args, document.batch.contract, &mut verdict).await?
    else {
        return Ok(verdict);
    };
    let anchor = InsightAnchor::new(contract, provider.clone());
    let record = anchor.anchorOf(root).call().await.context("calling anchorOf")?;
    if record.batchId == 0 {
        verdict.note(
            false,
            format!("NOT ANCHORED: the contract has no record of root {root}"),
        );
        return Ok(verdict);
    }
    verdict.note(
        record.leafCount == values.len() as u64,
        format!("the record counts {} leaves", record.leafCount),
    );
    continuity(provider, contract, root, &record, Some(manifest.prev_root), &mut verdict)
        .await?;
    let block = provider
        .get_block_by_number(record.blockNumber.into())
        .await?
        .context("the anchoring block is missing from the chain")?;
    verdict.note(
        block.header.timestamp == record.timestamp,
        format!("block {} time matches the record", record.blockNumber),
    );
    let depth = depth(provider, record.blockNumber, args).await?;
    verdict.note(
        depth.confirmations >= args.min_confirmations,
        format!(
            "{}: batch {} in block {} ({}) at {}, {} confirmations (required {})",
            depth.status,
            record.batchId,
            record.blockNumber,
            block.header.hash,
            seconds_text(record.timestamp),
            depth.confirmations,
            args.min_confirmations
        ),
    );
    let state_block = if args.storage_proof {
        Some(storage_proof(provider, contract, root, &record, &mut verdict).await?)
    } else {
        None
    };
    if let Some(url) = &args.second_rpc_url {
        let mut blocks = vec![(record.blockNumber, block.header.hash)];
        blocks.extend(state_block);
        cross_check(url, contract, root, blocks, &mut verdict).await?;
    }
    Ok(verdict)
}
