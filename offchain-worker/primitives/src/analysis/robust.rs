//! Robust anomaly detection on metric samples.
//!
//! Each metric name has its own rolling window of its last `window`
//! samples. A new sample is scored against the window before it joins it:
//! its robust z-score is `|value - median| / scale`, where `scale` is
//! 1.4826 MAD (the standard deviation, for normal data). When more than
//! half the window holds one value the MAD is zero, and 1.2533 times the
//! mean absolute deviation takes its place; neither may fall below the
//! configured floors, so a flat series raises nothing on rounding noise but
//! a real jump away from it scores high. The score maps to a severity
//! through the configured thresholds.
//!
//! An alarm opens an episode for its metric: while it lasts, anomalies of
//! the same or lower severity are suppressed and only an escalation is
//! reported again; it ends after `cooldown` normal samples in a row. A
//! level shift is thus reported once, not on every sample until the window
//! has caught up.
//!
//! A gap longer than `max_gap_factor` times the typical (median) sampling
//! interval, and longer than `min_gap_reset_ms`, empties the window: the
//! old samples no longer describe the metric, and it warms up again.
//! Samples older than or as old as the newest one seen are scored normally
//! but do not count as intervals.

use std::collections::{BTreeMap, VecDeque};

use ndarray::{Array1, ArrayView1, Axis, Slice};
use serde_json::json;

use super::config::{BaselineConfig, ConfigError};
use super::num::{display, saturate};
use crate::insight::{InsightDraft, InsightKind, Severity};

/// Turns a MAD into a standard deviation, for normal data.
const MAD_TO_SIGMA: f64 = 1.4826;
/// Turns a mean absolute deviation into a standard deviation (sqrt(pi/2)).
const MEAN_AD_TO_SIGMA: f64 = 1.2533;
/// Positive sampling intervals kept per metric to find the typical one.
const INTERVAL_HISTORY: usize = 31;

/// Which side of the median an anomalous sample lies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Above the median.
    Above,
    /// Below the median.
    Below,
}

impl Direction {
    /// The word used in insights.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Above => "above",
            Self::Below => "below",
        }
    }
}

/// An anomalous sample and the window statistics it was judged against.
/// Every number is finite.
#[derive(Debug, Clone, PartialEq)]
pub struct Anomaly {
    /// The sample.
    pub value: f64,
    /// Median of the window.
    pub median: f64,
    /// Median absolute deviation of the window from its median.
    pub mad: f64,
    /// The robust scale the score is measured in (after the floors).
    pub scale: f64,
    /// Robust z-score: `|value - median| / scale`.
    pub score: f64,
    /// Severity from the configured score thresholds.
    pub severity: Severity,
    /// `1 / (1 + (low_score / score)^2)`: 0.5 at the lowest threshold,
    /// rising towards 1.
    pub confidence: f64,
    /// Lower end of the normal band, `median - low_score * scale`.
    pub expected_low: f64,
    /// Upper end of the normal band, `median + low_score * scale`.
    pub expected_high: f64,
    /// Samples in the window.
    pub window_len: usize,
    /// Side of the median.
    pub direction: Direction,
}

impl Anomaly {
    /// The insight reporting this anomaly of `metric`.
    pub fn to_draft(&self, metric: &str) -> InsightDraft {
        let summary = format!(
            "{metric} {} is {} robust deviations {} its median {}",
            display(self.value, 3),
            display(self.score, 1),
            self.direction.as_str(),
            display(self.median, 3),
        );
        let data = json!({
            "value": self.value,
            "median": self.median,
            "mad": self.mad,
            "scale": self.scale,
            "score": self.score,
            "expected_low": self.expected_low,
            "expected_high": self.expected_high,
            "window_len": self.window_len,
            "direction": self.direction.as_str(),
        });
        InsightDraft {
            kind: InsightKind::Anomaly,
            subject: metric.to_owned(),
            severity: Some(self.severity),
            confidence: self.confidence,
            summary,
            data,
            provenance: None,
        }
    }
}

/// What the detector makes of one sample.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// The window holds fewer than `min_samples` samples: no verdict.
    WarmingUp,
    /// The sample is within the normal band.
    Normal,
    /// An anomaly to report.
    Alarm(Anomaly),
    /// An anomaly within an episode already reported, not escalating.
    Suppressed(Anomaly),
    /// The value is not finite; it was left out of the window.
    Ignored,
}

