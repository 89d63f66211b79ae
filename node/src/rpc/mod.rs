//! The JSON-RPC server (jsonrpsee, HTTP and WebSocket on one port).
//!
//! - [`api`]: the `analytics_*` method and subscription signatures;
//! - [`server`]: their implementation and the server's limits;
//! - [`views`]: the JSON shapes returned;
//! - [`error`]: the one mapping from failures to JSON-RPC errors.

pub mod api;
pub mod error;
pub mod server;
pub mod views;
