//! What the servers share: storage, broadcasts, counters and the chain.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use alloy::primitives::Address;
use alloy::providers::DynProvider;
use analytics_primitives::insight::BlockStamp;
use offchain_worker::hub::Hub;
use offchain_worker::stats::Stats;
use offchain_worker::storage::Store;
use tokio::sync::watch;

/// Shared node state.
pub struct NodeState {
    /// Storage.
    pub store: Store,
    /// Broadcasts.
    pub hub: Hub,
    /// Counters.
    pub stats: Arc<Stats>,
    /// The latest chain head.
    pub heads: watch::Receiver<Option<BlockStamp>>,
    /// Read-only chain access.
    pub chain: DynProvider,
    /// The anchoring contract.
    pub contract: Address,
    /// Chain id.
    pub chain_id: u64,
    /// Whether the Redis source runs.
    pub redis_enabled: bool,
    /// Whether the Kafka source runs.
    pub kafka_enabled: bool,
    /// Open dashboard WebSocket connections.
    pub connections: AtomicU64,
    /// Dashboard WebSocket connections and their subscriptions.
    pub ws: Arc<crate::ws::WsHub>,
    /// Start time.
    pub started: Instant,
    /// Where clients reach the node's JSON-RPC and its chain.
    pub public: PublicInfo,
}

/// What the node tells its clients (the dashboard page, through
/// `/config.json`) about where to reach its JSON-RPC server and its chain.
#[derive(Debug, Default)]
pub struct PublicInfo {
    /// URL of the JSON-RPC server, set once it is bound (its port may be
    /// chosen then). An unspecified bind address becomes loopback.
    pub rpc_url: OnceLock<String>,
    /// The chain's HTTP JSON-RPC URL (`chain.rpc_url`) without the user
    /// name and password it may carry.
    pub chain_rpc_url: String,
}

impl PublicInfo {
    /// The chain part; the JSON-RPC URL follows with [`Self::set_rpc_addr`].
    pub fn new(chain_rpc_url: &str) -> Self {
        let chain_rpc_url = match url::Url::parse(chain_rpc_url) {
            Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
                // Cannot fail: the URL has a host.
                let _ = url.set_username("");
                let _ = url.set_password(None);
                url.to_string()
            }
            _ => chain_rpc_url.to_owned(),
        };
        Self { rpc_url: OnceLock::new(), chain_rpc_url }
    }

    /// Records the bound JSON-RPC address; later calls change nothing.
    pub fn set_rpc_addr(&self, addr: SocketAddr) {
        let ip = match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let _ = self.rpc_url.set(format!("http://{}", SocketAddr::new(ip, addr.port())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_urls_hide_credentials_and_unspecified_addresses() {
        let info = PublicInfo::new("https://user:secret@rpc.example:8545/v1");
        assert_eq!(info.chain_rpc_url, "https://rpc.example:8545/v1");
        let plain = PublicInfo::new("http://127.0.0.1:8545");
        assert_eq!(plain.chain_rpc_url, "http://127.0.0.1:8545");
        info.set_rpc_addr("0.0.0.0:9944".parse().expect("an address"));
        assert_eq!(info.rpc_url.get().map(String::as_str), Some("http://127.0.0.1:9944"));
        info.set_rpc_addr("[::]:1".parse().expect("an address"));
        assert_eq!(info.rpc_url.get().map(String::as_str), Some("http://127.0.0.1:9944"));
        let v6 = PublicInfo::new("http://127.0.0.1:8545");
        v6.set_rpc_addr("[::]:9944".parse().expect("an address"));
        assert_eq!(v6.rpc_url.get().map(String::as_str), Some("http://[::1]:9944"));
    }
}