/// Rolling robust anomaly detection, one window per metric name.
// TODO: one window per distinct metric name is kept forever; cap the count
// (evicting the least recently updated) if producers may invent names.
#[derive(Debug, Clone)]
pub struct RobustDetector {
    config: BaselineConfig,
    metrics: BTreeMap<String, MetricWindow>,
    scratch: Scratch,
}

impl RobustDetector {
    /// A detector with no history, after checking `config`.
    pub fn new(config: BaselineConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let scratch = Scratch {
            values: Array1::zeros(config.window),
            intervals: Vec::with_capacity(INTERVAL_HISTORY),
        };
        Ok(Self { config, metrics: BTreeMap::new(), scratch })
    }

    /// Judges the next sample of `metric` and adds it to its window.
    pub fn observe(
        &mut self,
        metric: &str,
        timestamp_ms: i64,
        value: f64,
    ) -> Observation {
        if !value.is_finite() {
            return Observation::Ignored;
        }
        if !self.metrics.contains_key(metric) {
            let window = MetricWindow::new(self.config.window);
            self.metrics.insert(metric.to_owned(), window);
        }
        let window = self.metrics.get_mut(metric).expect("inserted above when absent");
        window.observe(&self.config, &mut self.scratch, timestamp_ms, value)
    }
}

/// Buffers reused by every window, so scoring allocates nothing.
#[derive(Debug, Clone)]
struct Scratch {
    values: Array1<f64>,
    intervals: Vec<i64>,
}

/// An anomaly episode: open from an alarm until enough normal samples.
#[derive(Debug, Clone, Copy)]
struct Episode {
    peak: Severity,
    quiet_needed: usize,
}

/// The window statistics a sample is scored against.
#[derive(Debug, Clone, Copy)]
struct Stats {
    median: f64,
    mad: f64,
    scale: f64,
    score: f64,
    window_len: usize,
}

/// The state kept for one metric name.
#[derive(Debug, Clone)]
struct MetricWindow {
    /// Ring buffer of the last samples; `[0, len)` is valid.
    ring: Array1<f64>,
    next: usize,
    len: usize,
    /// Recent positive intervals between samples, milliseconds.
    intervals: VecDeque<i64>,
    newest_ms: Option<i64>,
    episode: Option<Episode>,
}

impl MetricWindow {
    fn new(capacity: usize) -> Self {
        Self {
            ring: Array1::zeros(capacity),
            next: 0,
            len: 0,
            intervals: VecDeque::with_capacity(INTERVAL_HISTORY),
            newest_ms: None,
            episode: None,
        }
    }

    fn observe(
        &mut self,
        config: &BaselineConfig,
        scratch: &mut Scratch,
        timestamp_ms: i64,
        value: f64,
    ) -> Observation {
        if self.crosses_gap(config, &mut scratch.intervals, timestamp_ms) {
            self.clear();
        }

        let observation = match self.stats(config, &mut scratch.values, value) {
            None => Observation::WarmingUp,
            Some(stats) => self.judge(config, &stats, value),
        };

        self.push(value);
        observation
    }

    /// Records the interval since the newest sample and tells whether it is
    /// a gap that makes the window stale.
    fn crosses_gap(
        &mut self,
        config: &BaselineConfig,
        scratch: &mut Vec<i64>,
        timestamp_ms: i64,
    ) -> bool {
        let Some(newest) = self.newest_ms else {
            self.newest_ms = Some(timestamp_ms);
            return false;
        };
        if timestamp_ms <= newest {
            return false;
        }
        self.newest_ms = Some(timestamp_ms);
        let interval = timestamp_ms.saturating_sub(newest);

        let gap = typical_interval(&self.intervals, scratch).is_some_and(|typical| {
            let limit = config.max_gap_factor * typical as f64;
            let limit = limit.max(config.min_gap_reset_ms as f64);
            interval as f64 > limit
        });

        if self.intervals.len() == INTERVAL_HISTORY {
            self.intervals.pop_front();
        }
        self.intervals.push_back(interval);
        gap
    }

