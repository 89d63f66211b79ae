//! Counters shared between the worker and the health and metrics endpoints.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::source;

/// Process-wide counters. All methods are cheap and lock-free except the
/// rate windows, which take a short lock once per stored batch.
#[derive(Debug, Default)]
pub struct Stats {
    /// Events stored.
    pub events: AtomicU64,
    /// Dead letters stored.
    pub dead_letters: AtomicU64,
    /// Insights stored.
    pub insights: AtomicU64,
    /// Batches anchored on chain.
    pub batches_anchored: AtomicU64,
    /// Batches that reached finality.
    pub batches_final: AtomicU64,
    /// Reconnections to Redis after a lost connection.
    pub redis_reconnects: AtomicU64,
    /// Whether the Redis subscription is currently up (1) or not (0).
    pub redis_up: AtomicU64,
    /// Whether the Kafka consumer last received successfully (1) or not (0).
    pub kafka_up: AtomicU64,
    /// Messages the Kafka consumer received, repeats included.
    pub kafka_received: AtomicU64,
    /// Kafka consumer lag per owned partition (`topic/partition` to the high
    /// watermark minus the committed offset), refreshed every few seconds.
    pub kafka_lag: Mutex<std::collections::BTreeMap<String, i64>>,
    /// Store batches that failed and were retried.
    pub store_retries: AtomicU64,
    /// Anchoring transactions confirmed, and the sum of their latencies
    /// from send to receipt, milliseconds.
    pub anchor_latency_count: AtomicU64,
    /// See [`Stats::anchor_latency_count`].
    pub anchor_latency_ms_sum: AtomicU64,
    /// Anchoring steps that failed in a row; 0 once a step succeeds.
    pub anchor_failures: AtomicU64,
    /// The cause of the latest anchoring failure.
    pub last_anchor_error: Mutex<Option<String>>,
    recent: RateWindow,
    sources: [SourceCounter; SOURCES.len()],
}

/// The window of [`Stats::events_per_second`] and of the per-source rates.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);

/// The sources counted apart, by the name recorded on their events:
/// Redis pub/sub, Redis Streams and Kafka.
pub const SOURCES: [&str; 3] =
    [source::redis::SOURCE, source::redis_streams::SOURCE, source::kafka::SOURCE];

/// Messages of one source stored since start, as events or dead letters.
#[derive(Debug, Default)]
struct SourceCounter {
    messages: AtomicU64,
    recent: RateWindow,
}

/// What one source delivered, for health reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SourceRate {
    /// The source's name, as recorded on its events.
    pub source: &'static str,
    /// Messages stored since start (events and dead letters).
    pub messages: u64,
    /// Messages stored per second over the last minute.
    pub per_second: f64,
}

impl Stats {
    /// Adds one to a counter.
    pub fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Records `count` events stored now.
    pub fn record_events(&self, count: u64) {
        Self::bump(&self.events, count);
        self.recent.record(count);
    }

    /// Events stored per second over the last minute.
    pub fn events_per_second(&self) -> f64 {
        self.recent.per_second()
    }

    /// Records `count` messages of `source` stored now; sources other than
    /// [`SOURCES`] are not counted apart.
    pub fn record_messages(&self, source: &str, count: u64) {
        let Some(index) = SOURCES.iter().position(|s| *s == source) else { return };
        let counter = &self.sources[index];
        Self::bump(&counter.messages, count);
        counter.recent.record(count);
    }

    /// Every source of [`SOURCES`] with its messages and rate.
    pub fn source_rates(&self) -> Vec<SourceRate> {
        SOURCES
            .iter()
            .zip(&self.sources)
            .map(|(source, counter)| SourceRate {
                source,
                messages: Self::get(&counter.messages),
                per_second: counter.recent.per_second(),
            })
            .collect()
    }
}

/// Counts recorded over the last [`RATE_WINDOW`].
#[derive(Debug, Default)]
struct RateWindow {
    recent: Mutex<VecDeque<(Instant, u64)>>,
}

impl RateWindow {
    fn record(&self, count: u64) {
        let now = Instant::now();
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.push_back((now, count));
        while recent.front().is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW) {
            recent.pop_front();
        }
    }

    fn per_second(&self) -> f64 {
        let now = Instant::now();
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let total: u64 = recent
            .iter()
            .filter(|(t, _)| now.duration_since(*t) <= RATE_WINDOW)
            .map(|(_, n)| n)
            .sum();
        total as f64 / RATE_WINDOW.as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_source_apart() {
        let stats = Stats::default();
        stats.record_messages(source::kafka::SOURCE, 120);
        stats.record_messages(source::kafka::SOURCE, 60);
        stats.record_messages(source::redis::SOURCE, 6);
        stats.record_messages("elsewhere", 1000);

        let rates = stats.source_rates();
        let names: Vec<&str> = rates.iter().map(|r| r.source).collect();
        assert_eq!(names, ["redis", "redis-stream", "kafka"]);
        let messages: Vec<u64> = rates.iter().map(|r| r.messages).collect();
        assert_eq!(messages, [6, 0, 180]);
        let per_second: Vec<f64> = rates.iter().map(|r| r.per_second).collect();
        assert_eq!(per_second, [0.1, 0.0, 3.0]);
    }
}
