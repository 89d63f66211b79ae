//! Node configuration: a TOML file, then environment variables, then
//! command-line flags, each overriding the one before; anything unset keeps
//! the default below. The file rejects unknown fields, and every value is
//! validated before start-up, with errors naming the field.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use alloy::primitives::Address;
use analytics_primitives::analysis::AnalysisConfig;
use analytics_primitives::event::StreamKind;
use serde::Deserialize;

/// Default Redis URL.
pub const DEFAULT_REDIS_URL: &str = "redis://localhost:6379";
/// Default PostgreSQL URL.
pub const DEFAULT_DATABASE_URL: &str =
    "postgresql://analytics:password@localhost:5432/analytics_db";
/// Default chain RPC URL (anvil's).
pub const DEFAULT_ETH_RPC_URL: &str = "http://127.0.0.1:8545";
/// Default WebSocket / HTTP port.
pub const DEFAULT_WS_PORT: u16 = 8080;
/// Default JSON-RPC port.
pub const DEFAULT_RPC_PORT: u16 = 9944;
/// Chain id of a local anvil chain.
pub const ANVIL_CHAIN_ID: u64 = 31337;
/// Longest accepted `server.ws_coalesce_ms`.
const MAX_COALESCE_MS: u64 = 1000;

/// A configuration value that cannot work. The node does not start.
#[derive(Debug, thiserror::Error)]
#[error("config field `{field}`: {reason}")]
pub struct ConfigError {
    /// Dotted path of the field (`redis.url`).
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { field: field.into(), reason: reason.into() }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Redis source.
    pub redis: RedisConfig,
    /// Kafka source.
    pub kafka: KafkaConfig,
    /// PostgreSQL.
    pub database: DatabaseConfig,
    /// Ethereum chain and anchoring.
    pub chain: ChainConfig,
    /// Batching of insights into anchored Merkle trees.
    pub anchor: AnchorConfig,
    /// Ingestion pipeline.
    pub pipeline: PipelineSettings,
    /// Listening sockets.
    pub server: ServerConfig,
    /// The analysis: which analyser runs (`analysis.analyzer`, default
    /// `engine/2`) and its settings.
    pub analysis: AnalysisConfig,
    /// Webhooks called for anomalies of chosen severities.
    pub webhooks: crate::webhooks::WebhooksConfig,
}

/// Redis pub/sub source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// Whether to subscribe at all. Default true.
    pub enabled: bool,
    /// Server URL. Default `redis://localhost:6379`.
    pub url: String,
    /// Channel carrying user events. Default `user_events`.
    pub user_events: String,
    /// Channel carrying system metrics. Default `system_metrics`.
    pub system_metrics: String,
    /// Channel carrying business events. Default `business_events`.
    pub business_events: String,
    /// `pubsub` (default): subscribe to the channels; what is published
    /// while the node is down is lost. `streams`: read Redis Streams of the
    /// same names through consumer group `group`, acknowledging after the
    /// PostgreSQL commit, so nothing is lost and nothing stored twice.
    pub mode: RedisMode,
    /// Consumer group of the `streams` mode. Default `analytics_dashboard`.
    pub group: String,
    /// Consumer name within the group; keep it stable across restarts so
    /// the node reads its own pending messages again. Default
    /// `analytics-node`.
    pub consumer: String,
}

/// When an anchored batch counts as final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Finality {
    /// At `chain.confirmations` blocks, the anchoring block included.
    #[default]
    Depth,
    /// When the chain's `finalized` block reaches the anchoring block (for
    /// chains with a finality gadget, such as Ethereum's proof of stake).
    Finalized,
}

/// How the node reads Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    /// Pub/sub channels.
    #[default]
    Pubsub,
    /// Streams with a consumer group.
    Streams,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            url: DEFAULT_REDIS_URL.into(),
            user_events: "user_events".into(),
            system_metrics: "system_metrics".into(),
            business_events: "business_events".into(),
            mode: RedisMode::Pubsub,
            group: "analytics_dashboard".into(),
            consumer: "analytics-node".into(),
        }
    }
}