    fn stats(
        &self,
        config: &BaselineConfig,
        scratch: &mut Array1<f64>,
        value: f64,
    ) -> Option<Stats> {
        let n = self.len;
        if n < config.min_samples {
            return None;
        }

        let mut view = scratch.slice_axis_mut(Axis(0), Slice::from(..n));
        view.assign(&self.window());
        let work = view.as_slice_mut().expect("a prefix of a 1-D array is contiguous");
        let median = median_in_place(work);
        work.iter_mut().for_each(|x| *x = saturate((*x - median).abs()));
        let mad = median_in_place(work);

        let spread = if mad > 0.0 {
            MAD_TO_SIGMA * mad
        } else {
            MEAN_AD_TO_SIGMA * self.mean_abs_deviation(median)
        };
        let floor = (config.relative_floor * median.abs()).max(config.absolute_floor);
        let scale = saturate(spread.max(floor));
        let score = saturate(saturate(value - median).abs() / scale);
        Some(Stats { median, mad, scale, score, window_len: n })
    }

    /// Mean of `|x - median|` over the window, summed in ring order so the
    /// rounding never depends on how the median was selected.
    fn mean_abs_deviation(&self, median: f64) -> f64 {
        let n = self.len as f64;
        let sum = self
            .window()
            .iter()
            .fold(0.0, |sum, x| sum + saturate((x - median).abs()) / n);
        saturate(sum)
    }

    fn judge(
        &mut self,
        config: &BaselineConfig,
        stats: &Stats,
        value: f64,
    ) -> Observation {
        let Some(severity) = severity_of(config, stats.score) else {
            self.note_normal_sample();
            return Observation::Normal;
        };
        let anomaly = anomaly(config, stats, value, severity);

        match &mut self.episode {
            Some(episode) if severity <= episode.peak => {
                episode.quiet_needed = config.cooldown;
                Observation::Suppressed(anomaly)
            }
            _ => {
                let episode = Episode { peak: severity, quiet_needed: config.cooldown };
                self.episode = (config.cooldown > 0).then_some(episode);
                Observation::Alarm(anomaly)
            }
        }
    }

    fn note_normal_sample(&mut self) {
        if let Some(episode) = &mut self.episode {
            episode.quiet_needed = episode.quiet_needed.saturating_sub(1);
            if episode.quiet_needed == 0 {
                self.episode = None;
            }
        }
    }

    /// The samples in the window, in ring order.
    fn window(&self) -> ArrayView1<'_, f64> {
        self.ring.slice_axis(Axis(0), Slice::from(..self.len))
    }

    fn push(&mut self, value: f64) {
        let capacity = self.ring.len();
        self.ring[self.next] = value;
        self.next = (self.next + 1) % capacity;
        self.len = (self.len + 1).min(capacity);
    }

    fn clear(&mut self) {
        self.next = 0;
        self.len = 0;
        self.episode = None;
    }
}

fn severity_of(config: &BaselineConfig, score: f64) -> Option<Severity> {
    let levels = [
        (config.critical_score, Severity::Critical),
        (config.high_score, Severity::High),
        (config.medium_score, Severity::Medium),
        (config.low_score, Severity::Low),
    ];
    levels.into_iter().find(|(threshold, _)| score >= *threshold).map(|(_, level)| level)
}

fn anomaly(
    config: &BaselineConfig,
    stats: &Stats,
    value: f64,
    severity: Severity,
) -> Anomaly {
    let band = saturate(config.low_score * stats.scale);
    let ratio = config.low_score / stats.score;
    Anomaly {
        value,
        median: stats.median,
        mad: stats.mad,
        scale: stats.scale,
        score: stats.score,
        severity,
        confidence: (1.0 / (1.0 + ratio * ratio)).clamp(0.0, 1.0),
        expected_low: saturate(stats.median - band),
        expected_high: saturate(stats.median + band),
        window_len: stats.window_len,
        direction: if value >= stats.median {
            Direction::Above
        } else {
            Direction::Below
        },
    }
}

/// Median of a non-empty slice, reordering it. The result is an order
/// statistic (or the midpoint of two), so it does not depend on how the
/// selection permutes the slice.
fn median_in_place(xs: &mut [f64]) -> f64 {
    let n = xs.len();
    let (lower, upper, _) = xs.select_nth_unstable_by(n / 2, f64::total_cmp);
    if n % 2 == 1 {
        return *upper;
    }
    let below = lower.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    below.midpoint(*upper)
}

