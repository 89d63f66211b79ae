//! The writing stage: one transaction per prepared batch, acknowledgement
//! to the sources after the commit, then the broadcasts.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use super::{metric_row, sleep_or_cancel, Prepared};
use crate::error::WorkerError;
use crate::hub::{Channel, Hub, NOTIFY_CHANNEL};
use crate::messages::{self, InsightParts};
use crate::stats::Stats;
use crate::storage::{self, NewDeadLetter, Position, Store};
use crate::stored;

/// Writes prepared batches in order.
pub(super) struct Writer {
    pub(super) store: Store,
    pub(super) hub: Hub,
    pub(super) stats: Arc<Stats>,
    /// How many batches are finished: committed, kept as dead letters, or
    /// given up at shutdown.
    pub(super) done: watch::Sender<u64>,
}

impl Writer {
    /// Writes every batch it is given until the preparer hangs up.
    pub(super) async fn run(
        self,
        mut batches: mpsc::Receiver<Prepared>,
        shutdown: CancellationToken,
    ) {
        while let Some(prepared) = batches.recv().await {
            self.write_with_retry(prepared, &shutdown).await;
            self.done.send_modify(|done| *done += 1);
        }
    }

    async fn write_with_retry(
        &self,
        mut prepared: Prepared,
        shutdown: &CancellationToken,
    ) {
        let mut delay = Duration::from_millis(100);
        loop {
            let err = match self.write(&mut prepared).await {
                Ok(ids) => {
                    for (acker, receipts) in std::mem::take(&mut prepared.acks) {
                        acker.send(receipts);
                    }
                    return self.publish(&prepared, &ids);
                }
                Err(err) => err,
            };
            if err.is_stored_position() {
                warn!(target: "worker::pipeline", %err, "events stored meanwhile; dropping them");
                if self.drop_stored(&mut prepared).await.is_ok() {
                    continue;
                }
            } else if err.is_retryable() {
                Stats::bump(&self.stats.store_retries, 1);
                warn!(target: "worker::pipeline", %err, "store failed; retrying");
            } else {
                error!(target: "worker::pipeline", %err, "batch rejected by storage");
                return self.salvage(&prepared, &err).await;
            }
            if !sleep_or_cancel(&mut delay, shutdown).await {
                error!(target: "worker::pipeline", "shutdown with an unwritten batch");
                return;
            }
        }
    }

    async fn write(&self, prepared: &mut Prepared) -> Result<Vec<i64>, WorkerError> {
        let mut tx = self.store.begin().await?;
        storage::insert_events(&mut tx, &prepared.events).await?;
        if let Some(run) = &prepared.run_start {
            stored::insert_analysis_run(&mut tx, run).await?;
        }
        storage::insert_metrics(&mut tx, &mut prepared.metrics).await?;
        let ids = storage::insert_insights(&mut tx, &prepared.insights).await?;
        storage::insert_dead_letters(&mut tx, &prepared.dead_letters).await?;
        if let Some(payload) = self.announcement(prepared, &ids) {
            storage::notify(&mut tx, NOTIFY_CHANNEL, &payload).await?;
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// Removes from the batch the events whose positions were stored since
    /// it was checked (by another worker that held the same partition),
    /// with their metric samples and insights; their acknowledgements stay.
    async fn drop_stored(&self, prepared: &mut Prepared) -> Result<(), WorkerError> {
        let positions: Vec<Position> = prepared
            .events
            .iter()
            .filter_map(|e| {
                let offset = e.offset?;
                Some((e.source.clone(), e.stream.clone(), e.partition, offset))
            })
            .collect();
        let stored = self.store.stored_positions(&positions).await?;
        let mut dropped = HashSet::new();
        prepared.events.retain(|e| {
            let position =
                e.offset.map(|o| (e.source.clone(), e.stream.clone(), e.partition, o));
            let repeat = position.is_some_and(|p| stored.contains(&p));
            if repeat {
                dropped.insert(e.id);
            }
            !repeat
        });
        prepared.metrics.retain(|m| !dropped.contains(&m.event_id));

        let insights = std::mem::take(&mut prepared.insights);
        let drafts = std::mem::take(&mut prepared.drafts);
        let alerts = std::mem::take(&mut prepared.alerts);
        for (index, (row, draft)) in insights.into_iter().zip(drafts).enumerate() {
            if dropped.contains(&row.event_id) {
                continue;
            }
            if alerts.contains(&index) {
                prepared.alerts.push(prepared.insights.len());
            }
            prepared.insights.push(row);
            prepared.drafts.push(draft);
        }
        Ok(())
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
                self.count_by_source(letters.iter().map(|d| d.source.as_str()));
                for (acker, receipts) in &prepared.acks {
                    acker.send(receipts.clone());
                }
            }
            Err(err) => {
                error!(target: "worker::pipeline", %err, lost = letters.len(), "messages lost")
            }
        }
        // The run still began here: replay must start afresh here too.
        if let Some(run) = &prepared.run_start {
            let recorded = async {
                let mut tx = self.store.begin().await?;
                stored::insert_analysis_run(&mut tx, run).await?;
                tx.commit().await.map_err(WorkerError::from)
            };
            if let Err(err) = recorded.await {
                error!(target: "worker::pipeline", %err, "analysis run not recorded");
            }
        }
    }

    fn publish(&self, prepared: &Prepared, ids: &[i64]) {
        self.stats.record_events(prepared.events.len() as u64);
        let events = prepared.events.iter().map(|e| e.source.as_str());
        let letters = prepared.dead_letters.iter().map(|d| d.source.as_str());
        self.count_by_source(events.chain(letters));
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

    /// Counts stored messages per source.
    fn count_by_source<'a>(&self, sources: impl Iterator<Item = &'a str>) {
        let mut counts: Vec<(&str, u64)> = Vec::new();
        for source in sources {
            match counts.iter_mut().find(|(s, _)| *s == source) {
                Some((_, count)) => *count += 1,
                None => counts.push((source, 1)),
            }
        }
        for (source, count) in counts {
            self.stats.record_messages(source, count);
        }
    }
}
