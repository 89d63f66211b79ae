//! JSON shapes of the JSON-RPC API. Field names are camelCase; hashes and
//! addresses are `0x` hex; times are RFC 3339 (UTC) unless the name says
//! seconds.

use alloy::primitives::{Address, B256};
use offchain_worker::storage::{to_b256, BatchRow, InsightRow, MetricSample};
use offchain_worker::WorkerError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// An insight and where it stands.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InsightView {
    /// Id.
    pub id: i64,
    /// keccak256 of the canonical JSON of `insight`.
    pub hash: B256,
    /// Kind.
    pub kind: String,
    /// Subject.
    pub subject: String,
    /// Severity, when the kind has one.
    pub severity: Option<String>,
    /// `pending` (not batched), `anchoring`, `anchored` or `final`.
    pub status: String,
    /// Its batch.
    pub batch_id: Option<i64>,
    /// Its leaf position in the batch.
    pub leaf_index: Option<i32>,
    /// When it was stored.
    pub created_at: String,
    /// The hashed content.
    pub insight: Value,
}

/// An insight with everything needed to verify it against the chain.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProofView {
    /// Format of this document.
    pub format: String,
    /// Id.
    pub id: i64,
    /// The hashed content.
    pub insight: Value,
    /// keccak256 of its canonical JSON.
    pub hash: B256,
    /// The Merkle leaf: keccak256(keccak256(abi.encode(hash))).
    pub leaf: B256,
    /// Sibling hashes from the leaf to the root.
    pub proof: Vec<B256>,
    /// The batch's Merkle root.
    pub root: B256,
    /// The batch.
    pub batch: BatchView,
}

/// A whole batch, for an auditor to check offline and against the chain:
/// every leaf's content, the manifest, and the dead letters the manifest
/// accounts for.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchExportView {
    /// Format of this document.
    pub format: String,
    /// The batch.
    pub batch: BatchView,
    /// The insights in leaf order.
    pub leaves: Vec<BatchLeafView>,
    /// The manifest, the batch's last leaf (absent only for batches formed
    /// before manifests existed).
    pub manifest: Option<Value>,
    /// The dead letters the manifest accounts for, in id order.
    pub dead_letters: Vec<DeadLetterView>,
}

/// One insight leaf of an exported batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchLeafView {
    /// Insight id.
    pub id: i64,
    /// Leaf position.
    pub leaf_index: i32,
    /// keccak256 of the canonical JSON of `insight`.
    pub hash: B256,
    /// The hashed content.
    pub insight: Value,
}

/// A dead letter as exported.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterView {
    /// Id.
    pub id: i64,
    /// Source.
    pub source: String,
    /// Channel, stream or topic.
    pub stream: String,
    /// Partition.
    pub partition: i32,
    /// Position in the stream, where the source has one.
    pub offset: Option<i64>,
    /// Why it was rejected.
    pub reason: String,
    /// keccak256 of the message bytes.
    pub raw_hash: B256,
    /// Number of message bytes.
    pub raw_length: u64,
    /// The message bytes, `0x` hex; left out above 64 KiB, where the
    /// auditor has `rawHash` alone.
    pub raw: Option<String>,
    /// When it arrived.
    pub received_at: String,
}

/// A batch and its anchoring.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchView {
    /// Id in this node.
    pub id: i64,
    /// Merkle root.
    pub root: B256,
    /// The previous batch's root (zero for the first).
    pub prev_root: B256,
    /// Number of leaves: its insights and its manifest.
    pub leaf_count: i32,
    /// `pending`, `submitted`, `anchored` or `final`.
    pub status: String,
    /// Contract that anchors it.
    pub contract: Address,
    /// Chain id.
    pub chain_id: i64,
    /// Anchoring transaction.
    pub tx_hash: Option<B256>,
    /// Batch number the contract assigned.
    pub onchain_batch: Option<i64>,
    /// Anchoring block.
    pub block_number: Option<i64>,
    /// Anchoring block hash.
    pub block_hash: Option<B256>,
    /// Anchoring block time, Unix seconds.
    pub block_timestamp: Option<i64>,
    /// When the batch was formed.
    pub created_at: String,
}

/// Filters of `analytics_listInsights`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListParams {
    /// Only this kind (`anomaly`, `business`, ...).
    pub kind: Option<String>,
    /// Only this subject.
    pub subject: Option<String>,
    /// Only ids below this, for paging.
    pub before_id: Option<i64>,
    /// At most this many; default 100, at most 1000.
    pub limit: Option<i64>,
}

/// Parameters of `analytics_historicalData`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HistoryParams {
    /// Metric name.
    pub metric: String,
    /// From this time (RFC 3339), inclusive.
    pub from: Option<String>,
    /// Up to this time (RFC 3339), inclusive.
    pub to: Option<String>,
    /// At most this many; default and maximum 1000.
    pub limit: Option<i64>,
}

/// One metric sample.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricPointView {
    /// Metric name.
    pub metric: String,
    /// Value.
    pub value: f64,
    /// Change against the previous sample, percent.
    pub change_percent: Option<f64>,
    /// Tags.
    pub tags: Value,
    /// Sample time.
    pub timestamp: String,
}

