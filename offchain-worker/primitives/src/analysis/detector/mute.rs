//! Post-processing of another detector's score: one alarm per episode.
//!
//! After the inner score exceeds one half (an alarm), the output is 0 for
//! the next `hold` samples, whatever the inner detector says. Wrapped
//! around a combination of detectors, it stops a second component from
//! alarming again on an episode the first one already reported.

use super::Detector;

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Mute<D> {
    inner: D,
    hold: usize,
    muted: usize,
}

impl<D: Detector> Mute<D> {
    /// Wraps `inner`, muting it for `hold` samples after each alarm.
    pub fn new(inner: D, hold: usize) -> Self {
        Self { inner, hold, muted: 0 }
    }
}

impl<D: Detector> Detector for Mute<D> {
    fn score(&mut self, timestamp_ms: i64, value: f64) -> f64 {
        let score = self.inner.score(timestamp_ms, value);
        if self.muted > 0 {
            self.muted -= 1;
            return 0.0;
        }
        if score > 0.5 {
            self.muted = self.hold;
        }
        score
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
    fn alarms_mute_the_next_samples_only() {
        // (inner score, expected output); hold 2.
        let steps = [
            (0.4, 0.4),
            (0.9, 0.9),
            (0.8, 0.0),
            (0.7, 0.0),
            (0.3, 0.3),
            (0.6, 0.6),
            (0.2, 0.0),
            (0.5, 0.0),
            (0.5, 0.5),
        ];
        let inner = steps.iter().map(|&(s, _)| s).collect::<Vec<_>>();
        let mut mute = Mute::new(Replay(inner.into_iter()), 2);
        for (i, (inner, expected)) in steps.into_iter().enumerate() {
            let score = mute.score(0, 0.0);
            assert_eq!(score, expected, "step {i} ({inner})");
        }
    }
}
