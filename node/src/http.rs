//! The HTTP server: the dashboard page `/` with its files and JSON-RPC
//! route, the dashboard WebSocket `/analytics`, `/health` for
//! orchestrators and `/metrics` for Prometheus.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;

use crate::dashboard;
use crate::health::{prometheus, HealthProbe};
use crate::state::NodeState;

/// The routes.
pub fn router(state: Arc<NodeState>) -> Router {
    Router::new()
        .route("/", get(dashboard::page))
        .route("/assets/{name}", get(dashboard::asset_file))
        .route("/config.json", get(dashboard::config))
        .route(dashboard::RPC_PATH, post(dashboard::forward_rpc))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/analytics", get(crate::ws::upgrade))
        .with_state(state)
}

/// Binds and serves until `shutdown` fires; returns the bound address.
pub async fn serve(
    state: Arc<NodeState>,
    addr: SocketAddr,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = std::net::TcpListener::bind(addr)?;
    serve_on(state, listener, shutdown)
}

/// Serves on a listener bound earlier, until `shutdown` fires.
pub fn serve_on(
    state: Arc<NodeState>,
    listener: std::net::TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let local = listener.local_addr()?;
    // Live updates are small and must not wait for the previous segment's
    // acknowledgement; batching is the WebSocket dispatcher's job.
    let listener = listener.tap_io(|tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(target: "http", %err, "TCP_NODELAY not set");
        }
    });
    let app = router(state);
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(err) = served {
            tracing::error!(target: "http", %err, "HTTP server stopped");
        }
    });
    Ok((local, task))
}

async fn health(State(state): State<Arc<NodeState>>) -> impl IntoResponse {
    let report = HealthProbe::new(&state).report().await;
    let code = if report.status == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(report))
}

async fn metrics(State(state): State<Arc<NodeState>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], prometheus(&state))
}
