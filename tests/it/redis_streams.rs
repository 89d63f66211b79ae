//! Redis Streams: a worker killed with SIGKILL again and again while it
//! consumes stores every message exactly once, and exactly the malformed
//! ones as dead letters.

use integration_tests::{
    kill_while_consuming, redis_connection, wait_all_stored, Node, NodeOptions,
};
use serde_json::json;

const MESSAGES: usize = 100_000;
/// Every this many messages, one is malformed.
const MALFORMED_EVERY: usize = 1000;
const KILLS: usize = 5;

fn message(i: usize) -> Vec<u8> {
    if i.is_multiple_of(MALFORMED_EVERY) {
        return format!("malformed message {i}").into_bytes();
    }
    json!({ "name": "stream_load", "value": i, "timestamp": 1_700_000_000 + i as i64 })
        .to_string()
        .into_bytes()
}

async fn produce(
    redis: &mut redis::aio::MultiplexedConnection,
    stream: &str,
) -> anyhow::Result<()> {
    for chunk in (0..MESSAGES).collect::<Vec<_>>().chunks(2000) {
        let mut pipe = redis::pipe();
        for &i in chunk {
            pipe.cmd("XADD").arg(stream).arg("*").arg("payload").arg(message(i)).ignore();
        }
        let () = pipe.query_async(redis).await?;
    }
    Ok(())
}

#[tokio::test]
async fn sigkilled_stream_worker_stores_every_message_exactly_once() -> anyhow::Result<()>
{
    let options = NodeOptions {
        config_toml: Some("[redis]\nmode = \"streams\"\n".into()),
        ..NodeOptions::default()
    };
    let mut node = Node::launch(options).await?;
    let mut redis = redis_connection(&node.redis_url).await?;
    let stream = node.channels.metrics.clone();
    produce(&mut redis, &stream).await?;

    let pool = node.database.pool().await?;
    let mid_stream =
        kill_while_consuming(&mut node, &pool, KILLS, MESSAGES as i64).await?;
    assert!(mid_stream >= 3, "only {mid_stream} kills landed while consuming");

    let malformed = MESSAGES.div_ceil(MALFORMED_EVERY) as i64;
    let good = MESSAGES as i64 - malformed;
    wait_all_stored(&node, &pool, MESSAGES as i64).await?;

    let (events, distinct, sum): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT \"offset\"), \
         coalesce(sum((payload->>'value')::int8), 0)::int8 FROM events",
    )
    .fetch_one(&pool)
    .await?;
    let expected_sum: i64 =
        (0..MESSAGES).filter(|i| i % MALFORMED_EVERY != 0).map(|i| i as i64).sum();
    assert_eq!(events, good, "events stored");
    assert_eq!(distinct, good, "an event stored twice");
    assert_eq!(sum, expected_sum, "payload checksum");

    let letters: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT raw FROM dead_letters ORDER BY \"offset\"")
            .fetch_all(&pool)
            .await?;
    let expected: Vec<Vec<u8>> =
        (0..MESSAGES).step_by(MALFORMED_EVERY).map(message).collect();
    assert_eq!(letters, expected, "dead letters are exactly the malformed messages");

    // Everything stored was acknowledged: nothing stays pending.
    let pending: redis::Value = redis::cmd("XPENDING")
        .arg(&stream)
        .arg("analytics_dashboard")
        .query_async(&mut redis)
        .await?;
    let redis::Value::Array(summary) = pending else {
        anyhow::bail!("XPENDING: {pending:?}")
    };
    assert_eq!(
        summary.first(),
        Some(&redis::Value::Int(0)),
        "unacknowledged: {summary:?}"
    );
    Ok(())
}
