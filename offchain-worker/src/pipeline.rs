//! The pipeline: envelopes in, stored events, metrics, insights and dead
//! letters out, one PostgreSQL transaction per batch.
//!
//! Two stages run side by side, so the analysis of one batch overlaps the
//! write of the one before:
//!
//! - the preparer collects a batch, drops what is already stored, reserves
//!   event ids, parses, analyses, stamps with the chain head and hashes;
//! - the writer ([`writer`]) writes each prepared batch in one transaction,
//!   acknowledges it to its sources after the commit, and broadcasts it.
//!
//! A batch is prepared once; a write that fails for a retryable reason is
//! retried with the same rows, so the analysis never sees an event twice.
//! The first batch a pipeline analyses also records where this run of the
//! analysis began (`analysis_runs`), so replay knows where it started
//! afresh.
//! While a batch is with the writer, a message that may repeat one of its
//! positions makes the preparer wait for the writer before checking, so
//! repeats are always checked against committed rows.

use std::collections::{HashMap, HashSet};
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

use crate::envelope::{Acker, Envelope, Receipt};
use crate::error::WorkerError;
use crate::hub::Hub;
use crate::stats::Stats;
use crate::storage::{
    MetricRow, NewDeadLetter, NewEvent, NewInsight, NewMetric, Position, Store,
};
use crate::stored::AnalysisRun;

mod writer;

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
    /// This run of the analysis, recorded with the first event it analyses
    /// (which sets `first_event`); `None` records nothing.
    pub run_start: Option<AnalysisRun>,
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
    acks: Vec<(Acker, Vec<Receipt>)>,
    /// The start of the run, in the batch of its first event.
    run_start: Option<AnalysisRun>,
}

/// Batches handed to the writer and how far each source's positions went,
/// so the preparer knows when a message may repeat one not yet committed.
struct InFlight {
    sent: u64,
    done: watch::Receiver<u64>,
    /// Stream to `(source, partition, highest offset handed over)`.
    highest: HashMap<String, Vec<(&'static str, i32, i64)>>,
}

impl InFlight {
    fn highest(&self, envelope: &Envelope) -> Option<i64> {
        let entries = self.highest.get(&envelope.stream)?;
        entries
            .iter()
            .find(|(s, p, _)| *s == envelope.source && *p == envelope.partition)
            .map(|(_, _, offset)| *offset)
    }

    /// Whether a message of `batch` may repeat one the writer holds.
    fn may_repeat(&self, batch: &[Envelope]) -> bool {
        let pending = *self.done.borrow() < self.sent;
        pending
            && batch.iter().any(|e| {
                e.offset.zip(self.highest(e)).is_some_and(|(offset, high)| offset <= high)
            })
    }

    async fn wait_for_writer(&mut self) {
        let sent = self.sent;
        // An error means the writer is gone: nothing is in flight any more.
        let _ = self.done.wait_for(|done| *done >= sent).await;
    }

    fn handed_over(&mut self, batch: &[Envelope]) {
        self.sent += 1;
        for envelope in batch {
            let Some(offset) = envelope.offset else { continue };
            let entries = match self.highest.get_mut(&envelope.stream) {
                Some(entries) => entries,
                None => self.highest.entry(envelope.stream.clone()).or_default(),
            };
            let key = (envelope.source, envelope.partition);
            match entries.iter_mut().find(|(s, p, _)| (*s, *p) == key) {
                Some(entry) => entry.2 = entry.2.max(offset),
                None => entries.push((key.0, key.1, offset)),
            }
        }
    }
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
    /// Runs until `shutdown` fires or the sender side closes; every batch
    /// in hand and in the queue is written before returning.
    pub async fn run(
        mut self,
        mut input: mpsc::Receiver<Envelope>,
        shutdown: CancellationToken,
    ) {
        let (to_writer, batches) = mpsc::channel(1);
        let (done_sender, done) = watch::channel(0);
        let writer = writer::Writer {
            store: self.store.clone(),
            hub: self.hub.clone(),
            stats: self.stats.clone(),
            done: done_sender,
        };
        let writer = tokio::spawn(writer.run(batches, shutdown.clone()));
        let mut in_flight = InFlight { sent: 0, done, highest: HashMap::new() };

        loop {
            let first = tokio::select! {
                biased;
                () = shutdown.cancelled() => None,
                next = input.recv() => next,
            };
            let Some(first) = first else { break };
            let batch = self.collect(first, &mut input).await;
            if !self.hand_over(batch, &mut in_flight, &to_writer, &shutdown).await {
                break;
            }
        }
        input.close();
        let mut rest = Vec::new();
        while let Ok(envelope) = input.try_recv() {
            rest.push(envelope);
        }
        let mut rest = rest.into_iter().peekable();
        while rest.peek().is_some() {
            let batch: Vec<Envelope> =
                rest.by_ref().take(self.config.batch_size).collect();
            if !self.hand_over(batch, &mut in_flight, &to_writer, &shutdown).await {
                break;
            }
        }
        drop(to_writer);
        if let Err(err) = writer.await {
            error!(target: "worker::pipeline", %err, "the writer failed");
        }
        debug!(target: "worker::pipeline", "pipeline stopped");
    }

