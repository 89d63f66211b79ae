//! Deploys `InsightAnchor` on a running anvil through the Rust bindings and
//! checks it end to end: access control, the hash chain of roots, the packed
//! storage record (read back with `eth_getStorageAt` and `eth_getProof`),
//! proof verification against trees built by `@openzeppelin/merkle-tree`,
//! and the gas used by each anchoring transaction.
//!
//! ```text
//! node contracts/scripts/standard-tree.mjs 3 5 \
//!   | cargo run -p insight-anchor --example anvil_smoke -- http://127.0.0.1:18545
//! ```
//!
//! Transactions are sent from anvil's unlocked development accounts, so no
//! key is needed. Exits non-zero on the first failed check.

use std::fmt::Debug;
use std::io::Read;

use alloy::contract::Error as ContractError;
use alloy::network::Ethereum;
use alloy::primitives::{Address, B256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::TransactionReceipt;
use alloy::sol_types::SolError;
use anyhow::{bail, ensure, Context, Result};
use insight_anchor::InsightAnchor::{self, InsightAnchorInstance};
use insight_anchor::{anchor_record_slot, AnchorRecord, LAST_ROOT_SLOT};
use serde::Deserialize;

/// Gas budget for anchoring a batch after the first.
const ANCHOR_GAS_BUDGET: u64 = 60_000;

#[derive(Deserialize)]
struct Trees {
    trees: Vec<Tree>,
}

#[derive(Deserialize)]
struct Tree {
    root: B256,
    #[serde(rename = "leafCount")]
    leaf_count: u64,
    entries: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(rename = "insightHash")]
    insight_hash: B256,
    leaf: B256,
    proof: Vec<B256>,
}

type Anchor<P> = InsightAnchorInstance<P, Ethereum>;

#[tokio::main]
async fn main() -> Result<()> {
    let url =
        std::env::args().nth(1).context("usage: anvil_smoke RPC_URL < trees.json")?;
    let trees = read_trees()?;
    let [first, second] = &trees.trees[..] else {
        bail!("expected exactly two trees on stdin");
    };

    let provider = ProviderBuilder::new().connect_http(url.parse()?);
    let accounts = provider.get_accounts().await.context("eth_accounts")?;
    let [owner, stranger, ..] = accounts[..] else {
        bail!("anvil must expose at least two unlocked accounts");
    };

    let contract = deploy(&provider, owner).await?;
    check_fresh_state(&contract, owner).await?;
    check_access_control(&contract, owner, stranger).await?;

    let gas_first = anchor_batch(&contract, owner, first, B256::ZERO, 1).await?;
    check_proofs(&contract, first, second).await?;
    let gas_second = anchor_batch(&contract, owner, second, first.root, 2).await?;
    check_duplicate_root(&contract, owner, first.root, second.root).await?;
    let gas_third = anchor_by_new_anchorer(&contract, owner, stranger, second).await?;

    println!(
        "gas used by anchor: first {gas_first}, second {gas_second}, third {gas_third}"
    );
    ensure!(gas_second < ANCHOR_GAS_BUDGET, "second anchor used {gas_second} gas");
    ensure!(gas_third < ANCHOR_GAS_BUDGET, "third anchor used {gas_third} gas");
    println!("all checks passed");
    Ok(())
}

fn read_trees() -> Result<Trees> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).context("reading stdin")?;
    serde_json::from_str(&input).context("stdin is not standard-tree.mjs output")
}

async fn deploy<P: Provider + Clone>(provider: &P, owner: Address) -> Result<Anchor<P>> {
    let receipt = InsightAnchor::deploy_builder(provider.clone())
        .from(owner)
        .send()
        .await?
        .get_receipt()
        .await?;
    let address = receipt.contract_address.context("deploy receipt has no address")?;

    let code = provider.get_code_at(address).await?;
    ensure!(
        code == InsightAnchor::DEPLOYED_BYTECODE,
        "runtime code differs from artifact"
    );
    println!("deployed at {address}, gas {}", receipt.gas_used);
    Ok(InsightAnchor::new(address, provider.clone()))
}

