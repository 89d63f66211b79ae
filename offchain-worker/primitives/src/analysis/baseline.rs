//! The baseline analyser: robust anomaly detection on system metrics,
//! categorised business events with their derived metrics, and periodic
//! user activity figures.

use super::activity::ActivityTracker;
use super::business::{business_insight, derived_tags, Category};
use super::change::ChangeTracker;
use super::config::{BaselineConfig, ConfigError};
use super::robust::{Observation, RobustDetector};
use super::{Analysis, Analyzer, MetricPoint, StoredEvent};
use crate::event::{BusinessEvent, Event, SystemMetric, UserEvent};

/// The first analysis of the node.
///
/// - a system metric yields its own [`MetricPoint`] (with the change against
///   the previous sample of the same name) and, when the sample is an
///   anomaly that opens or escalates an episode, an anomaly insight (see
///   [`super::robust`]);
/// - a business event yields a business insight and, for revenue and
///   acquisition, a derived `total_revenue` or `new_users` point;
/// - a user event updates its stream's activity, and every
///   `activity_every` events of a stream yields an activity insight.
///
/// Only event timestamps are used, and all state is in ordered maps, so the
/// same events in the same order give the same output bit for bit. An
/// event carrying a non-finite number (which parsing never produces)
/// yields nothing.
#[derive(Debug, Clone)]
pub struct BaselineAnalyzer {
    config: BaselineConfig,
    anomalies: RobustDetector,
    activity: ActivityTracker,
    changes: ChangeTracker,
}

impl BaselineAnalyzer {
    /// Name and version recorded on every insight.
    pub const VERSION: &'static str = "baseline/1";

    /// An analyser with no history, after checking `config`.
    pub fn new(config: BaselineConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            config,
            anomalies: RobustDetector::new(config)?,
            activity: ActivityTracker::new(&config)?,
            changes: ChangeTracker::default(),
        })
    }

    /// The settings in use.
    pub fn config(&self) -> &BaselineConfig {
        &self.config
    }

    fn metric(&mut self, metric: &SystemMetric) -> Analysis {
        if !metric.value.is_finite() {
            return Analysis::default();
        }
        let (name, value, timestamp_ms) =
            (&metric.name, metric.value, metric.timestamp_ms);

        let change_percent = self.changes.record(name, value);
        let point = MetricPoint {
            name: name.clone(),
            value,
            tags: metric.tags.clone(),
            timestamp_ms,
            change_percent,
        };

        let insights = match self.anomalies.observe(name, timestamp_ms, value) {
            Observation::Alarm(anomaly) => vec![anomaly.to_draft(name)],
            _ => Vec::new(),
        };
        Analysis { metrics: vec![point], insights }
    }

    fn business(&mut self, event: &BusinessEvent) -> Analysis {
        if !event.value.is_finite() {
            return Analysis::default();
        }
        let insight = business_insight(event, self.config.medium_priority_above);

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

    fn user(&mut self, stream: &str, event: &UserEvent) -> Analysis {
        let insight = self.activity.observe(stream, event);
        Analysis { metrics: Vec::new(), insights: insight.into_iter().collect() }
    }
}

impl Default for BaselineAnalyzer {
    fn default() -> Self {
        Self::new(BaselineConfig::default()).expect("the default settings are valid")
    }
}

impl Analyzer for BaselineAnalyzer {
    fn version(&self) -> &str {
        Self::VERSION
    }

