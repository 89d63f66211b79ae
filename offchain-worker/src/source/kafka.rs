//! Kafka source: at-least-once delivery with storage that keeps each
//! message once, so the result is exactly once in PostgreSQL.
//!
//! Offsets are committed automatically by the client, but only offsets the
//! node has *stored*, and it stores a message's offset only after the
//! PostgreSQL transaction holding it committed (the pipeline acknowledges
//! through [`Acker`], and the source stores the offset after the last
//! message of each partition in the batch). A crash therefore replays from the last stored
//! offset, and the pipeline drops what is already stored, by position
//! (topic, partition, offset). On a rebalance the node commits what it
//! stored before giving partitions up, and never stores an offset for a
//! partition it no longer owns. Nothing here depends on a particular
//! broker: any Kafka-protocol broker works.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use analytics_primitives::event::StreamKind;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::Message;
use rdkafka::ClientContext;
use rdkafka::{Offset, TopicPartitionList};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::envelope::{Acker, Envelope, Receipt};
use crate::stats::Stats;

/// The source kind recorded on events.
pub const SOURCE: &str = "kafka";

/// Settings of the Kafka source.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// `host:port` list of brokers.
    pub brokers: String,
    /// Consumer group.
    pub group: String,
    /// Topic name to the kind of event it carries.
    pub topics: BTreeMap<String, StreamKind>,
    /// Static group membership (`group.instance.id`): a restarted worker
    /// with the same id takes its partitions back at once instead of
    /// waiting for the broker to expire its previous session.
    pub instance_id: Option<String>,
}

/// Partitions this consumer owns, kept current by rebalances.
#[derive(Default)]
pub struct Ownership {
    owned: Mutex<HashSet<(String, i32)>>,
}

impl Ownership {
    fn owns(&self, topic: &str, partition: i32) -> bool {
        let owned = self.owned.lock().unwrap_or_else(|e| e.into_inner());
        owned.contains(&(topic.to_owned(), partition))
    }

    fn update(&self, list: &rdkafka::TopicPartitionList, add: bool) {
        let mut owned = self.owned.lock().unwrap_or_else(|e| e.into_inner());
        for element in list.elements() {
            let key = (element.topic().to_owned(), element.partition());
            if add {
                owned.insert(key);
            } else {
                owned.remove(&key);
            }
        }
    }
}

/// Consumer callbacks: commit before giving partitions up, track ownership.
pub struct Rebalancer {
    ownership: Arc<Ownership>,
    stats: Arc<Stats>,
}

impl ClientContext for Rebalancer {}

impl ConsumerContext for Rebalancer {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            // What was stored so far is committed while still owned.
            if let Err(err) = consumer.commit_consumer_state(CommitMode::Sync) {
                debug!(target: "worker::kafka", %err, "nothing to commit on revoke");
            }
            self.ownership.update(list, false);
            info!(target: "worker::kafka", partitions = list.count(), "partitions revoked");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                self.ownership.update(list, true);
                // A member of the group is up, even before any message.
                self.stats.kafka_up.store(1, std::sync::atomic::Ordering::Relaxed);
                info!(target: "worker::kafka", partitions = list.count(), "partitions assigned");
            }
            Rebalance::Error(err) => {
                warn!(target: "worker::kafka", %err, "rebalance failed")
            }
            Rebalance::Revoke(_) => {}
        }
    }
}

/// The Kafka source.
pub struct KafkaSource {
    settings: KafkaSettings,
    stats: Arc<Stats>,
}

impl KafkaSource {
    /// A source with these settings.
    pub fn new(settings: KafkaSettings, stats: Arc<Stats>) -> Self {
        Self { settings, stats }
    }

