//! The node's anvil restarted from scratch: the contract and every anchor
//! are gone. The node reports it, in its health and its log, rather than
//! carrying on as if the chain were the one it anchored on.

use std::time::Duration;

use integration_tests::{rpc, Node};
use serde_json::{json, Value};

#[tokio::test]
async fn a_chain_restarted_from_scratch_is_reported_as_a_reset() -> anyhow::Result<()> {
    let mut node = Node::start().await?;
    node.publish_sale(42).await?;
    let id = node.newest_insight(0).await?;
    let anchored = node.wait_batch_status(id, "final", Duration::from_secs(60)).await?;
    let contract = anchored["contract"].as_str().expect("a contract").to_owned();
    let tx = rpc::call(
        &node.anvil.url,
        "eth_getTransactionByHash",
        json!([anchored["txHash"]]),
    )
    .await?;
    let anchorer = tx["from"].as_str().expect("a sender").to_owned();

    // The old chain runs well ahead of where the fresh one will start, and
    // the node has followed it there.
    rpc::call(&node.anvil.url, "anvil_mine", json!([20])).await?;
    let old_head = node.anvil.block_number().await?;
    node.wait_for("the node at the old head", Duration::from_secs(30), || async {
        let health = node.health().await?;
        let seen = health["chainHead"]["number"].as_u64().unwrap_or(0);
        Ok((seen >= old_head).then_some(()))
    })
    .await?;
    let before = node.health().await?;
    assert_eq!(before["status"], "ok", "{before}");

    node.anvil.reset().await?;
    assert!(
        node.anvil.block_number().await? + 2 <= old_head,
        "the fresh chain is not behind"
    );

    let health = node
        .wait_for("the chain reported down", Duration::from_secs(30), || async {
            let health = node.health().await?;
            let chain = &health["services"]["chain"];
            let detail = chain["detail"].as_str().unwrap_or_default();
            let reported = chain["up"] == false && detail.contains("no contract code");
            Ok(reported.then_some(health))
        })
        .await?;
    let detail = health["services"]["chain"]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("no contract code"), "{health}");
    assert!(detail.contains("chain reset"), "{health}");
    assert!(detail.to_lowercase().contains(&contract.to_lowercase()), "{health}");
    assert_eq!(health["status"], "degraded", "{health}");

    let client = reqwest::Client::builder().no_proxy().build()?;
    let response = client.get(format!("{}/health", node.http_url)).send().await?;
    assert_eq!(response.status().as_u16(), 503);
    let body: Value = response.json().await?;
    assert_eq!(body["status"], "degraded", "{body}");

    node.wait_for("the head going back in the log", Duration::from_secs(30), || async {
        let log = node.process.log_text();
        Ok(log.contains("chain head went back; reorg or chain reset").then_some(()))
    })
    .await?;

    // A new insight on the fresh chain: nothing is sent to an address
    // without a contract, anchoring says why it is stuck, and says it once.
    node.publish_sale(43).await?;
    let later = node.newest_insight(id).await?;
    let health = node
        .wait_for("anchoring reported failing", Duration::from_secs(30), || async {
            let health = node.health().await?;
            let failures = health["anchoring"]["consecutiveFailures"].as_u64();
            Ok((failures >= Some(4)).then_some(health))
        })
        .await?;
    assert_eq!(health["anchoring"]["status"], "failing", "{health}");
    let cause = health["anchoring"]["lastError"].as_str().unwrap_or_default();
    assert!(cause.contains("no contract code"), "{health}");
    let sent = rpc::call(
        &node.anvil.url,
        "eth_getTransactionCount",
        json!([anchorer, "pending"]),
    )
    .await?;
    assert_eq!(sent, "0x0", "the node sent transactions to the reset chain");
    let insight = node.call("analytics_getInsight", json!([later])).await?;
    assert!(insight["batchId"].is_null(), "batched for a missing contract: {insight}");
    let log = node.process.log_text();
    let warnings = log
        .lines()
        .filter(|l| l.contains("anchoring step failed") && l.contains("no contract code"))
        .count();
    assert_eq!(warnings, 1, "the same failure logged again and again:\n{log}");

    // The proof of the earlier insight does not verify against this chain.
    let proof = node.call("analytics_getInsightProof", json!([id])).await?;
    let (ok, output) = node.verify(&proof, &["--contract", &contract])?;
    assert!(!ok, "a proof verified on a chain without its anchor:\n{output}");

    // Restarted, the node deploys a fresh contract, which on anvil lands at
    // the same address; the batches it holds build on roots that contract
    // never saw, so it reports that instead of anchoring on top of them.
    node.restart().await?;
    let health = node
        .wait_for("the lost history reported", Duration::from_secs(60), || async {
            let health = node.health().await?;
            let cause = health["anchoring"]["lastError"].as_str().unwrap_or_default();
            Ok(cause.contains("does not hold root").then_some(health))
        })
        .await?;
    let cause = health["anchoring"]["lastError"].as_str().unwrap_or_default();
    assert!(cause.contains("chain reset or contract replaced"), "{health}");
    let sent = rpc::call(
        &node.anvil.url,
        "eth_getTransactionCount",
        json!([anchorer, "pending"]),
    )
    .await?;
    assert_eq!(sent, "0x1", "only the deployment may be sent: {health}");
    Ok(())
}