async fn check_fresh_state<P: Provider>(c: &Anchor<P>, owner: Address) -> Result<()> {
    ensure!(c.owner().call().await? == owner, "owner is not the deployer");
    ensure!(c.isAnchorer(owner).call().await?, "deployer is not an anchorer");
    ensure!(c.lastRoot().call().await? == B256::ZERO, "lastRoot is not zero");
    ensure!(c.batchCount().call().await? == 0, "batchCount is not zero");
    Ok(())
}

async fn check_access_control<P: Provider>(
    c: &Anchor<P>,
    owner: Address,
    stranger: Address,
) -> Result<()> {
    let root = B256::repeat_byte(0xaa);

    let by_stranger = c.anchor(root, 1, B256::ZERO).from(stranger).call().await;
    expect_revert(by_stranger, InsightAnchor::NotAnchorer { caller: stranger })?;

    let grant = c.setAnchorer(stranger, true).from(stranger).call().await;
    expect_revert(grant, InsightAnchor::NotOwner { caller: stranger })?;

    let zero = c.anchor(B256::ZERO, 1, B256::ZERO).from(owner).call().await;
    expect_revert(zero, InsightAnchor::ZeroRoot {})?;

    let empty = c.anchor(root, 0, B256::ZERO).from(owner).call().await;
    expect_revert(empty, InsightAnchor::EmptyBatch {})?;

    let wrong_prev = B256::repeat_byte(0xbb);
    let broken_chain = c.anchor(root, 1, wrong_prev).from(owner).call().await;
    let expected =
        InsightAnchor::PrevRootMismatch { expected: B256::ZERO, given: wrong_prev };
    expect_revert(broken_chain, expected)
}

/// Anchors `tree` and checks the event, the views and the raw storage.
/// Returns the gas used by the transaction.
async fn anchor_batch<P: Provider>(
    c: &Anchor<P>,
    from: Address,
    tree: &Tree,
    prev_root: B256,
    batch_id: u64,
) -> Result<u64> {
    let receipt =
        c.anchor(tree.root, tree.leaf_count, prev_root).from(from).send().await?;
    let receipt = receipt.get_receipt().await?;
    ensure!(receipt.status(), "anchor transaction reverted");

    let record = check_anchored_event(&receipt, tree, prev_root, batch_id)?;
    let answer = c.anchorOf(tree.root).call().await?;
    ensure!(AnchorRecord::from_anchor_of(&answer) == Some(record), "anchorOf differs");
    ensure!(c.lastRoot().call().await? == tree.root, "lastRoot not updated");
    ensure!(c.batchCount().call().await? == batch_id, "batchCount not updated");
    check_storage(c, tree.root, record).await?;

    println!("batch {batch_id}: root {}, gas {}", tree.root, receipt.gas_used);
    Ok(receipt.gas_used)
}

fn check_anchored_event(
    receipt: &TransactionReceipt,
    tree: &Tree,
    prev_root: B256,
    batch_id: u64,
) -> Result<AnchorRecord> {
    let log = receipt.decoded_log::<InsightAnchor::Anchored>().context("no Anchored")?;
    let event = log.data;
    ensure!(event.batchId == batch_id, "event batchId {}", event.batchId);
    ensure!(event.root == tree.root && event.prevRoot == prev_root, "event roots");
    ensure!(event.leafCount == tree.leaf_count, "event leafCount");

    let block = receipt.block_number.context("receipt has no block number")?;
    ensure!(event.blockNumber == block, "event blockNumber");
    Ok(AnchorRecord {
        batch_id,
        block_number: event.blockNumber,
        timestamp: event.timestamp,
        leaf_count: event.leafCount,
    })
}

