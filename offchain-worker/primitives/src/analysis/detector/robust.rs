//! The baseline's rolling median/MAD detector as a [`Detector`]: a sample
//! that raises an alarm scores its robust z-score squashed into [0, 1);
//! every other sample scores 0.

use super::{squash, Detector};
use crate::analysis::config::BaselineConfig;
use crate::analysis::robust::{Observation, RobustDetector};

/// Scores the alarms of a [`RobustDetector`] with the default settings.
#[derive(Debug, Clone)]
pub struct RobustScorer {
    inner: RobustDetector,
}

impl Default for RobustScorer {
    fn default() -> Self {
        let inner = RobustDetector::new(BaselineConfig::default())
            .expect("the default settings are valid");
        Self { inner }
    }
}

impl Detector for RobustScorer {
    fn score(&mut self, timestamp_ms: i64, value: f64) -> f64 {
        match self.inner.observe("series", timestamp_ms, value) {
            Observation::Alarm(anomaly) => squash(anomaly.score),
            _ => 0.0,
        }
    }
}
