//! The pipeline: envelopes in, stored events, metrics, insights and dead
//! letters out, one PostgreSQL transaction per batch.
//!
//! A batch is prepared once (parsed, ids reserved, analysed, stamped with
//! the chain head, hashed) and then written; a write that fails for a
//! retryable reason is retried with the same rows, so the analysis never
//! sees an event twice.

use std::sync::Arc;
use std::time::Duration;

use analytics_primitives::analysis::{Analyzer, MetricPoint, StoredEvent};
use analytics_primitives::event::{parse_event, Event, ParseError};
use analytics_primitives::insight::{BlockStamp, EventRef, Insight, Severity};
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use crate::envelope::{Acker, Envelope};
use crate::error::WorkerError;
use crate::hub::{Channel, Hub, NOTIFY_CHANNEL};
use crate::messages::{self, InsightParts};
use crate::stats::Stats;
use crate::storage::{
    self, MetricRow, NewDeadLetter, NewEvent, NewInsight, NewMetric, Position, Store,
};

/// Tuning of the pipeline.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Most envelopes written in one transaction.
    pub batch_size: usize,
    /// Longest wait for a batch to fill once its first envelope arrived.
    pub flush_interval: Duration,
    /// Largest accepted message, bytes; larger ones become dead letters.
    pub max_message_bytes: usize,
}

/// Everything the pipeline needs.
pub struct Pipeline {
    /// Storage.
    pub store: Store,
    /// The analysis.
    pub analyzer: Box<dyn Analyzer>,
    /// The latest chain head.
    pub heads: watch::Receiver<Option<BlockStamp>>,
    /// Broadcasts.
    pub hub: Hub,
    /// Counters.
    pub stats: Arc<Stats>,
    /// Tuning.
    pub config: PipelineConfig,
}

/// A batch ready to be written.
#[derive(Debug, Default)]
struct Prepared {
    events: Vec<NewEvent>,
    metrics: Vec<NewMetric>,
    insights: Vec<NewInsight>,
    dead_letters: Vec<NewDeadLetter>,
    alerts: Vec<usize>,
    drafts: Vec<Value>,
    acks: Vec<(Acker, String)>,
}

fn ack_of(envelope: &Envelope) -> Option<(Acker, String)> {
    envelope.ack.clone().map(|acker| (acker, envelope.stream.clone()))
}

fn position_of(envelope: &Envelope) -> Option<Position> {
    let offset = envelope.offset?;
    Some((
        envelope.source.to_owned(),
        envelope.stream.clone(),
        envelope.partition,
        offset,
    ))
}

const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

impl Pipeline {
    /// Runs until `shutdown` fires or the sender side closes; the batch in
    /// hand is written before returning.
    pub async fn run(
        mut self,
        mut input: mpsc::Receiver<Envelope>,
        shutdown: CancellationToken,
    ) {
        loop {
            let first = tokio::select! {
                biased;
                () = shutdown.cancelled() => None,
                next = input.recv() => next,
            };
            let Some(first) = first else { break };
            let batch = self.collect(first, &mut input).await;
            self.handle(batch, &shutdown).await;
        }
        input.close();
        let mut rest = Vec::new();
        while let Ok(envelope) = input.try_recv() {
            rest.push(envelope);
        }
        for chunk in rest.chunks(self.config.batch_size) {
            self.handle(chunk.to_vec(), &shutdown).await;
        }
        debug!(target: "worker::pipeline", "pipeline stopped");
    }

    async fn collect(
        &self,
        first: Envelope,
        input: &mut mpsc::Receiver<Envelope>,
    ) -> Vec<Envelope> {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + self.config.flush_interval;
        while batch.len() < self.config.batch_size {
            match tokio::time::timeout_at(deadline, input.recv()).await {
                Ok(Some(envelope)) => batch.push(envelope),
                Ok(None) | Err(_) => break,
            }
        }
        batch
    }