impl RedisConfig {
    /// Channel name to the kind of event it carries.
    pub fn channels(&self) -> BTreeMap<String, StreamKind> {
        BTreeMap::from([
            (self.user_events.clone(), StreamKind::UserEvents),
            (self.system_metrics.clone(), StreamKind::SystemMetrics),
            (self.business_events.clone(), StreamKind::BusinessEvents),
        ])
    }
}

/// Kafka source: any Kafka-protocol broker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Whether to consume Kafka. Default false.
    pub enabled: bool,
    /// Comma-separated `host:port` brokers. Default `localhost:9092`.
    pub brokers: String,
    /// Consumer group; workers in one group share the partitions. Default
    /// `analytics_dashboard`.
    pub group: String,
    /// Topic carrying user events. Default `user_activities`.
    pub user_activities: String,
    /// Topic carrying system metrics. Default `system_events`.
    pub system_events: String,
    /// Topic carrying business events. Default `business_metrics`.
    pub business_metrics: String,
    /// Static membership id of this worker in the group; give each worker
    /// its own, stable across restarts. Default: none (dynamic membership).
    pub instance_id: Option<String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            brokers: "localhost:9092".into(),
            group: "analytics_dashboard".into(),
            user_activities: "user_activities".into(),
            system_events: "system_events".into(),
            business_metrics: "business_metrics".into(),
            instance_id: None,
        }
    }
}

impl KafkaConfig {
    /// Topic name to the kind of event it carries.
    pub fn topics(&self) -> BTreeMap<String, StreamKind> {
        BTreeMap::from([
            (self.user_activities.clone(), StreamKind::UserEvents),
            (self.system_events.clone(), StreamKind::SystemMetrics),
            (self.business_metrics.clone(), StreamKind::BusinessEvents),
        ])
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.brokers.split(',').any(|b| b.trim().rsplit_once(':').is_none()) {
            return Err(ConfigError::new(
                "kafka.brokers",
                "expected host:port[,host:port]",
            ));
        }
        if self.group.trim().is_empty() {
            return Err(ConfigError::new("kafka.group", "must not be empty"));
        }
        if self.topics().len() != 3 || self.topics().keys().any(|t| t.trim().is_empty()) {
            return Err(ConfigError::new(
                "kafka",
                "the three topics must be distinct names",
            ));
        }
        Ok(())
    }
}

/// PostgreSQL.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// Connection URL. Default
    /// `postgresql://analytics:password@localhost:5432/analytics_db`.
    pub url: String,
    /// Pool size. Default 10.
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self { url: DEFAULT_DATABASE_URL.into(), max_connections: 10 }
    }
}

/// Ethereum chain and anchoring.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChainConfig {
    /// HTTP JSON-RPC URL. Default `http://127.0.0.1:8545`.
    pub rpc_url: String,
    /// WebSocket URL for the new-heads subscription. Default: `rpc_url`
    /// with `ws` for `http`; when the subscription fails the node polls.
    pub ws_url: Option<String>,
    /// Address of the `InsightAnchor` contract. When unset on a local anvil
    /// chain (id 31337) `run` deploys one; elsewhere it is required.
    pub contract: Option<String>,
    /// Chain id the RPC must report, when set.
    pub chain_id: Option<u64>,
    /// Blocks (the anchoring block included) before a batch is final.
    /// Default 2.
    pub confirmations: u64,
    /// `depth` (final at `confirmations`) or `finalized` (final when the
    /// chain's `finalized` block reaches the anchoring block). Default
    /// `depth`.
    pub finality: Finality,
    /// Interval of head polling when no subscription is available,
    /// milliseconds. Default 1000.
    pub poll_interval_ms: u64,
}

impl Default for ChainConfig {
    fn default() -> Self {
        Self {
            rpc_url: DEFAULT_ETH_RPC_URL.into(),
            ws_url: None,
            contract: None,
            chain_id: None,
            confirmations: 2,
            finality: Finality::Depth,
            poll_interval_ms: 1000,
        }
    }
}

impl ChainConfig {
    /// The WebSocket URL to subscribe on.
    pub fn ws_url(&self) -> String {
        match &self.ws_url {
            Some(url) => url.clone(),
            None => self
                .rpc_url
                .replacen("https://", "wss://", 1)
                .replacen("http://", "ws://", 1),
        }
    }

