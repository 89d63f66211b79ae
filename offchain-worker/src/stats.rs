//! Counters shared between the worker and the health and metrics endpoints.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Process-wide counters. All methods are cheap and lock-free except the
/// event-rate window, which takes a short lock once per stored batch.
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
    recent: Mutex<VecDeque<(Instant, u64)>>,
}

/// The window of [`Stats::events_per_second`].
pub const RATE_WINDOW: Duration = Duration::from_secs(60);

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
        let now = Instant::now();
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.push_back((now, count));
        while recent.front().is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW) {
            recent.pop_front();
        }
    }

    /// Events stored per second over the last minute.
    pub fn events_per_second(&self) -> f64 {
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
