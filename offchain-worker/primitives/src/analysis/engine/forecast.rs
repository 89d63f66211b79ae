//! Holt's linear forecast with a prediction interval, and a record of how
//! often past intervals held the value they predicted.
//!
//! One-step errors feed an exponential mean of their square, σ². The
//! variance `h` steps ahead is σ² (1 + Σ_{j=1}^{h-1} (α (1 + j β))²), the
//! standard result for Holt's method with level smoothing α and trend
//! smoothing β; its factor depends only on the settings and is computed
//! once.

use crate::analysis::detector::stats::{Ewm, Holt};

/// A forecast `horizon` samples ahead.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Forecast {
    /// The predicted value.
    pub value: f64,
    /// Lower end of the interval.
    pub low: f64,
    /// Upper end of the interval.
    pub high: f64,
    /// Standard deviation of the forecast error at the horizon.
    pub sigma: f64,
    /// Trend of the model, per sample.
    pub trend: f64,
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Forecaster {
    alpha: f64,
    beta: f64,
    horizon: usize,
    z: f64,
    factor: f64,
    holt: Holt,
    errors: Ewm,
    /// The interval of the forecast being checked and the sample count at
    /// which its value arrives.
    pending: Option<(u64, f64, f64)>,
    seen: u64,
    /// Forecasts checked, and those whose interval held the value.
    checked: u64,
    held: u64,
}

impl Forecaster {
    /// A model that has seen nothing. `error_alpha` weighs the newest
    /// squared error.
    pub fn new(alpha: f64, beta: f64, horizon: usize, z: f64, error_alpha: f64) -> Self {
        let factor = 1.0
            + (1..horizon)
                .map(|j| {
                    let c = alpha * (1.0 + j as f64 * beta);
                    c * c
                })
                .sum::<f64>();
        Self {
            alpha,
            beta,
            horizon,
            z,
            factor,
            holt: Holt::new(alpha, beta),
            errors: Ewm::new(error_alpha),
            pending: None,
            seen: 0,
            checked: 0,
            held: 0,
        }
    }

    /// Forgets the series (after a gap); the coverage record is kept.
    pub fn reset(&mut self) {
        self.holt = Holt::new(self.alpha, self.beta);
        self.errors = Ewm::new(self.errors.alpha);
        self.pending = None;
    }

    /// Learns the next finite sample.
    pub fn update(&mut self, value: f64) {
        self.seen += 1;
        if let Some((at, low, high)) = self.pending {
            if at == self.seen {
                self.checked += 1;
                self.held += u64::from(low <= value && value <= high);
                self.pending = None;
            }
        }
        if let Some(predicted) = self.holt.forecast(1.0) {
            let error = value - predicted;
            let square = error * error;
            if square.is_finite() {
                self.errors.update(square);
            }
        }
        self.holt.update(value);
        if self.holt.forecast(1.0).is_some_and(|f| !f.is_finite()) {
            self.reset();
        }
    }

    /// The forecast `horizon` samples ahead, remembered for the coverage
    /// record; `None` before the model has errors to size the interval or
    /// when a figure is not finite.
    pub fn forecast(&mut self) -> Option<Forecast> {
        let value = self.holt.forecast(self.horizon as f64)?;
        let one_step = self.holt.forecast(1.0)?;
        let sigma = (self.errors.mean()? * self.factor).sqrt();
        let half = self.z * sigma;
        let forecast = Forecast {
            value,
            low: value - half,
            high: value + half,
            sigma,
            trend: one_step - self.holt.forecast(0.0)?,
        };
        let figures = [forecast.value, forecast.low, forecast.high, forecast.sigma];
        if !figures.iter().chain([&forecast.trend]).all(|x| x.is_finite()) {
            return None;
        }
        if self.pending.is_none() {
            let at = self.seen + self.horizon as u64;
            self.pending = Some((at, forecast.low, forecast.high));
        }
        Some(forecast)
    }

    /// Forecasts checked so far and how many of their intervals held.
    pub fn coverage(&self) -> (u64, u64) {
        (self.checked, self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::testkit::Noise;

    #[test]
    fn a_noisy_line_is_forecast_within_its_interval() {
        let mut model = Forecaster::new(0.3, 0.05, 10, 1.96, 0.02);
        let mut noise = Noise::new(5);
        for i in 0..2_000 {
            model.update(100.0 + 0.5 * f64::from(i) + noise.normal());
            if i % 50 == 0 {
                model.forecast();
            }
        }
        let forecast = model.forecast().unwrap();
        let truth = 100.0 + 0.5 * 2_009.0;
        assert!(forecast.low < truth && truth < forecast.high, "{forecast:?}");
        assert!((forecast.trend - 0.5).abs() < 0.1, "{forecast:?}");
        let (checked, held) = model.coverage();
        assert!(checked >= 30 && held * 10 >= checked * 8, "{checked} {held}");
    }

    #[test]
    fn extreme_inputs_give_finite_forecasts_or_none() {
        // (series): alternating extremes overflow the model, which restarts.
        let cases: [Vec<f64>; 4] = [
            (0..100).map(|i| if i % 2 == 0 { f64::MAX } else { -f64::MAX }).collect(),
            vec![1e-300; 100],
            vec![0.0; 100],
            (0..100).map(|i| 1e300 * f64::from(i % 3)).collect(),
        ];
        for values in cases {
            let mut model = Forecaster::new(0.5, 0.5, 12, 1.96, 0.1);
            for v in values {
                model.update(v);
                if let Some(f) = model.forecast() {
                    let all = [f.value, f.low, f.high, f.sigma, f.trend];
                    assert!(all.iter().all(|x| x.is_finite()), "{f:?}");
                }
            }
        }
    }
}
