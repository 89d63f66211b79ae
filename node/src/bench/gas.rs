//! `bench gas`: the cost of anchoring. Deploys a fresh `InsightAnchor` on
//! the given chain (anvil by default), anchors Merkle batches of real
//! insight-hash trees of several sizes in sequence, and prints the gas of
//! each anchoring transaction in total and per insight. One transaction
//! anchors a whole batch, so the per-insight cost falls with batch size.

use alloy::primitives::B256;
use alloy::providers::Provider;
use analytics_primitives::keccak256;
use analytics_primitives::merkle::MerkleTree;
use anyhow::Context;
use insight_anchor::InsightAnchor;

use crate::cli::RunArgs;

/// Options of `bench gas`.
#[derive(Debug, clap::Args)]
pub struct GasArgs {
    /// Batch sizes, anchored in this order after one warm-up batch.
    #[arg(long, value_delimiter = ',', default_value = "1,16,256,1024")]
    pub sizes: Vec<usize>,
    /// Chain and key settings, as for `run`.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Runs the benchmark and prints a table.
pub async fn run(args: &GasArgs) -> anyhow::Result<()> {
    let config = args.run.config()?;
    let provider = crate::chain::signing_provider(&config.chain).await?.provider;
    let address = crate::chain::deploy(&provider).await?;
    let contract = InsightAnchor::new(address, provider.clone());

    // The first anchor also writes `lastRoot` from zero, which costs more;
    // it is reported apart.
    let mut prev = B256::ZERO;
    let first = anchor(&contract, &mut prev, 1, 0).await?;
    println!("contract {address}; first anchor ever: {first} gas");
    println!("{:>8} {:>10} {:>12}", "insights", "gas", "gas/insight");
    for (round, &size) in args.sizes.iter().enumerate() {
        let gas = anchor(&contract, &mut prev, size, round as u64 + 1).await?;
        println!("{size:>8} {gas:>10} {:>12.1}", gas as f64 / size.max(1) as f64);
    }
    Ok(())
}

async fn anchor<P: Provider>(
    contract: &InsightAnchor::InsightAnchorInstance<P>,
    prev: &mut B256,
    size: usize,
    salt: u64,
) -> anyhow::Result<u64> {
    // `size` insights and the batch's manifest leaf, as the node anchors.
    let hashes: Vec<B256> = (0..size.max(1))
        .map(|i| keccak256(format!("insight {salt} {i}").as_bytes()))
        .chain([keccak256(format!("manifest {salt}").as_bytes())])
        .collect();
    let tree = MerkleTree::new(&hashes).map_err(|e| anyhow::anyhow!("{e}"))?;
    let receipt = contract
        .anchor(tree.root(), hashes.len() as u64, *prev)
        .send()
        .await
        .context("sending anchor")?
        .get_receipt()
        .await
        .context("waiting for the receipt")?;
    *prev = tree.root();
    Ok(receipt.gas_used)
}