    async fn handle(&mut self, batch: Vec<Envelope>, shutdown: &CancellationToken) {
        let Some(batch) = self.drop_stored(batch, shutdown).await else { return };
        let head = self.wait_for_head(shutdown).await;
        let prepared = match self.prepare_with_retry(&batch, head, shutdown).await {
            Some(mut prepared) => {
                prepared.acks = batch.iter().filter_map(ack_of).collect();
                prepared
            }
            None => return,
        };
        self.write_with_retry(prepared, shutdown).await;
    }

    /// Drops messages of log-based sources that are already stored (a
    /// redelivery after a crash, or a repeat within the batch) and
    /// acknowledges them again: each message is stored once.
    async fn drop_stored(
        &self,
        batch: Vec<Envelope>,
        shutdown: &CancellationToken,
    ) -> Option<Vec<Envelope>> {
        if batch.iter().all(|e| e.offset.is_none()) {
            return Some(batch);
        }
        let positions: Vec<Position> = batch.iter().filter_map(position_of).collect();
        let mut delay = Duration::from_millis(100);
        let mut seen = loop {
            match self.store.stored_positions(&positions).await {
                Ok(stored) => break stored,
                Err(err) => {
                    warn!(target: "worker::pipeline", %err, "cannot check for repeats; retrying");
                    if !sleep_or_cancel(&mut delay, shutdown).await {
                        return None;
                    }
                }
            }
        };
        let mut fresh = Vec::with_capacity(batch.len());
        for envelope in batch {
            let repeat = position_of(&envelope).is_some_and(|p| !seen.insert(p));
            if !repeat {
                fresh.push(envelope);
            } else if let Some((acker, stream)) = ack_of(&envelope) {
                acker.ack(&stream);
            }
        }
        Some(fresh)
    }

    async fn wait_for_head(
        &mut self,
        shutdown: &CancellationToken,
    ) -> Option<BlockStamp> {
        loop {
            if let Some(head) = *self.heads.borrow_and_update() {
                return Some(head);
            }
            tokio::select! {
                () = shutdown.cancelled() => return None,
                changed = self.heads.changed() => if changed.is_err() { return None },
            }
        }
    }

    async fn prepare_with_retry(
        &mut self,
        batch: &[Envelope],
        head: Option<BlockStamp>,
        shutdown: &CancellationToken,
    ) -> Option<Prepared> {
        let mut delay = Duration::from_millis(100);
        let ids = loop {
            match self.store.reserve_event_ids(batch.len()).await {
                Ok(ids) => break ids,
                Err(err) => {
                    warn!(target: "worker::pipeline", %err, "cannot reserve event ids; retrying");
                    if !sleep_or_cancel(&mut delay, shutdown).await {
                        return None;
                    }
                }
            }
        };
        Some(self.prepare(batch, &ids, head))
    }

    fn prepare(
        &mut self,
        batch: &[Envelope],
        ids: &[i64],
        head: Option<BlockStamp>,
    ) -> Prepared {
        let mut prepared = Prepared::default();
        for (envelope, id) in batch.iter().zip(ids) {
            match parse_envelope(envelope, self.config.max_message_bytes) {
                Ok(event) => self.accept(&mut prepared, envelope, *id, &event, head),
                Err(reason) => prepared.dead_letters.push(dead_letter(envelope, reason)),
            }
        }
        prepared
    }

    fn accept(
        &mut self,
        prepared: &mut Prepared,
        envelope: &Envelope,
        id: i64,
        event: &Event,
        head: Option<BlockStamp>,
    ) {
        let stream = envelope.stream_label();
        prepared.events.push(new_event(envelope, id, event));
        let analysis = self.analyzer.analyse(StoredEvent { id, stream: &stream, event });
        prepared.metrics.extend(analysis.metrics.into_iter().map(|m| new_metric(id, m)));

        let Some(head) = head else { return };
        let event_ref = EventRef { id, stream, timestamp_ms: event.timestamp_ms() };
        for draft in analysis.insights {
            let insight =
                Insight::new(self.analyzer.version(), draft, event_ref.clone(), head);
            match new_insight(&insight) {
                Ok(row) if prepared.insights.iter().any(|r| r.hash == row.hash) => {}
                Ok(row) => {
                    if insight.severity >= Some(Severity::High) {
                        prepared.alerts.push(prepared.insights.len());
                    }
                    prepared
                        .drafts
                        .push(serde_json::to_value(&insight).unwrap_or(Value::Null));
                    prepared.insights.push(row);
                }
                Err(err) => {
                    error!(target: "worker::pipeline", %err, event = id, "insight dropped");
                }
            }
        }
    }

