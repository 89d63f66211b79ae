//! NAB scoring: anomaly windows, the position-dependent scaled sigmoid, the
//! probationary period, the corpus-wide threshold that maximises the raw
//! score of a profile, and normalisation against the null and perfect
//! detectors.
//!
//! Scoring uses `exp`; it only ranks detectors and never feeds an insight,
//! so its last bit need not be reproducible across platforms.

/// The weights of one scoring profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Costs {
    /// Reward of the earliest detection in a window.
    pub tp: f64,
    /// Cost of a false positive far from any window.
    pub fp: f64,
    /// Cost of a window without detection.
    pub fn_: f64,
}

/// One data file as the scorer sees it: its detector scores and windows.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredFile {
    /// The detector's anomaly score of every row, in [0, 1].
    pub scores: Vec<f64>,
    /// Anomaly windows as inclusive row ranges, sorted and disjoint.
    pub windows: Vec<(usize, usize)>,
}

/// The outcome of one file at one threshold.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FileResult {
    /// Raw NAB score.
    pub raw: f64,
    /// Windows with a detection.
    pub hits: usize,
    /// Windows with scorable rows but no detection.
    pub misses: usize,
    /// Detections outside every window.
    pub false_positives: usize,
}

/// The best threshold of a corpus for one profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Best {
    /// Rows scoring at least this are detections; above 1 means none.
    pub threshold: f64,
    /// Sum of the raw scores of the files at that threshold.
    pub raw: f64,
    /// The normalised score: 100 for the perfect detector, 0 for the null.
    pub normalised: f64,
}

/// Rows of a file of `len` rows that are never scored: the first 15 %,
/// at most 750.
pub fn probation(len: usize) -> usize {
    (len.min(5_000) * 15) / 100
}

/// NAB's scaled sigmoid: `2 / (1 + exp(5 y)) - 1`, and -1 beyond y = 3.
pub fn sigmoid(y: f64) -> f64 {
    if y > 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * y).exp()) - 1.0
    }
}

/// Where a scorable row lies relative to the windows.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Place {
    /// Inside window `index` of the file, earning this much if detected.
    Window(usize, f64),
    /// Outside every window, costing this much (negative) if detected.
    Outside(f64),
}

impl ScoredFile {
    /// Windows that hold at least one scorable row.
    pub fn scorable_windows(&self) -> usize {
        let start = probation(self.scores.len());
        self.windows.iter().filter(|&&(_, right)| right >= start).count()
    }

    /// The value of detecting on `row`, which must be scorable.
    fn place(&self, row: usize, costs: Costs) -> Place {
        let mut previous = None;
        for (index, &(left, right)) in self.windows.iter().enumerate() {
            if (left..=right).contains(&row) {
                let width = (right - left + 1) as f64;
                let y = -((right - row + 1) as f64) / width;
                return Place::Window(index, sigmoid(y) * costs.tp / sigmoid(-1.0));
            }
            if right < row {
                previous = Some((left, right));
            }
        }
        let Some((left, right)) = previous else {
            return Place::Outside(-costs.fp);
        };
        let span = (right - left) as f64;
        let y = if span > 0.0 { (row - right) as f64 / span } else { f64::INFINITY };
        Place::Outside(sigmoid(y) * costs.fp)
    }

    /// Scores the file with detections at rows scoring `>= threshold`.
    pub fn result(&self, costs: Costs, threshold: f64) -> FileResult {
        let mut best: Vec<Option<f64>> = vec![None; self.windows.len()];
        let mut result = FileResult::default();
        let start = probation(self.scores.len());
        for (row, &score) in self.scores.iter().enumerate().skip(start) {
            if score < threshold {
                continue;
            }
            match self.place(row, costs) {
                Place::Window(index, value) => {
                    let slot = &mut best[index];
                    *slot = Some(slot.map_or(value, |b| b.max(value)));
                }
                Place::Outside(value) => {
                    result.raw += value;
                    result.false_positives += 1;
                }
            }
        }
        for (slot, &(_, right)) in best.iter().zip(&self.windows) {
            match slot {
                Some(value) => {
                    result.raw += value;
                    result.hits += 1;
                }
                None if right >= start => {
                    result.raw -= costs.fn_;
                    result.misses += 1;
                }
                None => {}
            }
        }
        result
    }
}

/// Finds the threshold that maximises the corpus raw score, trying every
/// distinct score of a scorable row, and normalises that score.
pub fn best_threshold(files: &[ScoredFile], costs: Costs) -> Best {
    let windows: usize = files.iter().map(ScoredFile::scorable_windows).sum();
    let null = -costs.fn_ * windows as f64;
    let perfect = costs.tp * windows as f64;

    let mut rows = detections_by_score(files, costs);
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));

    let mut slots: Vec<Vec<Option<f64>>> =
        files.iter().map(|f| vec![None; f.windows.len()]).collect();
    let mut total = null;
    let mut best = (f64::INFINITY, null);
    for (i, &(score, file, place)) in rows.iter().enumerate() {
        total += gain(&mut slots[file], place, costs);
        let last_of_tie = rows.get(i + 1).is_none_or(|next| next.0 < score);
        if last_of_tie && total > best.1 {
            best = (score, total);
        }
    }

    let normalised = 100.0 * (best.1 - null) / (perfect - null);
    Best { threshold: best.0, raw: best.1, normalised }
}

/// Every scorable row of every file: its score, file and place.
fn detections_by_score(files: &[ScoredFile], costs: Costs) -> Vec<(f64, usize, Place)> {
    let mut rows = Vec::new();
    for (index, file) in files.iter().enumerate() {
        let start = probation(file.scores.len());
        for (row, &score) in file.scores.iter().enumerate().skip(start) {
            rows.push((score, index, file.place(row, costs)));
        }
    }
    rows
}