    /// The configured contract address, parsed.
    pub fn contract_address(&self) -> Result<Option<Address>, ConfigError> {
        let Some(text) = &self.contract else { return Ok(None) };
        let address = text.parse().map_err(|e| {
            ConfigError::new("chain.contract", format!("not an address: {e}"))
        })?;
        Ok(Some(address))
    }
}

/// Batching of insights into anchored Merkle trees.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnchorConfig {
    /// Form a batch on every new block when insights are waiting.
    /// Default true.
    pub on_new_block: bool,
    /// Form a batch as soon as this many insights wait. Default 256.
    pub max_pending: u64,
    /// Form a batch when this long has passed since the previous batch was
    /// formed and insights wait, milliseconds. Default 5000.
    pub interval_ms: u64,
    /// Most insights in one batch. Default 1024.
    pub max_batch: u64,
    /// Blocks an anchoring transaction may wait unincluded before it is
    /// replaced by a copy with higher fees (same nonce). Default 3.
    pub stuck_after_blocks: u64,
    /// How much each replacement raises both EIP-1559 fee fields, percent;
    /// at least 10, which nodes require of a replacement. Default 25.
    pub fee_bump_percent: u64,
    /// Ceiling of the fee cap (`maxFeePerGas`), gwei: no replacement goes
    /// beyond it. Default 500.
    pub max_fee_per_gas_gwei: u64,
}

impl Default for AnchorConfig {
    fn default() -> Self {
        Self {
            on_new_block: true,
            max_pending: 256,
            interval_ms: 5000,
            max_batch: 1024,
            stuck_after_blocks: 3,
            fee_bump_percent: 25,
            max_fee_per_gas_gwei: 500,
        }
    }
}

/// Ingestion pipeline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineSettings {
    /// Most messages per PostgreSQL transaction. Default 2000, below the
    /// broadcast hub's 16 384 slots, so one batch's broadcasts cannot
    /// overrun a listener on their own.
    pub batch_size: usize,
    /// Longest wait for a batch to fill, milliseconds. Default 50.
    pub flush_interval_ms: u64,
    /// Largest accepted message, bytes; larger ones become dead letters.
    /// Default 1 MiB.
    pub max_message_bytes: usize,
    /// Messages buffered between the sources and the pipeline. Default
    /// 10000.
    pub queue_capacity: usize,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        Self {
            batch_size: 2000,
            flush_interval_ms: 50,
            max_message_bytes: 1 << 20,
            queue_capacity: 10_000,
        }
    }
}

/// Listening sockets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address both servers bind. Default `127.0.0.1`.
    pub bind: String,
    /// HTTP port (dashboard, WebSocket `/analytics`, `/health`,
    /// `/metrics`). Default 8080.
    pub ws_port: u16,
    /// JSON-RPC port, HTTP and WebSocket. Default 9944.
    pub rpc_port: u16,
    /// Most JSON-RPC connections. Default 1000.
    pub rpc_max_connections: u32,
    /// Most subscriptions per JSON-RPC connection. Default 16.
    pub rpc_max_subscriptions: u32,
    /// Largest JSON-RPC request, bytes. Default 256 KiB.
    pub rpc_max_request_bytes: u32,
    /// Largest JSON-RPC response, bytes. Default 16 MiB.
    pub rpc_max_response_bytes: u32,
    /// Most calls in one JSON-RPC batch. Default 32.
    pub rpc_max_batch: u32,
    /// Most dashboard WebSocket connections. Default 1000.
    pub ws_max_connections: u64,
    /// Messages queued per WebSocket connection before the client counts
    /// as too slow and is disconnected. Default 1024.
    pub ws_queue_capacity: usize,
    /// Longest a broadcast waits to be written together with the ones
    /// that follow it, milliseconds; 0 writes each at once. Only a busy
    /// stream waits: a broadcast after a quiet interval goes out at once.
    /// Default 10.
    pub ws_coalesce_ms: u64,
    /// Interval of WebSocket pings, seconds; a client silent for two
    /// intervals is dropped. Default 30.
    pub ws_heartbeat_secs: u64,
    /// Longest wait for one WebSocket write, milliseconds. Default 5000.
    pub ws_write_timeout_ms: u64,
    /// Most messages per channel replayed to a client that resumes from a
    /// position; a longer gap is reported to the client instead. Default
    /// 10000.
    pub ws_max_resume: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1".into(),
            ws_port: DEFAULT_WS_PORT,
            rpc_port: DEFAULT_RPC_PORT,
            rpc_max_connections: 1000,
            rpc_max_subscriptions: 16,
            rpc_max_request_bytes: 256 * 1024,
            rpc_max_response_bytes: 16 * 1024 * 1024,
            rpc_max_batch: 32,
            ws_max_connections: 1000,
            ws_queue_capacity: 1024,
            ws_coalesce_ms: 10,
            ws_heartbeat_secs: 30,
            ws_write_timeout_ms: 5000,
            ws_max_resume: 10_000,
        }
    }
}

