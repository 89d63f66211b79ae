//! The JSON-RPC implementation and server.

use std::net::SocketAddr;
use std::sync::Arc;

use alloy::primitives::B256;
use analytics_primitives::merkle::{leaf_hash, MerkleTree};
use jsonrpsee::core::{async_trait, SubscriptionResult};
use jsonrpsee::server::{BatchRequestConfig, Server, ServerHandle};
use jsonrpsee::{PendingSubscriptionSink, SubscriptionMessage};
use offchain_worker::hub::Channel;
use offchain_worker::storage::{InsightFilter, InsightRow};
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::broadcast::error::RecvError;

use super::api::{AnalyticsApiServer, RpcResult};
use super::error::RpcError;
use super::views::{
    parse_rfc3339, rfc3339, BatchExportView, BatchLeafView, BatchView, DeadLetterView,
    HealthView, HistoryParams, InsightView, ListParams, MetricPointView, ProofView,
};
use crate::config::ServerConfig;
use crate::health::HealthProbe;
use crate::state::NodeState;

/// Format tag of [`ProofView`] documents.
pub const PROOF_FORMAT: &str = "analytics-insight-proof/1";
/// Format tag of [`BatchExportView`] documents.
pub const BATCH_FORMAT: &str = "analytics-batch-export/1";
/// Largest dead letter whose bytes an exported batch carries.
pub const EXPORT_RAW_LIMIT: usize = 64 * 1024;
/// Most items any list or history call returns.
pub const MAX_LIST: i64 = 1000;

/// The implementation of [`AnalyticsApiServer`].
pub struct AnalyticsRpc {
    state: Arc<NodeState>,
}

/// Starts the JSON-RPC server with deliberate limits.
pub async fn start(
    state: Arc<NodeState>,
    config: &ServerConfig,
    listener: std::net::TcpListener,
) -> anyhow::Result<(SocketAddr, ServerHandle)> {
    listener.set_nonblocking(true)?;
    let limits = jsonrpsee::server::ServerConfig::builder()
        .max_connections(config.rpc_max_connections)
        .max_subscriptions_per_connection(config.rpc_max_subscriptions)
        .max_request_body_size(config.rpc_max_request_bytes)
        .max_response_body_size(config.rpc_max_response_bytes)
        .set_batch_request_config(BatchRequestConfig::Limit(config.rpc_max_batch))
        .build();
    let server = Server::builder().set_config(limits).build_from_tcp(listener)?;
    let local = server.local_addr()?;
    let handle = server.start(AnalyticsRpc { state }.into_rpc());
    Ok((local, handle))
}

impl AnalyticsRpc {
    async fn find(&self, id: &Value) -> Result<InsightRow, RpcError> {
        let store = &self.state.store;
        let row = match id {
            Value::Number(n) => {
                let id = n.as_i64().ok_or_else(|| invalid("id must be an integer"))?;
                store.insight(id).await?
            }
            Value::String(text) => {
                let hash: B256 = text.parse().map_err(|_| invalid("not a 0x hash"))?;
                store.insight_by_hash(hash).await?
            }
            _ => return Err(invalid("id must be an integer or a 0x hash")),
        };
        row.ok_or_else(|| RpcError::NotFound(format!("insight {id}")))
    }

    async fn view(&self, row: InsightRow) -> Result<InsightView, RpcError> {
        let status = match row.batch_id {
            Some(id) => self.state.store.batch(id).await?.map(|b| b.status),
            None => None,
        };
        Ok(InsightView::new(row, status.as_deref())?)
    }

    async fn proof(&self, row: InsightRow) -> Result<ProofView, RpcError> {
        let (Some(batch_id), Some(leaf_index)) = (row.batch_id, row.leaf_index) else {
            let text = format!("insight {} is not in a batch yet; retry shortly", row.id);
            return Err(RpcError::NotReady(text));
        };
        let batch = self.state.store.batch(batch_id).await?;
        let batch = batch.ok_or_else(|| anyhow::anyhow!("batch {batch_id} missing"))?;
        let hashes = self.state.store.batch_hashes(batch_id).await?;
        let tree = MerkleTree::new(&hashes).map_err(|e| anyhow::anyhow!("{e}"))?;
        let index = usize::try_from(leaf_index).map_err(anyhow::Error::from)?;
        let proof = tree.proof(index).map_err(|e| anyhow::anyhow!("{e}"))?;
        let view = InsightView::new(row, Some(&batch.status))?;
        let batch = BatchView::new(&batch)?;
        if batch.root != tree.root() {
            return Err(
                anyhow::anyhow!("batch {batch_id} root differs from its leaves").into()
            );
        }
        Ok(ProofView {
            format: PROOF_FORMAT.to_owned(),
            id: view.id,
            insight: view.insight,
            hash: view.hash,
            leaf: leaf_hash(view.hash),
            proof,
            root: tree.root(),
            batch,
        })
    }

