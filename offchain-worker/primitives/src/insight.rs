//! Insights: what the analysis concludes, stamped with the chain head it saw
//! and identified by a content hash.
//!
//! The hash of an insight is `keccak256` of the RFC 8785 canonical JSON of
//! its [`Insight`] content (see [`crate::canonical`]). The content holds no
//! database id, no hash and nothing about anchoring, so it is fixed the
//! moment the insight is produced. `docs/verification.md` gives the exact
//! field list an auditor hashes.

use alloy_primitives::{keccak256, B256};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::{to_canonical_json, CanonicalError};

/// The version of the insight content format; part of the hashed content.
pub const FORMAT_VERSION: u32 = 1;

/// What an insight is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InsightKind {
    /// An unusual value of a metric.
    Anomaly,
    /// A significant trend in a metric.
    Trend,
    /// A forecast of a metric.
    Prediction,
    /// User activity figures.
    Activity,
    /// A categorised business event.
    Business,
}

impl InsightKind {
    /// The name used in storage and APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anomaly => "anomaly",
            Self::Trend => "trend",
            Self::Prediction => "prediction",
            Self::Activity => "activity",
            Self::Business => "business",
        }
    }
}

/// How serious an anomaly (or a business event's priority) is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth a look.
    Low,
    /// Worth attention.
    Medium,
    /// Needs action soon.
    High,
    /// Needs action now; triggers the response hooks.
    Critical,
}

/// What an analyser produces before the insight is stamped and hashed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InsightDraft {
    /// The kind of insight.
    pub kind: InsightKind,
    /// What it is about: a metric name, a user stream, a business category.
    pub subject: String,
    /// Severity, for anomalies and prioritised business events.
    pub severity: Option<Severity>,
    /// Confidence in [0, 1].
    pub confidence: f64,
    /// One human-readable sentence.
    pub summary: String,
    /// Kind-specific figures; a JSON object of finite numbers and strings.
    pub data: Value,
    /// What the insight was computed from, when the analysis records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
}

/// What an insight was computed from: enough to find its inputs among the
/// stored events and to check that they are the ones it saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// The analysed series: the event stream, and for metrics `/` and the
    /// metric name (`redis:system_metrics/cpu`).
    pub stream: String,
    /// Id of the first stored event of the inputs.
    pub first_event: i64,
    /// Id of the last stored event of the inputs.
    pub last_event: i64,
    /// Number of input events (ids in between may belong to other series).
    pub events: u64,
    /// The digest of the inputs' records (see [`crate::inputs`]).
    pub inputs_digest: B256,
    /// keccak256 of the canonical JSON of the analysis configuration.
    pub config_digest: B256,
}

/// The chain head an insight saw when it was produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockStamp {
    /// Block number.
    pub number: u64,
    /// Block hash.
    pub hash: B256,
    /// Block timestamp, Unix seconds.
    pub timestamp: u64,
}

/// The event an insight was computed on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRef {
    /// The stored event's id.
    pub id: i64,
    /// The stream it arrived on (`redis:system_metrics`, ...).
    pub stream: String,
    /// The event's own timestamp, epoch milliseconds.
    pub timestamp_ms: i64,
}

/// The hashed content of an insight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Insight {
    /// Content format version, [`FORMAT_VERSION`].
    pub version: u32,
    /// The analysis that produced it, with its version.
    pub analysis: String,
    /// The kind of insight.
    pub kind: InsightKind,
    /// What it is about.
    pub subject: String,
    /// Severity, when the kind has one.
    pub severity: Option<Severity>,
    /// Confidence in [0, 1].
    pub confidence: f64,
    /// One human-readable sentence.
    pub summary: String,
    /// Kind-specific figures.
    pub data: Value,
    /// The event it was computed on.
    pub event: EventRef,
    /// The chain head seen when it was produced.
    pub block: BlockStamp,
    /// What it was computed from; absent for analyses that do not record
    /// it (`baseline/1`), so their content keeps its original form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
}

impl Insight {
    /// Builds the content from a draft, the event and the chain head.
    pub fn new(
        analysis: &str,
        draft: InsightDraft,
        event: EventRef,
        block: BlockStamp,
    ) -> Self {
        Self {
            version: FORMAT_VERSION,
            analysis: analysis.to_owned(),
            kind: draft.kind,
            subject: draft.subject,
            severity: draft.severity,
            confidence: draft.confidence,
            summary: draft.summary,
            data: draft.data,
            event,
            block,
            provenance: draft.provenance,
        }
    }

    /// The canonical JSON that is hashed.
    pub fn canonical_json(&self) -> Result<String, CanonicalError> {
        let value = serde_json::to_value(self)
            .map_err(|e| CanonicalError::Serialize(e.to_string()))?;
        to_canonical_json(&value)
    }

    /// The insight hash: `keccak256(canonical_json)`.
    pub fn hash(&self) -> Result<B256, CanonicalError> {
        Ok(keccak256(self.canonical_json()?.as_bytes()))
    }
}
