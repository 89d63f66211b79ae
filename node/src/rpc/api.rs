//! The `analytics_*` JSON-RPC interface.

use jsonrpsee::core::SubscriptionResult;
use jsonrpsee::proc_macros::rpc;
use jsonrpsee::types::ErrorObjectOwned;
use serde_json::Value;

use super::views::{
    BatchExportView, BatchView, HealthView, HistoryParams, InsightView, ListParams,
    MetricPointView, ProofView,
};

/// Result of an `analytics_*` call.
pub type RpcResult<T> = Result<T, ErrorObjectOwned>;

/// The analytics node's JSON-RPC API. An insight is named by its numeric
/// id or by its `0x` hash.
#[rpc(server, client, namespace = "analytics")]
pub trait AnalyticsApi {
    /// One insight with its anchoring status.
    #[method(name = "getInsight")]
    async fn get_insight(&self, id: Value) -> RpcResult<InsightView>;

    /// An insight with its Merkle proof and batch: the input of `verify`.
    #[method(name = "getInsightProof")]
    async fn get_insight_proof(&self, id: Value) -> RpcResult<ProofView>;

    /// One batch.
    #[method(name = "getBatch")]
    async fn get_batch(&self, id: i64) -> RpcResult<BatchView>;

    /// A whole batch with every leaf's content, its manifest and the dead
    /// letters it accounts for: the input of `verify` for a batch.
    #[method(name = "exportBatch")]
    async fn export_batch(&self, id: i64) -> RpcResult<BatchExportView>;

    /// Insights, newest first, optionally filtered.
    #[method(name = "listInsights")]
    async fn list_insights(
        &self,
        params: Option<ListParams>,
    ) -> RpcResult<Vec<InsightView>>;

    /// A metric's samples in a time range, newest first, at most 1000.
    #[method(name = "historicalData")]
    async fn historical_data(
        &self,
        params: HistoryParams,
    ) -> RpcResult<Vec<MetricPointView>>;

    /// Distinct users active in the last 5 minutes.
    #[method(name = "activeUsers")]
    async fn active_users(&self) -> RpcResult<i64>;

    /// Health and load of the node and of the services it uses.
    #[method(name = "systemHealth")]
    async fn system_health(&self) -> RpcResult<HealthView>;

    /// Every new insight, as the `insights` broadcast carries it.
    #[subscription(
        name = "subscribeInsights" => "insight",
        unsubscribe = "unsubscribeInsights",
        item = Value
    )]
    async fn subscribe_insights(&self) -> SubscriptionResult;

    /// Every metric sample, as the `dashboard_update` broadcast carries it.
    #[subscription(
        name = "subscribeDashboard" => "dashboard",
        unsubscribe = "unsubscribeDashboard",
        item = Value
    )]
    async fn subscribe_dashboard(&self) -> SubscriptionResult;

    /// High and critical anomalies.
    #[subscription(
        name = "subscribeAlerts" => "alert",
        unsubscribe = "unsubscribeAlerts",
        item = Value
    )]
    async fn subscribe_alerts(&self) -> SubscriptionResult;

    /// Every anchoring status change of a batch.
    #[subscription(
        name = "subscribeAnchors" => "anchor",
        unsubscribe = "unsubscribeAnchors",
        item = Value
    )]
    async fn subscribe_anchors(&self) -> SubscriptionResult;
}