/// Up or down, with detail.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    /// Whether it answers.
    pub up: bool,
    /// What was seen.
    pub detail: String,
}

/// `analytics_systemHealth`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthView {
    /// `ok` when every service is up, else `degraded`.
    pub status: String,
    /// Seconds since start.
    pub uptime_seconds: u64,
    /// Events stored per second over the last minute.
    pub events_per_second: f64,
    /// Distinct users with events in the last 5 minutes.
    pub active_users: i64,
    /// Open dashboard WebSocket connections.
    pub active_connections: u64,
    /// Row counts in PostgreSQL.
    pub totals: Totals,
    /// Counters since start.
    pub since_start: SinceStart,
    /// Resident memory of the process, bytes.
    pub memory_bytes: u64,
    /// CPU use of the process, percent of one core.
    pub cpu_percent: f32,
    /// PostgreSQL, Redis and the chain.
    pub services: Services,
    /// The latest chain head seen.
    pub chain_head: Option<Value>,
    /// Whether anchoring keeps up.
    pub anchoring: AnchoringStatus,
    /// Kafka consumer lag per owned partition (`topic/partition`): the high
    /// watermark minus the committed offset. Empty without Kafka.
    pub kafka_lag: std::collections::BTreeMap<String, i64>,
    /// Messages stored per source since start, by the name recorded on
    /// events: `redis` (pub/sub), `redis-stream` and `kafka`, each listed
    /// whether used or not.
    pub sources: std::collections::BTreeMap<String, SourceView>,
}

/// What one source delivered.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceView {
    /// Messages stored since start, as events or dead letters.
    pub messages: u64,
    /// Messages stored per second over the last minute.
    pub per_second: f64,
}

/// Anchoring health.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnchoringStatus {
    /// `ok`, or `failing` after repeated failed steps.
    pub status: String,
    /// Failed steps in a row.
    pub consecutive_failures: u64,
    /// The latest failure's cause, while failing.
    pub last_error: Option<String>,
}

/// Row counts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    /// Events.
    pub events: i64,
    /// Dead letters.
    pub dead_letters: i64,
    /// Insights.
    pub insights: i64,
    /// Batches.
    pub batches: i64,
}

/// Counters since start.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SinceStart {
    /// Events stored.
    pub events: u64,
    /// Dead letters stored.
    pub dead_letters: u64,
    /// Insights stored.
    pub insights: u64,
    /// Batches anchored.
    pub batches_anchored: u64,
    /// Batches final.
    pub batches_final: u64,
    /// Redis reconnections.
    pub redis_reconnects: u64,
}

/// Service states.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Services {
    /// PostgreSQL.
    pub postgres: ServiceStatus,
    /// Redis.
    pub redis: ServiceStatus,
    /// The chain RPC.
    pub chain: ServiceStatus,
    /// Kafka, or "not configured" when the Kafka source is off.
    pub kafka: ServiceStatus,
}

/// RFC 3339 text of a time.
pub fn rfc3339(time: OffsetDateTime) -> String {
    time.format(&Rfc3339).unwrap_or_default()
}

/// Parses RFC 3339 text.
pub fn parse_rfc3339(field: &str, text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| format!("`{field}` must be an RFC 3339 time, got {text:?}"))
}

impl InsightView {
    /// Builds the view; `batch_status` is the status of its batch, if any.
    pub fn new(row: InsightRow, batch_status: Option<&str>) -> Result<Self, WorkerError> {
        let insight = serde_json::from_str(&row.canonical)
            .map_err(|e| WorkerError::Corrupt(format!("insight {}: {e}", row.id)))?;
        let status = match batch_status {
            None => "pending",
            Some("pending" | "submitted") => "anchoring",
            Some(other) => other,
        };
        Ok(Self {
            id: row.id,
            hash: to_b256(&row.hash)?,
            kind: row.kind,
            subject: row.subject,
            severity: row.severity,
            status: status.to_owned(),
            batch_id: row.batch_id,
            leaf_index: row.leaf_index,
            created_at: rfc3339(row.created_at),
            insight,
        })
    }
}

impl BatchView {
    /// Builds the view.
    pub fn new(row: &BatchRow) -> Result<Self, WorkerError> {
        let optional =
            |bytes: &Option<Vec<u8>>| bytes.as_deref().map(to_b256).transpose();
        let contract = Address::try_from(row.contract.as_slice())
            .map_err(|_| WorkerError::Corrupt(format!("batch {} contract", row.id)))?;
        Ok(Self {
            id: row.id,
            root: to_b256(&row.root)?,
            prev_root: to_b256(&row.prev_root)?,
            leaf_count: row.leaf_count,
            status: row.status.clone(),
            contract,
            chain_id: row.chain_id,
            tx_hash: optional(&row.tx_hash)?,
            onchain_batch: row.onchain_batch,
            block_number: row.block_number,
            block_hash: optional(&row.block_hash)?,
            block_timestamp: row.block_timestamp,
            created_at: rfc3339(row.created_at),
        })
    }
}

impl From<MetricSample> for MetricPointView {
    fn from(sample: MetricSample) -> Self {
        Self {
            metric: sample.name,
            value: sample.value,
            change_percent: sample.change_percent,
            tags: sample.tags,
            timestamp: rfc3339(sample.metric_time),
        }
    }
}
