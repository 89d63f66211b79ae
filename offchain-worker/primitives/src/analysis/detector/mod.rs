//! Streaming anomaly detectors for one series of samples.
//!
//! A [`Detector`] sees the samples of one series in arrival order and
//! gives each an anomaly score in [0, 1] from the past alone. Detectors
//! use only IEEE basic operations and `sqrt`, so their scores are the same
//! bit for bit on every platform.
//!
//! Named detectors ([`NAMES`], built by [`by_name`]):
//! - `ensemble` (the default, the best on NAB): `combo-mute` with a third `knn-rel` picture on blocks of
//!   48 samples (slow changes of shape, such as a missing daily rise;
//!   remembered every 8 samples, 256 of them, searched every 4 samples
//!   (the scores between repeat the last), and alarming only on a
//!   novelty of at least its scale) and
//!   a [`burst`] detector relative to its own record, never alarming below
//!   5 times the series' typical activity, all muted together for 100
//!   samples after each alarm;
//! - `combo`: the larger of two `knn-rel` detectors, one on blocks of 4
//!   samples and one on blocks of 16 (the default of earlier versions:
//!   insights stamped with its configuration replay with it);
//! - `combo-mute`: `combo` whose output is muted for 100 samples after
//!   each alarm of either half, so one episode raises one alarm;
//! - `knn-rel`: [`knn`] novelty post-processed by [`relative`];
//! - `knn`, `record`, `robust`: the building blocks alone.
//!
//! Layout:
//! - [`burst`]: recent activity (mean absolute difference) against the
//!   series' typical activity;
//! - [`robust`]: the rolling median/MAD detector of the baseline analyser,
//!   scored on its alarms;
//! - [`stats`]: rolling building blocks (windowed median, exponential
//!   moments, Holt smoothing);
//! - [`knn`]: novelty of the recent shape against remembered shapes;
//! - [`record`]: robust deviations of values, differences and forecast
//!   residuals, scored by how far they beat their own past record;
//! - [`relative`]: a score relative to the series' own decaying record,
//!   muted for a while after each alarm;
//! - [`mute`]: any detector muted for a while after each alarm.

pub mod burst;
pub mod knn;
pub mod mute;
pub mod record;
pub mod relative;
pub mod robust;
pub mod stats;

/// A streaming anomaly detector for one series.
pub trait Detector: Send + Sync {
    /// Scores the next sample, then learns from it. The score is in
    /// [0, 1]; higher is more anomalous. Non-finite values score 0 and are
    /// not learned.
    fn score(&mut self, timestamp_ms: i64, value: f64) -> f64;
}

impl<D: Detector + ?Sized> Detector for Box<D> {
    fn score(&mut self, timestamp_ms: i64, value: f64) -> f64 {
        (**self).score(timestamp_ms, value)
    }
}

/// Names accepted by [`by_name`], the default first.
pub const NAMES: [&str; 7] =
    ["ensemble", "combo", "combo-mute", "knn-rel", "knn", "record", "robust"];

/// A fresh detector from a specification: a name from [`NAMES`],
/// optionally followed by `@key=value,...` overrides of its numeric
/// settings (`knn@blocks=6,scale=0.1`). `None` for a specification that
/// [`parse`] refuses.
pub fn by_name(spec: &str) -> Option<Box<dyn Detector>> {
    parse(spec).ok()
}

/// Most blocks per picture an override may set.
const MAX_BLOCKS: usize = 64;
/// Most pictures remembered an override may set.
const MAX_MEMORY: usize = 65_536;
/// The largest other count (samples per block, stride, hold, ...) an
/// override may set.
const MAX_COUNT: usize = 4_096;

/// [`by_name`], or why the specification is refused: an unknown name or
/// key, a value that is not a number, a count that is not a whole number
/// within its limit, or a setting that is not finite.
pub fn parse(spec: &str) -> Result<Box<dyn Detector>, String> {
    let (name, overrides) = spec.split_once('@').unwrap_or((spec, ""));
    let mut settings = Settings::default();
    for pair in overrides.split(',').filter(|p| !p.trim().is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(format!("override `{}` is not `key=value`", pair.trim()));
        };
        let (key, value) = (key.trim(), value.trim());
        let number: f64 = value
            .parse()
            .map_err(|_| format!("override `{key}`: `{value}` is not a number"))?;
        settings.set(key, number)?;
    }
    settings
        .build(name)
        .ok_or_else(|| format!("unknown detector `{name}`; known: {}", NAMES.join(", ")))
}