    fn consumer(
        &self,
        ownership: Arc<Ownership>,
    ) -> rdkafka::error::KafkaResult<StreamConsumer<Rebalancer>> {
        let mut config = ClientConfig::new();
        if let Some(id) = &self.settings.instance_id {
            config.set("group.instance.id", id);
        }
        config
            .set("bootstrap.servers", &self.settings.brokers)
            .set("group.id", &self.settings.group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("partition.assignment.strategy", "range,roundrobin")
            .create_with_context(Rebalancer { ownership, stats: self.stats.clone() })
    }

    /// Runs until `shutdown` fires or the pipeline goes away; commits the
    /// stored offsets before returning.
    pub async fn run(self, output: mpsc::Sender<Envelope>, shutdown: CancellationToken) {
        let ownership = Arc::new(Ownership::default());
        let consumer = match self.consumer(ownership.clone()) {
            Ok(consumer) => Arc::new(consumer),
            Err(err) => {
                warn!(target: "worker::kafka", %err, "cannot create the Kafka consumer");
                return;
            }
        };
        let topics: Vec<&str> = self.settings.topics.keys().map(String::as_str).collect();
        if let Err(err) = consumer.subscribe(&topics) {
            warn!(target: "worker::kafka", %err, "cannot subscribe");
            return;
        }
        info!(target: "worker::kafka", ?topics, group = %self.settings.group, "consuming");

        let (ack_sender, ack_receiver) = mpsc::unbounded_channel();
        let acker =
            tokio::spawn(store_offsets(consumer.clone(), ownership, ack_receiver));
        let lag = tokio::spawn(report_lag(
            consumer.clone(),
            self.stats.clone(),
            shutdown.clone(),
        ));
        self.consume(&consumer, &output, &ack_sender, &shutdown).await;
        drop(ack_sender);
        drop(output);
        // Offsets of what the pipeline commits while it drains still count.
        let _ = tokio::time::timeout(Duration::from_secs(10), acker).await;
        if let Err(err) = consumer.commit_consumer_state(CommitMode::Sync) {
            debug!(target: "worker::kafka", %err, "final commit");
        }
        lag.abort();
    }

    async fn consume(
        &self,
        consumer: &StreamConsumer<Rebalancer>,
        output: &mpsc::Sender<Envelope>,
        acks: &mpsc::UnboundedSender<Vec<Receipt>>,
        shutdown: &CancellationToken,
    ) {
        loop {
            let message = tokio::select! {
                () = shutdown.cancelled() => return,
                message = consumer.recv() => message,
            };
            let message = match message {
                Ok(message) => message,
                Err(err) => {
                    self.stats.kafka_up.store(0, std::sync::atomic::Ordering::Relaxed);
                    warn!(target: "worker::kafka", %err, "receive failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            self.stats.kafka_up.store(1, std::sync::atomic::Ordering::Relaxed);
            Stats::bump(&self.stats.kafka_received, 1);
            let topic = message.topic();
            let Some(kind) = self.settings.topics.get(topic).copied() else { continue };
            let envelope = Envelope {
                source: SOURCE,
                stream: topic.to_owned(),
                kind,
                partition: message.partition(),
                offset: Some(message.offset()),
                received_at: OffsetDateTime::now_utc(),
                payload: message.payload().unwrap_or_default().to_vec(),
                ack: Some(Acker::new(acks.clone(), String::new())),
            };
            if output.send(envelope).await.is_err() {
                return;
            }
        }
    }
}

/// Stores, per partition still owned, the offset after the last message
/// of each acknowledged batch; the client commits stored offsets in the
/// background.
async fn store_offsets(
    consumer: Arc<StreamConsumer<Rebalancer>>,
    ownership: Arc<Ownership>,
    mut acks: mpsc::UnboundedReceiver<Vec<Receipt>>,
) {
    while let Some(receipts) = acks.recv().await {
        let mut list = TopicPartitionList::new();
        for ((topic, partition), last) in last_offsets(&receipts) {
            if !ownership.owns(topic, partition) {
                debug!(target: "worker::kafka", %topic, partition, "not owned; offset not stored");
                continue;
            }
            let next = Offset::Offset(last + 1);
            if let Err(err) = list.add_partition_offset(topic, partition, next) {
                debug!(target: "worker::kafka", %err, %topic, partition, "bad offset");
            }
        }
        if list.count() == 0 {
            continue;
        }
        if let Err(err) = consumer.store_offsets(&list) {
            debug!(target: "worker::kafka", %err, "offsets not stored");
        }
    }
}

/// The highest acknowledged offset of each partition.
fn last_offsets(receipts: &[Receipt]) -> BTreeMap<(&str, i32), i64> {
    let mut last = BTreeMap::new();
    for receipt in receipts {
        let Some(offset) = receipt.offset else { continue };
        let entry = last.entry((receipt.stream.as_str(), receipt.partition));
        let value = entry.or_insert(offset);
        *value = (*value).max(offset);
    }
    last
}

/// Interval of consumer lag reports.
const LAG_INTERVAL: Duration = Duration::from_secs(5);

/// Refreshes the lag of every owned partition in [`Stats::kafka_lag`]: the
/// partition's high watermark minus the group's committed offset.
async fn report_lag(
    consumer: Arc<StreamConsumer<Rebalancer>>,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(LAG_INTERVAL) => {}
        }
        let consumer = consumer.clone();
        // The client's metadata calls block; they run off the async threads.
        let lag = tokio::task::spawn_blocking(move || partition_lag(&consumer)).await;
        if let Ok(Ok(lag)) = lag {
            *stats.kafka_lag.lock().unwrap_or_else(|e| e.into_inner()) = lag;
        }
    }
}

fn partition_lag(
    consumer: &StreamConsumer<Rebalancer>,
) -> rdkafka::error::KafkaResult<BTreeMap<String, i64>> {
    let timeout = Duration::from_secs(2);
    let committed = consumer.committed(timeout)?;
    let mut lag = BTreeMap::new();
    for element in committed.elements() {
        let (topic, partition) = (element.topic(), element.partition());
        let (low, high) = consumer.fetch_watermarks(topic, partition, timeout)?;
        let done = element.offset().to_raw().filter(|o| *o >= 0).unwrap_or(low);
        lag.insert(format!("{topic}/{partition}"), (high - done).max(0));
    }
    Ok(lag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(stream: &str, partition: i32, offset: i64) -> Receipt {
        let stream = stream.to_owned();
        Receipt { stream, partition, offset: Some(offset), id: String::new() }
    }

    #[test]
    fn keeps_the_last_offset_of_each_partition() {
        let receipts = [
            receipt("a", 0, 7),
            receipt("a", 1, 3),
            receipt("a", 0, 9),
            receipt("b", 0, 1),
            receipt("a", 0, 8),
        ];
        let last = last_offsets(&receipts);
        let expected = BTreeMap::from([(("a", 0), 9), (("a", 1), 3), (("b", 0), 1)]);
        assert_eq!(last, expected);
    }
}
