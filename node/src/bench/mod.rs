//! `analytics-node bench`: measures the analysis.
//!
//! - [`nab`]: scores a detector on a directory in the Numenta Anomaly
//!   Benchmark layout; [`corpus`] reads it and [`score`] applies NAB's
//!   scoring rules;
//! - [`throughput`]: samples per second through the engine (and a
//!   detector) on one thread;
//! - [`fanout`]: WebSocket broadcast latency, losses and memory per client;
//!   [`wsclient`] is its lean client and [`floor`] the bare server it is
//!   compared with;
//! - [`gas`]: gas per anchored batch and per insight;
//! - [`ingest`]: Kafka to PostgreSQL against PostgreSQL's `COPY`.

pub mod corpus;
pub mod fanout;
pub mod floor;
pub mod gas;
pub mod ingest;
pub mod nab;
pub mod score;
pub mod throughput;
pub mod wsclient;

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
    /// Samples per second through the engine (and a detector) on one thread.
    Throughput(throughput::ThroughputArgs),
    /// Kafka ingest into PostgreSQL against PostgreSQL's own COPY rate.
    Ingest(ingest::IngestArgs),
    /// Gas of anchoring batches of several sizes.
    Gas(gas::GasArgs),
    /// WebSocket broadcast fan-out: latency, losses and memory per client.
    Fanout(fanout::FanoutArgs),
    /// The client side of `fanout`, started by it.
    #[command(hide = true)]
    FanoutClients(fanout::FanoutClientArgs),
}

/// Runs the chosen benchmark and prints its report on standard output.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Fanout(args) => fanout::run(&args).await,
        BenchCommand::Gas(args) => gas::run(&args).await,
        BenchCommand::Ingest(args) => ingest::run(&args).await,
        BenchCommand::FanoutClients(args) => fanout::clients(&args).await,
        BenchCommand::Nab(args) => nab::run(&args),
        BenchCommand::Throughput(args) => throughput::run(&args),
    }
}
