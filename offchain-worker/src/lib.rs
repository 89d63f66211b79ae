//! The off-chain worker: it takes messages from the sources, stores them in
//! PostgreSQL, analyses them, turns the results into stamped and hashed
//! insights, and groups insights into Merkle batches for anchoring.
//!
//! Layout:
//! - [`envelope`]: a raw message as it left its source;
//! - [`source`]: the sources (Redis pub/sub);
//! - [`pipeline`]: parse, store, analyse, stamp and hash, in batches;
//! - [`storage`]: every SQL statement, behind [`storage::Store`], with
//!   [`anchor_txs`] holding those of the anchoring transaction manager;
//! - [`stored`]: the stored history read back in analysis order, for
//!   replay;
//! - [`hub`]: the broadcast channels dashboards and subscribers follow;
//! - [`messages`]: broadcast payloads, live and replayed;
//! - [`stats`]: counters shared with health and metrics endpoints;
//! - [`error`]: the crate's error type.
//!
//! Pure logic (event parsing, hashing, Merkle trees, analysis) lives in
//! `analytics-primitives`.

pub mod anchor_txs;
pub mod envelope;
pub mod error;
pub mod hub;
pub mod messages;
pub mod pipeline;
pub mod source;
pub mod stats;
pub mod storage;
pub mod stored;

pub use error::WorkerError;

/// The schema migrations, embedded from the workspace's `migrations/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");
