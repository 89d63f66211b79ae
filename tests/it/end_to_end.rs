//! Real events in over Redis, insights anchored on anvil, proofs verified
//! by the node's verifier and by an independent client.

use std::process::Command;
use std::time::Duration;

use integration_tests::{publish, redis_connection, rpc, workspace_root, Node};
use serde_json::{json, Value};

const NAB_SERIES: &str = "data/nab/realKnownCause/machine_temperature_system_failure.csv";

/// The first `count` rows of the NAB series as system-metric messages.
fn nab_messages(count: usize, skip: usize) -> Vec<Vec<u8>> {
    let path = workspace_root().join(NAB_SERIES);
    let text = std::fs::read_to_string(&path).expect("the NAB series ships in data/nab");
    text.lines()
        .skip(1 + skip)
        .take(count)
        .map(|line| {
            let (stamp, value) = line.split_once(',').expect("timestamp,value");
            let timestamp = format!("{}Z", stamp.trim().replace(' ', "T"));
            let value: f64 = value.trim().parse().expect("a number");
            let message = json!({
                "name": "machine_temperature",
                "value": value,
                "tags": { "source": "nab" },
                "timestamp": timestamp,
            });
            message.to_string().into_bytes()
        })
        .collect()
}

fn user_messages(count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let message = json!({
                "type": if i % 2 == 0 { "page_view" } else { "click" },
                "user_id": format!("user-{}", i % 13),
                "session_id": format!("s-{}", i % 5),
                "timestamp": 1_700_000_000 + i as i64,
            });
            message.to_string().into_bytes()
        })
        .collect()
}

fn business_messages() -> Vec<Vec<u8>> {
    let kinds =
        [("purchase", 250.0), ("signup", 0.0), ("support_ticket", 5.0), ("promo", 1.0)];
    kinds
        .iter()
        .cycle()
        .take(20)
        .enumerate()
        .map(|(i, (kind, value))| {
            let message = json!({
                "type": kind, "user_id": format!("user-{i}"), "value": value,
                "source": "web", "timestamp": 1_700_000_100_000_i64 + i as i64,
            });
            message.to_string().into_bytes()
        })
        .collect()
}

async fn count(node: &Node, table: &str) -> anyhow::Result<i64> {
    let pool = node.database.pool().await?;
    let sql = format!("SELECT count(*) FROM {table}");
    Ok(sqlx::query_scalar(&sql).fetch_one(&pool).await?)
}

/// Waits until `id` is in a batch whose status is one of `statuses`.
async fn wait_status(node: &Node, id: i64, statuses: &[&str]) -> anyhow::Result<Value> {
    node.wait_for("insight status", Duration::from_secs(60), || async {
        let insight = node.call("analytics_getInsight", json!([id])).await?;
        let status = insight["status"].as_str().unwrap_or_default().to_owned();
        Ok(statuses.contains(&status.as_str()).then_some(insight))
    })
    .await
}

#[tokio::test]
async fn events_flow_from_redis_to_anchored_verified_insights() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let mut redis = redis_connection(&node.redis_url).await?;

    // First wave: a NAB series with its anomalies, users and business events.
    let mut sent =
        publish(&mut redis, &node.channels.metrics, nab_messages(1300, 3200)).await?;
    sent += publish(&mut redis, &node.channels.user, user_messages(100)).await?;
    sent += publish(&mut redis, &node.channels.business, business_messages()).await?;
    let expected = sent as i64;
    node.wait_for("events stored", Duration::from_secs(60), || async {
        Ok((count(&node, "events").await? == expected).then_some(()))
    })
    .await?;
    assert_eq!(count(&node, "dead_letters").await?, 0);
    // 1300 samples, 5 revenue and 5 acquisition derived points.
    assert_eq!(count(&node, "metrics").await?, 1310);

    let insights =
        node.call("analytics_listInsights", json!([{ "limit": 1000 }])).await?;
    let insights = insights.as_array().expect("a list").clone();
    let kinds: Vec<&str> = insights.iter().filter_map(|i| i["kind"].as_str()).collect();
    for kind in ["business", "activity", "anomaly"] {
        assert!(kinds.contains(&kind), "no {kind} insight among {kinds:?}");
    }
    check_block_stamp(&node, &insights[0]).await?;

    // The first insight gets anchored; then a second wave makes a second batch.
    let first = insights.last().expect("insights")["id"].as_i64().expect("id");
    wait_status(&node, first, &["anchored", "final"]).await?;
    publish(&mut redis, &node.channels.business, business_messages()).await?;
    let newest = node
        .wait_for("second-wave insight", Duration::from_secs(30), || async {
            let list =
                node.call("analytics_listInsights", json!([{ "limit": 1 }])).await?;
            let id = list[0]["id"].as_i64().unwrap_or(0);
            Ok((id > insights[0]["id"].as_i64().unwrap_or(0)).then_some(id))
        })
        .await?;
    wait_status(&node, newest, &["final"]).await?;
    wait_status(&node, first, &["final"]).await?;

    let proof = node.call("analytics_getInsightProof", json!([first])).await?;
    let other = node.call("analytics_getInsightProof", json!([newest])).await?;
    assert_ne!(proof["root"], other["root"], "the two waves share a batch");
    let lying = integration_tests::Anvil::start().await?;
    check_verifier(&node, &proof, &other, &lying.url)?;
    check_independent_client(&node, &proof)?;
    Ok(())
}