/// Median of the recorded intervals (the upper one for an even count).
fn typical_interval(intervals: &VecDeque<i64>, scratch: &mut Vec<i64>) -> Option<i64> {
    if intervals.is_empty() {
        return None;
    }
    scratch.clear();
    scratch.extend(intervals.iter().copied());
    let mid = scratch.len() / 2;
    Some(*scratch.select_nth_unstable(mid).1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::testkit::{assert_finite_draft, Noise};

    const MINUTE: i64 = 60_000;

    fn detector(edit: impl FnOnce(&mut BaselineConfig)) -> RobustDetector {
        let mut config = BaselineConfig::default();
        edit(&mut config);
        RobustDetector::new(config).unwrap()
    }

    /// Feeds `values` five minutes apart and returns the observations.
    fn run(detector: &mut RobustDetector, values: &[f64]) -> Vec<Observation> {
        let timed: Vec<_> =
            (0..).map(|i| i * 5 * MINUTE).zip(values.iter().copied()).collect();
        run_timed(detector, &timed)
    }

    fn run_timed(
        detector: &mut RobustDetector,
        samples: &[(i64, f64)],
    ) -> Vec<Observation> {
        samples.iter().map(|&(t, v)| detector.observe("m", t, v)).collect()
    }

    fn alarms(observations: &[Observation]) -> Vec<(usize, &Anomaly)> {
        let mut found = Vec::new();
        for (i, observation) in observations.iter().enumerate() {
            if let Observation::Alarm(anomaly) = observation {
                found.push((i, anomaly));
            }
        }
        found
    }

    fn assert_all_finite(observations: &[Observation]) {
        for observation in observations {
            if let Observation::Alarm(a) | Observation::Suppressed(a) = observation {
                assert_finite_draft(&a.to_draft("m"));
            }
        }
    }

    #[test]
    fn warm_up_gives_no_verdict_before_min_samples() {
        for min_samples in [1, 2, 30, 120] {
            let mut detector = detector(|c| c.min_samples = min_samples);
            let observations = run(&mut detector, &[5.0; 200]);
            let warming =
                observations.iter().take_while(|o| **o == Observation::WarmingUp);
            assert_eq!(warming.count(), min_samples, "min_samples {min_samples}");
            assert!(observations[min_samples..]
                .iter()
                .all(|o| *o == Observation::Normal));
        }
    }

    #[test]
    fn constant_series_raises_nothing() {
        for level in [0.0, 41.2, -7.0, 1e300, -1e-300, f64::MAX] {
            let observations = run(&mut detector(|_| {}), &[level; 1000]);
            assert!(alarms(&observations).is_empty(), "level {level}");
            assert!(observations
                .iter()
                .all(|o| matches!(o, Observation::Normal | Observation::WarmingUp)));
        }
    }

    #[test]
    fn jump_from_a_flat_line_raises_one_alarm() {
        // (level before, level after, samples at the new level)
        let cases = [
            (50.0, 80.0, 1),
            (50.0, 80.0, 300),
            (50.0, 20.0, 300),
            (0.0, 1.0, 300),
            (1e-300, 1e300, 300),
        ];
        for (before, after, count) in cases {
            let mut series = vec![before; 200];
            series.extend(std::iter::repeat_n(after, count));
            series.extend(std::iter::repeat_n(before, 300 - count));
            let observations = run(&mut detector(|_| {}), &series);
            let found = alarms(&observations);
            assert_eq!(found.len(), 1, "{before} -> {after} x{count}: {found:?}");
            assert_eq!(found[0].0, 200);
            assert_eq!(found[0].1.severity, Severity::Critical);
            assert_all_finite(&observations);
        }
    }

    #[test]
    fn spike_in_noise_is_reported_with_high_severity() {
        for (spike, least) in [(30.0, Severity::High), (-60.0, Severity::Critical)] {
            let mut noise = Noise::new(7);
            let mut series: Vec<f64> =
                (0..500).map(|_| 50.0 + 2.0 * noise.normal()).collect();
            series[400] += spike;
            let observations = run(&mut detector(|_| {}), &series);
            let found = alarms(&observations);
            assert_eq!(found.len(), 1, "spike {spike}: {found:?}");
            assert_eq!(found[0].0, 400);
            assert!(found[0].1.severity >= least, "{:?}", found[0].1);
            let expected = if spike > 0.0 { Direction::Above } else { Direction::Below };
            assert_eq!(found[0].1.direction, expected);
        }
    }

    #[test]
    fn an_episode_reports_only_escalations_until_it_calms_down() {
        // A flat line at 100 has a floor scale of 1: the score is the excess.
        let steps: [(f64, Option<Severity>); 11] = [
            (104.0, Some(Severity::Low)),
            (104.0, None),
            (120.0, Some(Severity::Critical)),
            (108.0, None),
            (100.0, None),
            (100.0, None),
            (104.0, None),
            (100.0, None),
            (100.0, None),
            (100.0, None),
            (106.0, Some(Severity::Medium)),
        ];
        let mut series = vec![100.0; 50];
        series.extend(steps.iter().map(|(value, _)| value));
        let observations = run(&mut detector(|c| c.cooldown = 3), &series);
        for (i, (_, expected)) in steps.into_iter().enumerate() {
            let reported = match &observations[50 + i] {
                Observation::Alarm(a) => Some(a.severity),
                _ => None,
            };
            assert_eq!(reported, expected, "step {i}");
        }
    }

    #[test]
    fn a_long_gap_empties_the_window() {
        // (sampling interval, gap, whether the window is emptied)
        let cases = [
            (5 * MINUTE, 120 * MINUTE, true),
            (5 * MINUTE, 30 * MINUTE, false),
            (5 * MINUTE, 50 * MINUTE, false),
            (5 * MINUTE, 51 * MINUTE, true),
            (1_000, 30_000, false),
            (1_000, 61_000, true),
        ];
        for (interval, gap, resets) in cases {
            let mut detector = detector(|_| {});
            let mut samples: Vec<_> = (0..100).map(|i| (i * interval, 10.0)).collect();
            samples.push((99 * interval + gap, 10.0));
            let observations = run_timed(&mut detector, &samples);
            let last = observations.last().unwrap();
            assert_eq!(*last == Observation::WarmingUp, resets, "{interval} {gap}");
        }
    }

    #[test]
    fn disordered_and_duplicate_timestamps_are_harmless() {
        let mut noise = Noise::new(3);
        let mut samples: Vec<(i64, f64)> = (0..400)
            .map(|i| {
                let t = (i / 3) * 5 * MINUTE - (i % 7) * 11 * MINUTE;
                (t, 20.0 + noise.normal())
            })
            .collect();
        samples.extend([
            (0, 500.0),
            (i64::MIN, 20.0),
            (i64::MAX, 20.0),
            (i64::MIN, -9.0),
        ]);
        let observations = run_timed(&mut detector(|_| {}), &samples);

        let warming = |o: &Observation| *o == Observation::WarmingUp;
        assert!(!observations[30..400].iter().any(warming));
        let found: Vec<usize> = alarms(&observations).iter().map(|(i, _)| *i).collect();
        assert_eq!(found, [400]);
        assert!(observations[402..404].iter().all(warming));
        assert!(observations[404..].iter().all(|o| *o == Observation::Ignored));
        assert_all_finite(&observations);
    }

    #[test]
    fn extreme_magnitudes_give_finite_figures() {
        let scales = [1e300, 1e-300, f64::MAX / 4.0, 5e-324];
        for scale in scales {
            let mut noise = Noise::new(11);
            let mut series: Vec<f64> =
                (0..300).map(|_| scale * (1.0 + 0.1 * noise.normal())).collect();
            series[250] = -f64::MAX;
            series[260] = f64::MAX;
            let observations = run(&mut detector(|c| c.cooldown = 0), &series);
            assert_all_finite(&observations);
            assert!(!alarms(&observations).is_empty(), "scale {scale}");
        }
    }

    #[test]
    fn median_of_even_and_odd_windows() {
        let cases: [(&[f64], f64); 5] = [
            (&[3.0], 3.0),
            (&[4.0, 1.0], 2.5),
            (&[5.0, 1.0, 3.0], 3.0),
            (&[9.0, 1.0, 2.0, 7.0], 4.5),
            (&[f64::MAX, f64::MAX], f64::MAX),
        ];
        for (values, expected) in cases {
            assert_eq!(median_in_place(&mut values.to_vec()), expected, "{values:?}");
        }
    }
}
