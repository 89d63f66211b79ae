//! The analysis engine (`engine/2`, and `engine/1` for replay): per metric, an anomaly score from the
//! best detector of `bench nab`, a trend test on the least-squares slope
//! of the window and a Holt forecast with an interval; per user stream,
//! activity figures; per business event, its category and priority.
//!
//! Every insight records its provenance: the series, the stored events it
//! was computed from (for a metric, the window), a digest of them and the
//! digest of the settings. Only event timestamps are used, all state is in
//! ordered maps and only IEEE basic operations and `sqrt` touch the
//! numbers, so the same events in the same order give the same insights
//! bit for bit on any machine.
//!
//! Layout:
//! - [`config`]: the `[analysis]` settings and their digest;
//! - [`series`]: one metric's anomaly, trend and prediction;
//! - [`trend`]: the rolling least-squares fit;
//! - [`forecast`]: Holt's forecast and its interval.

pub mod config;
pub mod forecast;
pub mod series;
pub mod trend;

use std::collections::BTreeMap;

use alloy_primitives::B256;

use self::config::AnalysisConfig;
use self::series::{Context, Sample, Series};
use super::activity::ActivityTracker;
use super::business::{business_insight, derived_tags, Category};
use super::change::ChangeTracker;
use super::config::ConfigError;
use super::{Analysis, Analyzer, MetricPoint, StoredEvent};
use crate::event::{BusinessEvent, Event, SystemMetric, UserEvent};
use crate::inputs::{DigestScheme, InputDigest};
use crate::insight::InsightDraft;

/// See the module documentation.
pub struct EngineAnalyzer {
    version: &'static str,
    scheme: DigestScheme,
    config: AnalysisConfig,
    config_digest: B256,
    series: BTreeMap<String, Series>,
    activity: ActivityTracker,
    /// Per user stream, the events since its last activity insight.
    activity_inputs: BTreeMap<String, InputDigest>,
    changes: ChangeTracker,
    /// Reused buffer of a sample's insights.
    drafts: Vec<InsightDraft>,
}

impl EngineAnalyzer {
    /// The versions of the engine, newest first, as recorded on every
    /// insight. They differ only in how inputs are digested.
    pub const VERSIONS: [&'static str; 2] = ["engine/2", "engine/1"];

    /// An analyser with no history, after checking `config` (whose
    /// `analyzer` must be a version of the engine).
    pub fn new(config: AnalysisConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let version = Self::VERSIONS
            .into_iter()
            .find(|&version| version == config.analyzer)
            .ok_or_else(|| ConfigError {
                field: "analyzer",
                reason: format!("is not one of {}", Self::VERSIONS.join(", ")),
            })?;
        Ok(Self {
            version,
            scheme: config.digest_scheme(),
            config_digest: config.digest(),
            activity: ActivityTracker::new(&config.activity_settings())?,
            config,
            series: BTreeMap::new(),
            activity_inputs: BTreeMap::new(),
            changes: ChangeTracker::default(),
            drafts: Vec::new(),
        })
    }

    /// The settings in use.
    pub fn config(&self) -> &AnalysisConfig {
        &self.config
    }

    /// Their digest, recorded on every insight.
    pub fn config_digest(&self) -> B256 {
        self.config_digest
    }

    fn metric(&mut self, id: i64, stream: &str, metric: &SystemMetric) -> Analysis {
        if !metric.value.is_finite() {
            return Analysis::default();
        }
        let change_percent = self.changes.record(&metric.name, metric.value);
        let point = MetricPoint {
            name: metric.name.clone(),
            value: metric.value,
            tags: metric.tags.clone(),
            timestamp_ms: metric.timestamp_ms,
            change_percent,
        };

        let sample =
            Sample { id, timestamp_ms: metric.timestamp_ms, value: metric.value };
        self.observe(stream, &metric.name, sample);
        let insights = std::mem::take(&mut self.drafts);
        Analysis { metrics: vec![point], insights }
    }

    /// Feeds one sample to its series; insights land in `self.drafts`.
    fn observe(&mut self, stream: &str, name: &str, sample: Sample) {
        let cx = Context {
            config: &self.config,
            config_digest: self.config_digest,
            stream,
            name,
        };
        if let Some(series) = self.series.get_mut(name) {
            series.observe(&cx, sample, &mut self.drafts);
            return;
        }
        let mut series = Series::new(&self.config);
        series.observe(&cx, sample, &mut self.drafts);
        self.series.insert(name.to_owned(), series);
    }

    fn business(&mut self, id: i64, stream: &str, event: &BusinessEvent) -> Analysis {
        if !event.value.is_finite() {
            return Analysis::default();
        }
        let mut insight = business_insight(event, self.config.medium_priority_above);
        let mut inputs = InputDigest::new(self.scheme);
        inputs.push(id, event.timestamp_ms, event.value);
        insight.provenance = inputs.finish(stream, self.config_digest);

        let derived = Category::of(&event.event_type).derived_metric(event);
        let metrics = derived.map(|(name, value)| MetricPoint {
            name: name.to_owned(),
            value,
            tags: derived_tags(event),
            timestamp_ms: event.timestamp_ms,
            change_percent: self.changes.record(name, value),
        });
        Analysis { metrics: metrics.into_iter().collect(), insights: vec![insight] }
    }

    fn user(&mut self, id: i64, stream: &str, event: &UserEvent) -> Analysis {
        if !self.activity_inputs.contains_key(stream) {
            let inputs = InputDigest::new(self.scheme);
            self.activity_inputs.insert(stream.to_owned(), inputs);
        }
        let inputs = self.activity_inputs.get_mut(stream).expect("inserted above");
        inputs.push(id, event.timestamp_ms, 0.0);

        let Some(mut insight) = self.activity.observe(stream, event) else {
            return Analysis::default();
        };
        insight.provenance = inputs.finish(stream, self.config_digest);
        *inputs = InputDigest::new(self.scheme);
        Analysis { metrics: Vec::new(), insights: vec![insight] }
    }
}

impl Analyzer for EngineAnalyzer {
    fn version(&self) -> &str {
        self.version
    }

    fn analyse(&mut self, event: StoredEvent<'_>) -> Analysis {
        match event.event {
            Event::Metric(metric) => self.metric(event.id, event.stream, metric),
            Event::Business(business) => self.business(event.id, event.stream, business),
            Event::User(user) => self.user(event.id, event.stream, user),
        }
    }
}

#[cfg(test)]
mod tests;
