//! The analysis of one metric series: anomaly score, trend test and
//! forecast, all updated once per sample.
//!
//! Per sample the work is the detector's score, O(1) updates of the trend
//! sums and of the forecast model, and writes into fixed rings; nothing
//! allocates. Only a sample that yields an insight pays for more: the
//! expected range (a median and a MAD over the window) and the digest of
//! the inputs.

use alloy_primitives::B256;
use serde_json::json;

use super::config::AnalysisConfig;
use super::forecast::{Forecast, Forecaster};
use super::trend::{Fit, TrendWindow};
use crate::analysis::detector::stats::median_in_place;
use crate::analysis::detector::{self, Detector};
use crate::analysis::num::display;
use crate::inputs::WindowInputs;
use crate::insight::{InsightDraft, InsightKind, Provenance, Severity};

/// Turns a MAD into a standard deviation, for normal data.
const MAD_TO_SIGMA: f64 = 1.4826;
/// Weight of the newest interval in the typical interval.
const INTERVAL_ALPHA: f64 = 0.1;

/// One input of a metric: what the series state needs per sample.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Stored event id.
    pub id: i64,
    /// Event time, epoch milliseconds.
    pub timestamp_ms: i64,
    /// The finite value.
    pub value: f64,
}

/// The direction of a significant trend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Up,
    Down,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down => "down",
        }
    }
}

/// Everything the engine keeps about one metric.
pub struct Series {
    detector: Box<dyn Detector>,
    trend: TrendWindow,
    forecaster: Forecaster,
    /// The window's inputs and their digest.
    inputs: WindowInputs,
    scratch: Vec<f64>,
    /// Samples since the last restart.
    samples: u64,
    /// The first event since the last restart.
    since_event: i64,
    last_time: Option<i64>,
    interval_ms: Option<f64>,
    direction: Option<Direction>,
}

/// What a series needs to describe its insights.
pub struct Context<'a> {
    /// The settings.
    pub config: &'a AnalysisConfig,
    /// Their digest.
    pub config_digest: B256,
    /// The stream the sample arrived on.
    pub stream: &'a str,
    /// The metric name.
    pub name: &'a str,
}

impl Series {
    /// A series with no history.
    pub fn new(config: &AnalysisConfig) -> Self {
        let window = config.window;
        let error_alpha = 2.0 / (window as f64 + 1.0);
        Self {
            detector: new_detector(config),
            trend: TrendWindow::new(window),
            forecaster: Forecaster::new(
                config.holt_alpha,
                config.holt_beta,
                config.forecast_horizon,
                config.interval_z,
                error_alpha,
            ),
            inputs: WindowInputs::new(config.digest_scheme(), window),
            scratch: Vec::with_capacity(window),
            samples: 0,
            since_event: 0,
            last_time: None,
            interval_ms: None,
            direction: None,
        }
    }

    /// Analyses the next sample; pushes any insight onto `out`.
    pub fn observe(
        &mut self,
        cx: &Context<'_>,
        sample: Sample,
        out: &mut Vec<InsightDraft>,
    ) {
        if self.is_gap(cx.config, sample.timestamp_ms) {
            self.restart(cx.config);
        }
        if self.samples == 0 {
            self.since_event = sample.id;
        }
        let score = self.detector.score(sample.timestamp_ms, sample.value);
        self.remember(sample);
        self.forecaster.update(sample.value);

        if (self.trend.len()) < cx.config.min_samples {
            return;
        }
        let first = out.len();
        let warm = self.samples >= cx.config.anomaly_warm_up as u64;
        if let Some(severity) = severity(cx.config, score).filter(|_| warm) {
            out.push(self.anomaly(cx, sample, score, severity));
        }
        if let Some(draft) = self.trend_change(cx) {
            out.push(draft);
        }
        if self.samples.is_multiple_of(cx.config.forecast_every as u64) {
            if let Some(forecast) = self.forecaster.forecast() {
                out.push(self.prediction(cx, sample, forecast));
            }
        }
        self.record_inputs(cx, &mut out[first..]);
    }

    /// Sets the provenance of this sample's insights, all of which were
    /// computed from the same window.
    fn record_inputs(&self, cx: &Context<'_>, drafts: &mut [InsightDraft]) {
        if let Some((last, others)) = drafts.split_last_mut() {
            let provenance = self.provenance(cx);
            for draft in others {
                draft.provenance.clone_from(&provenance);
            }
            last.provenance = provenance;
        }
    }

    /// Whether the time since the previous sample is a gap; also learns
    /// the typical interval from positive steps (a repeated or earlier
    /// timestamp teaches nothing).
    fn is_gap(&mut self, config: &AnalysisConfig, timestamp_ms: i64) -> bool {
        let Some(last) = self.last_time else {
            self.last_time = Some(timestamp_ms);
            return false;
        };
        let step = timestamp_ms.saturating_sub(last);
        if step <= 0 {
            return false;
        }
        self.last_time = Some(timestamp_ms);
        let step = step as f64;
        let gap = self.interval_ms.is_some_and(|typical| {
            step > config.min_gap_reset_ms as f64
                && step > config.max_gap_factor * typical
        });
        let typical = self.interval_ms.map_or(step, |t| t + INTERVAL_ALPHA * (step - t));
        self.interval_ms = Some(typical);
        gap
    }

    fn restart(&mut self, config: &AnalysisConfig) {
        self.detector = new_detector(config);
        self.trend.clear();
        self.inputs.clear();
        self.forecaster.reset();
        self.samples = 0;
        self.direction = None;
    }

    fn remember(&mut self, sample: Sample) {
        self.inputs.push(sample.id, sample.timestamp_ms, sample.value);
        self.trend.push(sample.value);
        self.samples += 1;
    }

