//! JSON-RPC subscriptions over WebSocket, as a dashboard would use them.

use std::time::Duration;

use integration_tests::{publish, redis_connection, Node};
use jsonrpsee::core::client::{Subscription, SubscriptionClientT};
use jsonrpsee::rpc_params;
use jsonrpsee::ws_client::WsClientBuilder;
use serde_json::{json, Value};

async fn next(subscription: &mut Subscription<Value>) -> anyhow::Result<Value> {
    let item = tokio::time::timeout(Duration::from_secs(30), subscription.next()).await?;
    Ok(item.ok_or_else(|| anyhow::anyhow!("subscription ended"))??)
}

#[tokio::test]
async fn subscriptions_carry_insights_dashboard_updates_and_anchor_status(
) -> anyhow::Result<()> {
    let node = Node::start().await?;
    let url = node.rpc_url.replace("http://", "ws://");
    let client = WsClientBuilder::default().build(&url).await?;
    let mut insights: Subscription<Value> = client
        .subscribe(
            "analytics_subscribeInsights",
            rpc_params![],
            "analytics_unsubscribeInsights",
        )
        .await?;
    let mut dashboard: Subscription<Value> = client
        .subscribe(
            "analytics_subscribeDashboard",
            rpc_params![],
            "analytics_unsubscribeDashboard",
        )
        .await?;
    let mut anchors: Subscription<Value> = client
        .subscribe(
            "analytics_subscribeAnchors",
            rpc_params![],
            "analytics_unsubscribeAnchors",
        )
        .await?;

    let mut redis = redis_connection(&node.redis_url).await?;
    let sale = json!({ "type": "purchase", "value": 120, "user_id": "u1", "timestamp": 1_700_000_000 });
    publish(&mut redis, &node.channels.business, [sale.to_string().into_bytes()]).await?;

    let insight = next(&mut insights).await?;
    assert_eq!(insight["type"], "insights");
    assert_eq!(insight["data"]["kind"], "business");
    assert_eq!(insight["data"]["severity"], "medium");
    let id = insight["data"]["id"].as_i64().expect("an id");

    let update = next(&mut dashboard).await?;
    assert_eq!(update["type"], "dashboard_update");
    assert_eq!(update["data"]["metric"], "total_revenue");
    assert_eq!(update["data"]["value"], 120.0);

    let mut statuses = Vec::new();
    while !statuses.contains(&"final".to_owned()) {
        let change = next(&mut anchors).await?;
        assert_eq!(change["type"], "anchor");
        statuses.push(change["data"]["status"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(statuses, ["submitted", "anchored", "final"]);

    let served = node.call("analytics_getInsight", json!([id])).await?;
    assert_eq!(served["status"], "final");
    assert_eq!(served["hash"], insight["data"]["hash"]);

    insights.unsubscribe().await?;
    Ok(())
}