    async fn write_with_retry(
        &mut self,
        mut prepared: Prepared,
        shutdown: &CancellationToken,
    ) {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.write(&mut prepared).await {
                Ok(ids) => {
                    for (acker, stream) in &prepared.acks {
                        acker.ack(stream);
                    }
                    return self.publish(&prepared, &ids);
                }
                Err(err) if err.is_retryable() => {
                    Stats::bump(&self.stats.store_retries, 1);
                    warn!(target: "worker::pipeline", %err, "store failed; retrying");
                    if !sleep_or_cancel(&mut delay, shutdown).await {
                        error!(target: "worker::pipeline", "shutdown with an unwritten batch");
                        return;
                    }
                }
                Err(err) => {
                    error!(target: "worker::pipeline", %err, "batch rejected by storage");
                    return self.salvage(&prepared, &err).await;
                }
            }
        }
    }

    async fn write(&self, prepared: &mut Prepared) -> Result<Vec<i64>, WorkerError> {
        let mut tx = self.store.begin().await?;
        storage::insert_events(&mut tx, &prepared.events).await?;
        storage::insert_metrics(&mut tx, &mut prepared.metrics).await?;
        let ids = storage::insert_insights(&mut tx, &prepared.insights).await?;
        storage::insert_dead_letters(&mut tx, &prepared.dead_letters).await?;
        if let Some(payload) = self.announcement(prepared, &ids) {
            storage::notify(&mut tx, NOTIFY_CHANNEL, &payload).await?;
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// What this batch adds to each channel, for the other nodes.
    fn announcement(&self, prepared: &Prepared, ids: &[i64]) -> Option<String> {
        let mut ranges = Vec::new();
        let metric_ids = prepared.metrics.iter().map(|m| m.id);
        if let (Some(first), Some(last)) = (metric_ids.clone().min(), metric_ids.max()) {
            ranges.push((Channel::Dashboard, first, last));
        }
        if let (Some(first), Some(last)) = (ids.iter().min(), ids.iter().max()) {
            ranges.push((Channel::Insights, *first, *last));
        }
        if ranges.is_empty() {
            return None;
        }
        serde_json::to_string(&self.hub.announcement(ranges)).ok()
    }

    /// Keeps the raw messages of a batch the database refused, as dead
    /// letters naming the storage error, so nothing is lost silently.
    async fn salvage(&self, prepared: &Prepared, err: &WorkerError) {
        let mut letters = prepared.dead_letters.clone();
        letters.extend(prepared.events.iter().map(|e| NewDeadLetter {
            source: e.source.clone(),
            stream: e.stream.clone(),
            partition: e.partition,
            offset: e.offset,
            raw: e.payload.clone().into_bytes(),
            reason: format!("storage rejected the batch: {err}"),
            received_at: e.received_at,
        }));
        let result = async {
            let mut tx = self.store.begin().await?;
            storage::insert_dead_letters(&mut tx, &letters).await?;
            tx.commit().await.map_err(WorkerError::from)
        };
        match result.await {
            Ok(()) => {
                Stats::bump(&self.stats.dead_letters, letters.len() as u64);
                for (acker, stream) in &prepared.acks {
                    acker.ack(stream);
                }
            }
            Err(err) => {
                error!(target: "worker::pipeline", %err, lost = letters.len(), "messages lost")
            }
        }
    }

    fn publish(&self, prepared: &Prepared, ids: &[i64]) {
        self.stats.record_events(prepared.events.len() as u64);
        Stats::bump(&self.stats.dead_letters, prepared.dead_letters.len() as u64);
        Stats::bump(&self.stats.insights, ids.len() as u64);

        for metric in &prepared.metrics {
            let data = messages::metric_message(&metric_row(metric));
            self.hub.publish_at(Channel::Dashboard, Some(metric.id), data);
        }
        for (index, ((row, id), content)) in
            prepared.insights.iter().zip(ids).zip(&prepared.drafts).enumerate()
        {
            let data = messages::insight_message(InsightParts {
                id: *id,
                hash: row.hash,
                kind: &row.kind,
                subject: &row.subject,
                severity: row.severity.as_deref(),
                status: "pending",
                content,
            });
            if prepared.alerts.contains(&index) {
                self.hub.publish_at(Channel::Alerts, Some(*id), data.clone());
            }
            self.hub.publish_at(Channel::Insights, Some(*id), data);
        }
    }
}

async fn sleep_or_cancel(delay: &mut Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => return false,
        () = tokio::time::sleep(*delay) => {}
    }
    *delay = (*delay * 2).min(MAX_RETRY_DELAY);
    true
}

