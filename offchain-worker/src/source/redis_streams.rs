//! Redis Streams source: the durable Redis path.
//!
//! Each stream is read through a consumer group. A message is acknowledged
//! (`XACK`) only after the PostgreSQL transaction holding it committed, so
//! a crash leaves it pending: on start the consumer first reads its own
//! pending messages again, and it claims messages other consumers left
//! pending for longer than [`CLAIM_IDLE`]. Messages are stored once, keyed
//! by their stream id (see [`stream_offset`]), so a redelivery is
//! acknowledged and skipped, never stored twice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use analytics_primitives::event::StreamKind;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::AsyncCommands;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::envelope::{Acker, Envelope, Receipt};
use crate::stats::Stats;

/// The source kind recorded on events.
pub const SOURCE: &str = "redis-stream";
/// The field of a stream entry that holds the message.
pub const PAYLOAD_FIELD: &str = "payload";
/// Pending messages idle this long are claimed from other consumers.
pub const CLAIM_IDLE: Duration = Duration::from_secs(30);

const READ_COUNT: usize = 500;
const BLOCK_MS: usize = 1000;
const MAX_DELAY: Duration = Duration::from_secs(5);

/// Reads streams through a consumer group.
#[derive(Debug, Clone)]
pub struct RedisStreamSource {
    url: String,
    streams: BTreeMap<String, StreamKind>,
    group: String,
    consumer: String,
    stats: Arc<Stats>,
}

impl RedisStreamSource {
    /// A source for `streams` (name to kind) in consumer `group`.
    pub fn new(
        url: &str,
        streams: BTreeMap<String, StreamKind>,
        group: &str,
        consumer: &str,
        stats: Arc<Stats>,
    ) -> Self {
        Self {
            url: url.to_owned(),
            streams,
            group: group.to_owned(),
            consumer: consumer.to_owned(),
            stats,
        }
    }

