//! Least-squares slope of a rolling window, updated in O(1) per sample,
//! with its t statistic.
//!
//! The window holds the latest samples at positions 0 (oldest) to n - 1.
//! The sums behind the fit are kept on `(y - reference) * scale`, where
//! `reference` is a recent sample and `scale` a power of two bringing the
//! deviations near 1: centring keeps the residual sum accurate for a
//! series far from zero, and an exact power-of-two scale keeps huge and
//! tiny magnitudes inside the double range without rounding. The sums are
//! recomputed from the window once every `capacity` samples, at every
//! power of two while the window fills, and whenever they stop being
//! finite or a sample falls far outside the scale, so rounding cannot
//! build up. That costs O(capacity) once per `capacity` samples: O(1) per
//! sample on average.

use ndarray::{Array1, Zip};

/// |t| reported for a perfect line (no residual at all).
pub const T_CAP: f64 = 1e9;

/// A fitted slope: units of the series per sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    /// Samples in the window.
    pub n: usize,
    /// Slope per sample.
    pub slope: f64,
    /// t statistic of the slope (capped at [`T_CAP`] in magnitude).
    pub t: f64,
    /// Share of the variance the line explains, `t² / (t² + n - 2)`.
    pub r2: f64,
    /// Mean of the window.
    pub mean: f64,
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct TrendWindow {
    values: Array1<f64>,
    /// Slot of the oldest sample.
    start: usize,
    len: usize,
    since_resync: usize,
    reference: f64,
    scale: f64,
    sum_y: f64,
    sum_xy: f64,
    sum_yy: f64,
}

impl TrendWindow {
    /// An empty window of `capacity` (at least 3) samples.
    pub fn new(capacity: usize) -> Self {
        Self {
            values: Array1::zeros(capacity.max(3)),
            start: 0,
            len: 0,
            since_resync: 0,
            reference: 0.0,
            scale: 1.0,
            sum_y: 0.0,
            sum_xy: 0.0,
            sum_yy: 0.0,
        }
    }

    /// Samples held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no sample is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Empties the window.
    pub fn clear(&mut self) {
        self.start = 0;
        self.len = 0;
        self.since_resync = 0;
        self.reference = 0.0;
        self.scale = 1.0;
        (self.sum_y, self.sum_xy, self.sum_yy) = (0.0, 0.0, 0.0);
    }

    /// Adds a finite sample, dropping the oldest when full.
    pub fn push(&mut self, value: f64) {
        let cap = self.values.len();
        let y = (value - self.reference) * self.scale;
        if self.len == cap {
            let old = (self.values[self.start] - self.reference) * self.scale;
            self.values[self.start] = value;
            self.start = (self.start + 1) % cap;
            // Every remaining position moves down by one.
            self.sum_xy -= self.sum_y - old;
            self.sum_y += y - old;
            self.sum_xy += (cap - 1) as f64 * y;
            self.sum_yy += y * y - old * old;
        } else {
            self.values[(self.start + self.len) % cap] = value;
            self.sum_xy += self.len as f64 * y;
            self.sum_y += y;
            self.sum_yy += y * y;
            self.len += 1;
        }
        self.since_resync += 1;
        let finite = self.sum_xy.is_finite() && self.sum_yy.is_finite();
        // During warm-up the window is refitted at every power of two, so
        // the reference and scale settle early.
        let warming = self.len < cap && self.len.is_power_of_two();
        if warming || self.since_resync >= cap || !finite || y.abs() > 1e100 {
            self.resync();
        }
    }

