//! The auditor's verifier. It reads an insight and its proof (the document
//! `analytics_getInsightProof` returns), or a whole batch (the document
//! `analytics_exportBatch` returns), and checks it against the chain alone:
//! it recomputes hashes from the content and the Merkle root from the
//! proof or the leaves, reads the root's record from the contract, follows
//! the chain of roots one batch back, and checks the blocks it names. With
//! `--storage-proof` it also proves the record from the block's state root
//! with `eth_getProof` instead of trusting `eth_call`. It never reads the
//! node's database.

use std::io::Read;
use std::path::PathBuf;

use alloy::eips::BlockNumberOrTag;
use alloy::primitives::{Address, B256};
use alloy::providers::{DynProvider, Provider};
use analytics_primitives::canonical::to_canonical_json;
use analytics_primitives::keccak256;
use analytics_primitives::merkle::{leaf_hash, process_proof};
use analytics_primitives::timestamp::format_millis;
use anyhow::{bail, Context};
use insight_anchor::InsightAnchor;
use serde::Deserialize;
use serde_json::Value;

use crate::chain::read_provider;
use crate::rpc::server::{BATCH_FORMAT, PROOF_FORMAT};

mod batch;
mod chain;

use batch::BatchDocument;
use chain::{continuity, storage_proof};

/// Options of `analytics-node verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The proof document, a file path or `-` for standard input.
    #[arg(default_value = "-")]
    pub proof: String,
    /// Chain JSON-RPC URL to check against.
    #[arg(long, env = "ANALYTICS_ETH_RPC_URL", default_value = crate::config::DEFAULT_ETH_RPC_URL)]
    pub rpc_url: String,
    /// The anchoring contract to trust. Without it the address named in the
    /// proof document is used, and the output says so.
    #[arg(long)]
    pub contract: Option<Address>,
    /// Confirmations required to call the insight verified.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub min_confirmations: u64,
    /// Depth at which an anchor counts as final, when the chain does not
    /// report a `finalized` block at or past it.
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u64).range(1..))]
    pub finality_depth: u64,
    /// A second, independent RPC endpoint: block hashes and the contract's
    /// record are checked there too, so one lying endpoint is caught.
    #[arg(long)]
    pub second_rpc_url: Option<String>,
    /// Also prove the root's record from the latest block's state root with
    /// `eth_getProof` (account and storage Merkle-Patricia proofs), rather
    /// than trusting the endpoint's `eth_call`.
    #[arg(long)]
    pub storage_proof: bool,
}

/// The part of the proof document the verifier reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProofDocument {
    format: Option<String>,
    insight: Value,
    leaf: Option<B256>,
    hash: Option<B256>,
    proof: Vec<B256>,
    root: Option<B256>,
    batch: Option<BatchClaim>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchClaim {
    contract: Option<Address>,
    chain_id: Option<u64>,
    tx_hash: Option<B256>,
}

/// What the verifier found.
#[derive(Debug)]
pub struct Verdict {
    /// Whether every check passed.
    pub verified: bool,
    /// One line per check.
    pub lines: Vec<String>,
}

/// Runs `verify`; the process exits 0 only when `verified`.
pub async fn run(args: VerifyArgs) -> anyhow::Result<Verdict> {
    let text = read_input(&args.proof)?;
    let value: Value =
        serde_json::from_str(&text).context("the document is not valid JSON")?;
    let provider = read_provider(&args.rpc_url)?;
    match value["format"].as_str() {
        None | Some(PROOF_FORMAT | BATCH_FORMAT) => {}
        Some(other) => bail!(
            "unknown document format {other:?}: expected {PROOF_FORMAT:?} (an insight \
             proof) or {BATCH_FORMAT:?} (an exported batch)"
        ),
    }
    if value["format"] == BATCH_FORMAT {
        let document: BatchDocument = serde_json::from_value(value)
            .context("the batch document does not have the exported layout")?;
        return batch::check(&provider, &document, &args).await;
    }
    let document: ProofDocument = serde_json::from_value(value)
        .context("the proof document does not have the expected layout")?;
    check(&provider, &document, &args).await
}

fn read_input(path: &str) -> anyhow::Result<String> {
    if path == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("reading standard input")?;
        return Ok(text);
    }
    let path = PathBuf::from(path);
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

