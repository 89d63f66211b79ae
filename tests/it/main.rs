//! Integration tests: a real `analytics-node` against real PostgreSQL,
//! Redis and anvil, driven as a client would.

mod bad_input;
mod batch_audit;
mod chain_reset;
mod cli;
mod cluster;
mod dashboard;
mod end_to_end;
mod finality;
mod kafka;
mod redis_restart;
mod redis_streams;
mod reorg;
mod replay;
mod restart_anchoring;
mod rpc_errors;
mod stuck_transaction;
mod subscriptions;
mod webhooks;
mod websocket;