impl ServerConfig {
    /// The bind address, parsed.
    pub fn bind_ip(&self) -> Result<IpAddr, ConfigError> {
        self.bind.parse().map_err(|e| ConfigError::new("server.bind", format!("{e}")))
    }
}

impl Config {
    /// Reads a TOML file; a missing `path` gives the defaults.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else { return Ok(Self::default()) };
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new("--config", format!("cannot read {}: {e}", path.display()))
        })?;
        Self::from_toml(&text)
    }

    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let deserializer = toml::Deserializer::new(text);
        serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let field = e.path().to_string();
            let inner = e.into_inner();
            if field == "." {
                // Not about one field: a syntax error, with line and column.
                return ConfigError::new("--config", inner.to_string().trim());
            }
            ConfigError::new(field, inner.message().trim())
        })
    }

    /// Checks every value; the first problem names its field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_url("redis.url", &self.redis.url, &["redis", "rediss"])?;
        check_channels(&self.redis)?;
        self.kafka.validate()?;
        check_url("database.url", &self.database.url, &["postgres", "postgresql"])?;
        positive("database.max_connections", self.database.max_connections.into())?;
        check_url("chain.rpc_url", &self.chain.rpc_url, &["http", "https"])?;
        check_url("chain.ws_url", &self.chain.ws_url(), &["ws", "wss"])?;
        self.chain.contract_address()?;
        positive("chain.confirmations", self.chain.confirmations)?;
        positive("chain.poll_interval_ms", self.chain.poll_interval_ms)?;
        positive("anchor.max_pending", self.anchor.max_pending)?;
        positive("anchor.interval_ms", self.anchor.interval_ms)?;
        positive("anchor.stuck_after_blocks", self.anchor.stuck_after_blocks)?;
        positive("anchor.max_fee_per_gas_gwei", self.anchor.max_fee_per_gas_gwei)?;
        if !(10..=1000).contains(&self.anchor.fee_bump_percent) {
            return Err(ConfigError::new(
                "anchor.fee_bump_percent",
                "must be 10 to 1000: nodes refuse replacements that raise fees by less than 10 %",
            ));
        }
        if !(1..=65_536).contains(&self.anchor.max_batch) {
            return Err(ConfigError::new("anchor.max_batch", "must be 1 to 65536"));
        }
        positive("pipeline.batch_size", self.pipeline.batch_size as u64)?;
        positive("pipeline.flush_interval_ms", self.pipeline.flush_interval_ms)?;
        positive("pipeline.max_message_bytes", self.pipeline.max_message_bytes as u64)?;
        positive("pipeline.queue_capacity", self.pipeline.queue_capacity as u64)?;
        self.server.bind_ip()?;
        if self.server.rpc_port != 0 && self.server.rpc_port == self.server.ws_port {
            return Err(ConfigError::new(
                "server.rpc_port",
                "must differ from server.ws_port",
            ));
        }
        positive("server.rpc_max_connections", self.server.rpc_max_connections.into())?;
        positive("server.rpc_max_batch", self.server.rpc_max_batch.into())?;
        positive(
            "server.rpc_max_subscriptions",
            self.server.rpc_max_subscriptions.into(),
        )?;
        positive(
            "server.rpc_max_request_bytes",
            self.server.rpc_max_request_bytes.into(),
        )?;
        positive(
            "server.rpc_max_response_bytes",
            self.server.rpc_max_response_bytes.into(),
        )?;
        positive("server.ws_max_connections", self.server.ws_max_connections)?;
        positive("server.ws_queue_capacity", self.server.ws_queue_capacity as u64)?;
        positive("server.ws_heartbeat_secs", self.server.ws_heartbeat_secs)?;
        if self.server.ws_coalesce_ms > MAX_COALESCE_MS {
            return Err(ConfigError::new(
                "server.ws_coalesce_ms",
                format!("must be at most {MAX_COALESCE_MS}"),
            ));
        }
        positive("server.ws_write_timeout_ms", self.server.ws_write_timeout_ms)?;
        self.webhooks.validate()?;
        self.analysis
            .validate()
            .map_err(|e| ConfigError::new(format!("analysis.{}", e.field), e.reason))
    }

    /// Settings of the WebSocket endpoint.
    pub fn ws_settings(&self) -> crate::ws::WsSettings {
        crate::ws::WsSettings {
            max_connections: self.server.ws_max_connections,
            queue_capacity: self.server.ws_queue_capacity,
            coalesce: Duration::from_millis(self.server.ws_coalesce_ms),
            heartbeat: Duration::from_secs(self.server.ws_heartbeat_secs),
            write_timeout: Duration::from_millis(self.server.ws_write_timeout_ms),
            max_resume: i64::from(self.server.ws_max_resume),
        }
    }

    /// The pipeline flush interval.
    pub fn flush_interval(&self) -> Duration {
        Duration::from_millis(self.pipeline.flush_interval_ms)
    }
}

