//! `POST /rpc`: the node's JSON-RPC, forwarded to its own server.
//!
//! The JSON-RPC server (jsonrpsee, on its own port) sends no CORS headers,
//! so a page loaded from the HTTP port cannot call it directly. Rather than
//! open the JSON-RPC server to cross-origin calls, this route forwards the
//! page's requests to it over loopback: the page stays same-origin (it
//! works behind anything that exposes only this port), and every request
//! still meets the JSON-RPC server's own limits and error mapping, since
//! that server answers it. The body is passed through untouched, batches
//! included; the answer's status and body come back as they are.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use alloy::transports::http::reqwest;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use tracing::warn;

use crate::state::NodeState;

/// Longest wait for the JSON-RPC server's answer.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

/// One client, so connections to the JSON-RPC server are reused. It never
/// uses a proxy from the environment: the target is this process.
static CLIENT: LazyLock<Result<reqwest::Client, reqwest::Error>> = LazyLock::new(|| {
    reqwest::Client::builder().no_proxy().timeout(FORWARD_TIMEOUT).build()
});

/// The JSON-RPC error the page gets when the answer cannot be had; the
/// cause is logged, not sent.
const UNAVAILABLE: &str =
    r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"internal error"}}"#;

/// `POST /rpc`.
pub async fn forward_rpc(State(state): State<Arc<NodeState>>, body: Bytes) -> Response {
    let Some(url) = state.public.rpc_url.get() else {
        return unavailable(StatusCode::SERVICE_UNAVAILABLE);
    };
    let client = match CLIENT.as_ref() {
        Ok(client) => client,
        Err(err) => {
            warn!(target: "http", %err, "cannot build the JSON-RPC forwarding client");
            return unavailable(StatusCode::BAD_GATEWAY);
        }
    };
    let sent = client
        .post(url)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await;
    let answer = match sent {
        Ok(answer) => answer,
        Err(err) => {
            warn!(target: "http", %err, "forwarding to JSON-RPC failed");
            return unavailable(StatusCode::BAD_GATEWAY);
        }
    };
    let status = answer.status();
    match answer.bytes().await {
        Ok(bytes) => json_response(status, bytes),
        Err(err) => {
            warn!(target: "http", %err, "reading the JSON-RPC answer failed");
            unavailable(StatusCode::BAD_GATEWAY)
        }
    }
}

fn json_response(status: StatusCode, body: impl Into<axum::body::Body>) -> Response {
    let headers =
        [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")];
    (status, headers, body.into()).into_response()
}

fn unavailable(status: StatusCode) -> Response {
    json_response(status, UNAVAILABLE)
}
