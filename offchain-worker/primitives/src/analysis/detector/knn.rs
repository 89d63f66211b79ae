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
    /// Samples before any score above 0. Default 150.
    pub warm_up: usize,
    /// Distance (in units of the value range) that scores one half.
    /// Default 0.05.
    pub scale: f64,
}

impl Default for KnnConfig {
    fn default() -> Self {
        Self { blocks: 5, block: 4, memory: 1024, stride: 2, warm_up: 150, scale: 0.05 }
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct KnnDetector {
    config: KnnConfig,
    /// Recent samples, enough for one picture.
    recent: Ring,
    /// Pictures waiting until they no longer overlap the current one.
    pending: VecDeque<Vec<f64>>,
    /// Remembered pictures, `blocks` numbers each, in a ring.
    memory: Vec<f64>,
    stored: usize,
    next: usize,
    picture: Vec<f64>,
    min: f64,
    max: f64,
    seen: usize,
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
            ..config
        };
        Self {
            recent: Ring::new(config.blocks * config.block),
            pending: VecDeque::new(),
            memory: vec![0.0; config.memory * config.blocks],
            stored: 0,
            next: 0,
            picture: vec![0.0; config.blocks],
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            seen: 0,
            config,
        }
    }

    /// Fills `picture` with the block means of the recent samples, oldest
    /// block first.
    fn draw(&mut self) {
        let (blocks, block) = (self.config.blocks, self.config.block);
        for b in 0..blocks {
            let mut sum = 0.0;
            for i in 0..block {
                let lag = (blocks - 1 - b) * block + i;
                sum += self.recent.lag(lag).unwrap_or(0.0);
            }
            self.picture[b] = sum / block as f64;
        }
    }

    /// Mean absolute difference to the nearest remembered picture.
    fn nearest(&self) -> f64 {
        let blocks = self.config.blocks;
        let mut best = f64::INFINITY;
        for stored in self.memory.chunks_exact(blocks).take(self.stored) {
            let mut sum = 0.0;
            for (a, b) in stored.iter().zip(&self.picture) {
                sum += (a - b).abs();
                if sum >= best {
                    break;
                }
            }
            best = best.min(sum);
        }
        best / blocks as f64
    }

    fn remember(&mut self) {
        let lag = self.recent.len();
        if self.seen.is_multiple_of(self.config.stride) {
            self.pending.push_back(self.picture.clone());
        }
        // A picture joins the memory once a whole picture has passed.
        if self.pending.len() * self.config.stride > lag {
            let picture = self.pending.pop_front().expect("the queue is not empty");
            let blocks = self.config.blocks;
            let slot = self.next * blocks;
            self.memory[slot..slot + blocks].copy_from_slice(&picture);
            self.next = (self.next + 1) % self.config.memory;
            self.stored = (self.stored + 1).min(self.config.memory);
        }
    }
}

impl Detector for KnnDetector {
    fn score(&mut self, _timestamp_ms: i64, value: f64) -> f64 {
        if !value.is_finite() {
            return 0.0;
        }
        self.recent.push(value);
        self.seen += 1;
        if !self.recent.is_full() {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
            return 0.0;
        }
        self.draw();

        let range = self.max - self.min;
        let score = if self.seen > self.config.warm_up && self.stored > 0 && range > 0.0 {
            squash(self.nearest() / range / self.config.scale)
        } else {
            0.0
        };

        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.remember();
        score
    }
}
