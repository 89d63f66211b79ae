//! The Kafka target of `replay-csv`: keyed records, topics created when
//! missing, delivery failures counted and reported.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

/// Longest wait for every record to be delivered at the end.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// Counts records the broker did not take.
#[derive(Default)]
struct Deliveries {
    failed: Arc<AtomicU64>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        if result.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A producer of keyed records.
pub(super) struct KafkaSink {
    producer: Arc<ThreadedProducer<Deliveries>>,
    failed: Arc<AtomicU64>,
}

impl KafkaSink {
    /// Connects to `brokers` and creates the `topics` that do not exist,
    /// with `partitions` partitions each.
    pub(super) async fn connect(
        brokers: &str,
        topics: [&String; 3],
        partitions: i32,
    ) -> anyhow::Result<Self> {
        create_missing(brokers, &topics, partitions).await?;
        let failed = Arc::new(AtomicU64::new(0));
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("linger.ms", "5")
            .create_with_context(Deliveries { failed: failed.clone() })
            .context("creating the Kafka producer")?;
        Ok(Self { producer: Arc::new(producer), failed })
    }

    /// Queues one record; waits while the client's queue is full.
    pub(super) async fn send(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
    ) -> anyhow::Result<()> {
        let mut record = BaseRecord::to(topic).key(key).payload(payload);
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((
                    KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                    returned,
                )) => {
                    record = returned;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err((err, _)) => bail!("producing to {topic}: {err}"),
            }
        }
    }

    /// Waits until every record is delivered; fails when any was not.
    pub(super) async fn finish(self) -> anyhow::Result<()> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(FLUSH_TIMEOUT)).await??;
        let failed = self.failed.load(Ordering::Relaxed);
        if failed > 0 {
            bail!("{failed} records were not delivered to Kafka");
        }
        Ok(())
    }
}

async fn create_missing(
    brokers: &str,
    topics: &[&String; 3],
    partitions: i32,
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin.create_topics(&new, &options).await.with_context(|| {
        format!("cannot reach Kafka at {brokers}; start it with scripts/services.sh up")
    })?;
    for result in results {
        match result {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, err)) => bail!("creating topic {topic}: {err}"),
        }
    }
    Ok(())
}