async fn check(
    provider: &DynProvider,
    document: &ProofDocument,
    args: &VerifyArgs,
) -> anyhow::Result<Verdict> {
    let mut verdict = Verdict { verified: true, lines: Vec::new() };

    // 0. A document this verifier understands.
    if let Some(format) = &document.format {
        let known = format == PROOF_FORMAT;
        verdict.note(
            known,
            format!("document format {format:?} (expected {PROOF_FORMAT:?})"),
        );
    }

    // 1. The content hash, recomputed from the content.
    let canonical = to_canonical_json(&document.insight)?;
    let hash = keccak256(canonical.as_bytes());
    verdict.note(true, format!("insight hash {hash} (keccak256 of its RFC 8785 JSON)"));
    if let Some(claimed) = document.hash {
        verdict.note(
            claimed == hash,
            format!("document's hash field {claimed} {}", agreement(claimed == hash)),
        );
    }

    // 2. The Merkle root, recomputed from the proof.
    let leaf = leaf_hash(hash);
    if let Some(claimed) = document.leaf {
        verdict.note(
            claimed == leaf,
            format!("document's leaf field {claimed} {}", agreement(claimed == leaf)),
        );
    }
    let root = process_proof(leaf, &document.proof);
    verdict.note(
        true,
        format!("Merkle root {root} from {} proof nodes", document.proof.len()),
    );
    if let Some(claimed) = document.root {
        verdict.note(
            claimed == root,
            format!("document's root field {claimed} {}", agreement(claimed == root)),
        );
    }

    // 3. The chain and the contract.
    let chain_id = provider.get_chain_id().await.context("cannot reach the chain")?;
    let claim = document.batch.as_ref();
    if let Some(claimed) = claim.and_then(|b| b.chain_id) {
        verdict.note(
            claimed == chain_id,
            format!("chain id {chain_id} (document: {claimed})"),
        );
    }
    let Some(contract) =
        pick_contract(provider, args, claim.and_then(|b| b.contract), &mut verdict)
            .await?
    else {
        return Ok(verdict);
    };

    anchored(provider, contract, root, hash, document, args, &mut verdict).await?;
    Ok(verdict)
}

/// The contract to check against: the auditor's, else the document's.
/// `None` (noted as a failure) when no code lives there.
async fn pick_contract(
    provider: &DynProvider,
    args: &VerifyArgs,
    named: Option<Address>,
    verdict: &mut Verdict,
) -> anyhow::Result<Option<Address>> {
    let contract = match (args.contract, named) {
        (Some(address), Some(claimed)) => {
            verdict.note(
                claimed == address,
                format!("contract {address} (given by the auditor; the document names {claimed})"),
            );
            address
        }
        (Some(address), None) => {
            verdict.note(true, format!("contract {address} (given by the auditor)"));
            address
        }
        (None, Some(address)) => {
            verdict.note(
                true,
                format!(
                    "contract {address} (named by the document; pin it with --contract)"
                ),
            );
            address
        }
        (None, None) => bail!("no contract: pass --contract"),
    };
    let code = provider.get_code_at(contract).await?;
    if code.is_empty() {
        verdict.note(false, format!("no contract code at {contract}"));
        return Ok(None);
    }
    Ok(Some(contract))
}

async fn anchored(
    provider: &DynProvider,
    contract: Address,
    root: B256,
    hash: B256,
    document: &ProofDocument,
    args: &VerifyArgs,
    verdict: &mut Verdict,
) -> anyhow::Result<()> {
    let anchor = InsightAnchor::new(contract, provider.clone());
    let record = anchor.anchorOf(root).call().await.context("calling anchorOf")?;
    if record.batchId == 0 {
        return not_anchored(provider, root, document, verdict).await;
    }
    let on_chain =
        anchor.verifyInsight(root, document.proof.clone(), hash).call().await?;
    verdict.note(on_chain, "contract's verifyInsight view accepts the proof".into());
    continuity(provider, contract, root, &record, None, verdict).await?;
    let state_block = if args.storage_proof {
        Some(storage_proof(provider, contract, root, &record, verdict).await?)
    } else {
        None
    };

    let block = provider
        .get_block_by_number(record.blockNumber.into())
        .await?
        .context("the anchoring block is missing from the chain")?;
    let same_time = block.header.timestamp == record.timestamp;
    verdict
        .note(same_time, format!("block {} time matches the record", record.blockNumber));

    let depth = depth(provider, record.blockNumber, args).await?;
    let when = seconds_text(record.timestamp);
    verdict.note(
        depth.confirmations >= args.min_confirmations,
        format!(
            "{}: batch {} in block {} ({}) at {when}, {} confirmations (required {})",
            depth.status,
            record.batchId,
            record.blockNumber,
            block.header.hash,
            depth.confirmations,
            args.min_confirmations
        ),
    );
    let stamp = computed_after(provider, document, record.blockNumber, verdict).await?;
    if let Some(url) = &args.second_rpc_url {
        let blocks = [(record.blockNumber, block.header.hash)]
            .into_iter()
            .chain(stamp.as_ref().map(|(number, hash, _)| (*number, *hash)))
            .chain(state_block);
        cross_check(url, contract, root, blocks.collect(), verdict).await?;
    }
    if let Some((number, _, time)) = stamp {
        verdict.lines.push(format!(
            "     computed after block {number} ({time}), anchored in block {} ({when})",
            record.blockNumber
        ));
    }
    Ok(())
}

