//! The dashboard WebSocket protocol, driven as a dashboard would.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use integration_tests::{publish, redis_connection, Node, NodeOptions};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(node: &Node) -> anyhow::Result<Socket> {
    let url = format!("{}/analytics", node.http_url.replace("http://", "ws://"));
    let (socket, _) = tokio_tungstenite::connect_async(url).await?;
    Ok(socket)
}

/// The next JSON text message, or `None` after `wait` of silence.
async fn next_json(socket: &mut Socket, wait: Duration) -> anyhow::Result<Option<Value>> {
    loop {
        match tokio::time::timeout(wait, socket.next()).await {
            Err(_) => return Ok(None),
            Ok(None) => anyhow::bail!("socket closed"),
            Ok(Some(message)) => match message? {
                Message::Text(text) => {
                    return Ok(Some(serde_json::from_str(text.as_str())?))
                }
                Message::Close(frame) => anyhow::bail!("closed: {frame:?}"),
                _ => continue,
            },
        }
    }
}

async fn expect_type(socket: &mut Socket, kind: &str) -> anyhow::Result<Value> {
    let message = next_json(socket, Duration::from_secs(20)).await?;
    let message = message.ok_or_else(|| anyhow::anyhow!("no {kind} message"))?;
    assert_eq!(message["type"], kind, "{message}");
    assert!(message["timestamp"].is_string(), "{message}");
    Ok(message)
}

async fn send(socket: &mut Socket, value: Value) -> anyhow::Result<()> {
    socket.send(Message::Text(value.to_string().into())).await?;
    Ok(())
}

fn metric(i: usize, pad: usize) -> Vec<u8> {
    let message = json!({
        "name": "ws_metric", "value": i as f64, "timestamp": 1_700_000_000 + i as i64,
        "tags": { "pad": "p".repeat(pad) },
    });
    message.to_string().into_bytes()
}

