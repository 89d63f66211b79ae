//! The live dashboard page at `/`.
//!
//! The page, its style and its JavaScript modules sit beside this file
//! and are embedded in the binary, so the node serves them with no
//! internet access. The page is a client like any other: it follows the
//! `/analytics` WebSocket, reads insights and proofs over the node's
//! JSON-RPC, and verifies proofs itself against the chain's JSON-RPC.
//!
//! Routes (wired in [`crate::http`]):
//! - `GET /` and `GET /assets/{name}`: the page and its files, revalidated
//!   on every load by their `ETag` (`Cache-Control: no-cache`), so a new
//!   binary's page is never mixed with an old one's scripts;
//! - `GET /config.json`: where the page finds the JSON-RPC servers and
//!   which contract it checks proofs against;
//! - `POST /rpc`: the node's JSON-RPC, forwarded ([`proxy`]).
//!
//! JavaScript modules: `keccak.js`, `jcs.js` (RFC 8785), `merkle.js`,
//! `eth.js` (hand-encoded `eth_call`s), `verify.js` (the checks of
//! `docs/verification.md`), `chart.js` (canvas charts), `board.js`,
//! `feed.js`, `panel.js`, `socket.js`, `rpc.js`, `forecast.js` and
//! `app.js`, which wires them.

use std::sync::{Arc, OnceLock};

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::state::NodeState;

pub mod proxy;

pub use proxy::forward_rpc;

/// The path the page posts JSON-RPC requests to.
pub const RPC_PATH: &str = "/rpc";

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
    etag: OnceLock<HeaderValue>,
}

const fn asset(
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
) -> Asset {
    Asset { name, content_type, body, etag: OnceLock::new() }
}

static PAGE: Asset = asset("index.html", HTML, include_str!("index.html"));

static ASSETS: [Asset; 15] = [
    asset("app.js", JS, include_str!("app.js")),
    asset("board.js", JS, include_str!("board.js")),
    asset("bytes.js", JS, include_str!("bytes.js")),
    asset("chart.js", JS, include_str!("chart.js")),
    asset("eth.js", JS, include_str!("eth.js")),
    asset("feed.js", JS, include_str!("feed.js")),
    asset("forecast.js", JS, include_str!("forecast.js")),
    asset("jcs.js", JS, include_str!("jcs.js")),
    asset("keccak.js", JS, include_str!("keccak.js")),
    asset("merkle.js", JS, include_str!("merkle.js")),
    asset("panel.js", JS, include_str!("panel.js")),
    asset("rpc.js", JS, include_str!("rpc.js")),
    asset("socket.js", JS, include_str!("socket.js")),
    asset("verify.js", JS, include_str!("verify.js")),
    asset("style.css", CSS, include_str!("style.css")),
];

static ICON: Asset = asset("favicon.svg", SVG, include_str!("favicon.svg"));

impl Asset {
    /// A strong validator: FNV-1a of the body, which is fixed at build time.
    fn etag(&self) -> &HeaderValue {
        self.etag.get_or_init(|| {
            let hash = self.body.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
            HeaderValue::from_str(&format!("\"{hash:016x}\""))
                .expect("hex digits in quotes are a valid header value")
        })
    }

    /// The file, or 304 when the client's copy is current.
    fn respond(
        &self,
        request: &HeaderMap,
        extra: &[(header::HeaderName, HeaderValue)],
    ) -> Response {
        let etag = self.etag().clone();
        let fresh = request
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .any(|value| value.split(',').any(|tag| tag.trim() == etag));
        let mut headers = HeaderMap::new();
        headers.insert(header::ETAG, etag);
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers
            .insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        for (name, value) in extra {
            headers.insert(name.clone(), value.clone());
        }
        if fresh {
            return (StatusCode::NOT_MODIFIED, headers).into_response();
        }
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        (headers, self.body).into_response()
    }
}

