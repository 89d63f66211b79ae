//! A stuck anchoring transaction: the chain's base fee jumps above the fee
//! cap of the transaction the node broadcast. After the configured number
//! of blocks the node replaces it (same nonce, both fees raised by at least
//! 10 %), the replacement is anchored, and the database's state machine
//! shows the history and refuses an illegal change.

use std::time::Duration;

use integration_tests::{rpc, Node, NodeOptions};
use serde_json::{json, Value};

fn quantity(value: &Value) -> u128 {
    let hex = value.as_str().expect("a hex quantity").trim_start_matches("0x");
    u128::from_str_radix(hex, 16).expect("a hex quantity")
}

#[tokio::test]
async fn a_stuck_anchoring_transaction_is_replaced_with_higher_fees_and_anchored(
) -> anyhow::Result<()> {
    let config = "[chain]\nconfirmations = 2\n\
                  [anchor]\nstuck_after_blocks = 2\nfee_bump_percent = 25\n";
    let options =
        NodeOptions { config_toml: Some(config.into()), ..NodeOptions::default() };
    let node = Node::launch(options).await?;
    let url = node.anvil.url.clone();

    // With mining paused the node's transaction waits in the pool.
    node.anvil.pause_mining().await?;
    node.publish_sale(42).await?;
    let id = node.newest_insight(0).await?;
    let submitted =
        node.wait_batch_status(id, "submitted", Duration::from_secs(30)).await?;
    let first_hash = submitted["txHash"].clone();
    let first = rpc::call(&url, "eth_getTransactionByHash", json!([first_hash])).await?;
    assert!(first["blockNumber"].is_null(), "mined while mining is paused: {first}");
    let first_fee = quantity(&first["maxFeePerGas"]);
    let first_tip = quantity(&first["maxPriorityFeePerGas"]);

    // The next block's base fee is four times the transaction's fee cap:
    // it cannot be included until it is replaced or the fee decays.
    node.anvil.set_next_base_fee(first_fee * 4).await?;
    node.anvil.resume_mining().await?;

    let last = node.wait_batch_status(id, "final", Duration::from_secs(90)).await?;
    assert_eq!(last["id"], submitted["id"], "the insight changed batch");
    assert_ne!(last["txHash"], first_hash, "anchored by the stuck transaction itself");

    // The included transaction is a replacement: same sender and nonce,
    // both fees at least 10 % higher.
    let included =
        rpc::call(&url, "eth_getTransactionByHash", json!([last["txHash"]])).await?;
    assert_eq!(included["nonce"], first["nonce"], "{included}");
    assert_eq!(included["from"], first["from"], "{included}");
    let fee = quantity(&included["maxFeePerGas"]);
    let tip = quantity(&included["maxPriorityFeePerGas"]);
    assert!(fee * 10 >= first_fee * 11, "fee cap {first_fee} -> {fee}");
    assert!(tip * 10 >= first_tip * 11, "tip cap {first_tip} -> {tip}");
    let stuck = rpc::call(&url, "eth_getTransactionReceipt", json!([first_hash])).await?;
    assert!(stuck.is_null(), "the replaced transaction was mined too: {stuck}");

    // The transaction manager's rows tell the story.
    let pool = node.database.pool().await?;
    let rows: Vec<(String, i64, String, Vec<u8>)> = sqlx::query_as(
        "SELECT state, nonce, max_fee_per_gas::text, tx_hash FROM anchor_txs \
         WHERE batch_id = $1 ORDER BY id",
    )
    .bind(last["id"].as_i64())
    .fetch_all(&pool)
    .await?;
    assert!(rows.len() >= 2, "no replacement recorded: {rows:?}");
    assert_eq!(rows[0].0, "replaced", "{rows:?}");
    assert!(rows.iter().all(|r| r.1 == rows[0].1), "nonces differ: {rows:?}");
    let finals: Vec<_> = rows.iter().filter(|r| r.0 == "final").collect();
    assert_eq!(finals.len(), 1, "{rows:?}");
    let final_hash = format!("0x{}", alloy::hex::encode(&finals[0].3));
    assert_eq!(Some(final_hash.as_str()), last["txHash"].as_str());
    let statuses: Vec<String> = sqlx::query_scalar(
        "SELECT status FROM anchor_events WHERE batch_id = $1 ORDER BY id",
    )
    .bind(last["id"].as_i64())
    .fetch_all(&pool)
    .await?;
    assert_eq!(statuses.first().map(String::as_str), Some("submitted"), "{statuses:?}");
    assert!(statuses.iter().any(|s| s == "replaced"), "{statuses:?}");
    assert_eq!(&statuses[statuses.len() - 2..], ["anchored", "final"], "{statuses:?}");

    // The schema enforces the state machine: a final transaction cannot go
    // back to broadcast, nor a final batch to pending.
    let back =
        sqlx::query("UPDATE anchor_txs SET state = 'broadcast' WHERE state = 'final'")
            .execute(&pool)
            .await;
    let err = back.expect_err("the database let a final transaction go back");
    assert!(err.to_string().contains("illegal anchor_tx state change"), "{err}");
    let back = sqlx::query(
        "UPDATE anchor_batches SET status = 'pending' WHERE status = 'final'",
    )
    .execute(&pool)
    .await;
    let err = back.expect_err("the database let a final batch go back");
    assert!(err.to_string().contains("illegal anchor_batch state change"), "{err}");
    for (statement, refusal) in [
        ("DELETE FROM anchor_txs", "anchor_txs rows are never deleted"),
        ("DELETE FROM anchor_batches", "anchor_batches rows are never deleted"),
        ("UPDATE anchor_txs SET raw = '\\x00'", "anchor_txs.raw never changes"),
        (
            "UPDATE anchor_batches SET root = decode(repeat('cd', 32), 'hex')",
            "anchor_batches.root never changes",
        ),
        (
            "UPDATE anchor_batches SET manifest = manifest || ' '",
            "anchor_batches.manifest never changes",
        ),
        (
            "INSERT INTO anchor_txs (batch_id, state, sender, nonce, max_fee_per_gas, \
             max_priority_fee_per_gas, gas_limit, tx_hash, raw, block_hash) \
             SELECT batch_id, 'final', sender, nonce + 1, 1, 1, 1, \
             decode(repeat('ab', 32), 'hex'), raw, block_hash FROM anchor_txs LIMIT 1",
            "a new anchor_txs row starts as unsent",
        ),
    ] {
        let result = sqlx::query(statement).execute(&pool).await;
        let err = result.expect_err(statement);
        assert!(err.to_string().contains(refusal), "{statement}: {err}");
    }

    // And the insight verifies against the chain.
    let proof = node.call("analytics_getInsightProof", json!([id])).await?;
    let contract = submitted["contract"].as_str().expect("a contract").to_owned();
    let (ok, output) = node.verify(&proof, &["--contract", &contract])?;
    assert!(ok, "the proof does not verify:\n{output}");
    Ok(())
}