#[tokio::test]
async fn subscribers_get_only_their_channels_and_errors_get_replies() -> anyhow::Result<()>
{
    let node = Node::start().await?;
    let mut redis = redis_connection(&node.redis_url).await?;
    let mut insights = connect(&node).await?;
    let mut dashboard = connect(&node).await?;
    let welcome = expect_type(&mut insights, "welcome").await?;
    assert!(welcome["data"]["connection_id"].is_string());
    expect_type(&mut dashboard, "welcome").await?;

    send(&mut insights, json!({ "type": "subscribe", "channels": ["insights"] })).await?;
    let answer = expect_type(&mut insights, "subscribed").await?;
    assert_eq!(answer["data"]["channels"], json!(["insights"]));
    send(&mut dashboard, json!({ "type": "subscribe", "channel": "dashboard" })).await?;
    expect_type(&mut dashboard, "subscribed").await?;

    // Malformed and unknown messages are answered, the socket stays open.
    for bad in [
        "not json",
        r#"{"type":"dance"}"#,
        r#"{"no_type":1}"#,
        r#"{"type":"subscribe","channels":["x"]}"#,
    ] {
        dashboard.send(Message::Text(bad.into())).await?;
        let error = expect_type(&mut dashboard, "error").await?;
        assert!(error["data"]["message"].is_string(), "{error}");
    }

    publish(&mut redis, &node.channels.metrics, (0..20).map(|i| metric(i, 0))).await?;
    let sale = json!({ "type": "purchase", "value": 10, "user_id": "u", "timestamp": 1_700_000_000 });
    publish(&mut redis, &node.channels.business, [sale.to_string().into_bytes()]).await?;

    for _ in 0..20 {
        let update = expect_type(&mut dashboard, "dashboard_update").await?;
        assert_eq!(update["data"]["metric"], "ws_metric");
    }
    let revenue = expect_type(&mut dashboard, "dashboard_update").await?;
    assert_eq!(revenue["data"]["metric"], "total_revenue");
    let insight = expect_type(&mut insights, "insights").await?;
    assert_eq!(insight["data"]["kind"], "business");
    // Nothing crossed channels.
    assert_eq!(next_json(&mut insights, Duration::from_millis(500)).await?, None);
    assert_eq!(next_json(&mut dashboard, Duration::from_millis(500)).await?, None);

    let request =
        json!({ "type": "request_historical_data", "metric": "ws_metric", "limit": 5 });
    send(&mut dashboard, request).await?;
    let history = expect_type(&mut dashboard, "historical_data").await?;
    let values: Vec<f64> = history["data"]["points"]
        .as_array()
        .expect("points")
        .iter()
        .filter_map(|p| p["value"].as_f64())
        .collect();
    assert_eq!(values, vec![19.0, 18.0, 17.0, 16.0, 15.0], "newest first");

    send(&mut dashboard, json!({ "type": "unsubscribe", "channels": ["dashboard"] }))
        .await?;
    let answer = expect_type(&mut dashboard, "unsubscribed").await?;
    assert_eq!(answer["data"]["channels"], json!([]));
    Ok(())
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_and_others_keep_receiving(
) -> anyhow::Result<()> {
    let options = NodeOptions {
        config_toml: Some("[server]\nws_queue_capacity = 4096\n".into()),
        ..NodeOptions::default()
    };
    let node = Node::launch(options).await?;
    let mut redis = redis_connection(&node.redis_url).await?;
    let mut stalled = connect(&node).await?;
    let mut reader = connect(&node).await?;
    for socket in [&mut stalled, &mut reader] {
        expect_type(socket, "welcome").await?;
        send(socket, json!({ "type": "subscribe", "channels": ["dashboard"] })).await?;
        expect_type(socket, "subscribed").await?;
    }

    // About 30 MB of updates, far more than socket buffers and a queue of
    // 4096 hold, at 5000 a second: a pace the reader keeps up with.
    const COUNT: usize = 20_000;
    const CHUNK: usize = 250;
    let channel = node.channels.metrics.clone();
    let producer = tokio::spawn(async move {
        let mut pace = tokio::time::interval(Duration::from_millis(50));
        for first in (0..COUNT).step_by(CHUNK) {
            pace.tick().await;
            publish(
                &mut redis,
                &channel,
                (first..first + CHUNK).map(|i| metric(i, 1500)),
            )
            .await?;
        }
        anyhow::Ok(())
    });

    let mut received = 0;
    while received < COUNT {
        let update = next_json(&mut reader, Duration::from_secs(30)).await?;
        let update =
            update.ok_or_else(|| anyhow::anyhow!("reader starved after {received}"))?;
        assert_eq!(update["type"], "dashboard_update", "{update}");
        assert_eq!(
            update["data"]["value"].as_f64(),
            Some(received as f64),
            "lost or reordered"
        );
        received += 1;
    }
    producer.await??;

    // The stalled client finds what was buffered, then the end: the reason
    // and a close frame when its socket had room for them, else a reset.
    let mut buffered = 0;
    let mut told = false;
    let closed = loop {
        let next = tokio::time::timeout(Duration::from_secs(30), stalled.next()).await?;
        match next {
            Some(Ok(Message::Text(text))) => {
                let message: Value = serde_json::from_str(text.as_str())?;
                if message["type"] == "dashboard_update" {
                    buffered += 1;
                }
                told |=
                    message["type"] == "error" && message["data"]["code"] == "too_slow";
            }
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break None,
        }
    };
    assert!(buffered < COUNT, "the stalled client was never dropped");
    if let Some(frame) = closed {
        assert!(told, "closed without the reason");
        assert_eq!(frame.code, CloseCode::Policy);
    }
    let metrics =
        integration_tests::rpc::get_text(&format!("{}/metrics", node.http_url)).await?;
    assert!(metrics.contains("analytics_ws_dropped_slow_total 1"), "{metrics}");
    Ok(())
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused_cleanly() -> anyhow::Result<()> {
    let node = Node::start().await?;
    let mut open = Vec::new();
    for _ in 0..1000 {
        open.push(connect(&node).await?);
    }
    // A session is admitted after its handshake: each welcome says this
    // one was, so the next connection is the 1001st the node counts.
    for socket in &mut open {
        expect_type(socket, "welcome").await?;
    }
    let mut extra = connect(&node).await?;
    let frame = loop {
        match tokio::time::timeout(Duration::from_secs(10), extra.next()).await? {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => anyhow::bail!("expected a close frame, got {other:?}"),
        }
    };
    let frame = frame.expect("a close frame with a reason");
    assert_eq!(u16::from(frame.code), 1013);
    assert!(frame.reason.contains("connection limit of 1000"), "{}", frame.reason);

    // The connections that were admitted still work.
    let first = open.first_mut().expect("connections");
    send(first, json!({ "type": "ping" })).await?;
    expect_type(first, "pong").await?;
    Ok(())
}

async fn dashboard_updates(
    socket: &mut Socket,
    count: usize,
) -> anyhow::Result<Vec<(i64, f64)>> {
    let mut seen = Vec::new();
    while seen.len() < count {
        let message = next_json(socket, Duration::from_secs(30)).await?;
        let message =
            message.ok_or_else(|| anyhow::anyhow!("only {} updates", seen.len()))?;
        if message["type"] == "dashboard_update" {
            let position = message["position"].as_i64().expect("a position");
            seen.push((position, message["data"]["value"].as_f64().expect("a value")));
        }
    }
    Ok(seen)
}

#[tokio::test]
async fn a_client_that_resumes_misses_nothing_and_receives_nothing_twice(
) -> anyhow::Result<()> {
    let options = NodeOptions {
        config_toml: Some("[server]\nws_max_resume = 100\n".into()),
        ..NodeOptions::default()
    };
    let node = Node::launch(options).await?;
    let mut redis = redis_connection(&node.redis_url).await?;
    let channel = node.channels.metrics.clone();

    let mut first = connect(&node).await?;
    expect_type(&mut first, "welcome").await?;
    send(&mut first, json!({ "type": "subscribe", "channels": ["dashboard"] })).await?;
    expect_type(&mut first, "subscribed").await?;
    publish(&mut redis, &channel, (0..50).map(|i| metric(i, 0))).await?;
    let before = dashboard_updates(&mut first, 30).await?;
    let (last_position, _) = *before.last().expect("updates");
    drop(first);

    // Missed while away, then more while resuming.
    publish(&mut redis, &channel, (50..100).map(|i| metric(i, 0))).await?;
    let mut second = connect(&node).await?;
    expect_type(&mut second, "welcome").await?;
    let resume = json!({ "type": "subscribe", "channels": ["dashboard"],
        "resume": { "dashboard": last_position } });
    send(&mut second, resume).await?;
    expect_type(&mut second, "subscribed").await?;
    let live = tokio::spawn({
        let channel = channel.clone();
        let url = node.redis_url.clone();
        async move {
            let mut redis = redis_connection(&url).await?;
            publish(&mut redis, &channel, (100..120).map(|i| metric(i, 0))).await
        }
    });
    let after = dashboard_updates(&mut second, 90).await?;
    live.await??;

    let values: Vec<f64> = before.iter().chain(&after).map(|(_, v)| *v).collect();
    let expected: Vec<f64> = (0..120).map(f64::from).collect();
    assert_eq!(values, expected, "missed or repeated updates");
    let positions: Vec<i64> = before.iter().chain(&after).map(|(p, _)| *p).collect();
    assert!(positions.windows(2).all(|w| w[1] == w[0] + 1), "{positions:?}");
    assert_eq!(next_json(&mut second, Duration::from_millis(500)).await?, None);

    // A gap longer than the node replays is reported, not silently cut.
    let mut late = connect(&node).await?;
    expect_type(&mut late, "welcome").await?;
    let resume = json!({ "type": "subscribe", "channels": ["dashboard"],
        "resume": { "dashboard": 0 } });
    send(&mut late, resume).await?;
    expect_type(&mut late, "subscribed").await?;
    let gap = expect_type(&mut late, "error").await?;
    assert_eq!(gap["data"]["code"], "resume_gap", "{gap}");
    assert_eq!(gap["data"]["missed"], 120);
    Ok(())
}
