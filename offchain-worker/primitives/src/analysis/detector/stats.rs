//! Rolling building blocks shared by the detectors. Every update is a few
//! IEEE basic operations; nothing allocates after construction.

/// A fixed-capacity ring of the latest samples.
#[derive(Debug, Clone)]
pub struct Ring {
    values: Vec<f64>,
    next: usize,
    len: usize,
}

impl Ring {
    /// An empty ring keeping at most `capacity` (at least 1) samples.
    pub fn new(capacity: usize) -> Self {
        Self { values: vec![0.0; capacity.max(1)], next: 0, len: 0 }
    }

    /// Samples held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no sample is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the ring holds `capacity` samples.
    pub fn is_full(&self) -> bool {
        self.len == self.values.len()
    }

    /// Adds a sample, dropping the oldest when full; returns the dropped one.
    pub fn push(&mut self, value: f64) -> Option<f64> {
        let dropped = self.is_full().then(|| self.values[self.next]);
        self.values[self.next] = value;
        self.next += 1;
        if self.next == self.values.len() {
            self.next = 0;
        }
        self.len = (self.len + 1).min(self.values.len());
        dropped
    }

    /// The sample `lag` pushes ago (0 is the newest), if held.
    pub fn lag(&self, lag: usize) -> Option<f64> {
        (lag < self.len).then(|| {
            // `next + cap - 1 - lag` is below `2 * cap` as `lag < len <= cap`.
            let cap = self.values.len();
            let at = self.next + cap - 1 - lag;
            self.values[if at >= cap { at - cap } else { at }]
        })
    }

    /// The sum of the latest `count` samples (fewer if fewer are held),
    /// added to 0 newest first (lag 0, 1, ...).
    pub fn sum_newest(&self, count: usize) -> f64 {
        let (recent, older) = self.values.split_at(self.next);
        let older = if self.is_full() { older } else { &[] };
        let from_recent = count.min(recent.len());
        let mut sum = 0.0;
        for &x in recent[recent.len() - from_recent..].iter().rev() {
            sum += x;
        }
        let from_older = (count - from_recent).min(older.len());
        for &x in older[older.len() - from_older..].iter().rev() {
            sum += x;
        }
        sum
    }

    /// The sum of the held samples added to 0 oldest first.
    pub fn sum_oldest_first(&self) -> f64 {
        let (recent, older) = self.values.split_at(self.next);
        let older = if self.is_full() { older } else { &[] };
        let mut sum = 0.0;
        for &x in older.iter().chain(recent) {
            sum += x;
        }
        sum
    }

    /// The held samples in storage order (not time order).
    pub fn as_slice(&self) -> &[f64] {
        &self.values[..self.len]
    }

    /// Empties the ring.
    pub fn clear(&mut self) {
        self.next = 0;
        self.len = 0;
    }
}

/// Median and robust scale of a rolling window.
#[derive(Debug, Clone)]
pub struct RollingMedian {
    ring: Ring,
    scratch: Vec<f64>,
}

/// Turns a MAD into a standard deviation, for normal data.
const MAD_TO_SIGMA: f64 = 1.4826;
/// Turns a mean absolute deviation into a standard deviation.
const MEAN_AD_TO_SIGMA: f64 = 1.2533;

impl RollingMedian {
    /// An empty window of `capacity` samples.
    pub fn new(capacity: usize) -> Self {
        Self { ring: Ring::new(capacity), scratch: Vec::with_capacity(capacity) }
    }

    /// The window.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Adds a sample.
    pub fn push(&mut self, value: f64) {
        self.ring.push(value);
    }

    /// Median and scale (1.4826 MAD, or 1.2533 times the mean absolute
    /// deviation when the MAD is zero) of a non-empty window.
    pub fn median_scale(&mut self) -> (f64, f64) {
        self.scratch.clear();
        self.scratch.extend_from_slice(self.ring.as_slice());
        let median = median_in_place(&mut self.scratch);
        let mut sum = 0.0;
        for x in &mut self.scratch {
            *x = (*x - median).abs();
            sum += *x;
        }
        let mad = median_in_place(&mut self.scratch);
        if mad > 0.0 {
            (median, MAD_TO_SIGMA * mad)
        } else {
            (median, MEAN_AD_TO_SIGMA * sum / self.scratch.len() as f64)
        }
    }
}

/// Median of a non-empty slice, reordering it; an order statistic or the
/// midpoint of two, so it does not depend on how selection permutes.
pub fn median_in_place(xs: &mut [f64]) -> f64 {
    let n = xs.len();
    let (lower, upper, _) = xs.select_nth_unstable_by(n / 2, f64::total_cmp);
    if n % 2 == 1 {
        return *upper;
    }
    let below = lower.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    below.midpoint(*upper)
}

