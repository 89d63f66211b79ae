//! Several nodes on one database: broadcasts reach the clients of every
//! node, and exactly one node anchors, with a standby taking over.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use integration_tests::{publish, redis_connection, Node};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

fn metric(i: usize) -> Vec<u8> {
    json!({ "name": "shared", "value": i, "timestamp": 1_700_000_000 + i as i64 })
        .to_string()
        .into_bytes()
}

fn sale(i: usize) -> Vec<u8> {
    json!({ "type": "purchase", "value": 5 + i, "user_id": "u", "timestamp": 1_700_000_000 })
        .to_string()
        .into_bytes()
}

#[tokio::test]
async fn broadcasts_cross_nodes_and_a_standby_takes_over_anchoring() -> anyhow::Result<()>
{
    let mut first = Node::start().await?;
    let second = first.start_peer().await?;
    let mut redis = redis_connection(&first.redis_url).await?;

    // A dashboard on the second node follows what the first node ingests.
    let url = format!("{}/analytics", second.http_url.replace("http://", "ws://"));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await?;
    let subscribe = json!({ "type": "subscribe", "channels": ["dashboard", "anchors"] });
    socket.send(Message::Text(subscribe.to_string().into())).await?;
    publish(&mut redis, &first.channels.metrics, (0..30).map(metric)).await?;
    publish(&mut redis, &first.channels.business, [sale(0)]).await?;

    let mut values = Vec::new();
    let mut anchored = false;
    while values.len() < 31 || !anchored {
        let next = tokio::time::timeout(Duration::from_secs(30), socket.next()).await?;
        let Some(Ok(Message::Text(text))) = next else { continue };
        let message: Value = serde_json::from_str(text.as_str())?;
        match message["type"].as_str() {
            Some("dashboard_update") => values.push(message["data"]["value"].clone()),
            Some("anchor") => anchored |= message["data"]["status"] == "anchored",
            _ => {}
        }
    }
    let shared: Vec<Value> = (0..30).map(|i| json!(f64::from(i))).collect();
    assert_eq!(values[..30], shared[..], "relayed updates lost or reordered");

    // One anchorer: the second node stood by.
    let log = second.process.log_text();
    assert!(log.contains("standing by"), "second node did not stand by:\n{log}");

    // The anchoring node dies; the standby takes the lock and anchors.
    first.process.kill();
    let mut redis = redis_connection(&first.redis_url).await?;
    publish(&mut redis, &second.channels.business, [sale(1)]).await?;
    let id = first
        .wait_for("insight on the second node", Duration::from_secs(30), || async {
            let list = integration_tests::rpc::call(
                &second.rpc_url,
                "analytics_listInsights",
                json!([{ "limit": 1 }]),
            )
            .await?;
            let newest = &list[0];
            let from_second = newest["insight"]["event"]["stream"]
                .as_str()
                .is_some_and(|s| s.ends_with(&second.channels.business));
            Ok(from_second.then(|| newest["id"].as_i64()).flatten())
        })
        .await?;
    first
        .wait_for("anchoring by the standby", Duration::from_secs(60), || async {
            let insight = integration_tests::rpc::call(
                &second.rpc_url,
                "analytics_getInsight",
                json!([id]),
            )
            .await?;
            Ok((insight["status"] == "final").then_some(()))
        })
        .await?;
    assert!(second.process.log_text().contains("this node anchors"));
    Ok(())
}