    /// Runs until `shutdown` fires or the pipeline goes away.
    pub async fn run(self, output: mpsc::Sender<Envelope>, shutdown: CancellationToken) {
        let (ack_sender, ack_receiver) = mpsc::unbounded_channel();
        tokio::spawn(self.clone().acknowledge(ack_receiver));
        let mut delay = Duration::from_millis(100);
        let mut connected_before = false;
        while !shutdown.is_cancelled() {
            match self
                .consume(&output, &ack_sender, &shutdown, &mut connected_before)
                .await
            {
                Ok(()) => break,
                Err(err) => {
                    self.stats.redis_up.store(0, std::sync::atomic::Ordering::Relaxed);
                    warn!(target: "worker::redis_streams", %err, "stream reading lost; retrying");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(MAX_DELAY);
        }
    }

    async fn consume(
        &self,
        output: &mpsc::Sender<Envelope>,
        acks: &mpsc::UnboundedSender<Vec<Receipt>>,
        shutdown: &CancellationToken,
        connected_before: &mut bool,
    ) -> redis::RedisResult<()> {
        let mut redis = redis::Client::open(self.url.as_str())?
            .get_multiplexed_async_connection()
            .await?;
        self.create_groups(&mut redis).await?;
        if *connected_before {
            Stats::bump(&self.stats.redis_reconnects, 1);
        }
        *connected_before = true;
        self.stats.redis_up.store(1, std::sync::atomic::Ordering::Relaxed);
        info!(target: "worker::redis_streams", group = %self.group, "reading streams");

        // Own pending messages first (a crash left them unacknowledged).
        self.read(&mut redis, "0", output, acks).await?;
        self.claim_stale(&mut redis, output, acks).await?;
        loop {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            if self.read(&mut redis, ">", output, acks).await? == usize::MAX {
                return Ok(());
            }
        }
    }

    async fn create_groups(
        &self,
        redis: &mut MultiplexedConnection,
    ) -> redis::RedisResult<()> {
        for stream in self.streams.keys() {
            let created: redis::RedisResult<()> =
                redis.xgroup_create_mkstream(stream, &self.group, "0").await;
            match created {
                Ok(()) => {}
                Err(err) if err.code() == Some("BUSYGROUP") => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Reads from `start` (`0` for own pending, `>` for new); returns how
    /// many messages were forwarded, or `usize::MAX` when the pipeline is
    /// gone.
    async fn read(
        &self,
        redis: &mut MultiplexedConnection,
        start: &str,
        output: &mpsc::Sender<Envelope>,
        acks: &mpsc::UnboundedSender<Vec<Receipt>>,
    ) -> redis::RedisResult<usize> {
        let mut total = 0;
        loop {
            let keys: Vec<&String> = self.streams.keys().collect();
            let ids = vec![start; keys.len()];
            let mut options = StreamReadOptions::default()
                .group(&self.group, &self.consumer)
                .count(READ_COUNT);
            if start == ">" {
                options = options.block(BLOCK_MS);
            }
            let reply: Option<StreamReadReply> =
                redis.xread_options(&keys, &ids, &options).await?;
            let Some(reply) = reply else { return Ok(total) };
            let mut forwarded = 0;
            for key in reply.keys {
                for entry in key.ids {
                    if !self.forward(&key.key, &entry, output, acks).await {
                        return Ok(usize::MAX);
                    }
                    forwarded += 1;
                }
            }
            total += forwarded;
            // New messages come one read at a time; pending ones until none.
            if start == ">" || forwarded == 0 {
                return Ok(total);
            }
        }
    }

    async fn claim_stale(
        &self,
        redis: &mut MultiplexedConnection,
        output: &mpsc::Sender<Envelope>,
        acks: &mpsc::UnboundedSender<Vec<Receipt>>,
    ) -> redis::RedisResult<()> {
        let idle = CLAIM_IDLE.as_millis() as usize;
        for stream in self.streams.keys() {
            let reply: redis::streams::StreamAutoClaimReply = redis
                .xautoclaim_options(
                    stream,
                    &self.group,
                    &self.consumer,
                    idle,
                    "0",
                    redis::streams::StreamAutoClaimOptions::default().count(READ_COUNT),
                )
                .await?;
            for entry in reply.claimed {
                if !self.forward(stream, &entry, output, acks).await {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    async fn forward(
        &self,
        stream: &str,
        entry: &redis::streams::StreamId,
        output: &mpsc::Sender<Envelope>,
        acks: &mpsc::UnboundedSender<Vec<Receipt>>,
    ) -> bool {
        let Some(kind) = self.streams.get(stream).copied() else { return true };
        let payload = match entry.map.get(PAYLOAD_FIELD) {
            Some(redis::Value::BulkString(bytes)) => bytes.clone(),
            Some(redis::Value::SimpleString(text)) => text.clone().into_bytes(),
            // An entry without the payload field is kept whole, as a
            // description, so it still becomes a dead letter with a reason.
            _ => format!("stream entry {} has no `{PAYLOAD_FIELD}` field", entry.id)
                .into_bytes(),
        };
        let envelope = Envelope {
            source: SOURCE,
            stream: stream.to_owned(),
            kind,
            partition: 0,
            offset: stream_offset(&entry.id),
            received_at: OffsetDateTime::now_utc(),
            payload,
            ack: Some(Acker::new(acks.clone(), entry.id.clone())),
        };
        output.send(envelope).await.is_ok()
    }

    /// Sends `XACK`s in batches as the pipeline commits.
    async fn acknowledge(self, mut acks: mpsc::UnboundedReceiver<Vec<Receipt>>) {
        let mut redis: Option<MultiplexedConnection> = None;
        while let Some(mut batch) = acks.recv().await {
            while let Ok(next) = acks.try_recv() {
                batch.extend(next);
            }
            let mut by_stream: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for receipt in batch {
                by_stream.entry(receipt.stream).or_default().push(receipt.id);
            }
            for (stream, ids) in by_stream {
                if let Err(err) = self.xack(&mut redis, &stream, &ids).await {
                    // Unacknowledged messages are redelivered and skipped as
                    // duplicates; nothing is lost.
                    warn!(target: "worker::redis_streams", %err, "XACK failed");
                    redis = None;
                }
            }
        }
    }

    async fn xack(
        &self,
        redis: &mut Option<MultiplexedConnection>,
        stream: &str,
        ids: &[String],
    ) -> redis::RedisResult<()> {
        if redis.is_none() {
            let client = redis::Client::open(self.url.as_str())?;
            *redis = Some(client.get_multiplexed_async_connection().await?);
        }
        if let Some(connection) = redis {
            let _: i64 = connection.xack(stream, &self.group, ids).await?;
        }
        Ok(())
    }
}

/// A stream id (`<milliseconds>-<sequence>`) as one ordered integer:
/// milliseconds shifted left by 20 bits plus the sequence. Unique while the
/// sequence stays below 2^20 within one millisecond and the milliseconds
/// below 2^43 (the year 2248); ids outside that have no offset.
pub fn stream_offset(id: &str) -> Option<i64> {
    let (millis, sequence) = id.split_once('-')?;
    let millis: i64 = millis.parse().ok()?;
    let sequence: i64 = sequence.parse().ok()?;
    if !(0..1 << 43).contains(&millis) || !(0..1 << 20).contains(&sequence) {
        return None;
    }
    Some(millis << 20 | sequence)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_map_to_ordered_offsets() {
        let cases = [
            ("1700000000000-0", Some(1_700_000_000_000_i64 << 20)),
            ("1700000000000-5", Some((1_700_000_000_000_i64 << 20) + 5)),
            ("0-1", Some(1)),
            ("1-1048576", None),
            ("x-1", None),
            ("17", None),
        ];
        for (id, expected) in cases {
            assert_eq!(stream_offset(id), expected, "{id}");
        }
        assert!(stream_offset("5-0") > stream_offset("4-1048575"));
    }
}
