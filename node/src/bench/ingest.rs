//! `bench ingest`: sustained Kafka ingest against PostgreSQL's own speed.
//!
//! In a fresh database it first loads N event rows with `COPY` (the rate
//! PostgreSQL itself takes rows into the events table, indexes included),
//! then produces N messages to a fresh topic, times a bare consumer reading
//! them all (what the broker can deliver), and runs the node's Kafka source
//! and pipeline (parsing, analysis, stamping, hashing, one transaction per
//! batch, offsets stored after commit, broadcasts to a listening hub) until
//! all N events are committed. It prints the rates and the ratio of the
//! pipeline's to `COPY`'s, measured in the same run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::B256;
use analytics_primitives::analysis::{self, AnalysisConfig};
use analytics_primitives::event::StreamKind;
use analytics_primitives::insight::BlockStamp;
use anyhow::Context;
use offchain_worker::hub::Hub;
use offchain_worker::pipeline::{Pipeline, PipelineConfig};
use offchain_worker::source::kafka::{KafkaSettings, KafkaSource};
use offchain_worker::stats::Stats;
use offchain_worker::storage::Store;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use serde_json::json;
use sqlx::Connection;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::config::PipelineSettings;

/// Options of `bench ingest`.
#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Messages (and `COPY` rows).
    #[arg(long, default_value_t = 100_000)]
    pub messages: usize,
    /// Kafka brokers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// A PostgreSQL URL whose role may create databases; the benchmark
    /// works in a database of its own and drops it afterwards.
    #[arg(long, env = "ANALYTICS_DATABASE_URL", default_value = crate::config::DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// Partitions of the benchmark topic.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Most messages per pipeline transaction (`pipeline.batch_size`).
    #[arg(long, default_value_t = PipelineSettings::default().batch_size)]
    pub batch_size: usize,
}

/// The figures of one run, per second.
struct Rates {
    copy: f64,
    fetch: f64,
    ingest: f64,
}

/// Runs the benchmark and prints the figures.
pub async fn run(args: &IngestArgs) -> anyhow::Result<()> {
    let name = format!("bench_ingest_{}", std::process::id());
    let url = create_database(&args.database_url, &name).await?;
    let result = measure(args, &url, &name).await;
    drop_database(&args.database_url, &name).await;
    let rates = result?;
    println!("{:<44} {:>12.0} rows/s", "PostgreSQL COPY into events", rates.copy);
    println!(
        "{:<44} {:>12.0} messages/s",
        "Kafka fetch only (bare consumer)", rates.fetch
    );
    println!(
        "{:<44} {:>12.0} events/s",
        "Kafka -> committed rows (offsets stored)", rates.ingest
    );
    println!(
        "{:<44} {:>12.2}",
        "ratio (committed rows / COPY)",
        rates.ingest / rates.copy
    );
    Ok(())
}

async fn measure(args: &IngestArgs, url: &str, name: &str) -> anyhow::Result<Rates> {
    let store = Store::connect(url, 10).await?;
    store.migrate().await?;
    let copy_rate = copy_rows(&store, args.messages).await?;
    sqlx::query("TRUNCATE events CASCADE").execute(store.pool()).await?;

    let topic = format!("{name}_metrics");
    for name in [topic.clone(), format!("{name}_users"), format!("{name}_business")] {
        create_topic(&args.brokers, &name, args.partitions).await?;
    }
    let (brokers, produced_topic, count) =
        (args.brokers.clone(), topic.clone(), args.messages);
    tokio::task::spawn_blocking(move || produce(&brokers, &produced_topic, count))
        .await??;
    let (brokers, fetched_topic) = (args.brokers.clone(), topic.clone());
    let fetch_rate = tokio::task::spawn_blocking(move || {
        fetch_all(&brokers, &fetched_topic, &format!("{fetched_topic}_fetch"), count)
    })
    .await??;
    let ingest_rate = ingest(&store, args, &topic, name).await?;
    Ok(Rates { copy: copy_rate, fetch: fetch_rate, ingest: ingest_rate })
}

/// Reads `count` messages of `topic` with a plain consumer and no storage:
/// the rate the broker delivers at.
fn fetch_all(
    brokers: &str,
    topic: &str,
    group: &str,
    count: usize,
) -> anyhow::Result<f64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[topic])?;
    let mut started = None;
    let mut read = 0;
    let deadline = Instant::now() + Duration::from_secs(600);
    while read < count {
        anyhow::ensure!(Instant::now() < deadline, "fetch stalled at {read}");
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(_)) => {
                started.get_or_insert_with(Instant::now);
                read += 1;
            }
            Some(Err(err)) => anyhow::bail!("fetching: {err}"),
            None => {}
        }
    }
    // Timed from the first message, after the group join.
    let elapsed = started.map_or(Duration::ZERO, |s| s.elapsed());
    Ok(count as f64 / elapsed.as_secs_f64())
}