/// Reads the record's slot and `lastRoot`'s slot directly, as an auditor
/// would with `eth_getStorageAt` and `eth_getProof`.
async fn check_storage<P: Provider>(
    c: &Anchor<P>,
    root: B256,
    record: AnchorRecord,
) -> Result<()> {
    let provider = c.provider();
    let address = *c.address();
    let slot = anchor_record_slot(root);

    let word = provider.get_storage_at(address, slot.into()).await?;
    ensure!(AnchorRecord::from_storage_word(word) == Some(record), "record slot");

    let last = provider.get_storage_at(address, LAST_ROOT_SLOT).await?;
    ensure!(B256::from(last) == root, "lastRoot slot");

    let proof = provider.get_proof(address, vec![slot]).await?;
    let proved = proof.storage_proof.first().context("no storage proof")?;
    ensure!(proved.value == word && !proved.proof.is_empty(), "eth_getProof value");
    Ok(())
}

async fn check_proofs<P: Provider>(
    c: &Anchor<P>,
    anchored: &Tree,
    not_yet: &Tree,
) -> Result<()> {
    for entry in &anchored.entries {
        let leaf = c.leafOf(entry.insight_hash).call().await?;
        ensure!(leaf == entry.leaf, "leafOf differs from the JS library");

        let proof = entry.proof.clone();
        let ok = c.verifyInsight(anchored.root, proof, entry.insight_hash).call().await?;
        ensure!(ok, "valid proof rejected for {}", entry.insight_hash);

        let tampered = entry.insight_hash ^ B256::with_last_byte(1);
        let proof = entry.proof.clone();
        let ok = c.verifyInsight(anchored.root, proof, tampered).call().await?;
        ensure!(!ok, "tampered hash accepted");
    }

    let entry = &anchored.entries[0];
    let mut proof = entry.proof.clone();
    proof.reverse();
    let ok = c.verifyInsight(anchored.root, proof, entry.insight_hash).call().await?;
    ensure!(!ok || entry.proof.len() < 2, "reordered proof accepted");

    let other = &not_yet.entries[0];
    let proof = other.proof.clone();
    let ok = c.verifyInsight(not_yet.root, proof, other.insight_hash).call().await?;
    ensure!(!ok, "proof against an unanchored root accepted");
    Ok(())
}

async fn check_duplicate_root<P: Provider>(
    c: &Anchor<P>,
    owner: Address,
    old_root: B256,
    last_root: B256,
) -> Result<()> {
    let again = c.anchor(old_root, 1, last_root).from(owner).call().await;
    expect_revert(
        again,
        InsightAnchor::RootAlreadyAnchored { root: old_root, batchId: 1 },
    )
}

/// Authorises `anchorer`, anchors a third batch from it, then revokes it.
async fn anchor_by_new_anchorer<P: Provider>(
    c: &Anchor<P>,
    owner: Address,
    anchorer: Address,
    prev: &Tree,
) -> Result<u64> {
    c.setAnchorer(anchorer, true).from(owner).send().await?.get_receipt().await?;
    ensure!(c.isAnchorer(anchorer).call().await?, "setAnchorer(true) had no effect");

    let tree = Tree { root: B256::repeat_byte(0x33), leaf_count: 1, entries: Vec::new() };
    let gas = anchor_batch(c, anchorer, &tree, prev.root, 3).await?;

    c.setAnchorer(anchorer, false).from(owner).send().await?.get_receipt().await?;
    let root = B256::repeat_byte(0x44);
    let revoked = c.anchor(root, 1, tree.root).from(anchorer).call().await;
    expect_revert(revoked, InsightAnchor::NotAnchorer { caller: anchorer })?;
    Ok(gas)
}

fn expect_revert<T, E: SolError + PartialEq + Debug>(
    result: Result<T, ContractError>,
    expected: E,
) -> Result<()> {
    let err = match result {
        Ok(_) => bail!("expected {expected:?}, the call succeeded"),
        Err(err) => err,
    };
    match err.as_decoded_error::<E>() {
        Some(actual) if actual == expected => Ok(()),
        Some(actual) => bail!("expected {expected:?}, reverted with {actual:?}"),
        None => bail!("expected {expected:?}, failed with {err}"),
    }
}
