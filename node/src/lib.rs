//! The analytics node: wiring of the off-chain worker, the chain client,
//! the JSON-RPC and HTTP servers, and the auditor's verifier.
//!
//! Layout:
//! - [`cli`]: the command line; [`commands`]: what each command does;
//! - [`config`]: configuration layers and validation;
//! - [`chain`]: providers, head follower, anchoring manager;
//! - [`rpc`]: the `analytics_*` JSON-RPC server;
//! - [`http`] and [`health`]: `/health`, `/metrics` and health reports;
//! - [`ws`]: the dashboard WebSocket endpoint `/analytics`;
//! - [`dashboard`]: the live dashboard page at `/`;
//! - [`relay`]: broadcasts across nodes sharing a database;
//! - [`verify`]: the auditor's verifier, which trusts only the chain;
//! - [`replay`]: recomputes stored insights from the stored events;
//! - [`feed`]: publishes CSV series to Redis for demos and tests;
//! - [`webhooks`]: critical-anomaly webhooks, off the pipeline's path.

pub mod bench;
pub mod chain;
pub mod cli;
pub mod commands;
pub mod config;
pub mod dashboard;
pub mod feed;
pub mod health;
pub mod http;
pub mod logging;
pub mod relay;
pub mod replay;
pub mod rpc;
pub mod state;
pub mod verify;
pub mod webhooks;
pub mod ws;