async fn copy_rows(store: &Store, count: usize) -> anyhow::Result<f64> {
    let mut text = String::with_capacity(count * 160);
    for i in 0..count {
        let payload = json!({ "name": format!("metric_{}", i % 8), "value": i, "timestamp": 1_700_000_000 + i });
        text.push_str(&format!(
            "{}\tkafka\tbench\t0\t{i}\tsystem_metric\tmetric_{}\t\\N\t{payload}\t2024-01-01 00:00:00+00\t2024-01-01 00:00:00+00\n",
            i + 1,
            i % 8
        ));
    }
    let mut connection = store.pool().acquire().await?;
    let started = Instant::now();
    let mut copy = connection
        .copy_in_raw(
            "COPY events (id, source, stream, partition, \"offset\", kind, event_type, \
             user_id, payload, event_time, received_at) FROM STDIN",
        )
        .await?;
    copy.send(text.as_bytes()).await?;
    copy.finish().await?;
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

async fn ingest(
    store: &Store,
    args: &IngestArgs,
    topic: &str,
    name: &str,
) -> anyhow::Result<f64> {
    let stamp =
        BlockStamp { number: 1, hash: B256::repeat_byte(1), timestamp: 1_700_000_000 };
    let (_head, heads) = watch::channel(Some(stamp));
    let shutdown = CancellationToken::new();
    let stats = Arc::new(Stats::default());
    let defaults = PipelineSettings::default();
    let (sender, receiver) = mpsc::channel(defaults.queue_capacity);
    let hub = Hub::new();
    // A listener, as the node's WebSocket dispatcher always is.
    let mut listener = hub.subscribe();
    tokio::spawn(async move { while listener.recv().await.is_ok() {} });
    let pipeline = Pipeline {
        store: store.clone(),
        analyzer: analysis::from_config(&AnalysisConfig::default())
            .expect("the default settings are valid"),
        run_start: None,
        heads,
        hub,
        stats: stats.clone(),
        config: PipelineConfig {
            batch_size: args.batch_size,
            flush_interval: Duration::from_millis(defaults.flush_interval_ms),
            max_message_bytes: defaults.max_message_bytes,
        },
    };
    let topics = BTreeMap::from([
        (topic.to_owned(), StreamKind::SystemMetrics),
        (format!("{name}_users"), StreamKind::UserEvents),
        (format!("{name}_business"), StreamKind::BusinessEvents),
    ]);
    let settings = KafkaSettings {
        brokers: args.brokers.clone(),
        group: name.to_owned(),
        topics,
        instance_id: None,
    };
    let source = KafkaSource::new(settings, stats.clone());

    let worker = tokio::spawn(pipeline.run(receiver, shutdown.clone()));
    let reader = tokio::spawn(source.run(sender, shutdown.clone()));
    let goal = args.messages as u64;
    // Timed from the first message received, as the bare consumer is: the
    // group join is no part of sustained ingest.
    let joining = Instant::now();
    let started = loop {
        tokio::time::sleep(Duration::from_millis(1)).await;
        if Stats::get(&stats.kafka_received) > 0 {
            break Instant::now();
        }
        anyhow::ensure!(joining.elapsed() < Duration::from_secs(120), "nothing received");
    };
    loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        // Counted by the pipeline after each commit.
        let stored = Stats::get(&stats.events) + Stats::get(&stats.dead_letters);
        if stored >= goal {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "ingest stalled at {stored}"
        );
    }
    let rate = goal as f64 / started.elapsed().as_secs_f64();
    shutdown.cancel();
    let _ = reader.await;
    let _ = worker.await;
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(store.pool()).await?;
    anyhow::ensure!(stored == goal as i64, "{stored} events stored, not {goal}");
    Ok(rate)
}

async fn create_topic(brokers: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results =
        admin.create_topics([&new], &options).await.context("reaching Kafka")?;
    for result in results {
        result.map_err(|(topic, err)| anyhow::anyhow!("creating {topic}: {err}"))?;
    }
    Ok(())
}

fn produce(brokers: &str, topic: &str, count: usize) -> anyhow::Result<()> {
    let producer: ThreadedProducer<_> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "500000")
        .create()?;
    for i in 0..count {
        let key = format!("metric_{}", i % 8);
        let payload = json!({ "name": key, "value": i, "timestamp": 1_700_000_000 + i })
            .to_string();
        let mut record = BaseRecord::to(topic).payload(&payload).key(&key);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, returned)) => {
                    record = returned;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(())
}

async fn create_database(admin_url: &str, name: &str) -> anyhow::Result<String> {
    let mut admin = sqlx::PgConnection::connect(admin_url).await.context("PostgreSQL")?;
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await?;
    let base = admin_url.rsplit_once('/').map_or(admin_url, |(base, _)| base);
    Ok(format!("{base}/{name}"))
}

async fn drop_database(admin_url: &str, name: &str) {
    if let Ok(mut admin) = sqlx::PgConnection::connect(admin_url).await {
        let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        let _ = sqlx::query(&sql).execute(&mut admin).await;
    }
}
