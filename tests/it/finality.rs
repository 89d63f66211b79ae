//! Finality from the chain's `finalized` block: with `chain.finality =
//! "finalized"` a batch stays `anchored` however deep it gets until the
//! chain finalizes its block (anvil finalizes 64 blocks behind the head),
//! and `verify` then reports it final.

use std::time::Duration;

use integration_tests::{rpc, Node, NodeOptions};
use serde_json::json;

#[tokio::test]
async fn with_finalized_finality_a_batch_waits_for_the_chains_finalized_block(
) -> anyhow::Result<()> {
    let config = "[chain]\nconfirmations = 2\nfinality = \"finalized\"\n";
    let options =
        NodeOptions { config_toml: Some(config.into()), ..NodeOptions::default() };
    let node = Node::launch(options).await?;
    node.publish_sale(42).await?;

    let anchored = node
        .wait_for("an anchored batch", Duration::from_secs(30), || async {
            let batch = node.call("analytics_getBatch", json!([1])).await.ok();
            Ok(batch.filter(|b| b["status"] == "anchored"))
        })
        .await?;
    let block = anchored["blockNumber"].as_u64().expect("an anchoring block");

    // Past the depth that `confirmations = 2` would call final, it is not.
    node.wait_for("five blocks on top", Duration::from_secs(30), || async {
        Ok((node.anvil.block_number().await? >= block + 5).then_some(()))
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let batch = node.call("analytics_getBatch", json!([1])).await?;
    assert_eq!(batch["status"], "anchored", "final before the chain finalized it");

    // Once the chain finalizes the anchoring block, the batch is final.
    rpc::call(&node.anvil.url, "anvil_mine", json!(["0x46"])).await?;
    node.wait_for("the batch final", Duration::from_secs(30), || async {
        let batch = node.call("analytics_getBatch", json!([1])).await?;
        Ok((batch["status"] == "final").then_some(()))
    })
    .await?;
    let pool = node.database.pool().await?;
    let details: serde_json::Value = sqlx::query_scalar(
        "SELECT data->'details' FROM anchor_events WHERE batch_id = 1 AND status = 'final'",
    )
    .fetch_one(&pool)
    .await?;
    let finalized = details["finalizedBlock"].as_u64().expect("the finalized block");
    assert!(finalized >= block, "{details}");

    let id = node.call("analytics_listInsights", json!([{ "limit": 1 }])).await?[0]["id"]
        .as_i64()
        .expect("an insight");
    let proof = node.call("analytics_getInsightProof", json!([id])).await?;
    let contract = anchored["contract"].as_str().expect("a contract").to_owned();
    let (ok, output) = node.verify(&proof, &["--contract", &contract])?;
    assert!(ok && output.contains("FINAL"), "{output}");
    Ok(())
}
