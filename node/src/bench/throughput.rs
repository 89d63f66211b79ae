//! `bench throughput`: samples per second through a detector on the
//! calling thread, over a synthetic noisy daily series with spikes.

use std::time::Instant;

use analytics_primitives::analysis::detector;
use anyhow::bail;

/// Options of `analytics-node bench throughput`.
#[derive(Debug, clap::Args)]
pub struct ThroughputArgs {
    /// Samples to push through.
    #[arg(long, default_value_t = 2_000_000)]
    pub samples: usize,
    /// The detector to time.
    #[arg(long, default_value = detector::NAMES[0])]
    pub detector: String,
}

/// Times the detector and prints samples per second.
pub fn run(args: &ThroughputArgs) -> anyhow::Result<()> {
    let Some(mut detector) = detector::by_name(&args.detector) else {
        bail!(
            "unknown detector {:?}; known: {}",
            args.detector,
            detector::NAMES.join(", ")
        );
    };
    let series = synthetic(args.samples);

    let started = Instant::now();
    let mut checksum = 0.0;
    for (i, &value) in series.iter().enumerate() {
        checksum += detector.score(i as i64 * 60_000, value);
    }
    let seconds = started.elapsed().as_secs_f64();

    let rate = args.samples as f64 / seconds.max(1e-9);
    println!(
        "detector {}: {} samples in {seconds:.3} s: {rate:.0} samples/s \
         (score sum {checksum:.3})",
        args.detector, args.samples
    );
    Ok(())
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
