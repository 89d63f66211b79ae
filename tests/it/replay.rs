//! `analytics-node replay` reproduces every anchored hash of a real run,
//! and names the batch and insight once a stored event is tampered with;
//! runs of the analysis (a node restarted, with another engine version)
//! replay each from its own start.

use std::process::Command;
use std::time::Duration;

use integration_tests::{
    node_binary, publish, redis_connection, workspace_root, Node, NodeOptions,
};
use serde_json::{json, Value};

/// A noisy metric with a spike after the warm-up, then a ramp (a trend
/// once the spike has left the window), one sample a minute.
fn metric_messages(count: usize) -> Vec<Vec<u8>> {
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    (0..count)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            let spike = if i == 560 { 1_000.0 } else { 0.0 };
            let ramp = if i > 620 { (i - 620) as f64 * 0.05 } else { 0.0 };
            let message = json!({
                "name": "pump_pressure",
                "value": 40.0 + noise + spike + ramp,
                "timestamp": 1_700_000_000_000_i64 + i as i64 * 60_000,
            });
            message.to_string().into_bytes()
        })
        .collect()
}

fn other_messages() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let users = (0..100)
        .map(|i| {
            let message = json!({
                "type": "page_view", "user_id": format!("user-{}", i % 7),
                "timestamp": 1_700_000_000 + i,
            });
            message.to_string().into_bytes()
        })
        .collect();
    let business = (0..5)
        .map(|i| {
            let message = json!({
                "type": "purchase", "value": 20.0 * f64::from(i), "source": "web",
                "timestamp": 1_700_000_100_000_i64 + i64::from(i),
            });
            message.to_string().into_bytes()
        })
        .collect();
    (users, business)
}

/// Runs `replay` on the node's database: (exit success, output).
fn replay(node: &Node) -> anyhow::Result<(bool, String)> {
    replay_with(node, &[])
}

/// Runs `replay` with extra arguments.
fn replay_with(node: &Node, extra: &[&str]) -> anyhow::Result<(bool, String)> {
    replay_at(&node.database.url, extra)
}

/// Runs `replay` on a database.
fn replay_at(database_url: &str, extra: &[&str]) -> anyhow::Result<(bool, String)> {
    let output = Command::new(node_binary())
        .args(["replay", "--database-url", database_url])
        .args(extra)
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((output.status.success(), text))
}

/// Waits until every insight is in a batch and every batch is anchored.
async fn wait_all_anchored(node: &Node, events: i64) -> anyhow::Result<()> {
    let pool = node.database.pool().await?;
    node.wait_for("every insight anchored", Duration::from_secs(90), || async {
        let (stored, waiting, open): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM events), \
             (SELECT count(*) FROM insights WHERE batch_id IS NULL), \
             (SELECT count(*) FROM anchor_batches \
              WHERE status NOT IN ('anchored', 'final'))",
        )
        .fetch_one(&pool)
        .await?;
        Ok((stored == events && waiting == 0 && open == 0).then_some(()))
    })
    .await
}

#[tokio::test]
async fn replay_reproduces_anchored_hashes_and_names_a_tampered_event(
) -> anyhow::Result<()> {
    let node = Node::start().await?;
    let mut redis = redis_connection(&node.redis_url).await?;
    let (users, business) = other_messages();
    let mut sent =
        publish(&mut redis, &node.channels.metrics, metric_messages(1000)).await?;
    sent += publish(&mut redis, &node.channels.user, users).await?;
    sent += publish(&mut redis, &node.channels.business, business).await?;
    wait_all_anchored(&node, sent as i64).await?;

    let (ok, output) = replay(&node)?;
    assert!(ok, "replay of an untouched run failed:\n{output}");
    assert!(output.contains("ok   batch 1 ") && output.ends_with("REPLAY MATCHES\n"));

    // Every kind of the engine was produced and anchored.
    let insights =
        node.call("analytics_listInsights", json!([{ "limit": 1000 }])).await?;
    let insights = insights.as_array().expect("a list");
    for kind in ["anomaly", "trend", "prediction", "activity", "business"] {
        let found = insights.iter().any(|i| i["kind"] == kind);
        assert!(found, "no {kind} insight among {insights:?}");
    }

    // Change the value of the event a prediction was computed on.
    let target =
        insights.iter().find(|i| i["kind"] == "prediction").expect("a prediction");
    let (insight_id, event_id) =
        (id(target, "id"), id(&target["insight"]["event"], "id"));
    let pool = node.database.pool().await?;
    let changed = sqlx::query(
        "UPDATE events SET payload = jsonb_set(payload, '{value}', \
         to_jsonb((payload->>'value')::float8 + 0.5)) WHERE id = $1",
    )
    .bind(event_id)
    .execute(&pool)
    .await?;
    assert_eq!(changed.rows_affected(), 1);
    let batch: i64 = sqlx::query_scalar("SELECT batch_id FROM insights WHERE id = $1")
        .bind(insight_id)
        .fetch_one(&pool)
        .await?;

    let (ok, output) = replay(&node)?;
    assert!(!ok, "replay missed a tampered event:\n{output}");
    assert!(output.contains(&format!("FAIL batch {batch} (")), "{output}");
    let line =
        format!("insight {insight_id} (prediction pump_pressure, event {event_id})");
    assert!(output.contains(&line), "{output}");
    assert!(output.ends_with("REPLAY DIFFERS\n"), "{output}");
    Ok(())
}

