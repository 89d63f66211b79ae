//! The worker's error type.

/// Errors of the off-chain worker.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// A PostgreSQL statement or connection failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying migrations failed.
    #[error("migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A Redis command or connection failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// An insight could not be canonicalised.
    #[error("canonical json: {0}")]
    Canonical(#[from] analytics_primitives::canonical::CanonicalError),
    /// A Merkle tree could not be built.
    #[error("merkle: {0}")]
    Merkle(String),
    /// Stored data violates an invariant.
    #[error("corrupt data: {0}")]
    Corrupt(String),
}

impl WorkerError {
    /// Whether retrying later may succeed (lost connections, timeouts).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Database(e) => matches!(
                e,
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
            ),
            Self::Redis(e) => e.is_io_error() || e.is_connection_dropped(),
            _ => false,
        }
    }

    /// Whether the database refused an event because its position
    /// (source, stream, partition, offset) is already stored: another
    /// worker stored the same message first.
    pub fn is_stored_position(&self) -> bool {
        let Self::Database(sqlx::Error::Database(e)) = self else { return false };
        e.is_unique_violation() && e.constraint() == Some(EVENTS_POSITION_INDEX)
    }
}

/// The unique index on an event's position in its source.
pub const EVENTS_POSITION_INDEX: &str = "events_source_position";
