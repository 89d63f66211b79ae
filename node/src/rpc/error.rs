//! The one place where failures become JSON-RPC errors. Internal causes
//! are logged, never sent to clients.

use jsonrpsee::types::ErrorObjectOwned;
use tracing::error;

/// Invalid method parameters (JSON-RPC standard code).
pub const INVALID_PARAMS: i32 = -32602;
/// Internal error (JSON-RPC standard code).
pub const INTERNAL_ERROR: i32 = -32603;
/// The requested object does not exist.
pub const NOT_FOUND: i32 = -32001;
/// The object exists but is not ready (an insight not yet in a batch).
pub const NOT_READY: i32 = -32002;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// Unknown id or hash.
    #[error("{0} not found")]
    NotFound(String),
    /// Known but not ready yet.
    #[error("{0}")]
    NotReady(String),
    /// Bad parameters.
    #[error("invalid params: {0}")]
    InvalidParams(String),
    /// Anything else; the cause is logged.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl From<offchain_worker::WorkerError> for RpcError {
    fn from(err: offchain_worker::WorkerError) -> Self {
        Self::Internal(err.into())
    }
}

impl From<RpcError> for ErrorObjectOwned {
    fn from(err: RpcError) -> Self {
        let code = match &err {
            RpcError::NotFound(_) => NOT_FOUND,
            RpcError::NotReady(_) => NOT_READY,
            RpcError::InvalidParams(_) => INVALID_PARAMS,
            RpcError::Internal(cause) => {
                error!(target: "rpc", cause = %format!("{cause:#}"), "call failed");
                INTERNAL_ERROR
            }
        };
        ErrorObjectOwned::owned(code, err.to_string(), None::<()>)
    }
}
