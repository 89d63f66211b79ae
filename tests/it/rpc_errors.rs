//! Bad JSON-RPC requests get JSON-RPC errors with useful messages.

use integration_tests::{rpc, Node};
use serde_json::json;

#[tokio::test]
async fn bad_requests_get_json_rpc_errors() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let cases = [
        ("analytics_getInsight", json!([424242]), -32001, "insight 424242 not found"),
        ("analytics_getInsightProof", json!([424242]), -32001, "not found"),
        ("analytics_getBatch", json!([7]), -32001, "batch 7 not found"),
        ("analytics_getInsight", json!(["0x1234"]), -32602, "not a 0x hash"),
        ("analytics_getInsight", json!([true]), -32602, "integer or a 0x hash"),
        ("analytics_listInsights", json!([{ "limit": 5000 }]), -32602, "limit 5000"),
        (
            "analytics_historicalData",
            json!([{ "metric": "cpu", "from": "yesterday" }]),
            -32602,
            "RFC 3339",
        ),
        ("analytics_noSuchMethod", json!([]), -32601, "not found"),
    ];
    for (method, params, code, text) in cases {
        let response = rpc::raw(&node.rpc_url, method, params.clone()).await?;
        let error = &response["error"];
        assert_eq!(error["code"], code, "{method} {params}: {response}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(text), "{method} {params}: {message:?} lacks {text:?}");
    }

    let history = node
        .call("analytics_historicalData", json!([{ "metric": "nothing-here" }]))
        .await?;
    assert_eq!(history, json!([]));
    Ok(())
}
