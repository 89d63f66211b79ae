//! A node killed after broadcasting an anchoring transaction but before
//! the chain included it: after a restart it waits for that transaction
//! instead of sending another, and the batch is anchored exactly once.

use std::time::Duration;

use alloy::primitives::{Address, B256};
use alloy::providers::ProviderBuilder;
use alloy::sol_types::SolEvent;
use insight_anchor::InsightAnchor;
use integration_tests::{rpc, Node, NodeOptions};
use serde_json::{json, Value};

fn hex_u64(value: &Value) -> u64 {
    let hex = value.as_str().expect("a hex quantity").trim_start_matches("0x");
    u64::from_str_radix(hex, 16).expect("a hex quantity")
}

fn address(value: &Value) -> Address {
    value.as_str().expect("an address").parse().expect("an address")
}

/// Every transaction the chain holds from `from`, oldest first.
async fn transactions_from(url: &str, from: Address) -> anyhow::Result<Vec<Value>> {
    let head = hex_u64(&rpc::call(url, "eth_blockNumber", json!([])).await?);
    let mut sent = Vec::new();
    for number in 0..=head {
        let tag = format!("0x{number:x}");
        let block = rpc::call(url, "eth_getBlockByNumber", json!([tag, true])).await?;
        let transactions = block["transactions"].as_array().cloned().unwrap_or_default();
        sent.extend(transactions.into_iter().filter(|tx| address(&tx["from"]) == from));
    }
    Ok(sent)
}

#[tokio::test]
async fn a_node_killed_between_broadcast_and_inclusion_anchors_each_batch_exactly_once(
) -> anyhow::Result<()> {
    let options = NodeOptions {
        config_toml: Some("[chain]\nconfirmations = 2\n".into()),
        ..NodeOptions::default()
    };
    let mut node = Node::launch(options).await?;
    let url = node.anvil.url.clone();

    // Nothing gets mined from here on: the anchoring transaction the node
    // broadcasts for the batch stays in the pool.
    node.anvil.pause_mining().await?;
    node.publish_sale(42).await?;
    let id = node.newest_insight(0).await?;
    let submitted =
        node.wait_batch_status(id, "submitted", Duration::from_secs(30)).await?;
    let tx_hash = submitted["txHash"].as_str().expect("a submitted batch has its tx");
    let tx = rpc::call(&url, "eth_getTransactionByHash", json!([tx_hash])).await?;
    assert!(tx["blockNumber"].is_null(), "mined while mining is paused: {tx}");
    let anchorer = address(&tx["from"]);
    let contract = address(&submitted["contract"]);

    // Killed while its transaction waits for a block; back with the same
    // settings, and given time to look at the batch while still unmined.
    node.process.kill();
    // A kill between recording the transaction and announcing it leaves the
    // `submitted` status change unrecorded; made so here whenever the kill
    // came later. The node back must record it.
    let pool = node.database.pool().await?;
    sqlx::query("DELETE FROM anchor_events WHERE batch_id = $1 AND status = 'submitted'")
        .bind(submitted["id"].as_i64())
        .execute(&pool)
        .await?;
    node.start_again().await?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let waiting = node.batch_of(id).await?.expect("the insight keeps its batch");
    assert_eq!(waiting["status"], "submitted", "{waiting}");
    assert_eq!(waiting["txHash"], submitted["txHash"], "the node sent another tx");

    node.anvil.resume_mining().await?;
    let last = node.wait_batch_status(id, "final", Duration::from_secs(60)).await?;
    assert_eq!(last["id"], submitted["id"], "the insight changed batch");
    assert_eq!(last["txHash"], submitted["txHash"], "anchored by another tx");

    // The contract counts as many batches as the database holds.
    let batches: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, status FROM anchor_batches ORDER BY id")
            .fetch_all(&pool)
            .await?;
    let provider = ProviderBuilder::new().connect_http(url.parse()?);
    let on_chain = InsightAnchor::new(contract, provider).batchCount().call().await?;
    assert_eq!(on_chain, batches.len() as u64, "database batches: {batches:?}");

    // One anchoring transaction per batch, none reverted, none left over.
    let sent = transactions_from(&url, anchorer).await?;
    let mut anchoring = 0;
    for tx in &sent {
        let hash = tx["hash"].clone();
        let receipt = rpc::call(&url, "eth_getTransactionReceipt", json!([hash])).await?;
        assert_eq!(
            receipt["status"], "0x1",
            "a transaction of the anchorer failed: {tx}"
        );
        if tx["to"].as_str().and_then(|to| to.parse::<Address>().ok()) == Some(contract) {
            anchoring += 1;
        }
    }
    assert_eq!(anchoring, on_chain, "anchoring transactions: {sent:?}");
    let pool_content = rpc::call(&url, "txpool_status", json!([])).await?;
    assert_eq!(pool_content["pending"], "0x0", "{pool_content}");
    assert_eq!(pool_content["queued"], "0x0", "{pool_content}");

    // The root was anchored once; the batch went through each status once.
    let root: B256 = last["root"].as_str().expect("a root").parse()?;
    let filter = json!([{
        "address": contract,
        "fromBlock": "0x0",
        "toBlock": "latest",
        "topics": [InsightAnchor::Anchored::SIGNATURE_HASH, Value::Null, root],
    }]);
    let logs = rpc::call(&url, "eth_getLogs", filter).await?;
    assert_eq!(logs.as_array().map(Vec::len), Some(1), "Anchored events: {logs}");
    let statuses: Vec<String> = sqlx::query_scalar(
        "SELECT status FROM anchor_events WHERE batch_id = $1 ORDER BY id",
    )
    .bind(last["id"].as_i64())
    .fetch_all(&pool)
    .await?;
    assert_eq!(statuses, ["submitted", "anchored", "final"]);

    let proof = node.call("analytics_getInsightProof", json!([id])).await?;
    let (ok, output) = node.verify(&proof, &["--contract", &contract.to_string()])?;
    assert!(ok, "the proof does not verify after the restart:\n{output}");
    Ok(())
}