/// Decay per sample of the record of `knn-rel` and `combo`.
const DECAY: f64 = 0.9995;
/// Least record (a strength) of `knn-rel` and `combo`.
const FLOOR: f64 = 0.1;
/// Samples muted after an alarm of `knn-rel` and `combo`.
const HOLD: usize = 300;
/// Samples muted after an alarm of `combo-mute` as a whole.
const MUTE: usize = 100;
/// Samples per block of the coarse picture of `combo`.
const COARSE_BLOCK: usize = 16;
/// Samples per block of the third picture of `ensemble`.
const ENSEMBLE_THIRD: usize = 48;
/// The third picture of `ensemble` is remembered every this many samples:
/// a picture of 240 samples barely changes from one sample to the next.
const ENSEMBLE_THIRD_STRIDE: usize = 8;
/// The third picture of `ensemble` is searched every this many samples.
const ENSEMBLE_THIRD_EVERY: usize = 4;
/// Pictures of the third kind `ensemble` remembers (2048 samples' worth).
const ENSEMBLE_THIRD_MEMORY: usize = 256;
/// Least record of the third picture of `ensemble`: it never alarms on a
/// novelty below its `scale`, where its plain score is one half.
const ENSEMBLE_THIRD_FLOOR: f64 = 1.0;
/// Least record (a strength, in units of the typical activity) of the
/// burst part of `ensemble`: it never alarms on less than this.
const BURST_FLOOR: f64 = 5.0;

/// The tunable numbers of the named detectors.
#[derive(Debug, Clone, Copy, Default)]
struct Settings {
    knn: knn::KnnConfig,
    decay: Option<f64>,
    floor: Option<f64>,
    smooth: Option<usize>,
    hold: Option<usize>,
    /// Samples per block of the second, coarser picture of `combo`.
    coarse: Option<usize>,
    /// Samples per block of a third picture of `combo-mute` (0: none).
    third: Option<usize>,
    /// Samples muted after an alarm of `combo-mute` as a whole.
    mute: Option<usize>,
    /// Stride of the third picture of `ensemble`.
    third_stride: Option<usize>,
    /// How often the third picture of `ensemble` is searched.
    third_every: Option<usize>,
    /// Memory of the third picture of `ensemble`.
    third_memory: Option<usize>,
    /// Least record of the third picture of `ensemble`.
    third_floor: Option<f64>,
    /// Settings of the burst part of `ensemble`.
    burst: burst::BurstConfig,
    /// Least record of the burst part of `ensemble`.
    burst_floor: Option<f64>,
}

impl Settings {
    fn set(&mut self, key: &str, value: f64) -> Result<(), String> {
        if !value.is_finite() {
            return Err(format!("override `{key}`: must be finite"));
        }
        let limit = match key {
            "blocks" => MAX_BLOCKS,
            "memory" | "third_memory" => MAX_MEMORY,
            _ => MAX_COUNT,
        };
        let count = value as usize;
        let whole = value >= 0.0 && value.fract() == 0.0 && count <= limit;
        let count = || {
            whole.then_some(count).ok_or_else(|| {
                format!("override `{key}`: must be a whole number from 0 to {limit}")
            })
        };
        match key {
            "blocks" => self.knn.blocks = count()?,
            "block" => self.knn.block = count()?,
            "memory" => self.knn.memory = count()?,
            "stride" => self.knn.stride = count()?,
            "every" => self.knn.every = count()?,
            "warm_up" => self.knn.warm_up = count()?,
            "scale" => self.knn.scale = value,
            "decay" => self.decay = Some(value),
            "floor" => self.floor = Some(value),
            "smooth" => self.smooth = Some(count()?),
            "hold" => self.hold = Some(count()?),
            "coarse" => self.coarse = Some(count()?),
            "third" => self.third = Some(count()?),
            "mute" => self.mute = Some(count()?),
            "third_stride" => self.third_stride = Some(count()?),
            "third_every" => self.third_every = Some(count()?),
            "third_memory" => self.third_memory = Some(count()?),
            "third_floor" => self.third_floor = Some(value),
            "burst_window" => self.burst.window = count()?,
            "burst_alpha" => self.burst.alpha = value,
            "burst_floor" => self.burst_floor = Some(value),
            _ => return Err(format!("unknown setting `{key}` in an override")),
        }
        Ok(())
    }

