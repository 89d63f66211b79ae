//! Post-processing of another detector's score: relative to the series'
//! own record.
//!
//! The inner score `s` is turned back into a strength `s / (1 - s)` and
//! divided by the largest strength seen before, which decays by `decay`
//! each sample. A series whose noise always looks a little new (a noisy
//! one) thus needs a stronger event to alarm than a clean one, and a long
//! episode alarms on its first sample rather than all the way through.

use super::{squash, Detector};

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Relative<D> {
    inner: D,
    decay: f64,
    floor: f64,
    record: f64,
}

impl<D: Detector> Relative<D> {
    /// Wraps `inner`; the record starts at `floor` (a strength) and decays
    /// by the factor `decay` per sample but never below `floor`.
    pub fn new(inner: D, decay: f64, floor: f64) -> Self {
        Self { inner, decay, floor, record: floor }
    }
}

impl<D: Detector> Detector for Relative<D> {
    fn score(&mut self, timestamp_ms: i64, value: f64) -> f64 {
        let inner = self.inner.score(timestamp_ms, value);
        if !(inner > 0.0) {
            self.record = (self.record * self.decay).max(self.floor);
            return 0.0;
        }
        let strength = if inner < 1.0 { inner / (1.0 - inner) } else { f64::MAX };
        let score = squash(strength / self.record);
        self.record = (self.record * self.decay).max(strength).max(self.floor);
        score
    }
}