/// Holt's linear exponential smoothing: a level and a trend per sample.
#[derive(Debug, Clone, Copy)]
pub struct Holt {
    /// Smoothing of the level, in (0, 1].
    pub alpha: f64,
    /// Smoothing of the trend, in [0, 1].
    pub beta: f64,
    level: f64,
    trend: f64,
    seen: u64,
}

impl Holt {
    /// A model that has seen nothing.
    pub fn new(alpha: f64, beta: f64) -> Self {
        Self { alpha, beta, level: 0.0, trend: 0.0, seen: 0 }
    }

    /// The forecast `steps` samples ahead; `None` before two samples.
    pub fn forecast(&self, steps: f64) -> Option<f64> {
        (self.seen >= 2).then_some(self.level + steps * self.trend)
    }

    /// Learns the next sample.
    pub fn update(&mut self, value: f64) {
        match self.seen {
            0 => self.level = value,
            1 => {
                self.trend = value - self.level;
                self.level = value;
            }
            _ => {
                let previous = self.level;
                let predicted = self.level + self.trend;
                self.level = predicted + self.alpha * (value - predicted);
                let slope = self.level - previous;
                self.trend += self.beta * (slope - self.trend);
            }
        }
        self.seen = self.seen.saturating_add(1);
    }
}

/// An exponentially weighted mean.
#[derive(Debug, Clone, Copy)]
pub struct Ewm {
    /// Weight of the newest sample, in (0, 1].
    pub alpha: f64,
    mean: Option<f64>,
}

impl Ewm {
    /// A mean that has seen nothing.
    pub fn new(alpha: f64) -> Self {
        Self { alpha, mean: None }
    }

    /// The mean so far.
    pub fn mean(&self) -> Option<f64> {
        self.mean
    }

    /// Learns the next sample.
    pub fn update(&mut self, value: f64) {
        let mean = self.mean.map_or(value, |m| m + self.alpha * (value - m));
        self.mean = Some(mean);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_latest_samples() {
        let mut ring = Ring::new(3);
        let dropped: Vec<_> = (1..=5).map(|i| ring.push(f64::from(i))).collect();
        assert_eq!(dropped, [None, None, None, Some(1.0), Some(2.0)]);
        let lags: Vec<_> = (0..4).map(|l| ring.lag(l)).collect();
        assert_eq!(lags, [Some(5.0), Some(4.0), Some(3.0), None]);
        assert_eq!(ring.as_slice().len(), 3);
    }

    #[test]
    fn sums_add_in_time_order_as_the_lags_give_them() {
        let mut noise = crate::analysis::testkit::Noise::new(21);
        for capacity in [1, 2, 3, 5, 16, 48] {
            let mut ring = Ring::new(capacity);
            for i in 0..200 {
                for count in 0..=capacity + 1 {
                    let newest_first =
                        (0..count).map_while(|l| ring.lag(l)).fold(0.0, |s, x| s + x);
                    let got = ring.sum_newest(count);
                    let at = format!("capacity {capacity}, {i} pushed, {count}");
                    assert_eq!(got.to_bits(), newest_first.to_bits(), "{at}");
                }
                let oldest_first = (0..ring.len())
                    .rev()
                    .map_while(|l| ring.lag(l))
                    .fold(0.0, |s, x| s + x);
                let got = ring.sum_oldest_first();
                assert_eq!(got.to_bits(), oldest_first.to_bits(), "{capacity}, {i}");
                ring.push(noise.normal() * 10f64.powi(noise.below(40) as i32 - 20));
            }
        }
    }

    #[test]
    fn median_scale_of_small_windows() {
        // (window, median, scale)
        let cases: [(&[f64], f64, f64); 4] = [
            (&[3.0], 3.0, 0.0),
            (&[1.0, 2.0, 3.0, 10.0], 2.5, MAD_TO_SIGMA),
            (&[5.0, 5.0, 5.0, 9.0], 5.0, MEAN_AD_TO_SIGMA),
            (&[2.0, 4.0], 3.0, MAD_TO_SIGMA),
        ];
        for (values, median, scale) in cases {
            let mut window = RollingMedian::new(values.len());
            values.iter().for_each(|&v| window.push(v));
            assert_eq!(window.median_scale(), (median, scale), "{values:?}");
        }
    }

    #[test]
    fn holt_follows_a_straight_line_exactly() {
        let mut holt = Holt::new(0.5, 0.1);
        assert_eq!(holt.forecast(1.0), None);
        for i in 0..20 {
            holt.update(3.0 + 2.0 * f64::from(i));
        }
        assert_eq!(holt.forecast(1.0), Some(43.0));
        assert_eq!(holt.forecast(5.0), Some(51.0));
    }
}
