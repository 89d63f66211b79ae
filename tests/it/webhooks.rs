//! A critical anomaly calls the configured webhook, which is retried after
//! a failed attempt; ingestion goes on meanwhile.

use std::time::Duration;

use integration_tests::{publish, redis_connection, Node, NodeOptions};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A loopback HTTP server answering 500 to the first request and 200 to
/// the others; sends each request body on the channel.
async fn hook_server() -> anyhow::Result<(String, mpsc::UnboundedReceiver<Value>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut served = 0;
        while let Ok((stream, _)) = listener.accept().await {
            let status = if served == 0 { "500 Internal Server Error" } else { "200 OK" };
            served += 1;
            if let Ok(body) = answer(stream, status).await {
                let _ = sender.send(body);
            }
        }
    });
    Ok((url, receiver))
}

/// Reads one request and answers it with `status`; returns its JSON body.
async fn answer(mut stream: TcpStream, status: &str) -> anyhow::Result<Value> {
    let mut request = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head_len, body_len) = loop {
        let read = stream.read(&mut chunk).await?;
        anyhow::ensure!(read > 0, "connection closed mid-request");
        request.extend_from_slice(&chunk[..read]);
        if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&request[..end]).to_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (end + 4, length);
        }
    };
    while request.len() < head_len + body_len {
        let read = stream.read(&mut chunk).await?;
        anyhow::ensure!(read > 0, "connection closed mid-body");
        request.extend_from_slice(&chunk[..read]);
    }
    let reply =
        format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    stream.write_all(reply.as_bytes()).await?;
    Ok(serde_json::from_slice(&request[head_len..head_len + body_len])?)
}

fn metric_messages() -> Vec<Vec<u8>> {
    (0..600)
        .map(|i| {
            let noise = f64::from((i * 7919) % 13) / 13.0;
            let spike = if i == 560 { 10_000.0 } else { 0.0 };
            let message = json!({
                "name": "boiler_temperature",
                "value": 70.0 + noise + spike,
                "timestamp": 1_700_000_000_000_i64 + i64::from(i) * 60_000,
            });
            message.to_string().into_bytes()
        })
        .collect()
}

#[tokio::test]
async fn a_critical_anomaly_calls_the_webhook_with_retries() -> anyhow::Result<()> {
    let (url, mut calls) = hook_server().await?;
    let config = format!(
        "[webhooks]\nqueue_capacity = 8\n\n[[webhooks.targets]]\nurl = \"{url}\"\n\
         timeout_ms = 2000\nretries = 2\nbackoff_ms = 100\nseverities = [\"critical\"]\n"
    );
    let options = NodeOptions { config_toml: Some(config), ..NodeOptions::default() };
    let node = Node::launch(options).await?;
    let mut redis = redis_connection(&node.redis_url).await?;
    publish(&mut redis, &node.channels.metrics, metric_messages()).await?;

    // The first attempt is refused, the retry carries the same anomaly.
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let body = tokio::time::timeout(Duration::from_secs(60), calls.recv()).await?;
        bodies.push(body.expect("the hook server runs"));
    }
    assert_eq!(bodies[0], bodies[1], "the retry differs from the first attempt");
    let insight = &bodies[1]["insight"];
    assert_eq!(bodies[1]["type"], "critical_anomaly");
    assert_eq!(insight["kind"], "anomaly");
    assert_eq!(insight["severity"], "critical");
    assert_eq!(insight["subject"], "boiler_temperature");

    let logged = node
        .wait_for("the delivery logged", Duration::from_secs(10), || async {
            let log = node.process.log_text();
            Ok(log.lines().any(|l| l.contains("webhook delivered")).then_some(log))
        })
        .await?;
    let line = logged.lines().find(|l| l.contains("webhook delivered")).unwrap_or("");
    assert!(line.contains("attempt=2") && line.contains("status=200"), "{line}");
    Ok(())
}
