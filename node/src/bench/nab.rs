//! `bench nab`: runs a detector over every file of a NAB-layout directory
//! and prints its normalised score under each profile.

use std::path::{Path, PathBuf};

use analytics_primitives::analysis::detector::{self, Detector};
use anyhow::{bail, Context};

use super::corpus::{read_labels, read_profiles, read_series, window_rows, Series};
use super::score::{best_threshold, Best, Costs, ScoredFile};

/// Where the benchmark data is by default, from the project root.
pub const DEFAULT_DATA_DIR: &str = "../shared/data/nab";

/// Options of `analytics-node bench nab`.
#[derive(Debug, clap::Args)]
pub struct NabArgs {
    /// The NAB-layout directory: `data/<category>/<file>.csv`,
    /// `labels/combined_windows.json`, `config/profiles.json`.
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    pub data: PathBuf,
    /// Anomaly windows. Default: `<data>/labels/combined_windows.json`.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Scoring profiles. Default: `<data>/config/profiles.json`.
    #[arg(long)]
    pub profiles: Option<PathBuf>,
    /// The detector to score.
    #[arg(long, default_value = detector::NAMES[0])]
    pub detector: String,
    /// Also print every file's result at each profile's threshold.
    #[arg(long)]
    pub verbose: bool,
    /// Write each file's scores to `<dir>/<category>/<file>.csv` as
    /// `timestamp,value,score,label` rows, for inspection.
    #[arg(long)]
    pub dump: Option<PathBuf>,
}

/// Runs the benchmark and prints the table.
pub fn run(args: &NabArgs) -> anyhow::Result<()> {
    if let Err(reason) = detector::parse(&args.detector) {
        bail!("--detector: {reason}");
    }
    let make = || detector::by_name(&args.detector);
    let labels_path = args
        .labels
        .clone()
        .unwrap_or_else(|| args.data.join("labels/combined_windows.json"));
    let profiles_path =
        args.profiles.clone().unwrap_or_else(|| args.data.join("config/profiles.json"));
    let labels = read_labels(&labels_path)?;
    let profiles = read_profiles(&profiles_path)?;
    let series = read_series(&args.data.join("data"))?;

    let mut files = Vec::new();
    let mut names = Vec::new();
    for s in &series {
        let Some(windows) = labels.get(&s.name) else {
            eprintln!("skipping {}: no entry in {}", s.name, labels_path.display());
            continue;
        };
        let windows = window_rows(s, windows)?;
        let detector = make().context("the detector name was checked above")?;
        let file = ScoredFile { scores: run_detector(detector, s), windows };
        if let Some(dir) = &args.dump {
            dump(dir, s, &file)?;
        }
        files.push(file);
        names.push(s.name.as_str());
    }

    print_report(args, &files, &names, &profiles, &args.data);
    Ok(())
}

/// Scores every row of `series`, clamping scores into [0, 1].
pub fn run_detector(mut detector: Box<dyn Detector>, series: &Series) -> Vec<f64> {
    series
        .times_ms
        .iter()
        .zip(&series.values)
        .map(|(&t, &v)| {
            let score = detector.score(t, v);
            if score.is_nan() {
                0.0
            } else {
                score.clamp(0.0, 1.0)
            }
        })
        .collect()
}

/// Writes `timestamp,value,score,label` rows; `label` is 1 inside a window.
fn dump(dir: &Path, series: &Series, file: &ScoredFile) -> anyhow::Result<()> {
    use std::fmt::Write as _;

    let path = dir.join(&series.name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut text = String::from("timestamp,value,score,label\n");
    for (row, stamp) in series.stamps.iter().enumerate() {
        let inside = file.windows.iter().any(|&(l, r)| (l..=r).contains(&row));
        let (value, score) = (series.values[row], file.scores[row]);
        let _ = writeln!(text, "{stamp},{value},{score},{}", u8::from(inside));
    }
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

fn print_report(
    args: &NabArgs,
    files: &[ScoredFile],
    names: &[&str],
    profiles: &[(String, Costs)],
    data: &Path,
) {
    let windows: usize = files.iter().map(ScoredFile::scorable_windows).sum();
    println!(
        "detector {}: {} files, {windows} windows, from {}",
        args.detector,
        files.len(),
        data.display()
    );
    println!("{:<20} {:>10} {:>10} {:>10}", "profile", "score", "raw", "threshold");
    let results: Vec<(&str, Costs, Best)> = profiles
        .iter()
        .map(|(name, costs)| (name.as_str(), *costs, best_threshold(files, *costs)))
        .collect();
    for (name, _, best) in &results {
        println!(
            "{name:<20} {:>10.2} {:>10.3} {:>10.6}",
            best.normalised, best.raw, best.threshold
        );
    }
    if args.verbose {
        for (name, costs, best) in &results {
            print_files(name, *costs, best, files, names);
        }
    }
}

fn print_files(
    profile: &str,
    costs: Costs,
    best: &Best,
    files: &[ScoredFile],
    names: &[&str],
) {
    println!("\n{profile} at threshold {:.6}", best.threshold);
    println!("{:<56} {:>8} {:>4} {:>4} {:>4}", "file", "raw", "hit", "miss", "fp");
    for (file, name) in files.iter().zip(names) {
        let r = file.result(costs, best.threshold);
        println!(
            "{name:<56} {:>8.3} {:>4} {:>4} {:>4}",
            r.raw, r.hits, r.misses, r.false_positives
        );
    }
}
