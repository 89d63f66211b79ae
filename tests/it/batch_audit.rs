//! An auditor's check of a whole batch: the exported batch verifies (every
//! leaf, the manifest, the dead letters it accounts for, the chain of roots
//! and the record proven with `eth_getProof`), and any change to an
//! insight, a dead letter or the set of dead letters is caught.

use std::time::Duration;

use integration_tests::{publish, redis_connection, Node};
use serde_json::{json, Value};

#[tokio::test]
async fn an_exported_batch_verifies_and_accounts_for_its_dead_letters(
) -> anyhow::Result<()> {
    let node = Node::start().await?;
    let mut redis = redis_connection(&node.redis_url).await?;
    let pool = node.database.pool().await?;

    let malformed: Vec<Vec<u8>> = vec![
        b"this is not json".to_vec(),
        br#"{"name":"cpu","value":"high","timestamp":1}"#.to_vec(),
        b"\xff\xfe binary".to_vec(),
    ];
    publish(&mut redis, &node.channels.metrics, malformed.clone()).await?;
    node.wait_for("the dead letters", Duration::from_secs(30), || async {
        let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letters")
            .fetch_one(&pool)
            .await?;
        Ok((dead == 3).then_some(()))
    })
    .await?;
    let sale = json!({ "type": "purchase", "value": 42, "user_id": "u", "timestamp": 1_700_000_000 });
    publish(&mut redis, &node.channels.business, [sale.to_string().into_bytes()]).await?;

    // The batch whose manifest took the dead letters, once final.
    let batch_id: i64 = node
        .wait_for("the dead letters batched", Duration::from_secs(60), || async {
            let id: Option<i64> =
                sqlx::query_scalar("SELECT max(batch_id) FROM dead_letters")
                    .fetch_one(&pool)
                    .await?;
            Ok(id)
        })
        .await?;
    node.wait_for("the batch final", Duration::from_secs(60), || async {
        let batch = node.call("analytics_getBatch", json!([batch_id])).await?;
        Ok((batch["status"] == "final").then_some(()))
    })
    .await?;
    let export = node.call("analytics_exportBatch", json!([batch_id])).await?;
    assert_eq!(export["format"], "analytics-batch-export/1");
    let letters = export["deadLetters"].as_array().expect("dead letters");
    let raws: Vec<String> =
        letters.iter().map(|l| l["raw"].as_str().expect("raw").to_owned()).collect();
    let sent: Vec<String> =
        malformed.iter().map(|raw| format!("0x{}", alloy::hex::encode(raw))).collect();
    assert_eq!(raws, sent, "the manifest accounts for exactly the rejected messages");
    assert_eq!(export["manifest"]["deadLetters"]["count"], 3, "{}", export["manifest"]);
    let leaves = export["leaves"].as_array().expect("leaves").len() as i64;
    assert_eq!(export["batch"]["leafCount"].as_i64(), Some(leaves + 1), "{export}");

    let contract = export["batch"]["contract"].as_str().expect("contract").to_owned();
    let args = ["--contract", contract.as_str(), "--storage-proof"];
    let (ok, output) = node.verify(&export, &args)?;
    assert!(ok, "the exported batch does not verify:\n{output}");
    for expected in [
        "3 dead letters rejected since the previous batch",
        "account proof of",
        "storage proof of slot",
        "the proven slot holds batch",
        "chain of roots",
    ] {
        assert!(output.contains(expected), "no {expected:?} in:\n{output}");
    }

    // Tampering is caught: a dead letter's bytes, a dropped dead letter, an
    // insight's content.
    let tamper = |change: &dyn Fn(&mut Value)| {
        let mut copy = export.clone();
        change(&mut copy);
        node.verify(&copy, &args)
    };
    let (ok, output) = tamper(&|doc| doc["deadLetters"][0]["raw"] = json!("0x00"))?;
    assert!(!ok, "changed dead-letter bytes verified:\n{output}");
    let (ok, output) = tamper(&|doc| {
        let letter = doc["deadLetters"][1].clone();
        doc["deadLetters"][0]["rawHash"] = letter["rawHash"].clone();
        doc["deadLetters"][0]["raw"] = letter["raw"].clone();
    })?;
    assert!(!ok, "a substituted dead letter verified:\n{output}");
    let (ok, output) = tamper(&|doc| {
        doc["deadLetters"].as_array_mut().expect("array").pop();
    })?;
    assert!(!ok, "a dropped dead letter verified:\n{output}");
    assert!(output.contains("DIFFERS"), "{output}");
    let (ok, output) =
        tamper(&|doc| doc["leaves"][0]["insight"]["subject"] = json!("x"))?;
    assert!(!ok, "a changed insight verified:\n{output}");
    let (ok, output) = tamper(&|doc| doc["deadLetters"][0]["raw"] = Value::Null)?;
    assert!(!ok && output.contains("withheld"), "withheld bytes verified:\n{output}");
    let (ok, output) = tamper(&|doc| {
        doc["batch"]["contract"] = json!("0x1111111111111111111111111111111111111111");
    })?;
    assert!(!ok, "a batch claiming another contract verified:\n{output}");

    // A single insight's proof passes the same chain checks.
    let id = export["leaves"][0]["id"].as_i64().expect("an insight id");
    let proof = node.call("analytics_getInsightProof", json!([id])).await?;
    let (ok, output) = node.verify(&proof, &args)?;
    assert!(ok, "the insight proof does not verify:\n{output}");
    assert!(output.contains("the proven slot holds batch"), "{output}");
    Ok(())
}
