//! Malformed messages become dead letters with their raw bytes and a
//! reason; the worker keeps going and health counts them.

use std::time::Duration;

use integration_tests::{publish, redis_connection, Node};
use serde_json::json;

#[tokio::test]
async fn malformed_messages_become_dead_letters_and_the_worker_goes_on(
) -> anyhow::Result<()> {
    let node = Node::start().await?;
    let mut redis = redis_connection(&node.redis_url).await?;

    let huge = format!(
        r#"{{"name":"cpu","value":1,"timestamp":1,"pad":"{}"}}"#,
        "x".repeat(10 * 1024 * 1024)
    );
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"this is not json".to_vec(), "not valid JSON"),
        (
            br#"{"name":"cpu","value":"high","timestamp":1}"#.to_vec(),
            "`value` must be a number",
        ),
        (br#"{"value":1,"timestamp":1}"#.to_vec(), "missing field `name`"),
        (br#"{"name":"cpu","value":NaN,"timestamp":1}"#.to_vec(), "not valid JSON"),
        (br#"{"name":"cpu","value":1e400,"timestamp":1}"#.to_vec(), "not valid JSON"),
        (huge.into_bytes(), "exceeds the limit"),
    ];
    let raws: Vec<Vec<u8>> = cases.iter().map(|(raw, _)| raw.clone()).collect();
    publish(&mut redis, &node.channels.metrics, raws).await?;
    let good = json!({ "name": "cpu", "value": 42.0, "timestamp": 1_700_000_000 });
    publish(&mut redis, &node.channels.metrics, [good.to_string().into_bytes()]).await?;

    let pool = node.database.pool().await?;
    node.wait_for("dead letters and the good event", Duration::from_secs(60), || async {
        let events: i64 =
            sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&pool).await?;
        let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letters")
            .fetch_one(&pool)
            .await?;
        Ok((events == 1 && dead == cases.len() as i64).then_some(()))
    })
    .await?;

    let letters: Vec<(String, Vec<u8>, String)> =
        sqlx::query_as("SELECT stream, raw, reason FROM dead_letters ORDER BY id")
            .fetch_all(&pool)
            .await?;
    for ((stream, raw, reason), (sent, expected)) in letters.iter().zip(&cases) {
        assert_eq!(stream, &node.channels.metrics);
        assert_eq!(raw, sent, "raw bytes not kept whole for {reason}");
        assert!(reason.contains(expected), "reason {reason:?} lacks {expected:?}");
    }

    let health = node.health().await?;
    assert_eq!(health["totals"]["deadLetters"], cases.len());
    assert_eq!(health["sinceStart"]["deadLetters"], cases.len());
    assert_eq!(health["totals"]["events"], 1);
    Ok(())
}
