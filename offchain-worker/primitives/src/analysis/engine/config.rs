//! The `[analysis]` settings: which analyser runs, and the settings of
//! the engine.

use alloy_primitives::{keccak256, B256};
use serde::{Deserialize, Serialize};

use crate::analysis::config::{BaselineConfig, ConfigError};
use crate::analysis::detector;
use crate::canonical::to_canonical_json;
use crate::inputs::DigestScheme;

/// Analyser names accepted by `analyzer`, the default first.
pub const ANALYZERS: [&str; 3] = ["engine/2", "engine/1", "baseline/1"];

/// Settings of the analysis (the `[analysis]` section).
///
/// Unknown fields are rejected; missing fields take the defaults below.
/// Series settings apply to each metric name separately. The
/// configuration digest recorded on every engine insight is keccak256
/// of the canonical JSON of this whole structure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalysisConfig {
    /// The analyser: `engine/2` (default), `engine/1` or `baseline/1`.
    /// The two engine versions differ only in how they digest an
    /// insight's inputs (see [`crate::inputs`]); insights made with
    /// `engine/1` replay with `analyzer = "engine/1"`.
    pub analyzer: String,
    /// Samples in the rolling window of each metric (trend, expected
    /// range, inputs recorded on insights). Default 256.
    pub window: usize,
    /// Samples a metric needs before any anomaly, trend or prediction;
    /// between 8 and `window`. Default 64.
    pub min_samples: usize,
    /// The anomaly detector, a name from `bench nab` (`ensemble`, ...),
    /// optionally with overrides (`ensemble@mute=150`). Default
    /// `ensemble`; insights made with `combo`, the default of earlier
    /// versions, replay with `detector = "combo"`.
    pub detector: String,
    /// Samples of a metric (since its analysis last started) before any
    /// anomaly: the detector's first scores compare with an empty record
    /// and would all be alarms. At least `min_samples`; default 500.
    pub anomaly_warm_up: usize,
    /// Detector score in [0, 1] from which a sample is an anomaly of low
    /// severity. Default 0.5.
    pub low_score: f64,
    /// Score from which an anomaly is of medium severity. Default 0.6.
    pub medium_score: f64,
    /// Score from which an anomaly is of high severity. Default 0.75.
    pub high_score: f64,
    /// Score from which an anomaly is critical. Default 0.9.
    pub critical_score: f64,
    /// Width of the expected range, in robust deviations (1.4826 MAD) on
    /// each side of the window's median. Default 3.
    pub expected_width: f64,
    /// |t| of the least-squares slope over the window from which a trend
    /// is significant. Default 6 (high, because neighbouring samples of
    /// real series are correlated, which inflates t).
    pub trend_t: f64,
    /// A trend ends when |t| falls below this; a new one is reported
    /// when it rises above `trend_t` again. Below `trend_t`; default 3.
    pub trend_exit_t: f64,
    /// Smoothing of the level of the Holt forecast, in (0, 1]. Default 0.3.
    pub holt_alpha: f64,
    /// Smoothing of the trend of the Holt forecast, in [0, 1].
    /// Default 0.05.
    pub holt_beta: f64,
    /// How many samples ahead a prediction looks. Default 12.
    pub forecast_horizon: usize,
    /// A prediction is made every this many samples of a metric.
    /// Default 64.
    pub forecast_every: usize,
    /// Half-width of the prediction interval in forecast standard
    /// deviations. Default 1.96 (95 % for normal errors).
    pub interval_z: f64,
    /// A gap between samples longer than this many times the typical
    /// interval (an exponential mean) restarts the metric's analysis.
    /// Default 10.
    pub max_gap_factor: f64,
    /// Gaps no longer than this never restart the analysis.
    /// Milliseconds; default 60 000.
    pub min_gap_reset_ms: u64,
    /// An activity insight every this many user events of a stream.
    /// Default 100.
    pub activity_every: u64,
    /// Activity figures count this span before the stream's newest
    /// event time. Milliseconds; default 300 000.
    pub active_window_ms: u64,
    /// Business events above this value have medium priority. Default 100.
    pub medium_priority_above: f64,
    /// Settings of `baseline/1` (`[analysis.baseline]`), used only when
    /// `analyzer` is `baseline/1`.
    pub baseline: BaselineConfig,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        Self {
            analyzer: ANALYZERS[0].to_owned(),
            window: 256,
            min_samples: 64,
            detector: detector::NAMES[0].to_owned(),
            anomaly_warm_up: 500,
            low_score: 0.5,
            medium_score: 0.6,
            high_score: 0.75,
            critical_score: 0.9,
            expected_width: 3.0,
            trend_t: 6.0,
            trend_exit_t: 3.0,
            holt_alpha: 0.3,
            holt_beta: 0.05,
            forecast_horizon: 12,
            forecast_every: 64,
            interval_z: 1.96,
            max_gap_factor: 10.0,
            min_gap_reset_ms: 60_000,
            activity_every: 100,
            active_window_ms: 300_000,
            medium_priority_above: 100.0,
            baseline: BaselineConfig::default(),
        }
    }
}

