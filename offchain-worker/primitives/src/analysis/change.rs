//! Change of a metric against its previous sample, in percent.

use std::collections::BTreeMap;

/// Percentage change from `previous` to `value`: `100 (value - previous) /
/// |previous|`.
///
/// `None` when `previous` is zero (there is no meaningful percentage) and
/// when the result would not be finite (a difference or ratio beyond the
/// range of `f64`, e.g. from 1e-300 to 1e300).
pub fn change_percent(previous: f64, value: f64) -> Option<f64> {
    if previous == 0.0 {
        return None;
    }
    let percent = 100.0 * ((value - previous) / previous.abs());
    percent.is_finite().then_some(percent)
}

/// The last value of every metric name, to compute each new sample's
/// change.
///
/// System metrics and derived metrics share one namespace, as they share
/// one metrics table.
// TODO: one entry per distinct metric name is kept forever; cap the count
// (evicting the least recently updated) if producers may invent names.
#[derive(Debug, Clone, Default)]
pub struct ChangeTracker {
    last: BTreeMap<String, f64>,
}

impl ChangeTracker {
    /// Records `value` as the latest sample of `name` and returns its change
    /// against the previous one (`None` for the first sample).
    pub fn record(&mut self, name: &str, value: f64) -> Option<f64> {
        match self.last.get_mut(name) {
            Some(last) => {
                let change = change_percent(*last, value);
                *last = value;
                change
            }
            None => {
                self.last.insert(name.to_owned(), value);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_percent_follows_the_sign_of_the_move() {
        let cases = [
            (50.0, 75.0, Some(50.0)),
            (80.0, 60.0, Some(-25.0)),
            (-50.0, -25.0, Some(50.0)),
            (-50.0, -100.0, Some(-100.0)),
            (-10.0, 10.0, Some(200.0)),
            (0.0, 5.0, None),
            (-0.0, 5.0, None),
            (42.0, 42.0, Some(0.0)),
            (1e-300, 1e300, None),
            (-f64::MAX, f64::MAX, None),
        ];
        for (previous, value, expected) in cases {
            assert_eq!(
                change_percent(previous, value),
                expected,
                "{previous} -> {value}"
            );
        }
    }

    #[test]
    fn tracker_compares_with_the_previous_sample_of_the_same_name() {
        let mut tracker = ChangeTracker::default();
        let steps = [
            ("cpu", 10.0, None),
            ("mem", 0.0, None),
            ("cpu", 15.0, Some(50.0)),
            ("mem", 3.0, None),
            ("mem", 6.0, Some(100.0)),
            ("cpu", 12.0, Some(-20.0)),
        ];
        for (name, value, expected) in steps {
            assert_eq!(tracker.record(name, value), expected, "{name} {value}");
        }
    }
}