/// `GET /`: the page, under a content security policy that allows only
/// its own files, its own server and the chain endpoint it verifies with.
pub async fn page(State(state): State<Arc<NodeState>>, request: HeaderMap) -> Response {
    let chain = chain_origin(&state.public.chain_rpc_url);
    let policy = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self' {chain}; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    );
    let mut extra =
        vec![(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"))];
    if let Ok(policy) = HeaderValue::from_str(&policy) {
        extra.push((header::CONTENT_SECURITY_POLICY, policy));
    }
    PAGE.respond(&request, &extra)
}

/// `GET /assets/{name}`: a script, the style sheet or the icon.
pub async fn asset_file(Path(name): Path<String>, request: HeaderMap) -> Response {
    let found = ASSETS.iter().chain([&ICON]).find(|asset| asset.name == name);
    match found {
        Some(asset) => asset.respond(&request, &[]),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

/// `GET /config.json`: what the page needs to know about the node.
///
/// `rpcUrl` is where the node's JSON-RPC server listens (null until it is
/// bound), `rpcPath` the same-origin route the page uses to reach it,
/// `chainRpcUrl` the chain endpoint the page verifies proofs against, and
/// `contract` the `InsightAnchor` it asks.
pub async fn config(State(state): State<Arc<NodeState>>) -> impl IntoResponse {
    let body = json!({
        "rpcUrl": state.public.rpc_url.get(),
        "rpcPath": RPC_PATH,
        "wsPath": "/analytics",
        "chainRpcUrl": state.public.chain_rpc_url,
        "chainId": state.chain_id,
        "contract": state.contract.to_checksum(None),
    });
    ([(header::CACHE_CONTROL, "no-store")], Json(body))
}

/// The scheme, host and port of a URL, as a CSP source; empty when the
/// text is not a URL with a host.
fn chain_origin(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(url) if url.host().is_some() => url.origin().ascii_serialization(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn fetch(name: &str, request: HeaderMap) -> Response {
        asset_file(Path(name.to_owned()), request).await
    }

    #[tokio::test]
    async fn assets_have_their_content_types_and_revalidate() {
        let cases = [("app.js", JS), ("style.css", CSS), ("favicon.svg", SVG)];
        for (name, content_type) in cases {
            let response = fetch(name, HeaderMap::new()).await;
            assert_eq!(response.status(), StatusCode::OK, "{name}");
            let headers = response.headers();
            assert_eq!(headers[header::CONTENT_TYPE], content_type, "{name}");
            assert_eq!(headers[header::CACHE_CONTROL], "no-cache", "{name}");

            let mut request = HeaderMap::new();
            request.insert(header::IF_NONE_MATCH, headers[header::ETAG].clone());
            let again = fetch(name, request).await;
            assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{name}");
        }
        let missing = fetch("../mod.rs", HeaderMap::new()).await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    }

    /// Every `/assets/...` the page names and every module a script
    /// imports is embedded.
    #[test]
    fn every_referenced_file_is_embedded() {
        let embedded: Vec<&str> = ASSETS.iter().chain([&ICON]).map(|a| a.name).collect();
        let mut referenced = Vec::new();
        for part in PAGE.body.split("/assets/").skip(1) {
            referenced.push(part.split('"').next().unwrap_or_default());
        }
        for asset in ASSETS.iter().filter(|a| a.content_type == JS) {
            for part in asset.body.split("from \"./").skip(1) {
                referenced.push(part.split('"').next().unwrap_or_default());
            }
        }
        assert!(referenced.len() > 10, "{referenced:?}");
        for name in referenced {
            assert!(embedded.contains(&name), "{name} is referenced but not embedded");
        }
    }

    #[test]
    fn chain_origin_is_scheme_host_and_port() {
        assert_eq!(chain_origin("http://127.0.0.1:8545"), "http://127.0.0.1:8545");
        assert_eq!(chain_origin("https://rpc.example/v1/abc"), "https://rpc.example");
        assert_eq!(chain_origin("not a url"), "");
    }
}