    /// The samples in time order, oldest first.
    pub fn ordered(&self) -> impl Iterator<Item = f64> + '_ {
        let cap = self.values.len();
        (0..self.len).map(move |i| self.values[(self.start + i) % cap])
    }

    /// The fit over the window; `None` below three samples or when the
    /// figures are not finite.
    pub fn fit(&self) -> Option<Fit> {
        let n = self.len;
        if n < 3 {
            return None;
        }
        let nf = n as f64;
        let sum_x = nf * (nf - 1.0) / 2.0;
        let sxx = nf * (nf * nf - 1.0) / 12.0;
        let sxy = self.sum_xy - sum_x * self.sum_y / nf;
        let syy = self.sum_yy - self.sum_y * self.sum_y / nf;

        let slope = sxy / sxx;
        let sse = (syy - slope * sxy).max(0.0);
        let se = (sse / (nf - 2.0) / sxx).sqrt();
        let t = if slope == 0.0 {
            0.0
        } else if se > 0.0 {
            (slope / se).clamp(-T_CAP, T_CAP)
        } else {
            T_CAP.copysign(slope)
        };
        let fit = Fit {
            n,
            slope: slope / self.scale,
            t,
            r2: t * t / (t * t + nf - 2.0),
            mean: self.sum_y / nf / self.scale + self.reference,
        };
        let finite = [fit.slope, fit.t, fit.r2, fit.mean].iter().all(|x| x.is_finite());
        finite.then_some(fit)
    }

    /// Recomputes the sums from the window with a fresh reference and
    /// scale.
    fn resync(&mut self) {
        self.since_resync = 0;
        let ordered: Array1<f64> = self.ordered().collect();
        self.reference = ordered.last().copied().unwrap_or(0.0);
        let reference = self.reference;
        let spread = ordered.iter().fold(0.0_f64, |m, &v| m.max((v - reference).abs()));
        self.scale = power_of_two_scale(spread);

        let scale = self.scale;
        let ys = ordered.mapv(|v| (v - reference) * scale);
        let xs = Array1::from_iter((0..ys.len()).map(|i| i as f64));
        self.sum_y = ys.sum();
        self.sum_yy = ys.dot(&ys);
        let mut sum_xy = 0.0;
        Zip::from(&xs).and(&ys).for_each(|&x, &y| sum_xy += x * y);
        self.sum_xy = sum_xy;
    }
}

/// A power of two `s` with `spread * s` in [0.5, 1) (1 for zero or
/// non-finite spreads, clamped to the normal range).
fn power_of_two_scale(spread: f64) -> f64 {
    if spread == 0.0 || !spread.is_finite() {
        return 1.0;
    }
    let exponent = ((spread.to_bits() >> 52) & 0x7ff) as i64 - 1022;
    let biased = (1023 - exponent).clamp(1, 2046) as u64;
    f64::from_bits(biased << 52)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window_of(values: &[f64], capacity: usize) -> TrendWindow {
        let mut window = TrendWindow::new(capacity);
        values.iter().for_each(|&v| window.push(v));
        window
    }

    #[test]
    fn power_of_two_scales_bring_the_spread_near_one() {
        for spread in [1.0, 3.0, 1e300, 1e-300, 0.75, 5e-324] {
            let scaled = spread * power_of_two_scale(spread);
            assert!(scaled > 0.0 && scaled < 1.0, "{spread}: {scaled}");
            if spread > 1e-300 {
                assert!(scaled >= 0.5, "{spread}: {scaled}");
            }
        }
        assert_eq!(power_of_two_scale(0.0), 1.0);
    }

    #[test]
    fn the_fit_matches_a_direct_computation() {
        // (series, capacity, slope): exact lines, sliding included.
        let line: Vec<f64> = (0..1000).map(|i| 5.0 + 0.25 * f64::from(i)).collect();
        let huge: Vec<f64> = (0..300).map(|i| 1e300 - 1e297 * f64::from(i)).collect();
        let tiny: Vec<f64> = (0..300).map(|i| 1e-300 * f64::from(i)).collect();
        let cases: [(&[f64], usize, f64); 4] = [
            (&line[..10], 64, 0.25),
            (&line, 64, 0.25),
            (&huge, 128, -1e297),
            (&tiny, 128, 1e-300),
        ];
        for (values, capacity, slope) in cases {
            let fit = window_of(values, capacity).fit().unwrap();
            assert!(((fit.slope - slope) / slope).abs() < 1e-9, "{fit:?}");
            assert!(fit.t.abs() > 1e6 && fit.r2 > 0.999, "{fit:?}");
        }
    }

    #[test]
    fn flat_and_tiny_inputs_give_no_slope() {
        // (series): none may show a slope.
        let cases: [Vec<f64>; 4] = [
            vec![7.5; 500],
            vec![0.0; 500],
            vec![-1e300; 500],
            (0..500).map(|i| if i % 2 == 0 { 1.0 } else { -1.0 }).collect(),
        ];
        for values in cases {
            let fit = window_of(&values, 64).fit().unwrap();
            assert!(fit.t.abs() < 1.0, "{values:?}: {fit:?}");
        }
        assert_eq!(window_of(&[1.0, 2.0], 64).fit(), None);
    }

    #[test]
    fn incremental_sums_agree_with_a_fresh_window() {
        let values: Vec<f64> = (0..5_000)
            .map(|i| 50.0 + f64::from(i % 37) * 0.3 - f64::from(i % 11))
            .collect();
        let rolling = window_of(&values, 256).fit().unwrap();
        let fresh = window_of(&values[values.len() - 256..], 256).fit().unwrap();
        assert!((rolling.slope - fresh.slope).abs() < 1e-9);
        assert!((rolling.t - fresh.t).abs() < 1e-6);
    }
}
