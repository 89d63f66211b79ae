//! Streaming analysis of typed events.
//!
//! The pipeline hands every stored event, in arrival order, to one
//! [`Analyzer`]. The analyser keeps whatever state it needs per stream and
//! returns an [`Analysis`]: the metric points to store and broadcast, and the
//! insights to stamp, hash and anchor. Analysers must be deterministic: the
//! same events in the same order give the same output, bit for bit, because
//! auditors replay stored events to reproduce anchored hashes.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::event::Event;
use crate::insight::InsightDraft;

/// An event as stored, handed to the analyser.
#[derive(Debug, Clone, Copy)]
pub struct StoredEvent<'a> {
    /// The event's id in storage.
    pub id: i64,
    /// The stream it arrived on (`redis:system_metrics`, ...).
    pub stream: &'a str,
    /// The typed event.
    pub event: &'a Event,
}

/// A metric sample to store in the metrics table and show on dashboards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricPoint {
    /// Metric name.
    pub name: String,
    /// The sample; always finite.
    pub value: f64,
    /// Tags (for derived metrics: category and event type or source).
    pub tags: Map<String, Value>,
    /// Sample time, epoch milliseconds.
    pub timestamp_ms: i64,
    /// Change against the previous sample of the same metric, in percent;
    /// `None` for the first sample and when the previous value was zero.
    pub change_percent: Option<f64>,
}

/// What the analyser makes of one event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Analysis {
    /// Every metric point to store: the incoming system metric sample itself
    /// and any metrics derived from the event (`total_revenue`, `new_users`).
    pub metrics: Vec<MetricPoint>,
    /// Insights to stamp, hash and anchor.
    pub insights: Vec<InsightDraft>,
}

/// A deterministic, streaming analyser.
pub trait Analyzer: Send + Sync {
    /// Name and version recorded on every insight (`baseline/1`, ...).
    fn version(&self) -> &str;

    /// Analyses the next event. Called once per stored event, in order.
    fn analyse(&mut self, event: StoredEvent<'_>) -> Analysis;
}

pub mod activity;
pub mod baseline;
pub mod business;
pub mod change;
pub mod config;
pub mod engine;
mod num;
pub mod robust;
#[cfg(test)]
mod testkit;

pub use baseline::BaselineAnalyzer;
pub use config::{BaselineConfig, ConfigError};
pub use engine::config::AnalysisConfig;
pub use engine::EngineAnalyzer;

/// The analyser the settings choose, after checking them.
pub fn from_config(config: &AnalysisConfig) -> Result<Box<dyn Analyzer>, ConfigError> {
    config.validate()?;
    if config.analyzer == BaselineAnalyzer::VERSION {
        return Ok(Box::new(BaselineAnalyzer::new(config.baseline)?));
    }
    Ok(Box::new(EngineAnalyzer::new(config.clone())?))
}
pub mod detector;
