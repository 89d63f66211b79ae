//! Post-processing of another detector's score: relative to the series'
//! own record.
//!
//! The inner score `s` is turned back into a strength `s / (1 - s)` and
//! divided by the largest strength seen before, which decays by `decay`
//! each sample. A series whose noise always looks a little new (a noisy
//! one) thus needs a stronger event to alarm than a clean one, and a long
//! episode alarms on its first sample rather than all the way through.
//! After an alarm (a new record) the output stays 0 for `hold` samples:
//! NAB-style scoring rewards the first detection of an event only and
//! charges every later one outside its window.

use super::stats::Ring;
use super::{squash, Detector};

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Relative<D> {
    inner: D,
    decay: f64,
    floor: f64,
    record: f64,
    /// Strengths averaged before the comparison.
    recent: Ring,
    /// How many (the ring's capacity).
    smooth: usize,
    /// Samples an alarm (a score above one half) mutes the output for.
    hold: usize,
    muted: usize,
}

impl<D: Detector> Relative<D> {
    /// Wraps `inner`; the record starts at `floor` (a strength) and decays
    /// by the factor `decay` per sample but never below `floor`.
    /// The strength compared is the mean of the last `smooth` ones, and
    /// after a score above one half the output is 0 for `hold` samples.
    pub fn new(inner: D, decay: f64, floor: f64, smooth: usize, hold: usize) -> Self {
        let smooth = smooth.max(1);
        let recent = Ring::new(smooth);
        Self { inner, decay, floor, record: floor, recent, smooth, hold, muted: 0 }
    }

    fn smoothed(&mut self, strength: f64) -> f64 {
        if self.smooth == 1 {
            // The mean of one non-negative strength is itself, bit for bit.
            return strength;
        }
        self.recent.push(strength);
        let held = self.recent.as_slice();
        held.iter().sum::<f64>() / held.len() as f64
    }
}

impl<D: Detector> Detector for Relative<D> {
    fn score(&mut self, timestamp_ms: i64, value: f64) -> f64 {
        let inner = self.inner.score(timestamp_ms, value);
        let strength = if inner < 1.0 { inner / (1.0 - inner) } else { f64::MAX };
        let strength = self.smoothed(if strength > 0.0 { strength } else { 0.0 });
        let ratio = strength / self.record;
        self.record = (self.record * self.decay).max(strength).max(self.floor);
        if self.muted > 0 {
            self.muted -= 1;
            return 0.0;
        }
        if ratio > 1.0 {
            self.muted = self.hold;
        }
        squash(ratio)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays fixed inner scores.
    struct Replay(std::vec::IntoIter<f64>);

    impl Detector for Replay {
        fn score(&mut self, _timestamp_ms: i64, _value: f64) -> f64 {
            self.0.next().unwrap_or(0.0)
        }
    }

    #[test]
    fn scores_are_relative_to_the_record_and_muted_after_alarms() {
        // (inner strength, expected score); no decay, floor 0.1, hold 2.
        let steps = [
            (1.0, 10.0 / 11.0),
            (0.5, 0.0),
            (2.0, 0.0),
            (1.0, 1.0 / 3.0),
            (3.0, 0.6),
            (4.0, 0.0),
            (0.0, 0.0),
            (2.0, 1.0 / 3.0),
        ];
        let inner: Vec<f64> = steps.iter().map(|(x, _)| x / (1.0 + x)).collect();
        let mut relative = Relative::new(Replay(inner.into_iter()), 1.0, 0.1, 1, 2);
        for (i, (strength, expected)) in steps.into_iter().enumerate() {
            let score = relative.score(0, 0.0);
            assert!((score - expected).abs() < 1e-12, "step {i} ({strength}): {score}");
        }
    }

    #[test]
    fn strengths_are_averaged_over_the_last_smooth_ones() {
        // (inner strength, expected score): means 1, 1.5, 2, 11/3 against
        // a record that follows them up.
        let steps =
            [(1.0, 10.0 / 11.0), (2.0, 0.6), (3.0, 4.0 / 7.0), (6.0, 11.0 / 17.0)];
        let inner: Vec<f64> = steps.iter().map(|(x, _)| x / (1.0 + x)).collect();
        let mut relative = Relative::new(Replay(inner.into_iter()), 1.0, 0.1, 3, 0);
        for (i, (strength, expected)) in steps.into_iter().enumerate() {
            let score = relative.score(0, 0.0);
            assert!((score - expected).abs() < 1e-12, "step {i} ({strength}): {score}");
        }
    }
}