    async fn export(&self, id: i64) -> Result<BatchExportView, RpcError> {
        let store = &self.state.store;
        let row = store.batch(id).await?;
        let row = row.ok_or_else(|| RpcError::NotFound(format!("batch {id}")))?;
        let mut leaves = Vec::new();
        for insight in store.batch_insights(id).await? {
            let leaf_index = insight.leaf_index.unwrap_or_default();
            let view = InsightView::new(insight, None)?;
            leaves.push(BatchLeafView {
                id: view.id,
                leaf_index,
                hash: view.hash,
                insight: view.insight,
            });
        }
        let manifest = match &row.manifest {
            Some(text) => Some(serde_json::from_str(text).map_err(anyhow::Error::from)?),
            None => None,
        };
        let dead_letters = store
            .batch_dead_letters(id)
            .await?
            .into_iter()
            .map(|letter| DeadLetterView {
                id: letter.record.id,
                source: letter.record.source,
                stream: letter.record.stream,
                partition: letter.record.partition,
                offset: letter.record.offset,
                reason: letter.record.reason,
                raw_hash: letter.record.raw_hash,
                raw_length: letter.record.raw_length,
                raw: (letter.raw.len() <= EXPORT_RAW_LIMIT)
                    .then(|| format!("0x{}", alloy::hex::encode(&letter.raw))),
                received_at: rfc3339(letter.received_at),
            })
            .collect();
        Ok(BatchExportView {
            format: BATCH_FORMAT.to_owned(),
            batch: BatchView::new(&row)?,
            leaves,
            manifest,
            dead_letters,
        })
    }

    async fn follow(
        &self,
        pending: PendingSubscriptionSink,
        channel: Channel,
    ) -> SubscriptionResult {
        let mut receiver = self.state.hub.subscribe();
        let sink = pending.accept().await?;
        loop {
            let message = tokio::select! {
                () = sink.closed() => return Ok(()),
                message = receiver.recv() => message,
            };
            match message {
                Ok(message) if message.channel == channel => {
                    let raw = serde_json::value::to_raw_value(&*message)?;
                    sink.send(SubscriptionMessage::from(raw)).await?;
                }
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => {
                    let text =
                        format!("subscriber fell behind and missed {missed} messages");
                    return Err(text.into());
                }
                Err(RecvError::Closed) => return Ok(()),
            }
        }
    }
}

fn invalid(text: &str) -> RpcError {
    RpcError::InvalidParams(text.to_owned())
}

fn limit(requested: Option<i64>, default: i64) -> Result<i64, RpcError> {
    match requested.unwrap_or(default) {
        n if (1..=MAX_LIST).contains(&n) => Ok(n),
        n => Err(RpcError::InvalidParams(format!(
            "limit {n} is not within 1..={MAX_LIST}"
        ))),
    }
}

#[async_trait]
impl AnalyticsApiServer for AnalyticsRpc {
    async fn get_insight(&self, id: Value) -> RpcResult<InsightView> {
        let row = self.find(&id).await?;
        Ok(self.view(row).await?)
    }

    async fn get_insight_proof(&self, id: Value) -> RpcResult<ProofView> {
        let row = self.find(&id).await?;
        Ok(self.proof(row).await?)
    }

    async fn get_batch(&self, id: i64) -> RpcResult<BatchView> {
        let row = self.state.store.batch(id).await.map_err(RpcError::from)?;
        let row = row.ok_or_else(|| RpcError::NotFound(format!("batch {id}")))?;
        Ok(BatchView::new(&row).map_err(RpcError::from)?)
    }

    async fn export_batch(&self, id: i64) -> RpcResult<BatchExportView> {
        Ok(self.export(id).await?)
    }

    async fn list_insights(
        &self,
        params: Option<ListParams>,
    ) -> RpcResult<Vec<InsightView>> {
        let params = params.unwrap_or_default();
        let filter = InsightFilter {
            kind: params.kind,
            subject: params.subject,
            before_id: params.before_id,
            limit: limit(params.limit, 100)?,
        };
        let rows =
            self.state.store.list_insights(&filter).await.map_err(RpcError::from)?;
        let mut views = Vec::with_capacity(rows.len());
        for row in rows {
            views.push(self.view(row).await?);
        }
        Ok(views)
    }

    async fn historical_data(
        &self,
        params: HistoryParams,
    ) -> RpcResult<Vec<MetricPointView>> {
        let parse = |field: &str, text: &Option<String>| {
            text.as_deref().map(|t| parse_rfc3339(field, t)).transpose()
        };
        let from = parse("from", &params.from).map_err(RpcError::InvalidParams)?;
        let to = parse("to", &params.to).map_err(RpcError::InvalidParams)?;
        let limit = limit(params.limit, MAX_LIST)?;
        let store = &self.state.store;
        let samples = store.metric_history(&params.metric, from, to, limit).await;
        let samples = samples.map_err(RpcError::from)?;
        Ok(samples.into_iter().map(MetricPointView::from).collect())
    }

    async fn active_users(&self) -> RpcResult<i64> {
        let since = OffsetDateTime::now_utc() - time::Duration::minutes(5);
        Ok(self.state.store.active_users(since).await.map_err(RpcError::from)?)
    }

    async fn system_health(&self) -> RpcResult<HealthView> {
        Ok(HealthProbe::new(&self.state).report().await)
    }

    async fn subscribe_insights(
        &self,
        pending: PendingSubscriptionSink,
    ) -> SubscriptionResult {
        self.follow(pending, Channel::Insights).await
    }

    async fn subscribe_dashboard(
        &self,
        pending: PendingSubscriptionSink,
    ) -> SubscriptionResult {
        self.follow(pending, Channel::Dashboard).await
    }

    async fn subscribe_alerts(
        &self,
        pending: PendingSubscriptionSink,
    ) -> SubscriptionResult {
        self.follow(pending, Channel::Alerts).await
    }

    async fn subscribe_anchors(
        &self,
        pending: PendingSubscriptionSink,
    ) -> SubscriptionResult {
        self.follow(pending, Channel::Anchors).await
    }
}