/// Parses an envelope; the error text becomes the dead letter's reason.
pub fn parse_envelope(envelope: &Envelope, max_bytes: usize) -> Result<Event, String> {
    let event = parse_event(envelope.kind, &envelope.payload, max_bytes);
    let event = event.map_err(|e: ParseError| e.to_string())?;
    Ok(event)
}

fn dead_letter(envelope: &Envelope, reason: String) -> NewDeadLetter {
    NewDeadLetter {
        source: envelope.source.to_owned(),
        stream: envelope.stream.clone(),
        partition: envelope.partition,
        offset: envelope.offset,
        raw: envelope.payload.clone(),
        reason,
        received_at: envelope.received_at,
    }
}

fn new_event(envelope: &Envelope, id: i64, event: &Event) -> NewEvent {
    let event_type = match event {
        Event::User(e) => Some(e.event_type.clone()),
        Event::Business(e) => Some(e.event_type.clone()),
        Event::Metric(e) => Some(e.name.clone()),
    };
    NewEvent {
        id,
        source: envelope.source.to_owned(),
        stream: envelope.stream.clone(),
        partition: envelope.partition,
        offset: envelope.offset,
        kind: event.kind().as_str(),
        event_type,
        user_id: event.user_id().map(str::to_owned),
        // Parsing succeeded, so the payload is UTF-8 JSON.
        payload: String::from_utf8_lossy(&envelope.payload).into_owned(),
        event_time: millis_to_time(event.timestamp_ms()),
        received_at: envelope.received_at,
    }
}

fn new_metric(event_id: i64, point: MetricPoint) -> NewMetric {
    NewMetric {
        id: 0,
        event_id,
        name: point.name,
        value: point.value,
        change_percent: point.change_percent.filter(|c| c.is_finite()),
        tags: Value::Object(point.tags),
        metric_time: millis_to_time(point.timestamp_ms),
    }
}

fn new_insight(insight: &Insight) -> Result<NewInsight, WorkerError> {
    let canonical = insight.canonical_json()?;
    let hash = analytics_primitives::keccak256(canonical.as_bytes());
    let block_time = i64::try_from(insight.block.timestamp).unwrap_or(i64::MAX);
    Ok(NewInsight {
        hash,
        kind: insight.kind.as_str().to_owned(),
        subject: insight.subject.clone(),
        severity: insight.severity.map(|s| severity_name(s).to_owned()),
        canonical,
        event_id: insight.event.id,
        block_number: i64::try_from(insight.block.number).unwrap_or(i64::MAX),
        block_time: millis_to_time(block_time.saturating_mul(1000)),
    })
}

/// The wire name of a severity.
pub fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
    }
}

/// Converts epoch milliseconds to a timestamp, clamping the impossible.
pub fn millis_to_time(millis: i64) -> OffsetDateTime {
    let nanos = i128::from(millis) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn metric_row(metric: &NewMetric) -> MetricRow {
    MetricRow {
        id: metric.id,
        event_id: metric.event_id,
        name: metric.name.clone(),
        value: metric.value,
        change_percent: metric.change_percent,
        tags: metric.tags.clone(),
        metric_time: metric.metric_time,
    }
}
