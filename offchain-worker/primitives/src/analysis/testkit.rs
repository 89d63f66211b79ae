//! Helpers shared by the analysis unit tests.

use serde_json::Value;

use super::MetricPoint;
use crate::insight::InsightDraft;

/// Data fields that may be null: optional identifiers and labels.
const NULLABLE: [&str; 4] = ["user_id", "source", "top_event_type", "slope_per_second"];

/// A small deterministic pseudo-random source (xorshift64*).
pub(crate) struct Noise(u64);

impl Noise {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in [0, 1).
    pub(crate) fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        bits as f64 / (1u64 << 53) as f64
    }

    /// Roughly standard normal: the sum of twelve uniforms, centred.
    pub(crate) fn normal(&mut self) -> f64 {
        (0..12).map(|_| self.uniform()).sum::<f64>() - 6.0
    }

    /// Uniform integer in `[0, n)`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        (self.uniform() * n as f64) as u64
    }
}

/// Fails unless the draft's confidence is in [0, 1] and its data is an
/// object whose numbers are finite and whose nulls are allowed ones.
pub(crate) fn assert_finite_draft(draft: &InsightDraft) {
    assert!((0.0..=1.0).contains(&draft.confidence), "{draft:?}");
    let Value::Object(data) = &draft.data else {
        panic!("data is not an object: {draft:?}")
    };
    for (key, value) in data {
        match value {
            Value::Null => {
                assert!(NULLABLE.contains(&key.as_str()), "{key} null: {draft:?}")
            }
            Value::Number(n) => {
                let finite = n.as_f64().is_some_and(f64::is_finite);
                assert!(finite, "{key}: {draft:?}");
            }
            _ => {}
        }
    }
}

/// Fails unless the point's value and change are finite.
pub(crate) fn assert_finite_point(point: &MetricPoint) {
    assert!(point.value.is_finite(), "{point:?}");
    assert!(point.change_percent.is_none_or(f64::is_finite), "{point:?}");
}
