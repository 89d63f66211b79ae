//! The command line. Flags override environment variables, which override
//! the TOML file given with `--config`, which overrides the defaults.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, ConfigError};
use crate::feed::ReplayCsvArgs;
use crate::verify::VerifyArgs;

/// The verifiable real-time analytics node.
#[derive(Debug, Parser)]
#[command(name = "analytics-node", version, about)]
pub struct Cli {
    /// Log JSON lines instead of text.
    #[arg(
        long,
        global = true,
        env = "ANALYTICS_LOG_JSON",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub log_json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node: ingest, analyse, anchor and serve.
    Run(RunArgs),
    /// Apply pending database migrations and exit.
    Migrate(RunArgs),
    /// Deploy the InsightAnchor contract and print its address.
    Deploy(RunArgs),
    /// Verify an insight proof against the chain alone.
    Verify(VerifyArgs),
    /// Recompute the insights from the stored events and compare them,
    /// batch by batch, with the stored and anchored hashes.
    Replay(RunArgs),
    /// Publish a `timestamp,value` CSV to Redis as system metrics.
    ReplayCsv(ReplayCsvArgs),
    /// Benchmark the analysis: NAB scores or throughput.
    Bench(crate::bench::BenchArgs),
}

/// Options shared by the commands that use the configuration.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// TOML configuration file.
    #[arg(long, short, env = "ANALYTICS_CONFIG")]
    pub config: Option<PathBuf>,
    /// PostgreSQL URL (`database.url`).
    #[arg(long, env = "ANALYTICS_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Redis URL (`redis.url`).
    #[arg(long, env = "ANALYTICS_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Chain JSON-RPC URL (`chain.rpc_url`).
    #[arg(long, env = "ANALYTICS_ETH_RPC_URL")]
    pub eth_rpc_url: Option<String>,
    /// InsightAnchor address (`chain.contract`).
    #[arg(long, env = "ANALYTICS_CONTRACT")]
    pub contract: Option<String>,
    /// Confirmations before a batch is final (`chain.confirmations`).
    #[arg(long, env = "ANALYTICS_CONFIRMATIONS")]
    pub confirmations: Option<u64>,
    /// Bind address of both servers (`server.bind`).
    #[arg(long, env = "ANALYTICS_BIND")]
    pub bind: Option<String>,
    /// HTTP port (`server.ws_port`).
    #[arg(long, env = "ANALYTICS_WS_PORT")]
    pub ws_port: Option<u16>,
    /// JSON-RPC port (`server.rpc_port`).
    #[arg(long, env = "ANALYTICS_RPC_PORT")]
    pub rpc_port: Option<u16>,
    /// Consume Kafka (`kafka.enabled`).
    #[arg(
        long,
        env = "ANALYTICS_KAFKA",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub kafka: bool,
    /// Kafka brokers (`kafka.brokers`).
    #[arg(long, env = "ANALYTICS_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// How Redis is read (`redis.mode`): `pubsub` or `streams`.
    #[arg(long, env = "ANALYTICS_REDIS_MODE", value_enum)]
    pub redis_mode: Option<crate::config::RedisMode>,
    /// Redis channel of user events (`redis.user_events`).
    #[arg(long, env = "ANALYTICS_USER_EVENTS_CHANNEL")]
    pub user_events_channel: Option<String>,
    /// Redis channel of system metrics (`redis.system_metrics`).
    #[arg(long, env = "ANALYTICS_SYSTEM_METRICS_CHANNEL")]
    pub system_metrics_channel: Option<String>,
    /// Redis channel of business events (`redis.business_events`).
    #[arg(long, env = "ANALYTICS_BUSINESS_EVENTS_CHANNEL")]
    pub business_events_channel: Option<String>,
}

impl RunArgs {
    /// The configuration: file, then these overrides, validated.
    pub fn config(&self) -> Result<Config, ConfigError> {
        let mut config = Config::load(self.config.as_deref())?;
        set(&mut config.database.url, &self.database_url);
        set(&mut config.redis.url, &self.redis_url);
        set(&mut config.redis.mode, &self.redis_mode);
        set(&mut config.kafka.brokers, &self.kafka_brokers);
        config.kafka.enabled |= self.kafka;
        set(&mut config.chain.rpc_url, &self.eth_rpc_url);
        if self.contract.is_some() {
            config.chain.contract.clone_from(&self.contract);
        }
        set(&mut config.chain.confirmations, &self.confirmations);
        set(&mut config.server.bind, &self.bind);
        set(&mut config.server.ws_port, &self.ws_port);
        set(&mut config.server.rpc_port, &self.rpc_port);
        set(&mut config.redis.user_events, &self.user_events_channel);
        set(&mut config.redis.system_metrics, &self.system_metrics_channel);
        set(&mut config.redis.business_events, &self.business_events_channel);
        config.validate()?;
        Ok(config)
    }
}

fn set<T: Clone>(field: &mut T, value: &Option<T>) {
    if let Some(value) = value {
        *field = value.clone();
    }
}
