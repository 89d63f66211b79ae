//! Settings of the baseline analysis and their validation.

use serde::{Deserialize, Serialize};

/// A setting of the analysis that cannot work. Always fatal: the node must
/// refuse to start rather than analyse with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("analysis setting `{field}` {reason}")]
pub struct ConfigError {
    /// The offending setting.
    pub field: &'static str,
    /// What is wrong with its value.
    pub reason: String,
}

/// Settings of [`BaselineAnalyzer`](super::BaselineAnalyzer).
///
/// Unknown fields are rejected; missing fields take the defaults below.
/// Anomaly settings apply to each metric name separately.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BaselineConfig {
    /// Samples in the rolling window of each metric. Default 120.
    pub window: usize,
    /// Samples the window must hold before any verdict; at most `window`.
    /// Default 30.
    pub min_samples: usize,
    /// Robust z-score (deviations from the median in units of the robust
    /// scale) from which a sample is an anomaly of low severity. Default 3.5.
    pub low_score: f64,
    /// Robust z-score from which an anomaly is of medium severity.
    /// Default 5.
    pub medium_score: f64,
    /// Robust z-score from which an anomaly is of high severity. Default 7.
    pub high_score: f64,
    /// Robust z-score from which an anomaly is critical. Default 10.
    pub critical_score: f64,
    /// Lower bound of the robust scale as a fraction of |median|, so a
    /// flat series does not turn noise in the last digit into alarms.
    /// Default 0.01 (1 % of the level).
    pub relative_floor: f64,
    /// Lower bound of the robust scale in the metric's own units, for flat
    /// series at zero. Must be positive. Default 1e-9.
    pub absolute_floor: f64,
    /// Once an anomaly is reported for a metric, further anomalies of the
    /// same or lower severity are not reported until this many normal
    /// samples in a row have been seen. 0 reports every anomalous sample.
    /// Default 10 samples.
    pub cooldown: usize,
    /// A gap between samples longer than this many times the typical
    /// (median) sampling interval empties the window, which then warms up
    /// again. Default 10.
    pub max_gap_factor: f64,
    /// Gaps no longer than this never empty the window, whatever the
    /// typical interval. Milliseconds; default 60 000 (one minute).
    pub min_gap_reset_ms: u64,
    /// An activity insight is produced every this many user events on a
    /// stream. Default 100 events.
    pub activity_every: u64,
    /// Activity figures count what happened within this span before the
    /// latest user event time of the stream. Milliseconds; default 300 000
    /// (five minutes).
    pub active_window_ms: u64,
    /// Business events with a value above this have medium priority, the
    /// others low. In the event's value units; default 100.
    pub medium_priority_above: f64,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        Self {
            window: 120,
            min_samples: 30,
            low_score: 3.5,
            medium_score: 5.0,
            high_score: 7.0,
            critical_score: 10.0,
            relative_floor: 0.01,
            absolute_floor: 1e-9,
            cooldown: 10,
            max_gap_factor: 10.0,
            min_gap_reset_ms: 60_000,
            activity_every: 100,
            active_window_ms: 300_000,
            medium_priority_above: 100.0,
        }
    }
}

impl BaselineConfig {
    /// Checks that every setting can work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check(self.window >= 1, "window", "must be at least 1")?;
        check(
            (1..=self.window).contains(&self.min_samples),
            "min_samples",
            "must be between 1 and `window`",
        )?;
        self.validate_scores()?;
        check(
            finite_at_least(self.relative_floor, 0.0),
            "relative_floor",
            "must be >= 0",
        )?;
        check(
            self.absolute_floor.is_finite() && self.absolute_floor > 0.0,
            "absolute_floor",
            "must be positive and finite",
        )?;
        check(
            finite_at_least(self.max_gap_factor, 1.0),
            "max_gap_factor",
            "must be >= 1",
        )?;
        check(self.activity_every >= 1, "activity_every", "must be at least 1")?;
        check(self.active_window_ms >= 1, "active_window_ms", "must be at least 1")?;
        check(
            self.medium_priority_above.is_finite(),
            "medium_priority_above",
            "must be finite",
        )
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
            let ok = score.is_finite() && score > 0.0 && score >= previous;
            check(ok, field, "must be finite, positive and not below the lower levels")?;
            previous = score;
        }
        Ok(())
    }
}

fn finite_at_least(value: f64, min: f64) -> bool {
    value.is_finite() && value >= min
}

fn check(ok: bool, field: &'static str, reason: &str) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError { field, reason: reason.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_missing_fields_take_them() {
        assert_eq!(BaselineConfig::default().validate(), Ok(()));
        let config: BaselineConfig = serde_json::from_str(r#"{"window":60}"#).unwrap();
        assert_eq!(config.window, 60);
        assert_eq!(config.min_samples, 30);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = serde_json::from_str::<BaselineConfig>(r#"{"windw":60}"#);
        assert!(err.unwrap_err().to_string().contains("unknown field"));
    }

    #[test]
    fn unworkable_settings_name_the_field() {
        type Edit = fn(&mut BaselineConfig);
        let cases: [(Edit, &str); 9] = [
            (|c| c.window = 0, "window"),
            (|c| c.min_samples = 121, "min_samples"),
            (|c| c.min_samples = 0, "min_samples"),
            (|c| c.medium_score = 3.0, "medium_score"),
            (|c| c.critical_score = f64::INFINITY, "critical_score"),
            (|c| c.absolute_floor = 0.0, "absolute_floor"),
            (|c| c.relative_floor = f64::NAN, "relative_floor"),
            (|c| c.max_gap_factor = 0.5, "max_gap_factor"),
            (|c| c.activity_every = 0, "activity_every"),
        ];
        for (edit, field) in cases {
            let mut config = BaselineConfig::default();
            edit(&mut config);
            assert_eq!(config.validate().unwrap_err().field, field);
        }
    }
}
