//! `bench throughput`: samples per second on the calling thread, over a
//! synthetic noisy daily series with spikes, through:
//! - the engine's per-metric analysis (anomaly score, trend test and
//!   forecast together, window `--window`), and
//! - the whole engine analyser (`--analyzer`) behind the `Analyzer`
//!   trait (which also builds the metric point of every sample), and
//! - with `--detector`, that detector alone.

use std::time::Instant;

use analytics_primitives::analysis::engine::series::{Context, Sample, Series};
use analytics_primitives::analysis::{
    detector, AnalysisConfig, Analyzer, EngineAnalyzer, StoredEvent,
};
use analytics_primitives::event::{Event, SystemMetric};
use anyhow::Context as _;

/// Options of `analytics-node bench throughput`.
#[derive(Debug, clap::Args)]
pub struct ThroughputArgs {
    /// Samples to push through.
    #[arg(long, default_value_t = 2_000_000)]
    pub samples: usize,
    /// Samples in the engine's window.
    #[arg(long, default_value_t = 256)]
    pub window: usize,
    /// Also time this detector alone (`combo`, `knn-rel`, ...).
    #[arg(long)]
    pub detector: Option<String>,
    /// The engine's detector (`analysis.detector`); default that of the
    /// default configuration.
    #[arg(long)]
    pub engine_detector: Option<String>,
    /// The engine's version (`analysis.analyzer`: `engine/2`, or
    /// `engine/1`, which digests each insight's inputs whole).
    #[arg(long, default_value = "engine/2")]
    pub analyzer: String,
}

/// Runs the timings and prints samples per second.
pub fn run(args: &ThroughputArgs) -> anyhow::Result<()> {
    let series = synthetic(args.samples);
    let mut config = AnalysisConfig {
        analyzer: args.analyzer.clone(),
        window: args.window,
        ..AnalysisConfig::default()
    };
    if let Some(name) = &args.engine_detector {
        config.detector.clone_from(name);
    }
    if !EngineAnalyzer::VERSIONS.contains(&config.analyzer.as_str()) {
        let versions = EngineAnalyzer::VERSIONS.join(", ");
        anyhow::bail!("--analyzer: must be a version of the engine: {versions}");
    }
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("--window or --engine-detector: {e}"))?;
    println!("engine {}, detector {}", config.analyzer, config.detector);

    let (seconds, insights) = time_series(&config, &series);
    print_rate("engine series (anomaly, trend, forecast)", args, seconds, insights);
    let (seconds, insights) = time_analyser(&config, &series)?;
    print_rate("whole analyser (with metric points)", args, seconds, insights);

    if let Some(name) = &args.detector {
        let mut detector = detector::parse(name)
            .map_err(|reason| anyhow::anyhow!("--detector: {reason}"))?;
        let started = Instant::now();
        let mut alarms = 0;
        for (i, &value) in series.iter().enumerate() {
            alarms += usize::from(detector.score(i as i64 * 60_000, value) >= 0.5);
        }
        let seconds = started.elapsed().as_secs_f64();
        print_rate(&format!("detector {name}"), args, seconds, alarms);
    }
    Ok(())
}

fn print_rate(what: &str, args: &ThroughputArgs, seconds: f64, outputs: usize) {
    let rate = args.samples as f64 / seconds.max(1e-9);
    println!(
        "{what}, window {}: {} samples in {seconds:.3} s: {rate:.0} samples/s \
         ({outputs} insights or alarms)",
        args.window, args.samples
    );
}

/// Times one metric's series state alone: (seconds, insights).
fn time_series(config: &AnalysisConfig, values: &[f64]) -> (f64, usize) {
    let mut series = Series::new(config);
    let cx = Context {
        config,
        config_digest: config.digest(),
        stream: "bench",
        name: "bench",
    };
    let mut out = Vec::new();
    let mut insights = 0;
    let started = Instant::now();
    for (i, &value) in values.iter().enumerate() {
        let sample = Sample { id: i as i64, timestamp_ms: i as i64 * 60_000, value };
        series.observe(&cx, sample, &mut out);
        insights += out.len();
        out.clear();
    }
    (started.elapsed().as_secs_f64(), insights)
}

/// Times the analyser over prepared events: (seconds, insights).
fn time_analyser(
    config: &AnalysisConfig,
    values: &[f64],
) -> anyhow::Result<(f64, usize)> {
    let mut analyser = EngineAnalyzer::new(config.clone()).context("engine settings")?;
    let events: Vec<Event> = values
        .iter()
        .enumerate()
        .map(|(i, &value)| {
            Event::Metric(SystemMetric {
                name: "bench".into(),
                value,
                tags: serde_json::Map::new(),
                timestamp_ms: i as i64 * 60_000,
            })
        })
        .collect();
    let mut insights = 0;
    let started = Instant::now();
    for (i, event) in events.iter().enumerate() {
        let stored = StoredEvent { id: i as i64, stream: "redis:bench", event };
        insights += analyser.analyse(stored).insights.len();
    }
    Ok((started.elapsed().as_secs_f64(), insights))
}

/// A daily cycle of 288 samples with noise and a spike every 5 000.
fn synthetic(len: usize) -> Vec<f64> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            let phase = (i % 288) as f64 / 288.0;
            let cycle = 4.0 * phase * (1.0 - phase);
            let spike = if i % 5_000 == 4_999 { 5.0 } else { 0.0 };
            50.0 + 10.0 * cycle + noise + spike
        })
        .collect()
}
