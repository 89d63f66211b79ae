//! What the servers share: storage, broadcasts, counters and the chain.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
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
    /// Open dashboard WebSocket connections.
    pub connections: AtomicU64,
    /// Dashboard WebSocket connections and their subscriptions.
    pub ws: Arc<crate::ws::WsHub>,
    /// Start time.
    pub started: Instant,
}
