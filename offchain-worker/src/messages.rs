//! The payloads of broadcasts, built the same way for live messages and
//! for messages replayed from storage to a client that resumes.

use alloy_primitives::B256;
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::hub::{Channel, Hub, HubMessage};
use crate::storage::{to_b256, InsightRow, MetricRow, Store};
use crate::WorkerError;

/// A `dashboard_update` payload for a stored metric sample.
pub fn metric_message(row: &MetricRow) -> Value {
    json!({
        "id": row.id,
        "metric": row.name,
        "value": row.value,
        "change_percent": row.change_percent,
        "tags": row.tags,
        "timestamp": rfc3339(row.metric_time),
        "event_id": row.event_id,
    })
}

/// What an `insights` (or `alert`) payload is made of.
#[derive(Debug, Clone, Copy)]
pub struct InsightParts<'a> {
    /// Insight id.
    pub id: i64,
    /// Content hash.
    pub hash: B256,
    /// Kind.
    pub kind: &'a str,
    /// Subject.
    pub subject: &'a str,
    /// Severity.
    pub severity: Option<&'a str>,
    /// Anchoring status: `pending`, `anchoring`, `anchored` or `final`.
    pub status: &'a str,
    /// The hashed content.
    pub content: &'a Value,
}

/// An `insights` payload.
pub fn insight_message(parts: InsightParts<'_>) -> Value {
    json!({
        "id": parts.id,
        "hash": parts.hash,
        "kind": parts.kind,
        "subject": parts.subject,
        "severity": parts.severity,
        "status": parts.status,
        "insight": parts.content,
    })
}

/// An `insights` payload for a stored insight with its batch status.
pub fn stored_insight_message(
    row: &InsightRow,
    batch_status: Option<&str>,
) -> Result<Value, WorkerError> {
    let content: Value = serde_json::from_str(&row.canonical)
        .map_err(|e| WorkerError::Corrupt(format!("insight {}: {e}", row.id)))?;
    let status = match batch_status {
        None => "pending",
        Some("pending" | "submitted") => "anchoring",
        Some(other) => other,
    };
    Ok(insight_message(InsightParts {
        id: row.id,
        hash: to_b256(&row.hash)?,
        kind: &row.kind,
        subject: &row.subject,
        severity: row.severity.as_deref(),
        status,
        content: &content,
    }))
}

fn rfc3339(time: OffsetDateTime) -> String {
    let millis = time.unix_timestamp_nanos() / 1_000_000;
    analytics_primitives::timestamp::format_millis(i64::try_from(millis).unwrap_or(0))
}

/// Up to `limit` stored messages of `channel` after position `after`,
/// oldest first, exactly as they were broadcast live.
pub async fn stored_after(
    store: &Store,
    channel: Channel,
    after: i64,
    limit: i64,
) -> Result<Vec<HubMessage>, WorkerError> {
    let message =
        |position: i64, data: Value| Hub::message(channel, Some(position), data);
    let page = match channel {
        Channel::Dashboard => {
            let rows = store.metrics_after(after, limit).await?;
            rows.iter().map(|row| message(row.id, metric_message(row))).collect()
        }
        Channel::Insights | Channel::Alerts => {
            let alerts = channel == Channel::Alerts;
            let rows = store.insights_after(after, limit, alerts).await?;
            let mut page = Vec::with_capacity(rows.len());
            for (row, status) in &rows {
                page.push(message(
                    row.id,
                    stored_insight_message(row, status.as_deref())?,
                ));
            }
            page
        }
        Channel::Anchors => {
            let rows = store.anchor_events_after(after, limit).await?;
            rows.into_iter().map(|row| message(row.id, row.data)).collect()
        }
    };
    Ok(page)
}