/// Why a root has no record: its transaction may still wait in the mempool.
async fn not_anchored(
    provider: &DynProvider,
    root: B256,
    document: &ProofDocument,
    verdict: &mut Verdict,
) -> anyhow::Result<()> {
    let claimed = document.batch.as_ref().and_then(|b| b.tx_hash);
    if let Some(tx) = claimed {
        let known = provider.get_transaction_by_hash(tx).await?;
        if known.is_some_and(|t| t.block_number.is_none()) {
            let line =
                format!("PENDING: the anchoring transaction {tx} is not yet included");
            verdict.note(false, line);
            return Ok(());
        }
    }
    verdict
        .note(false, format!("NOT ANCHORED: the contract has no record of root {root}"));
    Ok(())
}

/// How deep the anchoring block is, and what that makes it.
pub(crate) struct Depth {
    pub(crate) confirmations: u64,
    pub(crate) status: String,
}

pub(crate) async fn depth(
    provider: &DynProvider,
    block: u64,
    args: &VerifyArgs,
) -> anyhow::Result<Depth> {
    let latest = provider.get_block_number().await?;
    let confirmations = (latest + 1).saturating_sub(block);
    let finalized = provider
        .get_block_by_number(BlockNumberOrTag::Finalized)
        .await
        .ok()
        .flatten()
        .is_some_and(|b| b.header.number >= block);
    let status = if confirmations < args.min_confirmations {
        "INCLUDED, NOT YET CONFIRMED".to_owned()
    } else if finalized || confirmations >= args.finality_depth {
        "FINAL".to_owned()
    } else {
        format!("CONFIRMED (depth {confirmations}, final at {})", args.finality_depth)
    };
    Ok(Depth { confirmations, status })
}

/// Asks a second endpoint for the same facts: one lying endpoint shows.
pub(crate) async fn cross_check(
    url: &str,
    contract: Address,
    root: B256,
    blocks: Vec<(u64, B256)>,
    verdict: &mut Verdict,
) -> anyhow::Result<()> {
    let second = read_provider(url)?;
    for (number, hash) in blocks {
        let theirs =
            second.get_block_by_number(number.into()).await?.map(|b| b.header.hash);
        let same = theirs == Some(hash);
        verdict.note(same, format!("second endpoint agrees on block {number}'s hash"));
    }
    let anchor = InsightAnchor::new(contract, second);
    let ok = anchor.anchorOf(root).call().await.is_ok_and(|r| r.batchId != 0);
    verdict.note(ok, format!("second endpoint holds the record of root {root}"));
    Ok(())
}

/// Checks the block the insight claims to have seen, which bounds from
/// below when it was computed. Returns its number, hash and time.
async fn computed_after(
    provider: &DynProvider,
    document: &ProofDocument,
    anchored_in: u64,
    verdict: &mut Verdict,
) -> anyhow::Result<Option<(u64, B256, String)>> {
    let stamp = &document.insight["block"];
    let number = stamp["number"].as_u64();
    let hash = stamp["hash"].as_str().and_then(|h| h.parse::<B256>().ok());
    let (Some(number), Some(hash)) = (number, hash) else {
        verdict.note(false, "insight has no block stamp".into());
        return Ok(None);
    };
    let block = provider.get_block_by_number(number.into()).await?;
    let matches = block.as_ref().is_some_and(|b| b.header.hash == hash);
    let when =
        block.map_or_else(|| "unknown".into(), |b| seconds_text(b.header.timestamp));
    verdict.note(matches, format!("computed after block {number} ({hash}) at {when}"));
    let ordered = number < anchored_in;
    verdict.note(
        ordered,
        format!("stamp block {number} precedes anchoring block {anchored_in}"),
    );
    Ok(Some((number, hash, when)))
}

pub(crate) fn seconds_text(seconds: u64) -> String {
    format_millis(i64::try_from(seconds).unwrap_or(0).saturating_mul(1000))
}

pub(crate) fn agreement(same: bool) -> &'static str {
    if same {
        "matches"
    } else {
        "DIFFERS from the recomputed value"
    }
}

impl Verdict {
    pub(crate) fn note(&mut self, ok: bool, line: String) {
        self.verified &= ok;
        let mark = if ok { "ok  " } else { "FAIL" };
        self.lines.push(format!("{mark} {line}"));
    }
}
