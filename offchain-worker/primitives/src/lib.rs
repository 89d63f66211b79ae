//! Pure building blocks of the analytics node: no I/O, no clocks, no
//! randomness, so every result here can be recomputed bit for bit by anyone.
//!
//! Layout:
//! - [`event`]: the typed events (user, system metric, business) and their
//!   parsing and validation from raw message bytes;
//! - [`timestamp`]: the documented rules for reading event timestamps;
//! - [`insight`]: insights, their block stamp and their content hash;
//! - [`inputs`]: the digest of an insight's inputs, whole or by pieces;
//! - [`canonical`]: RFC 8785 (JCS) canonical JSON;
//! - [`merkle`]: OpenZeppelin-compatible StandardMerkleTree over `bytes32`
//!   leaves, with proofs;
//! - [`manifest`]: the manifest leaf by which a batch commits to the dead
//!   letters it accounts for;
//! - [`analysis`]: the streaming analysis behind the [`analysis::Analyzer`]
//!   trait.

pub mod analysis;
pub mod canonical;
pub mod event;
pub mod inputs;
pub mod insight;
pub mod manifest;
pub mod merkle;
pub mod timestamp;

pub use alloy_primitives::{keccak256, B256};