/// The change of the raw score when one more row becomes a detection.
fn gain(slots: &mut [Option<f64>], place: Place, costs: Costs) -> f64 {
    match place {
        Place::Outside(value) => value,
        Place::Window(index, value) => match slots[index] {
            None => {
                slots[index] = Some(value);
                value + costs.fn_
            }
            Some(best) if value > best => {
                slots[index] = Some(value);
                value - best
            }
            Some(_) => 0.0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STANDARD: Costs = Costs { tp: 1.0, fp: 0.11, fn_: 1.0 };
    const LOW_FN: Costs = Costs { tp: 1.0, fp: 0.11, fn_: 2.0 };

    /// A file of 100 rows (15 in probation) with one window at rows 20..=29
    /// and detections (score 1) at `rows`.
    fn file(rows: &[usize]) -> ScoredFile {
        let mut scores = vec![0.0; 100];
        rows.iter().for_each(|&r| scores[r] = 1.0);
        ScoredFile { scores, windows: vec![(20, 29)] }
    }

    #[test]
    fn sigmoid_matches_the_published_points() {
        let cases = [(-1.0, 0.986_614_3), (-0.5, 0.848_283_6), (0.0, 0.0), (3.5, -1.0)];
        for (y, expected) in cases {
            assert!((sigmoid(y) - expected).abs() < 1e-6, "{y}: {}", sigmoid(y));
        }
    }

    #[test]
    fn probation_is_fifteen_percent_up_to_750_rows() {
        let cases =
            [(0, 0), (10, 1), (100, 15), (4_033, 604), (5_000, 750), (22_695, 750)];
        for (len, expected) in cases {
            assert_eq!(probation(len), expected, "{len}");
        }
    }

    #[test]
    fn hand_computed_file_scores() {
        // (detections, profile, raw, hits, misses, false positives)
        type Case = (&'static [usize], Costs, f64, usize, usize, usize);
        let cases: [Case; 9] = [
            (&[20], STANDARD, 1.0, 1, 0, 0),
            (&[20, 21, 29], STANDARD, 1.0, 1, 0, 0),
            (&[25], STANDARD, 0.848_283_6 / 0.986_614_3, 1, 0, 0),
            (&[], STANDARD, -1.0, 0, 1, 0),
            (&[], LOW_FN, -2.0, 0, 1, 0),
            (&[60], STANDARD, -1.11, 0, 1, 1),
            (&[16, 20], STANDARD, 1.0 - 0.11, 1, 0, 1),
            (&[10, 20], STANDARD, 1.0, 1, 0, 0),
            (&[20, 30], STANDARD, 1.0 - 0.11 * 0.270_848, 1, 0, 1),
        ];
        for (rows, costs, raw, hits, misses, fps) in cases {
            let result = file(rows).result(costs, 0.5);
            assert!((result.raw - raw).abs() < 1e-5, "{rows:?}: {result:?}");
            assert_eq!(
                (result.hits, result.misses, result.false_positives),
                (hits, misses, fps),
                "{rows:?}"
            );
        }
    }

    #[test]
    fn windows_inside_probation_are_not_scored() {
        // (window, whether it counts)
        let cases =
            [((2, 8), false), ((2, 14), false), ((10, 15), true), ((50, 60), true)];
        for (window, counts) in cases {
            let f = ScoredFile { scores: vec![0.0; 100], windows: vec![window] };
            assert_eq!(f.scorable_windows(), usize::from(counts), "{window:?}");
            let expected = if counts { -1.0 } else { 0.0 };
            assert_eq!(f.result(STANDARD, 0.5).raw, expected, "{window:?}");
        }
    }

    #[test]
    fn the_sweep_picks_the_best_threshold_and_normalises() {
        // Window start scores 0.6; a false positive far away scores 0.8 and
        // one before any window 0.4.
        let mut a = file(&[]);
        a.scores[20] = 0.6;
        a.scores[90] = 0.8;
        a.scores[16] = 0.4;
        let best = best_threshold(&[a.clone()], STANDARD);
        assert_eq!(best.threshold, 0.6);
        assert!((best.raw - 0.89).abs() < 1e-12, "{best:?}");
        assert!((best.normalised - 100.0 * 1.89 / 2.0).abs() < 1e-9);
        let at = a.result(STANDARD, best.threshold).raw;
        assert!((at - best.raw).abs() < 1e-12);

        let perfect = best_threshold(&[file(&[20]), file(&[20])], STANDARD);
        assert!((perfect.normalised - 100.0).abs() < 1e-12, "{perfect:?}");
        let null = best_threshold(&[file(&[])], LOW_FN);
        assert_eq!((null.threshold, null.normalised), (f64::INFINITY, 0.0));
    }

    #[test]
    fn the_sweep_agrees_with_direct_scoring_at_every_threshold() {
        let mut f = file(&[]);
        for (row, score) in [(16, 0.3), (22, 0.5), (24, 0.9), (31, 0.5), (70, 0.7)] {
            f.scores[row] = score;
        }
        let best = best_threshold(&[f.clone()], STANDARD);
        for threshold in [0.3, 0.5, 0.7, 0.9, 2.0] {
            assert!(f.result(STANDARD, threshold).raw <= best.raw + 1e-12);
        }
        let at = f.result(STANDARD, best.threshold).raw;
        assert!((at - best.raw).abs() < 1e-12, "{at} {best:?}");
    }
}
