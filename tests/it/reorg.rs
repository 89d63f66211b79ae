//! A reorg that drops the anchoring block: the node anchors the batch
//! again, and every proof verifies against the chain that won.

use std::time::Duration;

use integration_tests::{publish, redis_connection, rpc, Node, NodeOptions};
use serde_json::{json, Value};

async fn batch_of(node: &Node, id: i64) -> anyhow::Result<Option<Value>> {
    let insight = node.call("analytics_getInsight", json!([id])).await?;
    let Some(batch) = insight["batchId"].as_i64() else { return Ok(None) };
    Ok(Some(node.call("analytics_getBatch", json!([batch])).await?))
}

#[tokio::test]
async fn a_reorg_dropping_the_anchor_block_ends_re_anchored_and_verifiable(
) -> anyhow::Result<()> {
    // Deep finality, so the batch is still watched when the reorg comes.
    let options = NodeOptions {
        config_toml: Some("[chain]\nconfirmations = 12\n".into()),
        ..NodeOptions::default()
    };
    let node = Node::launch(options).await?;
    let mut redis = redis_connection(&node.redis_url).await?;
    let sale = json!({ "type": "purchase", "value": 42, "user_id": "u", "timestamp": 1_700_000_000 });
    publish(&mut redis, &node.channels.business, [sale.to_string().into_bytes()]).await?;

    let id = node
        .wait_for("an insight", Duration::from_secs(30), || async {
            let list =
                node.call("analytics_listInsights", json!([{ "limit": 1 }])).await?;
            Ok(list[0]["id"].as_i64())
        })
        .await?;
    let before = node
        .wait_for("the first anchoring", Duration::from_secs(30), || async {
            let batch = batch_of(&node, id).await?;
            Ok(batch.filter(|b| b["status"] == "anchored"))
        })
        .await?;
    let block = before["blockNumber"].as_u64().expect("anchoring block");

    // Replace the anchoring block and everything after it with empty blocks.
    let head = rpc::call(&node.anvil.url, "eth_blockNumber", json!([])).await?;
    let head =
        u64::from_str_radix(head.as_str().expect("hex").trim_start_matches("0x"), 16)?;
    rpc::call(&node.anvil.url, "anvil_reorg", json!([head - block + 1, []])).await?;

    let after = node
        .wait_for("anchoring on the new chain", Duration::from_secs(60), || async {
            let batch = batch_of(&node, id).await?;
            Ok(batch.filter(|b| {
                b["status"] == "final" && b["blockHash"] != before["blockHash"]
            }))
        })
        .await?;
    assert_eq!(after["root"], before["root"], "the batch keeps its root");
    assert_eq!(after["id"], before["id"], "the batch keeps its id");

    let pool = node.database.pool().await?;
    let statuses: Vec<String> = sqlx::query_scalar(
        "SELECT status FROM anchor_events WHERE batch_id = $1 ORDER BY id",
    )
    .bind(before["id"].as_i64())
    .fetch_all(&pool)
    .await?;
    assert!(statuses.contains(&"reorged".to_owned()), "{statuses:?}");

    let proof = node.call("analytics_getInsightProof", json!([id])).await?;
    let contract = proof["batch"]["contract"].as_str().expect("contract").to_owned();
    let (ok, output) = node.verify(&proof, &["--contract", &contract])?;
    assert!(ok, "proof does not verify after the reorg:\n{output}");
    Ok(())
}