fn check_url(field: &str, text: &str, schemes: &[&str]) -> Result<(), ConfigError> {
    let url = url::Url::parse(text)
        .map_err(|e| ConfigError::new(field, format!("{text:?} is not a URL: {e}")))?;
    if !schemes.contains(&url.scheme()) {
        let expected = schemes.join(", ");
        let reason = format!("scheme {:?} is not one of {expected}", url.scheme());
        return Err(ConfigError::new(field, reason));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::new(field, format!("{text:?} has no host")));
    }
    Ok(())
}

fn check_channels(redis: &RedisConfig) -> Result<(), ConfigError> {
    let names = [
        ("redis.user_events", &redis.user_events),
        ("redis.system_metrics", &redis.system_metrics),
        ("redis.business_events", &redis.business_events),
    ];
    for (field, name) in names {
        if name.trim().is_empty() {
            return Err(ConfigError::new(field, "must not be empty"));
        }
    }
    if redis.group.trim().is_empty() {
        return Err(ConfigError::new("redis.group", "must not be empty"));
    }
    if redis.consumer.trim().is_empty() {
        return Err(ConfigError::new("redis.consumer", "must not be empty"));
    }
    if redis.channels().len() != names.len() {
        return Err(ConfigError::new("redis", "the three channels must differ"));
    }
    Ok(())
}

fn positive(field: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::new(field, "must be greater than 0"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_original() {
        let config = Config::default();
        config.validate().unwrap();
        assert_eq!(config.redis.url, "redis://localhost:6379");
        assert_eq!(config.server.ws_port, 8080);
        assert_eq!(config.server.rpc_port, 9944);
        assert_eq!(config.server.bind, "127.0.0.1");
        assert_eq!(config.chain.ws_url(), "ws://127.0.0.1:8545");
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("[redis]\nurl = 5", "redis.url"),
            ("[redis]\nurl = \"http://x\"", "redis.url"),
            ("[server]\nrpc_port = 70000", "server.rpc_port"),
            ("[server]\nbind = \"nowhere\"", "server.bind"),
            ("[chain]\ncontract = \"0x12\"", "chain.contract"),
            ("[pipeline]\nbatch_size = 0", "pipeline.batch_size"),
            ("[redis]\nsurprise = 1", "redis"),
            ("[database]\nurl = \"mysql://h/db\"", "database.url"),
        ];
        for (text, field) in cases {
            let err = Config::from_toml(text).and_then(|c| c.validate().map(|()| c));
            let err = err.expect_err(text);
            assert!(err.field.starts_with(field), "{text}: {err}");
        }
    }
}
