//! A minimal JSON-RPC client over HTTP, independent of the node's code.

use anyhow::{bail, Context};
use serde_json::{json, Value};

/// Calls `method`; returns `result` or fails with the error object.
pub async fn call(url: &str, method: &str, params: Value) -> anyhow::Result<Value> {
    let response = raw(url, method, params).await?;
    if let Some(error) = response.get("error") {
        bail!("{method} failed: {error}");
    }
    response.get("result").cloned().context("response without result")
}

/// Calls `method`; returns the whole response object.
pub async fn raw(url: &str, method: &str, params: Value) -> anyhow::Result<Value> {
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
    post(url, &body).await
}

/// POSTs JSON and parses the JSON answer.
pub async fn post(url: &str, body: &Value) -> anyhow::Result<Value> {
    let client = reqwest::Client::builder().no_proxy().build()?;
    let response = client.post(url).json(body).send().await?;
    let status = response.status();
    let text = response.text().await?;
    serde_json::from_str(&text)
        .with_context(|| format!("HTTP {status}, not JSON: {text}"))
}

/// GETs a URL and returns the body text.
pub async fn get_text(url: &str) -> anyhow::Result<String> {
    let client = reqwest::Client::builder().no_proxy().build()?;
    Ok(client.get(url).send().await?.text().await?)
}
