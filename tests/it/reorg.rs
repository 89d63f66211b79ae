//! A reorg that drops the anchoring block: the node anchors the batch
//! again, and every proof verifies against the chain that won.

use std::time::Duration;

use integration_tests::{rpc, Node, NodeOptions};
use serde_json::json;

#[tokio::test]
async fn a_reorg_dropping_the_anchor_block_ends_re_anchored_and_verifiable(
) -> anyhow::Result<()> {
    // Deep finality, so the batch is still watched when the reorg comes.
    let options = NodeOptions {
        config_toml: Some("[chain]\nconfirmations = 12\n".into()),
        ..NodeOptions::default()
    };
    let node = Node::launch(options).await?;
    node.publish_sale(42).await?;

    let id = node.newest_insight(0).await?;
    let before = node.wait_batch_status(id, "anchored", Duration::from_secs(30)).await?;
    let block = before["blockNumber"].as_u64().expect("anchoring block");

    // Replace the anchoring block and everything after it with empty blocks.
    let head = rpc::call(&node.anvil.url, "eth_blockNumber", json!([])).await?;
    let head =
        u64::from_str_radix(head.as_str().expect("hex").trim_start_matches("0x"), 16)?;
    rpc::call(&node.anvil.url, "anvil_reorg", json!([head - block + 1, []])).await?;

    let after = node
        .wait_for("anchoring on the new chain", Duration::from_secs(60), || async {
            let batch = node.batch_of(id).await?;
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