    fn build(self, name: &str) -> Option<Box<dyn Detector>> {
        let decay = self.decay.unwrap_or(DECAY);
        let floor = self.floor.unwrap_or(FLOOR);
        match name {
            "knn-rel" => {
                let knn = knn::KnnDetector::new(self.knn);
                let smooth = self.smooth.unwrap_or(1);
                let hold = self.hold.unwrap_or(HOLD);
                Some(Box::new(relative::Relative::new(knn, decay, floor, smooth, hold)))
            }
            "knn" => Some(Box::new(knn::KnnDetector::new(self.knn))),
            "combo" => {
                let fine = self.build("knn-rel")?;
                let mut coarse = self;
                coarse.knn.block = self.coarse.unwrap_or(COARSE_BLOCK);
                Some(Box::new(Max(fine, coarse.build("knn-rel")?)))
            }
            "combo-mute" => {
                let mut both = self.build("combo")?;
                if let Some(block) = self.third.filter(|&b| b > 0) {
                    let mut third = self;
                    third.knn.block = block;
                    both = Box::new(Max(both, third.build("knn-rel")?));
                }
                let mute = self.mute.unwrap_or(MUTE);
                Some(Box::new(mute::Mute::new(both, mute)))
            }
            "ensemble" => {
                let mut third = self;
                third.knn.block = self.third.unwrap_or(ENSEMBLE_THIRD);
                third.knn.stride = self.third_stride.unwrap_or(ENSEMBLE_THIRD_STRIDE);
                third.knn.memory = self.third_memory.unwrap_or(ENSEMBLE_THIRD_MEMORY);
                third.knn.every = self.third_every.unwrap_or(ENSEMBLE_THIRD_EVERY);
                third.floor = Some(self.third_floor.unwrap_or(ENSEMBLE_THIRD_FLOOR));
                let shapes = Max(self.build("combo")?, third.build("knn-rel")?);
                let burst = burst::BurstDetector::new(self.burst);
                let floor = self.burst_floor.unwrap_or(BURST_FLOOR);
                let hold = self.hold.unwrap_or(HOLD);
                let burst = relative::Relative::new(burst, decay, floor, 1, hold);
                let both = Max(Box::new(shapes), Box::new(burst));
                Some(Box::new(mute::Mute::new(both, self.mute.unwrap_or(MUTE))))
            }
            "record" => Some(Box::new(record::RecordDetector::default())),
            "robust" => Some(Box::new(robust::RobustScorer::default())),
            _ => None,
        }
    }
}

/// The larger score of two detectors.
struct Max(Box<dyn Detector>, Box<dyn Detector>);

