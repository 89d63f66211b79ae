//! Redis restarted mid-stream: the worker subscribes again and goes on.

use std::path::Path;
use std::time::{Duration, Instant};

use integration_tests::{free_port, publish, redis_connection, spawn, Node, Process};
use serde_json::json;

fn start_redis(port: u16) -> anyhow::Result<Process> {
    let args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    spawn(Path::new("redis-server"), &args, &[], "redis")
        .map_err(|e| anyhow::anyhow!("{e}; install it with scripts/services.sh up"))
}

async fn wait_redis(url: &str) -> anyhow::Result<redis::aio::MultiplexedConnection> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match redis_connection(url).await {
            Ok(connection) => return Ok(connection),
            Err(err) if Instant::now() > deadline => return Err(err),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn metrics(range: std::ops::Range<i64>) -> Vec<Vec<u8>> {
    range
        .map(|i| {
            let message =
                json!({ "name": "load", "value": i, "timestamp": 1_700_000_000 + i });
            message.to_string().into_bytes()
        })
        .collect()
}

#[tokio::test]
async fn worker_resubscribes_after_redis_restarts() -> anyhow::Result<()> {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let mut redis_server = start_redis(port)?;
    wait_redis(&url).await?;
    let node = Node::start_with(url.clone()).await?;
    let pool = node.database.pool().await?;
    let events = || async {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&pool).await?;
        anyhow::Ok(n)
    };

    let mut redis = wait_redis(&url).await?;
    publish(&mut redis, &node.channels.metrics, metrics(0..100)).await?;
    node.wait_for("first 100 events", Duration::from_secs(30), || async {
        Ok((events().await? == 100).then_some(()))
    })
    .await?;

    redis_server.kill();
    node.wait_for("redis reported down", Duration::from_secs(30), || async {
        let health = node.health().await?;
        Ok((health["services"]["redis"]["up"] == false).then_some(()))
    })
    .await?;
    let _restarted = start_redis(port)?;
    let mut redis = wait_redis(&url).await?;
    node.wait_for("re-subscription", Duration::from_secs(30), || async {
        let health = node.health().await?;
        let back = health["services"]["redis"]["up"] == true
            && health["sinceStart"]["redisReconnects"].as_u64() >= Some(1);
        Ok(back.then_some(()))
    })
    .await?;

    publish(&mut redis, &node.channels.metrics, metrics(100..200)).await?;
    node.wait_for("all 200 events", Duration::from_secs(30), || async {
        Ok((events().await? == 200).then_some(()))
    })
    .await?;
    Ok(())
}