    fn analyse(&mut self, event: StoredEvent<'_>) -> Analysis {
        match event.event {
            Event::Metric(metric) => self.metric(metric),
            Event::Business(business) => self.business(business),
            Event::User(user) => self.user(event.stream, user),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use serde_json::Map;

    use super::*;
    use crate::analysis::testkit::{assert_finite_draft, assert_finite_point, Noise};
    use crate::insight::{InsightKind, Severity};

    const NAB_FILE: &str = "../../../shared/data/nab/data/realKnownCause/\
                            machine_temperature_system_failure.csv";

    fn metric(name: &str, value: f64, timestamp_ms: i64) -> Event {
        let mut tags = Map::new();
        tags.insert("host".into(), "a".into());
        Event::Metric(SystemMetric { name: name.into(), value, tags, timestamp_ms })
    }

    fn business(event_type: &str, value: f64, timestamp_ms: i64) -> Event {
        Event::Business(BusinessEvent {
            event_type: event_type.into(),
            user_id: Some("u1".into()),
            value,
            source: Some("web".into()),
            timestamp_ms,
        })
    }

    fn user(user_id: &str, event_type: &str, timestamp_ms: i64) -> Event {
        Event::User(UserEvent {
            event_type: event_type.into(),
            user_id: user_id.into(),
            session_id: Some(format!("s-{user_id}")),
            timestamp_ms,
            fields: Map::new(),
        })
    }

    fn analyse_all(analyzer: &mut BaselineAnalyzer, events: &[Event]) -> Vec<Analysis> {
        let stored =
            |(i, event)| StoredEvent { id: i as i64, stream: "redis:test", event };
        events.iter().enumerate().map(|e| analyzer.analyse(stored(e))).collect()
    }

    fn assert_all_finite(analyses: &[Analysis]) {
        for analysis in analyses {
            analysis.metrics.iter().for_each(assert_finite_point);
            analysis.insights.iter().for_each(assert_finite_draft);
        }
    }

    #[test]
    fn every_metric_sample_is_a_point_with_its_change() {
        let events = [
            metric("cpu", 40.0, 1),
            metric("mem", 0.0, 2),
            metric("cpu", 50.0, 3),
            metric("mem", 10.0, 4),
            metric("cpu", -25.0, 5),
            metric("cpu", -50.0, 6),
        ];
        let expected = [None, None, Some(25.0), None, Some(-150.0), Some(-100.0)];
        let analyses = analyse_all(&mut BaselineAnalyzer::default(), &events);
        for ((analysis, event), change) in analyses.iter().zip(&events).zip(expected) {
            let Event::Metric(m) = event else { unreachable!("only metrics above") };
            let [point] = analysis.metrics.as_slice() else { panic!("{analysis:?}") };
            assert_eq!(point.name, m.name);
            assert_eq!(point.value, m.value);
            assert_eq!(point.tags, m.tags);
            assert_eq!(point.timestamp_ms, m.timestamp_ms);
            assert_eq!(point.change_percent, change);
        }
    }

    #[test]
    fn business_events_give_an_insight_and_derived_points() {
        // (type, value, derived metric, derived value, change)
        let cases = [
            ("purchase", 150.0, Some("total_revenue"), 150.0, None),
            ("signup", 0.0, Some("new_users"), 1.0, None),
            ("support_ticket", 5.0, None, 0.0, None),
            ("Purchase", 75.0, Some("total_revenue"), 75.0, Some(-50.0)),
            ("signup", 0.0, Some("new_users"), 1.0, Some(0.0)),
            ("refund", 500.0, None, 0.0, None),
        ];
        let mut analyzer = BaselineAnalyzer::default();
        for (i, (kind, value, name, derived, change)) in cases.into_iter().enumerate() {
            let event = business(kind, value, i as i64);
            let analysis =
                analyzer.analyse(StoredEvent { id: 1, stream: "b", event: &event });
            let [insight] = analysis.insights.as_slice() else { panic!("{analysis:?}") };
            assert_eq!(insight.kind, InsightKind::Business);
            assert_eq!(insight.subject, Category::of(kind).as_str());
            let priority = if value > 100.0 { Severity::Medium } else { Severity::Low };
            assert_eq!(insight.severity, Some(priority));

            let points: Vec<_> =
                analysis.metrics.iter().map(|p| p.name.as_str()).collect();
            assert_eq!(points, name.into_iter().collect::<Vec<_>>(), "{kind}");
            if let Some(point) = analysis.metrics.first() {
                assert_eq!((point.value, point.change_percent), (derived, change));
                assert_eq!(point.tags["category"], Category::of(kind).as_str());
                assert_eq!(point.tags["event_type"], kind);
                assert_eq!(point.tags["source"], "web");
            }
        }
    }

    #[test]
    fn user_events_give_activity_every_n() {
        let config = BaselineConfig { activity_every: 10, ..BaselineConfig::default() };
        let mut analyzer = BaselineAnalyzer::new(config).unwrap();
        let events: Vec<_> =
            (0..30).map(|i| user(&format!("u{}", i % 4), "view", i * 1_000)).collect();
        let analyses = analyse_all(&mut analyzer, &events);
        let emitted: Vec<usize> =
            (0..30).filter(|&i| !analyses[i].insights.is_empty()).collect();
        assert_eq!(emitted, [9, 19, 29]);
        let insight = &analyses[29].insights[0];
        assert_eq!(insight.kind, InsightKind::Activity);
        assert_eq!(insight.subject, "redis:test");
        assert_eq!(insight.data["active_users"], 4);
        assert!(analyses.iter().all(|a| a.metrics.is_empty()));
    }

    #[test]
    fn version_and_config_errors() {
        assert_eq!(BaselineAnalyzer::default().version(), "baseline/1");
        let config = BaselineConfig { min_samples: 500, ..BaselineConfig::default() };
        let err = BaselineAnalyzer::new(config).unwrap_err();
        assert_eq!(
            err.to_string(),
            "analysis setting `min_samples` must be between 1 and `window`"
        );
    }

    #[test]
    fn extreme_values_give_finite_outputs() {
        let mut events = Vec::new();
        for (i, value) in
            [1e300, -1e300, 1e-300, -f64::MAX, f64::MAX, 0.0].iter().enumerate()
        {
            for j in 0..60 {
                let t = (i as i64 * 60 + j) * 1_000;
                events.push(metric("x", *value * (1.0 - (j % 3) as f64 * 1e-3), t));
                events.push(business("purchase", *value, t));
            }
        }
        assert_all_finite(&analyse_all(&mut BaselineAnalyzer::default(), &events));
    }

    /// A mixed, noisy event sequence with spikes and disordered timestamps.
    /// keccak256 of the serialised output for [`mixed_events`]`(5000)`. A
    /// change in the output of `baseline/1` breaks replay of anchored
    /// insights: it needs a new version, and then a new hash here.
    const OUTPUT_HASH: &str =
        "0x73ff48f910bbf2e99a05f33af4b83763e48e47aa6441bc61b36715e604c6d2ea";

    fn mixed_events(count: usize) -> Vec<Event> {
        let mut noise = Noise::new(42);
        let kinds = ["purchase", "signup", "support", "refund"];
        (0..count as i64)
            .map(|i| {
                let t = i * 1_000 - noise.below(5_000) as i64;
                match noise.below(10) {
                    0..=5 => {
                        let spike = if noise.below(200) == 0 { 40.0 } else { 0.0 };
                        let name = ["cpu", "mem"][noise.below(2) as usize];
                        metric(name, 50.0 + 3.0 * noise.normal() + spike, t)
                    }
                    6 | 7 => user(&format!("u{}", noise.below(50)), kinds[0], t),
                    _ => business(
                        kinds[noise.below(4) as usize],
                        noise.below(300) as f64,
                        t,
                    ),
                }
            })
            .collect()
    }

    #[test]
    fn the_same_events_give_the_same_output_bit_for_bit() {
        let events = mixed_events(5_000);
        let run = || {
            let analyses = analyse_all(&mut BaselineAnalyzer::default(), &events);
            let outputs: Vec<_> =
                analyses.iter().map(|a| (&a.metrics, &a.insights)).collect();
            serde_json::to_string(&outputs).unwrap()
        };
        let first = run();
        assert_eq!(first, run());
        let hash = crate::keccak256(first.as_bytes()).to_string();
        assert_eq!(
            hash,
            OUTPUT_HASH,
            "the output of {} changed",
            BaselineAnalyzer::VERSION
        );
        assert!(first.contains("\"anomaly\""), "the sequence should contain anomalies");
        assert!(first.contains("\"activity\""));
        assert_all_finite(&analyse_all(&mut BaselineAnalyzer::default(), &events));
    }

    /// Reads the NAB machine temperature series as metric events.
    fn nab_machine_temperature() -> Vec<Event> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(NAB_FILE);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!("cannot read the NAB data file {}: {e}", path.display())
        });
        let format = time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second]"
        );
        text.lines()
            .skip(1)
            .map(|line| {
                let (stamp, value) = line.split_once(',').expect("two columns");
                let at =
                    time::PrimitiveDateTime::parse(stamp, &format).expect("a date-time");
                let t = at.assume_utc().unix_timestamp() * 1_000;
                metric("machine_temperature", value.parse().expect("a number"), t)
            })
            .collect()
    }

    #[test]
    fn nab_machine_temperature_raises_a_few_anomalies() {
        let events = nab_machine_temperature();
        let analyses = analyse_all(&mut BaselineAnalyzer::default(), &events);
        assert_all_finite(&analyses);

        let anomalies: Vec<_> = analyses
            .iter()
            .zip(&events)
            .flat_map(|(a, e)| a.insights.iter().map(move |i| (e.timestamp_ms(), i)))
            .collect();
        for (t, insight) in &anomalies {
            let at = time::OffsetDateTime::from_unix_timestamp(t / 1_000).unwrap();
            eprintln!("{at} {:?} {}", insight.severity, insight.summary);
        }
        eprintln!("{} anomalies in {} samples", anomalies.len(), events.len());
        assert!(!anomalies.is_empty());
        assert!(anomalies.len() * 100 < events.len(), "{} anomalies", anomalies.len());
    }
}