impl Detector for Max {
    fn score(&mut self, timestamp_ms: i64, value: f64) -> f64 {
        let a = self.0.score(timestamp_ms, value);
        a.max(self.1.score(timestamp_ms, value))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::testkit::Noise;

    fn scores(spec: &str, values: &[f64]) -> Vec<f64> {
        let mut detector = by_name(spec).unwrap();
        let times = (0..).map(|i| i * 60_000);
        times.zip(values).map(|(t, &v)| detector.score(t, v)).collect()
    }

    fn noisy(len: usize, seed: u64) -> Vec<f64> {
        let mut noise = Noise::new(seed);
        (0..len).map(|_| 50.0 + noise.normal()).collect()
    }

    #[test]
    fn names_and_overrides_are_checked() {
        // (spec, accepted)
        let cases = [
            ("knn", true),
            ("knn@blocks=4,scale=0.1", true),
            ("knn-rel@decay=0.999", true),
            ("knn@colour=3", false),
            ("knn@blocks=x", false),
            ("knn@blocks", false),
            ("knn@blocks=2.5", false),
            ("knn@blocks=-1", false),
            ("knn@blocks=65", false),
            ("knn@memory=65536", true),
            ("knn@memory=1e12", false),
            ("knn@scale=inf", false),
            ("knn@scale=NaN", false),
            ("ensemble@third_every=4096", true),
            ("ensemble@third_every=4097", false),
            ("nope", false),
        ];
        for (spec, accepted) in cases {
            assert_eq!(by_name(spec).is_some(), accepted, "{spec}");
        }
        assert!(NAMES.iter().all(|name| by_name(name).is_some()));
    }

    #[test]
    fn refusals_say_why() {
        let cases = [
            ("nope", "unknown detector `nope`; known: ensemble, combo"),
            ("knn@colour=3", "unknown setting `colour`"),
            ("knn@blocks=x", "override `blocks`: `x` is not a number"),
            ("knn@blocks", "override `blocks` is not `key=value`"),
            ("knn@memory=1e12", "`memory`: must be a whole number from 0 to 65536"),
            ("knn@scale=inf", "override `scale`: must be finite"),
        ];
        for (spec, reason) in cases {
            let refused = parse(spec).err().unwrap_or_default();
            assert!(refused.contains(reason), "{spec}: {refused}");
        }
    }

    #[test]
    fn scores_are_in_range_for_any_input() {
        let mut series = noisy(600, 1);
        series.extend([f64::NAN, f64::INFINITY, 1e300, -f64::MAX, 5e-324, 0.0]);
        series.extend(noisy(100, 2).iter().map(|x| x * 1e-300));
        series.extend([f64::MAX; 50]);
        for name in NAMES {
            let all = scores(name, &series);
            assert!(all.iter().all(|s| (0.0..=1.0).contains(s)), "{name}: {all:?}");
            assert_eq!(all[600], 0.0, "{name}: NaN scores 0");
        }
    }

    #[test]
    fn a_flat_line_never_scores() {
        for level in [0.0, 7.5, -1e300, 1e-300] {
            for name in NAMES {
                let all = scores(name, &[level; 1000]);
                assert!(all.iter().all(|&s| s == 0.0), "{name} at {level}");
            }
        }
    }

    #[test]
    fn a_jump_scores_above_everything_before_it() {
        // (detector, jump size in noise deviations)
        let cases = [
            ("ensemble", 10.0),
            ("knn-rel", 10.0),
            ("knn", 10.0),
            ("record", 10.0),
            ("robust", 10.0),
        ];
        for (name, jump) in cases {
            let mut series = noisy(1500, 3);
            series[1000..].iter_mut().for_each(|x| *x += jump);
            let all = scores(name, &series);
            let before = all[300..1000].iter().copied().fold(0.0, f64::max);
            let at = all[1000..1010].iter().copied().fold(0.0, f64::max);
            assert!(at > before, "{name}: {at} <= {before}");
        }
    }

    /// A fingerprint of every score's bits, in order.
    fn fingerprint(scores: &[f64]) -> u64 {
        scores.iter().fold(0xcbf2_9ce4_8422_2325, |hash, score| {
            (hash ^ score.to_bits()).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }

    /// Long series of many shapes and magnitudes, joined.
    fn mixed_series() -> Vec<f64> {
        let mut noise = Noise::new(17);
        let mut series = Vec::new();
        for i in 0..6_000 {
            let phase = f64::from(i % 288) / 288.0;
            let spike = if i % 1_000 == 999 { 5.0 } else { 0.0 };
            series.push(50.0 + 40.0 * phase * (1.0 - phase) + noise.uniform() + spike);
        }
        series.extend((0..3_000).map(|i| f64::from(i / 400 % 3) + 1e-3 * noise.normal()));
        series.extend((0..3_000).map(|_| noise.normal() * 1e300));
        series.extend((0..3_000).map(|i| f64::from(i % 60).sqrt() * 1e-300));
        series.extend((0..3_000).map(|i| match i % 13 {
            0 => f64::NAN,
            5 => f64::INFINITY,
            _ => 1e9 + noise.normal(),
        }));
        series.extend((0..1_000).map(|i| [f64::MAX, -f64::MAX, 0.0][i % 3]));
        series.extend(noisy(3_000, 5));
        series
    }

    /// Fingerprints of every named detector's scores on [`mixed_series`],
    /// pinned: the engine replays its insights from these scores.
    const PINNED: [(&str, u64); 7] = [
        ("ensemble", 0x87e8_5329_8878_78bc),
        ("combo", 0xcff5_7f22_d5f2_a1df),
        ("combo-mute", 0xd152_a585_0d42_0ad5),
        ("knn-rel", 0xde8d_8e2e_a3bd_cc25),
        ("knn", 0x75e2_52d9_03cf_e362),
        ("record", 0x6717_a16c_ebe3_d08e),
        ("robust", 0x521f_2017_0b37_72d1),
    ];

    #[test]
    fn scores_are_pinned_bit_for_bit() {
        let series = mixed_series();
        for (name, pinned) in PINNED {
            let print = fingerprint(&scores(name, &series));
            assert_eq!(print, pinned, "{name}: {print:#018x}");
        }
    }

    #[test]
    fn the_ensemble_alarms_once_on_a_swinging_stretch() {
        // Noise, then 40 samples swinging by this many noise deviations
        // about the same level, then noise again.
        // (detector, swing, whether it alarms in the stretch)
        let cases = [("ensemble", 12.0, true), ("ensemble", 2.0, false)];
        for (name, swing, alarms) in cases {
            let mut series = noisy(3000, 4);
            for (i, x) in series[2000..2040].iter_mut().enumerate() {
                *x += if i % 2 == 0 { swing } else { -swing };
            }
            let all = scores(name, &series);
            let alarm_rows: Vec<usize> =
                (2000..2100).filter(|&row| all[row] > 0.5).collect();
            let expected = usize::from(alarms);
            assert_eq!(alarm_rows.len(), expected, "{name} {swing}: {alarm_rows:?}");
        }
    }

    #[test]
    fn the_same_series_gives_the_same_scores_bit_for_bit() {
        let mut series = noisy(3000, 9);
        series[2000] += 30.0;
        for name in NAMES {
            let bits = |s: Vec<f64>| s.into_iter().map(f64::to_bits).collect::<Vec<_>>();
            assert_eq!(
                bits(scores(name, &series)),
                bits(scores(name, &series)),
                "{name}"
            );
        }
    }
}
