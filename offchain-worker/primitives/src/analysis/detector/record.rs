//! Record-breaking deviations.
//!
//! Each sample gets a raw strength: the largest of its robust z-score
//! against a rolling window of values, the robust z-score of its first
//! difference against a rolling window of differences, and its Holt
//! forecast residual in units of the mean absolute residual. The score is
//! that strength relative to the largest strength seen before, which
//! decays slowly: a sample scores above one half only when it beats the
//! series' own (recent) record, so noise a series has always had never
//! alarms, and a level shift alarms once, on its first sample.

use super::stats::{Ewm, Holt, RollingMedian};
use super::{squash, Detector};

/// Settings of [`RecordDetector`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecordConfig {
    /// Samples in the rolling windows of values and differences.
    /// Default 256.
    pub window: usize,
    /// Samples before any score above 0. Default 150.
    pub warm_up: usize,
    /// Factor applied to the record at each sample, in (0, 1]; the record
    /// halves in about `0.69 / (1 - decay)` samples. Default 0.9995.
    pub decay: f64,
    /// Use the value z-score. Default true.
    pub values: bool,
    /// Use the difference z-score. Default true.
    pub differences: bool,
    /// Use the Holt residual. Default true.
    pub residuals: bool,
    /// Smoothing of the Holt level. Default 0.5.
    pub holt_alpha: f64,
    /// Smoothing of the Holt trend. Default 0.05.
    pub holt_beta: f64,
    /// Smoothing of the mean absolute residual. Default 0.01.
    pub residual_alpha: f64,
}

impl Default for RecordConfig {
    fn default() -> Self {
        Self {
            window: 256,
            warm_up: 150,
            decay: 0.9995,
            values: true,
            differences: true,
            residuals: true,
            holt_alpha: 0.5,
            holt_beta: 0.05,
            residual_alpha: 0.01,
        }
    }
}

/// Smallest scale a deviation is measured in, relative to the level.
const RELATIVE_FLOOR: f64 = 1e-6;
/// Smallest scale a deviation is measured in, absolute.
const ABSOLUTE_FLOOR: f64 = 1e-12;

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct RecordDetector {
    config: RecordConfig,
    values: RollingMedian,
    differences: RollingMedian,
    holt: Holt,
    residual: Ewm,
    previous: Option<f64>,
    record: f64,
    seen: usize,
}

impl Default for RecordDetector {
    fn default() -> Self {
        Self::new(RecordConfig::default())
    }
}

impl RecordDetector {
    /// A detector with no history.
    pub fn new(config: RecordConfig) -> Self {
        Self {
            config,
            values: RollingMedian::new(config.window),
            differences: RollingMedian::new(config.window),
            holt: Holt::new(config.holt_alpha, config.holt_beta),
            residual: Ewm::new(config.residual_alpha),
            previous: None,
            record: 0.0,
            seen: 0,
        }
    }

    /// The raw strength of `value` against the history.
    fn strength(&mut self, value: f64) -> f64 {
        let mut strength: f64 = 0.0;
        if self.config.values && !self.values.ring().is_empty() {
            strength = strength.max(z_score(&mut self.values, value));
        }
        if let Some(previous) = self.previous {
            if self.config.differences && !self.differences.ring().is_empty() {
                let z = z_score(&mut self.differences, value - previous);
                strength = strength.max(z);
            }
        }
        if let (Some(forecast), Some(mean)) =
            (self.holt.forecast(1.0), self.residual.mean())
        {
            if self.config.residuals {
                let scale = floored(mean, forecast);
                strength = strength.max((value - forecast).abs() / scale);
            }
        }
        strength
    }

    fn learn(&mut self, value: f64) {
        self.values.push(value);
        if let Some(previous) = self.previous {
            self.differences.push(value - previous);
        }
        if let Some(forecast) = self.holt.forecast(1.0) {
            self.residual.update((value - forecast).abs());
        }
        self.holt.update(value);
        self.previous = Some(value);
        self.seen = self.seen.saturating_add(1);
    }
}

impl Detector for RecordDetector {
    fn score(&mut self, _timestamp_ms: i64, value: f64) -> f64 {
        if !value.is_finite() {
            return 0.0;
        }
        let strength = self.strength(value);
        self.learn(value);
        if !strength.is_finite() {
            return 0.0;
        }

        if self.seen <= self.config.warm_up {
            return 0.0;
        }
        let score = if self.record > 0.0 { squash(strength / self.record) } else { 0.0 };
        self.record = (self.record * self.config.decay).max(strength);
        score
    }
}

/// `|x - median| / scale` against a rolling window, with floored scale.
fn z_score(window: &mut RollingMedian, x: f64) -> f64 {
    let (median, scale) = window.median_scale();
    (x - median).abs() / floored(scale, median)
}

fn floored(scale: f64, level: f64) -> f64 {
    scale.max(RELATIVE_FLOOR * level.abs()).max(ABSOLUTE_FLOOR)
}