impl AnalysisConfig {
    /// Checks that every setting can work.
    /// How the engine digests an insight's inputs: by pieces from
    /// `engine/2` on, whole in `engine/1`.
    pub fn digest_scheme(&self) -> DigestScheme {
        if self.analyzer == "engine/1" {
            DigestScheme::Whole
        } else {
            DigestScheme::Pieces
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        check(ANALYZERS.contains(&self.analyzer.as_str()), "analyzer", || {
            format!("must be one of {}", ANALYZERS.join(", "))
        })?;
        check(self.window >= 8, "window", || "must be at least 8".into())?;
        check((8..=self.window).contains(&self.min_samples), "min_samples", || {
            "must be between 8 and `window`".into()
        })?;
        if let Err(reason) = detector::parse(&self.detector) {
            return Err(ConfigError { field: "detector", reason });
        }
        check(self.anomaly_warm_up >= self.min_samples, "anomaly_warm_up", || {
            "must be at least `min_samples`".into()
        })?;
        self.validate_scores()?;
        self.validate_models()?;
        check(self.activity_every >= 1, "activity_every", || {
            "must be at least 1".into()
        })?;
        check(self.active_window_ms >= 1, "active_window_ms", || {
            "must be at least 1".into()
        })?;
        check(self.medium_priority_above.is_finite(), "medium_priority_above", || {
            "must be finite".into()
        })?;
        self.baseline
            .validate()
            .map_err(|e| ConfigError { field: baseline_field(e.field), reason: e.reason })
    }

    fn validate_scores(&self) -> Result<(), ConfigError> {
        let scores = [
            ("low_score", self.low_score),
            ("medium_score", self.medium_score),
            ("high_score", self.high_score),
            ("critical_score", self.critical_score),
        ];
        let mut previous = 0.0;
        for (field, score) in scores {
            let ok = score > 0.0 && score <= 1.0 && score >= previous;
            check(ok, field, || {
                "must be in (0, 1] and not below the lower levels".into()
            })?;
            previous = score;
        }
        Ok(())
    }

    fn validate_models(&self) -> Result<(), ConfigError> {
        let positive = |x: f64| x.is_finite() && x > 0.0;
        check(positive(self.expected_width), "expected_width", || {
            "must be positive and finite".into()
        })?;
        check(positive(self.trend_t), "trend_t", || {
            "must be positive and finite".into()
        })?;
        let exit_ok = self.trend_exit_t >= 0.0 && self.trend_exit_t < self.trend_t;
        check(exit_ok, "trend_exit_t", || "must be >= 0 and below `trend_t`".into())?;
        let alpha_ok = self.holt_alpha > 0.0 && self.holt_alpha <= 1.0;
        check(alpha_ok, "holt_alpha", || "must be in (0, 1]".into())?;
        let beta_ok = (0.0..=1.0).contains(&self.holt_beta);
        check(beta_ok, "holt_beta", || "must be in [0, 1]".into())?;
        check((1..=10_000).contains(&self.forecast_horizon), "forecast_horizon", || {
            "must be between 1 and 10000".into()
        })?;
        check(self.forecast_every >= 1, "forecast_every", || {
            "must be at least 1".into()
        })?;
        check(positive(self.interval_z), "interval_z", || {
            "must be positive and finite".into()
        })?;
        let gap_ok = self.max_gap_factor.is_finite() && self.max_gap_factor >= 1.0;
        check(gap_ok, "max_gap_factor", || "must be >= 1".into())
    }

    /// keccak256 of the canonical JSON of the settings.
    pub fn digest(&self) -> B256 {
        let value = serde_json::to_value(self).expect("settings serialise to JSON");
        let text = to_canonical_json(&value).expect("validated settings are finite");
        keccak256(text.as_bytes())
    }

    /// The settings of the baseline parts the engine reuses (activity).
    pub(crate) fn activity_settings(&self) -> BaselineConfig {
        BaselineConfig {
            activity_every: self.activity_every,
            active_window_ms: self.active_window_ms,
            medium_priority_above: self.medium_priority_above,
            ..BaselineConfig::default()
        }
    }
}

fn baseline_field(field: &'static str) -> &'static str {
    const FIELDS: [(&str, &str); 14] = [
        ("window", "baseline.window"),
        ("min_samples", "baseline.min_samples"),
        ("low_score", "baseline.low_score"),
        ("medium_score", "baseline.medium_score"),
        ("high_score", "baseline.high_score"),
        ("critical_score", "baseline.critical_score"),
        ("relative_floor", "baseline.relative_floor"),
        ("absolute_floor", "baseline.absolute_floor"),
        ("cooldown", "baseline.cooldown"),
        ("max_gap_factor", "baseline.max_gap_factor"),
        ("min_gap_reset_ms", "baseline.min_gap_reset_ms"),
        ("activity_every", "baseline.activity_every"),
        ("active_window_ms", "baseline.active_window_ms"),
        ("medium_priority_above", "baseline.medium_priority_above"),
    ];
    FIELDS.iter().find(|(name, _)| *name == field).map_or("baseline", |(_, path)| path)
}

fn check(
    ok: bool,
    field: &'static str,
    reason: impl FnOnce() -> String,
) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError { field, reason: reason() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_missing_fields_take_them() {
        assert_eq!(AnalysisConfig::default().validate(), Ok(()));
        let text = r#"{"window":512,"baseline":{"window":60}}"#;
        let config: AnalysisConfig = serde_json::from_str(text).unwrap();
        assert_eq!((config.window, config.min_samples), (512, 64));
        assert_eq!(config.baseline.window, 60);
        assert_eq!(config.analyzer, "engine/2");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = serde_json::from_str::<AnalysisConfig>(r#"{"windw":60}"#);
        assert!(err.unwrap_err().to_string().contains("unknown field"));
    }

    #[test]
    fn the_digest_follows_every_setting() {
        let base = AnalysisConfig::default();
        let other = AnalysisConfig { trend_t: 5.0, ..base.clone() };
        assert_eq!(base.digest(), AnalysisConfig::default().digest());
        assert_ne!(base.digest(), other.digest());
    }

    #[test]
    fn unworkable_settings_name_the_field() {
        type Edit = fn(&mut AnalysisConfig);
        let cases: [(Edit, &str); 15] = [
            (|c| c.analyzer = "engine/3".into(), "analyzer"),
            (|c| c.window = 4, "window"),
            (|c| c.min_samples = 300, "min_samples"),
            (|c| c.detector = "nope".into(), "detector"),
            (|c| c.anomaly_warm_up = 10, "anomaly_warm_up"),
            (|c| c.medium_score = 0.4, "medium_score"),
            (|c| c.critical_score = 1.5, "critical_score"),
            (|c| c.low_score = f64::NAN, "low_score"),
            (|c| c.trend_exit_t = 7.0, "trend_exit_t"),
            (|c| c.holt_alpha = 0.0, "holt_alpha"),
            (|c| c.forecast_horizon = 0, "forecast_horizon"),
            (|c| c.interval_z = f64::INFINITY, "interval_z"),
            (|c| c.max_gap_factor = 0.5, "max_gap_factor"),
            (|c| c.activity_every = 0, "activity_every"),
            (|c| c.baseline.window = 0, "baseline.window"),
        ];
        for (edit, field) in cases {
            let mut config = AnalysisConfig::default();
            edit(&mut config);
            assert_eq!(config.validate().unwrap_err().field, field);
        }
    }
}