    /// The window's events in order, as the provenance of an insight.
    fn provenance(&self, cx: &Context<'_>) -> Option<Provenance> {
        let stream = format!("{}/{}", cx.stream, cx.name);
        self.inputs.provenance(&stream, cx.config_digest)
    }

    /// Median and robust scale of the window.
    fn median_scale(&mut self) -> (f64, f64) {
        self.scratch.clear();
        self.scratch.extend(self.trend.ordered());
        let median = median_in_place(&mut self.scratch);
        self.scratch.iter_mut().for_each(|x| *x = (*x - median).abs());
        let mad = median_in_place(&mut self.scratch);
        (median, saturate(MAD_TO_SIGMA * mad))
    }

    fn anomaly(
        &mut self,
        cx: &Context<'_>,
        sample: Sample,
        score: f64,
        severity: Severity,
    ) -> InsightDraft {
        let (median, scale) = self.median_scale();
        let half = saturate(cx.config.expected_width * scale);
        let (low, high) = (saturate(median - half), saturate(median + half));
        let direction = if sample.value >= median { "above" } else { "below" };
        let fill = self.trend.len() as f64 / cx.config.window as f64;
        let summary = format!(
            "{}: {} is {direction} the expected range {} to {} (score {})",
            cx.name,
            display(sample.value, 4),
            display(low, 4),
            display(high, 4),
            display(score, 3),
        );
        let data = json!({
            "value": sample.value,
            "score": score,
            "median": median,
            "scale": scale,
            "expected_low": low,
            "expected_high": high,
            "direction": direction,
            "window_len": self.trend.len(),
            "series_since_event": self.since_event,
        });
        self.draft(cx, InsightKind::Anomaly, Some(severity), score * fill, summary, data)
    }

    /// A trend insight when a significant trend appears or turns.
    fn trend_change(&mut self, cx: &Context<'_>) -> Option<InsightDraft> {
        let fit = self.trend.fit()?;
        let entered = fit.t.abs() >= cx.config.trend_t;
        let left = fit.t.abs() < cx.config.trend_exit_t;
        let now = if fit.t > 0.0 { Direction::Up } else { Direction::Down };
        if left {
            self.direction = None;
        }
        if !entered || self.direction == Some(now) {
            return None;
        }
        self.direction = Some(now);
        Some(self.trend_insight(cx, fit, now))
    }

    fn trend_insight(
        &self,
        cx: &Context<'_>,
        fit: Fit,
        direction: Direction,
    ) -> InsightDraft {
        let per_second = self
            .interval_ms
            .filter(|&ms| ms > 0.0)
            .map(|ms| saturate(fit.slope * 1_000.0 / ms));
        let summary = format!(
            "{}: trending {} by {} per sample over the last {} samples (t = {})",
            cx.name,
            direction.as_str(),
            display(fit.slope, 4),
            fit.n,
            display(fit.t, 2),
        );
        let data = json!({
            "direction": direction.as_str(),
            "slope_per_sample": fit.slope,
            "slope_per_second": per_second,
            "t_statistic": fit.t,
            "r_squared": fit.r2,
            "mean": fit.mean,
            "window_len": fit.n,
            "series_since_event": self.since_event,
        });
        self.draft(cx, InsightKind::Trend, None, fit.r2, summary, data)
    }

    fn prediction(&self, cx: &Context<'_>, sample: Sample, f: Forecast) -> InsightDraft {
        let horizon = cx.config.forecast_horizon;
        let ahead_ms = self.interval_ms.map_or(0.0, |ms| ms * horizon as f64);
        let target_ms = sample.timestamp_ms.saturating_add(saturate(ahead_ms) as i64);
        let (checked, held) = self.forecaster.coverage();
        let confidence = (held as f64 + 1.0) / (checked as f64 + 2.0);
        let summary = format!(
            "{}: {} expected {horizon} samples ahead, between {} and {}",
            cx.name,
            display(f.value, 4),
            display(f.low, 4),
            display(f.high, 4),
        );
        let data = json!({
            "horizon": horizon,
            "forecast": f.value,
            "low": f.low,
            "high": f.high,
            "sigma": f.sigma,
            "trend_per_sample": f.trend,
            "interval_z": cx.config.interval_z,
            "target_timestamp_ms": target_ms,
            "intervals_checked": checked,
            "intervals_held": held,
            "series_since_event": self.since_event,
        });
        self.draft(cx, InsightKind::Prediction, None, confidence, summary, data)
    }

    fn draft(
        &self,
        cx: &Context<'_>,
        kind: InsightKind,
        severity: Option<Severity>,
        confidence: f64,
        summary: String,
        data: serde_json::Value,
    ) -> InsightDraft {
        InsightDraft {
            kind,
            subject: cx.name.to_owned(),
            severity,
            confidence: saturate(confidence).clamp(0.0, 1.0),
            summary,
            data,
            provenance: None,
        }
    }
}

fn new_detector(config: &AnalysisConfig) -> Box<dyn Detector> {
    detector::by_name(&config.detector).expect("the detector name was validated")
}

/// The severity of a score, `None` below the low level.
fn severity(config: &AnalysisConfig, score: f64) -> Option<Severity> {
    let levels = [
        (config.critical_score, Severity::Critical),
        (config.high_score, Severity::High),
        (config.medium_score, Severity::Medium),
        (config.low_score, Severity::Low),
    ];
    levels.into_iter().find(|(level, _)| score >= *level).map(|(_, s)| s)
}

/// Clamps into the finite range; NaN becomes zero.
fn saturate(x: f64) -> f64 {
    crate::analysis::num::saturate(x)
}
