//! Novelty of the recent shape of a series.
//!
//! The last `blocks * block` samples are summarised as `blocks` block
//! means: a short, smoothed picture of the recent shape. Each picture is
//! compared with the pictures remembered from earlier (none overlapping
//! it); the distance to the nearest one, as a mean absolute difference in
//! units of the range of values seen so far, says how new the shape is.
//! Shapes a series has shown before, such as a daily cycle, are not new;
//! a jump, a flat stretch or a changed cycle is.

use std::collections::VecDeque;

use super::stats::Ring;
use super::{squash, Detector};

/// Settings of [`KnnDetector`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KnnConfig {
    /// Block means per picture. Default 5.
    pub blocks: usize,
    /// Samples per block. Default 4.
    pub block: usize,
    /// Pictures remembered. Default 1024.
    pub memory: usize,
    /// A picture is remembered every this many samples. Default 2.
    pub stride: usize,
    /// The nearest picture is searched every this many samples; the
    /// samples between repeat the last score. Default 1.
    pub every: usize,
    /// Samples before any score above 0. Default 150.
    pub warm_up: usize,
    /// Distance (in units of the value range) that scores one half.
    /// Default 0.05.
    pub scale: f64,
}

impl Default for KnnConfig {
    fn default() -> Self {
        Self {
            blocks: 5,
            block: 4,
            memory: 1024,
            stride: 2,
            every: 1,
            warm_up: 150,
            scale: 0.05,
        }
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct KnnDetector {
    config: KnnConfig,
    /// Recent samples, enough for one picture.
    recent: Ring,
    /// After each sample from the `block`-th on, the sum of the latest
    /// `block` samples, added newest first: enough for one picture.
    block_sums: Ring,
    /// Pictures waiting until they no longer overlap the current one,
    /// `blocks` numbers each, oldest first.
    pending: VecDeque<f64>,
    /// Remembered pictures, `blocks` numbers each, in a ring.
    memory: Vec<f64>,
    /// The remembered pictures ordered by the sum of their numbers.
    index: SumIndex,
    stored: usize,
    next: usize,
    picture: Vec<f64>,
    min: f64,
    max: f64,
    seen: usize,
    /// The last score given.
    last: f64,
}

impl Default for KnnDetector {
    fn default() -> Self {
        Self::new(KnnConfig::default())
    }
}

impl KnnDetector {
    /// A detector with no history.
    pub fn new(config: KnnConfig) -> Self {
        let config = KnnConfig {
            blocks: config.blocks.max(1),
            block: config.block.max(1),
            memory: config.memory.max(1),
            stride: config.stride.max(1),
            every: config.every.max(1),
            ..config
        };
        Self {
            recent: Ring::new(config.blocks * config.block),
            block_sums: Ring::new((config.blocks - 1) * config.block + 1),
            pending: VecDeque::new(),
            memory: vec![0.0; config.memory * config.blocks],
            index: SumIndex::new(config.memory),
            stored: 0,
            next: 0,
            picture: vec![0.0; config.blocks],
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            seen: 0,
            last: 0.0,
            config,
        }
    }

    /// Records the sum of the latest `block` samples, once there are that
    /// many. Each block of a picture is such a sum from some samples ago,
    /// so a picture costs one block's additions per sample, not `blocks`.
    fn sum_newest_block(&mut self) {
        let block = self.config.block;
        if self.recent.len() >= block {
            let sum = self.recent.sum_newest(block);
            self.block_sums.push(sum);
        }
    }

    /// Fills `picture` with the block means of the recent samples, oldest
    /// block first. Each block's sum starts from 0 and adds its samples
    /// newest first.
    fn draw(&mut self) {
        let (blocks, block) = (self.config.blocks, self.config.block);
        for (b, mean) in self.picture.iter_mut().enumerate() {
            let sum = self.block_sums.lag((blocks - 1 - b) * block).unwrap_or(0.0);
            *mean = sum / block as f64;
        }
    }

    /// Mean absolute difference to the nearest remembered picture.
    ///
    /// The sum of absolute differences of two pictures is at least the
    /// difference of their sums. Pictures are visited outward from this
    /// one's sum, one below and one above in turn, and each side stops at
    /// its first picture whose sum alone exceeds the best distance (with a
    /// margin for rounding in the sums): every picture further out on that
    /// side has a sum further away still. Every distance is computed as a
    /// full scan would compute it and the minimum does not depend on the
    /// order, so the result is the same bit for bit.
    fn nearest(&mut self) -> f64 {
        let (sum, abs) = sums(&self.picture);
        let split = self.index.split_point(sum);
        let mut best = f64::INFINITY;
        let mut visit = |&entry: &u128| {
            let (key, key_abs, slot) = unpack(entry);
            let margin = 1e-12 * (abs + key_abs);
            if (key - sum).abs() - margin > best {
                return false;
            }
            best = best.min(self.distance(slot));
            true
        };
        let (below, above) = self.index.sorted.split_at(split);
        let (mut down, mut up) = (below.iter().rev(), above.iter());
        let (mut down_open, mut up_open) = (true, true);
        while down_open || up_open {
            down_open = down_open && down.next().is_some_and(&mut visit);
            up_open = up_open && up.next().is_some_and(&mut visit);
        }
        best / self.config.blocks as f64
    }

    /// Sum of absolute differences between the picture and the one
    /// remembered in `slot`, added in block order.
    fn distance(&self, slot: usize) -> f64 {
        let blocks = self.config.blocks;
        let stored = &self.memory[slot * blocks..(slot + 1) * blocks];
        stored.iter().zip(&self.picture).fold(0.0, |sum, (a, b)| sum + (a - b).abs())
    }

    fn remember(&mut self) {
        let lag = self.recent.len();
        let blocks = self.config.blocks;
        if self.seen.is_multiple_of(self.config.stride) {
            self.pending.extend(&self.picture);
        }
        // A picture joins the memory once a whole picture has passed.
        if self.pending.len() / blocks * self.config.stride > lag {
            let slot = self.next;
            let place = &mut self.memory[slot * blocks..(slot + 1) * blocks];
            for (to, from) in place.iter_mut().zip(self.pending.drain(..blocks)) {
                *to = from;
            }
            let (sum, abs) = sums(place);
            self.index.replace(slot, sum, abs);
            self.next = (self.next + 1) % self.config.memory;
            self.stored = (self.stored + 1).min(self.config.memory);
        }
    }
}

/// The sum of a picture's numbers and the sum of their magnitudes.
fn sums(picture: &[f64]) -> (f64, f64) {
    picture.iter().fold((0.0, 0.0), |(sum, abs), x| (sum + x, abs + x.abs()))
}

/// Remembered pictures ordered by their sums (in the IEEE total order),
/// then by slot, with each slot's sum and magnitude sum.
///
/// An entry packs the sum's rank in the total order (high 64 bits), the
/// slot (the next 32) and a power of two above the magnitude sum (the
/// exponent, low 32), so entries sort and compare as integers and a search
/// reads all it needs from the entry alone.
///
/// Consecutive searches of one kind (for the current picture's sum, for
/// the entry leaving, for the entry joining) land close together, as the
/// pictures change little from one to the next; each kind of search
/// starts where its last one ended.
#[derive(Debug, Clone)]
struct SumIndex {
    sorted: Vec<u128>,
    by_slot: Vec<Option<(f64, f64)>>,
    /// Where the last search of each kind ended.
    hints: [usize; 3],
}

/// Kinds of search in a [`SumIndex`], by their slot in its `hints`.
const SPLIT: usize = 0;
const LEAVING: usize = 1;
const JOINING: usize = 2;

impl SumIndex {
    fn new(slots: usize) -> Self {
        Self {
            sorted: Vec::with_capacity(slots),
            by_slot: vec![None; slots],
            hints: [0; 3],
        }
    }

    /// Where `entry` is (`Ok`) or would go (`Err`), by a search of `kind`.
    fn find(&mut self, kind: usize, entry: u128) -> Result<usize, usize> {
        let at = partition_near(&self.sorted, self.hints[kind], |&held| held < entry);
        self.hints[kind] = at;
        if self.sorted.get(at) == Some(&entry) {
            Ok(at)
        } else {
            Err(at)
        }
    }

    /// The number of entries with a sum below `sum`.
    fn split_point(&mut self, sum: f64) -> usize {
        let rank = total_rank(sum);
        let below = |&entry: &u128| ((entry >> 64) as u64) < rank;
        let at = partition_near(&self.sorted, self.hints[SPLIT], below);
        self.hints[SPLIT] = at;
        at
    }

    /// Puts `slot`'s new picture in place of its old one. Only the entries
    /// between the old place and the new one move.
    fn replace(&mut self, slot: usize, sum: f64, abs: f64) {
        let entry = pack(sum, abs, slot);
        let old = self.by_slot[slot]
            .and_then(|(old, old_abs)| self.find(LEAVING, pack(old, old_abs, slot)).ok());
        self.by_slot[slot] = Some((sum, abs));
        // The new entry's place among all the others, the old one included.
        match (old, self.find(JOINING, entry)) {
            (None, at) => self.sorted.insert(at.unwrap_or_else(|at| at), entry),
            (Some(from), Ok(_)) => self.sorted[from] = entry,
            (Some(from), Err(to)) if to > from => {
                self.sorted[from..to].rotate_left(1);
                self.sorted[to - 1] = entry;
            }
            (Some(from), Err(to)) => {
                self.sorted[to..=from].rotate_right(1);
                self.sorted[to] = entry;
            }
        }
    }
}

/// The number of leading entries of `sorted` for which `below` holds
/// (those come first), as [`slice::partition_point`] finds it, but
/// searched from `hint` outward: the cost grows with the distance from
/// the hint, not with the length.
fn partition_near(sorted: &[u128], hint: usize, below: impl Fn(&u128) -> bool) -> usize {
    let (mut low, mut high) = (hint.min(sorted.len()), hint.min(sorted.len()));
    // Widen [low, high) until every entry before `low` is below and none
    // from `high` on is.
    let mut step = 1;
    while low > 0 && !below(&sorted[low - 1]) {
        low = low.saturating_sub(step);
        step *= 2;
    }
    step = 1;
    while high < sorted.len() && below(&sorted[high]) {
        high = (high + step).min(sorted.len());
        step *= 2;
    }
    low + sorted[low..high].partition_point(below)
}

/// An index entry: the sum's rank in the total order, then the slot, then
/// the exponent of a power of two above the magnitude sum `abs`.
fn pack(sum: f64, abs: f64, slot: usize) -> u128 {
    let slot = u32::try_from(slot).expect("a memory of fewer than 2^32 pictures");
    // The biased exponent of |abs|, plus one: 2^(e + 1) exceeds every double
    // of exponent e (subnormals included); 2048 stands for infinity and NaN.
    let above = (abs.abs().to_bits() >> 52) + 1;
    (u128::from(total_rank(sum)) << 64) | (u128::from(slot) << 32) | u128::from(above)
}

/// An entry's sum, a bound at or above its magnitude sum, and its slot.
fn unpack(entry: u128) -> (f64, f64, usize) {
    let sum = from_total_rank((entry >> 64) as u64);
    let slot = (entry >> 32) as u32 as usize;
    let above = entry as u32 as u64;
    let bound = if above >= 0x7ff { f64::INFINITY } else { f64::from_bits(above << 52) };
    (sum, bound, slot)
}

/// The position of `x` in the IEEE total order of doubles (the order of
/// [`f64::total_cmp`]) as an unsigned integer: negative numbers have all
/// bits flipped, others only the sign bit.
fn total_rank(x: f64) -> u64 {
    let bits = x.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    }
}

/// The double of a [`total_rank`].
fn from_total_rank(rank: u64) -> f64 {
    f64::from_bits(if rank >> 63 == 1 { rank & !(1 << 63) } else { !rank })
}

impl Detector for KnnDetector {
    fn score(&mut self, _timestamp_ms: i64, value: f64) -> f64 {
        if !value.is_finite() {
            return 0.0;
        }
        self.recent.push(value);
        self.sum_newest_block();
        self.seen += 1;
        if !self.recent.is_full() {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
            return 0.0;
        }
        self.draw();

        let range = self.max - self.min;
        let score = if !self.seen.is_multiple_of(self.config.every) {
            self.last
        } else if self.seen > self.config.warm_up && self.stored > 0 && range > 0.0 {
            squash(self.nearest() / range / self.config.scale)
        } else {
            0.0
        };
        self.last = score;

        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.remember();
        score
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::testkit::Noise;

    /// The nearest distance by a scan of every remembered picture.
    fn scanned(knn: &KnnDetector) -> f64 {
        let blocks = knn.config.blocks;
        let mut best = f64::INFINITY;
        for stored in knn.memory.chunks_exact(blocks).take(knn.stored) {
            let mut sum = 0.0;
            for (a, b) in stored.iter().zip(&knn.picture) {
                sum += (a - b).abs();
            }
            best = best.min(sum);
        }
        best / blocks as f64
    }

    /// The picture summed block by block from the recent samples.
    fn drawn_directly(knn: &KnnDetector) -> Vec<f64> {
        let (blocks, block) = (knn.config.blocks, knn.config.block);
        (0..blocks)
            .map(|b| {
                let mut sum = 0.0;
                for i in 0..block {
                    sum += knn.recent.lag((blocks - 1 - b) * block + i).unwrap();
                }
                sum / block as f64
            })
            .collect()
    }

    /// Series that stress the search and the sums: (case, series).
    fn cases() -> Vec<(&'static str, Vec<f64>)> {
        let mut noise = Noise::new(11);
        let mut cases: Vec<(&str, Vec<f64>)> = vec![
            ("noise", (0..3_000).map(|_| noise.normal()).collect()),
            ("cycle", (0..3_000).map(|i| f64::from(i % 50) + noise.uniform()).collect()),
            ("level 1e9", (0..3_000).map(|_| 1e9 + noise.normal() * 1e-3).collect()),
            ("steps", (0..3_000).map(|i| f64::from(i / 300 % 3)).collect()),
            ("huge", (0..3_000).map(|_| noise.normal() * 1e300).collect()),
            ("tiny", (0..3_000).map(|_| noise.normal() * 1e-300).collect()),
            ("subnormal", (0..3_000).map(|_| noise.normal() * 5e-324).collect()),
            ("extremes", (0..3_000).map(|i| [f64::MAX, -f64::MAX][i % 2]).collect()),
            ("flat", vec![7.5; 3_000]),
        ];
        let mut gappy: Vec<f64> = (0..3_000).map(|i| f64::from(i % 97).sqrt()).collect();
        gappy.iter_mut().step_by(7).for_each(|x| *x = f64::NAN);
        gappy.iter_mut().skip(3).step_by(11).for_each(|x| *x = f64::INFINITY);
        cases.push(("nan and inf", gappy));
        cases
    }

    #[test]
    fn the_ordered_search_finds_what_a_full_scan_finds() {
        for (case, series) in cases() {
            for block in [4, 16] {
                let config = KnnConfig { memory: 200, block, ..KnnConfig::default() };
                let mut knn = KnnDetector::new(config);
                for (i, &value) in series.iter().enumerate() {
                    knn.score(0, value);
                    if knn.stored > 0 && knn.recent.is_full() {
                        let (fast, full) = (knn.nearest(), scanned(&knn));
                        assert_eq!(
                            fast.to_bits(),
                            full.to_bits(),
                            "{case}/{block} at {i}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn searching_every_few_samples_repeats_the_scores_of_searched_samples() {
        for (case, series) in cases() {
            for every in [2, 3, 8] {
                let config = KnnConfig { memory: 200, block: 16, ..KnnConfig::default() };
                let mut always = KnnDetector::new(config);
                let mut sometimes = KnnDetector::new(KnnConfig { every, ..config });
                let mut searched = 0.0;
                for (i, &value) in series.iter().enumerate() {
                    let full = always.score(0, value);
                    let seen_before = sometimes.seen;
                    let got = sometimes.score(0, value);
                    if sometimes.seen == seen_before {
                        assert_eq!(got, 0.0, "{case}/{every} at {i}: not finite");
                        continue;
                    }
                    if sometimes.seen.is_multiple_of(every) || !sometimes.recent.is_full()
                    {
                        searched = full;
                    }
                    assert_eq!(
                        got.to_bits(),
                        searched.to_bits(),
                        "{case}/{every} at {i}"
                    );
                }
            }
        }
    }

    #[test]
    fn pictures_from_rolling_block_sums_equal_direct_sums() {
        for (case, series) in cases() {
            for (blocks, block) in [(5, 4), (5, 16), (1, 1), (3, 7)] {
                let config = KnnConfig { blocks, block, ..KnnConfig::default() };
                let mut knn = KnnDetector::new(config);
                for (i, &value) in series.iter().enumerate() {
                    knn.score(0, value);
                    if knn.recent.is_full() {
                        let direct = drawn_directly(&knn);
                        let bits =
                            |p: &[f64]| p.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                        assert_eq!(
                            bits(&knn.picture),
                            bits(&direct),
                            "{case}/{block} at {i}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_index_stays_sorted_by_sum_then_slot() {
        let mut noise = Noise::new(3);
        let keys = [0.0, -0.0, 1.0, 1.0, f64::NAN, f64::INFINITY, -f64::INFINITY, 2.5];
        let mut index = SumIndex::new(9);
        for step in 0..2_000 {
            let slot = noise.below(9) as usize;
            let sum = if step % 3 == 0 {
                keys[noise.below(keys.len() as u64) as usize]
            } else {
                noise.normal()
            };
            index.replace(slot, sum, sum.abs());
            let mut expected: Vec<(f64, f64, usize)> = (0..9)
                .filter_map(|k| index.by_slot[k].map(|(sum, abs)| (sum, abs, k)))
                .collect();
            expected.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.2.cmp(&b.2)));
            let held: Vec<(f64, f64, usize)> =
                index.sorted.iter().map(|&entry| unpack(entry)).collect();
            let order = |v: &[(f64, f64, usize)]| {
                v.iter().map(|e| (e.0.to_bits(), e.2)).collect::<Vec<_>>()
            };
            assert_eq!(order(&held), order(&expected), "step {step}");
            for ((_, bound, _), (_, abs, _)) in held.iter().zip(&expected) {
                let above = *bound >= *abs || abs.is_nan();
                let tight = *bound <= 2.0 * abs || *abs < f64::MIN_POSITIVE;
                assert!(above && (tight || bound.is_infinite()), "{abs} in {bound}");
            }
        }
    }

    #[test]
    fn searching_near_a_hint_finds_the_partition_point() {
        let mut noise = Noise::new(5);
        for len in [0_usize, 1, 2, 3, 7, 64, 1_000] {
            let mut sorted: Vec<u128> =
                (0..len).map(|_| u128::from(noise.below(50))).collect();
            sorted.sort_unstable();
            for target in 0..52 {
                let expected = sorted.partition_point(|&x| x < target);
                for hint in [0, 1, len / 3, len / 2, len.saturating_sub(1), len, len + 5]
                {
                    let found = partition_near(&sorted, hint, |&x| x < target);
                    assert_eq!(
                        found, expected,
                        "len {len}, target {target}, hint {hint}"
                    );
                }
            }
        }
    }

    #[test]
    fn total_ranks_follow_the_total_order_and_round_trip() {
        let mut values = vec![
            f64::NEG_INFINITY,
            -f64::MAX,
            -1.5,
            -f64::MIN_POSITIVE,
            -5e-324,
            -0.0,
            0.0,
            5e-324,
            f64::MIN_POSITIVE,
            1.0,
            f64::MAX,
            f64::INFINITY,
            f64::NAN,
            -f64::NAN,
            f64::from_bits(0x7ff0_0000_0000_0001),
            f64::from_bits(0xfff8_0000_0000_0001),
        ];
        let mut noise = Noise::new(8);
        values.extend(
            (0..500).map(|_| noise.normal() * 10f64.powi(noise.below(600) as i32 - 300)),
        );
        for &x in &values {
            assert_eq!(from_total_rank(total_rank(x)).to_bits(), x.to_bits(), "{x}");
            for &y in &values {
                let by_rank = total_rank(x).cmp(&total_rank(y));
                assert_eq!(by_rank, x.total_cmp(&y), "{x} {y}");
            }
        }
    }
}
