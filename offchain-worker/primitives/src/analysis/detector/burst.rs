//! Bursts of activity: how much a series has been moving lately compared
//! with how much it usually moves.
//!
//! The activity of the last `window` samples is the mean absolute
//! difference between consecutive samples. It is measured in units of the
//! long-run typical absolute difference, an exponentially weighted mean of
//! all differences seen before. A series that starts to swing widely,
//! such as a latency that begins to oscillate between extremes, scores
//! high even when no single sample lies outside the usual range of values.

use super::stats::{Ewm, Ring};
use super::{squash, Detector};

/// Settings of [`BurstDetector`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurstConfig {
    /// Differences averaged into the recent activity. Default 16.
    pub window: usize,
    /// Weight of each new difference in the long-run typical difference,
    /// in (0, 1]. Default 0.001.
    pub alpha: f64,
    /// Samples before any score above 0. Default 150.
    pub warm_up: usize,
}

impl Default for BurstConfig {
    fn default() -> Self {
        Self { window: 16, alpha: 0.001, warm_up: 150 }
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct BurstDetector {
    config: BurstConfig,
    /// The latest absolute differences.
    recent: Ring,
    /// The long-run typical absolute difference.
    typical: Ewm,
    previous: Option<f64>,
    seen: usize,
}

impl Default for BurstDetector {
    fn default() -> Self {
        Self::new(BurstConfig::default())
    }
}

impl BurstDetector {
    /// A detector with no history.
    pub fn new(config: BurstConfig) -> Self {
        let config = BurstConfig { window: config.window.max(1), ..config };
        Self {
            recent: Ring::new(config.window),
            typical: Ewm::new(config.alpha),
            previous: None,
            seen: 0,
            config,
        }
    }

    /// Mean of the held differences, summed oldest first.
    fn activity(&self) -> f64 {
        self.recent.sum_oldest_first() / self.recent.len() as f64
    }
}

impl Detector for BurstDetector {
    fn score(&mut self, _timestamp_ms: i64, value: f64) -> f64 {
        if !value.is_finite() {
            return 0.0;
        }
        self.seen = self.seen.saturating_add(1);
        let Some(previous) = self.previous.replace(value) else {
            return 0.0;
        };
        let difference = (value - previous).abs();
        if !difference.is_finite() {
            return 0.0;
        }
        self.recent.push(difference);
        let activity = self.activity();
        let score = match self.typical.mean() {
            Some(typical)
                if typical > 0.0
                    && self.seen > self.config.warm_up
                    && self.recent.is_full() =>
            {
                squash(activity / typical)
            }
            _ => 0.0,
        };
        self.typical.update(difference);
        score
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::testkit::Noise;

    fn run(config: BurstConfig, values: &[f64]) -> Vec<f64> {
        let mut detector = BurstDetector::new(config);
        values.iter().map(|&v| detector.score(0, v)).collect()
    }

    #[test]
    fn activity_is_measured_against_the_typical_difference() {
        // A series alternating by 1, then by `swing`: once the window holds
        // only swings, the score is squash(swing / typical) with the
        // typical difference still 1 (alpha 0 keeps it fixed).
        // (swing, expected score once the window is full of swings)
        let cases = [(1.0, 0.5), (3.0, 0.75), (9.0, 0.9)];
        for (swing, expected) in cases {
            let config = BurstConfig { window: 4, alpha: 0.0, warm_up: 10 };
            let mut values: Vec<f64> = (0..50).map(|i| f64::from(i % 2)).collect();
            values.extend((0..5).map(|i| f64::from(i % 2) * swing));
            let scores = run(config, &values);
            assert_eq!(scores[..10], [0.0; 10], "warm-up");
            let last = scores[scores.len() - 1];
            assert!((last - expected).abs() < 1e-12, "{swing}: {last}");
        }
    }

    #[test]
    fn a_swinging_stretch_scores_above_the_noise_before_it() {
        let mut noise = Noise::new(5);
        let mut values: Vec<f64> = (0..2_000).map(|_| 50.0 + noise.normal()).collect();
        for (i, value) in values[1_500..1_520].iter_mut().enumerate() {
            *value += if i % 2 == 0 { 15.0 } else { -15.0 };
        }
        let scores = run(BurstConfig::default(), &values);
        let before = scores[..1_500].iter().copied().fold(0.0, f64::max);
        let during = scores[1_500..1_520].iter().copied().fold(0.0, f64::max);
        // Back from scores to activity in units of the typical one.
        let strength = |s: f64| s / (1.0 - s);
        assert!(strength(during) > 5.0 * strength(before), "{during} vs {before}");
    }

    #[test]
    fn non_finite_samples_and_differences_are_skipped() {
        let values = [1.0, f64::NAN, 2.0, f64::MAX, -f64::MAX, f64::INFINITY, 3.0];
        let config = BurstConfig { window: 2, alpha: 0.5, warm_up: 0 };
        let scores = run(config, &values);
        assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)), "{scores:?}");
        assert_eq!(scores[1], 0.0);
        assert_eq!(scores[4], 0.0, "an overflowing difference scores 0");
    }
}