/// The block an insight claims to have seen exists on the chain.
async fn check_block_stamp(node: &Node, insight: &Value) -> anyhow::Result<()> {
    let block = &insight["insight"]["block"];
    let number = block["number"].as_u64().expect("block number");
    assert!(number > 0, "insight stamped with block 0");
    let tag = format!("0x{number:x}");
    let on_chain =
        rpc::call(&node.anvil.url, "eth_getBlockByNumber", json!([tag, false])).await?;
    assert_eq!(on_chain["hash"], block["hash"], "stamped hash is not the chain's");
    Ok(())
}

fn check_verifier(
    node: &Node,
    proof: &Value,
    other: &Value,
    other_chain: &str,
) -> anyhow::Result<()> {
    let contract = proof["batch"]["contract"].as_str().expect("contract").to_owned();
    let pin = ["--contract", contract.as_str()];

    let (ok, output) = node.verify(proof, &pin)?;
    assert!(ok, "a served proof does not verify:\n{output}");
    assert!(output.contains("computed after block"), "{output}");
    assert!(output.contains("anchored in block"), "{output}");

    // The status follows the depth the auditor asks for.
    let (ok, output) =
        node.verify(proof, &[&pin[..], &["--finality-depth", "1000"]].concat())?;
    assert!(ok && output.contains("CONFIRMED (depth"), "{output}");
    let (ok, output) =
        node.verify(proof, &[&pin[..], &["--finality-depth", "1"]].concat())?;
    assert!(ok && output.contains("FINAL: batch"), "{output}");

    // A second endpoint that agrees passes; one on another chain is caught.
    let same = ["--second-rpc-url", node.anvil.url.as_str()];
    let (ok, output) = node.verify(proof, &[&pin[..], &same[..]].concat())?;
    assert!(ok, "the same chain as second endpoint failed:\n{output}");
    let (ok, output) =
        node.verify(proof, &[&pin[..], &["--second-rpc-url", other_chain]].concat())?;
    assert!(!ok, "a second endpoint on another chain went unnoticed:\n{output}");
    assert!(output.contains("FAIL second endpoint"), "{output}");

    let mut tampered = proof.clone();
    tampered["insight"]["confidence"] = json!(0.123);
    tampered.as_object_mut().expect("object").remove("hash");
    let (ok, output) = node.verify(&tampered, &pin)?;
    assert!(!ok, "a tampered insight verified:\n{output}");
    assert!(output.contains("NOT ANCHORED"), "{output}");

    let mut wrong_root = proof.clone();
    wrong_root["proof"] = other["proof"].clone();
    wrong_root.as_object_mut().expect("object").remove("root");
    let (ok, output) = node.verify(&wrong_root, &pin)?;
    assert!(!ok, "a proof against another root verified:\n{output}");
    Ok(())
}

fn check_independent_client(node: &Node, proof: &Value) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("proof.json");
    std::fs::write(&path, serde_json::to_vec(proof)?)?;
    let script = workspace_root().join("tests/js/verify-proof.mjs");
    let contract = proof["batch"]["contract"].as_str().expect("contract");
    let output = Command::new("node")
        .arg(&script)
        .arg(&path)
        .args([node.anvil.url.as_str(), contract])
        .output()
        .map_err(|e| {
            anyhow::anyhow!("cannot run node (Node.js): {e}; run scripts/services.sh up")
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "independent check failed: {stdout}{stderr}\n(needs `npm --prefix contracts ci`)"
    );
    let result: Value = serde_json::from_str(stdout.trim())?;
    assert_eq!(result["hashMatches"], true);
    assert_eq!(result["merkleVerifies"], true);
    assert_eq!(result["contractVerifies"], true);
    assert_eq!(result["anchoredBatch"], proof["batch"]["onchainBatch"]);
    Ok(())
}
