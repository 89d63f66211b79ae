//! `analytics-node bench`: measures the analysis.
//!
//! - [`nab`]: scores a detector on a directory in the Numenta Anomaly
//!   Benchmark layout; [`corpus`] reads it and [`score`] applies NAB's
//!   scoring rules;
//! - [`throughput`]: samples per second through a detector on one thread.

pub mod corpus;
pub mod nab;
pub mod score;
pub mod throughput;

use clap::{Args, Subcommand};

/// Options of `analytics-node bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which benchmark.
    #[command(subcommand)]
    pub command: BenchCommand,
}

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Score a detector on the Numenta Anomaly Benchmark.
    Nab(nab::NabArgs),
    /// Samples per second through a detector on one thread.
    Throughput(throughput::ThroughputArgs),
}

/// Runs the chosen benchmark and prints its report on standard output.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Nab(args) => nab::run(&args),
        BenchCommand::Throughput(args) => throughput::run(&args),
    }
}