#[tokio::test]
async fn runs_of_engine_1_and_then_engine_2_across_restarts_replay_run_by_run(
) -> anyhow::Result<()> {
    let options = NodeOptions {
        config_toml: Some("[analysis]\nanalyzer = \"engine/1\"\n".into()),
        ..NodeOptions::default()
    };
    let mut node = Node::launch(options).await?;
    let mut redis = redis_connection(&node.redis_url).await?;
    let (users, business) = other_messages();
    let mut metrics = metric_messages(700);
    let mut later = metrics.split_off(400);
    let last = later.split_off(150);
    let mut sent = publish(&mut redis, &node.channels.metrics, metrics).await?;
    sent += publish(&mut redis, &node.channels.user, users).await?;
    wait_all_anchored(&node, sent as i64).await?;

    // The node starts again with the default settings (engine/2), and its
    // analysis starts afresh: the metric warms up again.
    let path = node.config_path().expect("a configuration file");
    std::fs::write(&path, "[analysis]\n")?;
    node.restart().await?;
    sent += publish(&mut redis, &node.channels.metrics, later).await?;
    wait_all_anchored(&node, sent as i64).await?;

    // A restart with the same settings is a new run too: replay must not
    // carry the analysis across it.
    node.restart().await?;
    sent += publish(&mut redis, &node.channels.metrics, last).await?;
    sent += publish(&mut redis, &node.channels.business, business).await?;
    wait_all_anchored(&node, sent as i64).await?;
    let pool = node.database.pool().await?;
    let runs: Vec<String> =
        sqlx::query_scalar("SELECT analysis FROM analysis_runs ORDER BY first_event")
            .fetch_all(&pool)
            .await?;
    assert_eq!(runs, ["engine/1", "engine/2", "engine/2"]);

    let insights =
        node.call("analytics_listInsights", json!([{ "limit": 1000 }])).await?;
    let insights = insights.as_array().expect("a list");
    for version in ["engine/1", "engine/2"] {
        let made = |i: &&Value| i["insight"]["analysis"] == version;
        let predictions =
            insights.iter().filter(made).filter(|i| i["kind"] == "prediction");
        assert!(predictions.count() > 0, "no prediction of {version}: {insights:?}");
    }

    let (ok, output) = replay(&node)?;
    assert!(ok, "replay across the restart failed:\n{output}");
    assert!(output.ends_with("REPLAY MATCHES\n"), "{output}");

    // Other settings than the runs recorded are refused, naming the run.
    let dir = workspace_root().join("target/it-logs");
    let other = dir.join(format!("window-128-{}.toml", std::process::id()));
    std::fs::write(&other, "[analysis]\nwindow = 128\n")?;
    let (ok, output) = replay_with(&node, &["--config", &other.display().to_string()])?;
    assert!(!ok, "replay with other settings passed:\n{output}");
    assert!(output.contains("the analysis run from event"), "{output}");
    assert!(output.contains("used engine/1 with settings of digest"), "{output}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_beside_a_node_that_is_writing_sees_one_consistent_moment(
) -> anyhow::Result<()> {
    let node = Node::start().await?;
    let mut redis = redis_connection(&node.redis_url).await?;
    let (users, business) = other_messages();
    let mut sent = publish(&mut redis, &node.channels.user, users).await?;
    sent += publish(&mut redis, &node.channels.business, business).await?;

    // Metrics arrive in small bursts while replay runs, again and again.
    let channel = node.channels.metrics.clone();
    let mut writer = redis_connection(&node.redis_url).await?;
    let feeding = tokio::spawn(async move {
        let mut count = 0;
        for burst in metric_messages(3_000).chunks(50) {
            count += publish(&mut writer, &channel, burst.to_vec()).await?;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::Ok(count)
    });
    let mut replays = 0;
    let url = node.database.url.clone();
    while !feeding.is_finished() {
        let url = url.clone();
        let (ok, output) =
            tokio::task::spawn_blocking(move || replay_at(&url, &[])).await??;
        assert!(ok, "replay during ingest differed:\n{output}");
        replays += 1;
    }
    sent += feeding.await??;
    assert!(replays >= 2, "ingest ended before a second replay");
    wait_all_anchored(&node, sent as i64).await?;
    let (ok, output) = replay(&node)?;
    assert!(ok && output.ends_with("REPLAY MATCHES\n"), "{output}");
    Ok(())
}

fn id(value: &Value, field: &str) -> i64 {
    value[field].as_i64().unwrap_or_else(|| panic!("no {field} in {value}"))
}