    async fn collect(
        &self,
        first: Envelope,
        input: &mut mpsc::Receiver<Envelope>,
    ) -> Vec<Envelope> {
        let mut batch = Vec::with_capacity(self.config.batch_size);
        batch.push(first);
        let deadline = tokio::time::Instant::now() + self.config.flush_interval;
        while batch.len() < self.config.batch_size {
            // Takes whatever is queued at once; waits only when nothing is.
            let room = self.config.batch_size - batch.len();
            match tokio::time::timeout_at(deadline, input.recv_many(&mut batch, room))
                .await
            {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        batch
    }

    /// Prepares a batch and hands it to the writer; false when the writer
    /// is gone.
    async fn hand_over(
        &mut self,
        batch: Vec<Envelope>,
        in_flight: &mut InFlight,
        to_writer: &mpsc::Sender<Prepared>,
        shutdown: &CancellationToken,
    ) -> bool {
        if in_flight.may_repeat(&batch) {
            in_flight.wait_for_writer().await;
        }
        let Some((batch, repeats)) = self.drop_stored(batch, shutdown).await else {
            return true;
        };
        if !repeats.is_empty() {
            // Acknowledging a message may acknowledge those before it
            // (Kafka offsets): nothing may still be on its way to storage.
            in_flight.wait_for_writer().await;
            for (acker, receipts) in Acker::receipts(&repeats) {
                acker.send(receipts);
            }
        }
        if batch.is_empty() {
            return true;
        }
        let head = self.wait_for_head(shutdown).await;
        let Some(mut prepared) = self.prepare_with_retry(&batch, head, shutdown).await
        else {
            return true;
        };
        prepared.acks = Acker::receipts(&batch);
        in_flight.handed_over(&batch);
        to_writer.send(prepared).await.is_ok()
    }

    /// Splits off messages of log-based sources that are already stored
    /// (a redelivery after a crash), returned second to be acknowledged
    /// again, and drops copies of a message earlier in the batch: each
    /// message is stored once, and acknowledged only once stored.
    async fn drop_stored(
        &self,
        batch: Vec<Envelope>,
        shutdown: &CancellationToken,
    ) -> Option<(Vec<Envelope>, Vec<Envelope>)> {
        if batch.iter().all(|e| e.offset.is_none()) {
            return Some((batch, Vec::new()));
        }
        let positions: Vec<Position> = batch.iter().filter_map(position_of).collect();
        let mut delay = Duration::from_millis(100);
        let stored = loop {
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
        let mut repeats = Vec::new();
        let mut in_batch = HashSet::new();
        for envelope in batch {
            match position_of(&envelope) {
                Some(p) if stored.contains(&p) => repeats.push(envelope),
                // A copy of a message earlier in this batch is acknowledged
                // with it, after the commit, never before.
                Some(p) if !in_batch.insert(p.clone()) => {}
                _ => fresh.push(envelope),
            }
        }
        Some((fresh, repeats))
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
        prepared.events.reserve(batch.len());
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
        if let Some(run) = self.run_start.take() {
            prepared.run_start = Some(AnalysisRun { first_event: id, ..run });
        }
        let stream = envelope.stream_label();
        prepared.events.push(new_event(envelope, id, event));
        let analysis = self.analyzer.analyse(StoredEvent { id, stream: &stream, event });
        prepared.metrics.extend(analysis.metrics.into_iter().map(|m| new_metric(id, m)));

        let Some(head) = head else { return };
        if analysis.insights.is_empty() {
            return;
        }
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
