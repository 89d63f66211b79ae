//! Streaming anomaly detectors for one series of samples.
//!
//! A [`Detector`] sees the samples of one series in arrival order and
//! gives each an anomaly score in [0, 1] from the past alone. Detectors
//! use only IEEE basic operations and `sqrt`, so their scores are the same
//! bit for bit on every platform.
//!
//! Layout:
//! - [`robust`]: the rolling median/MAD detector of the baseline analyser,
//!   scored on its alarms;
//! - [`stats`]: rolling building blocks (windowed median, exponential
//!   moments, Holt smoothing);
//! - [`knn`]: novelty of the recent shape against remembered shapes;
//! - [`record`]: robust deviations of values, differences and forecast
//!   residuals, scored by how far they beat their own past record.

pub mod knn;
pub mod record;
pub mod relative;
pub mod robust;
pub mod stats;

/// A streaming anomaly detector for one series.
pub trait Detector: Send {
    /// Scores the next sample, then learns from it. The score is in
    /// [0, 1]; higher is more anomalous. Non-finite values score 0 and are
    /// not learned.
    fn score(&mut self, timestamp_ms: i64, value: f64) -> f64;
}

/// Names accepted by [`by_name`], the default first.
pub const NAMES: [&str; 4] = ["knn-rel", "knn", "record", "robust"];

/// A fresh detector with the global settings of that name.
pub fn by_name(name: &str) -> Option<Box<dyn Detector>> {
    match name {
        "knn-rel" => {
            let knn = knn::KnnDetector::default();
            Some(Box::new(relative::Relative::new(knn, 0.9995, 0.1)))
        }
        "knn" => Some(Box::new(knn::KnnDetector::default())),
        "record" => Some(Box::new(record::RecordDetector::default())),
        "robust" => Some(Box::new(robust::RobustScorer::default())),
        _ => None,
    }
}

/// Maps a non-negative strength to [0, 1) monotonically: `x / (1 + x)`.
pub(crate) fn squash(x: f64) -> f64 {
    if x.is_nan() || x <= 0.0 {
        0.0
    } else if x == f64::INFINITY {
        1.0
    } else {
        x / (1.0 + x)
    }
}
