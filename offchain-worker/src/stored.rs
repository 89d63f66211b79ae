//! Reading the stored history back in the order it was analysed, for
//! replaying the analysis: events by id, every insight, every batch, and
//! where each run of the analysis began (recorded by the pipeline).

use sqlx::FromRow;

use crate::error::WorkerError;
use crate::storage::{BatchRow, Store, StoreTx, BATCH_COLUMNS};

/// A start of the analysis: from `first_event` on, a fresh analyser of
/// `analysis` with the settings of `settings_digest` analysed the events.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct AnalysisRun {
    /// The first event the run analysed.
    pub first_event: i64,
    /// The analyser and its version (`engine/2`, ...).
    pub analysis: String,
    /// keccak256 of the canonical JSON of the `[analysis]` settings,
    /// `0x`-hex.
    pub settings_digest: String,
}

/// Records the start of a run, in the transaction of its first events.
pub async fn insert_analysis_run(
    tx: &mut StoreTx,
    run: &AnalysisRun,
) -> Result<(), WorkerError> {
    sqlx::query(
        "INSERT INTO analysis_runs (first_event, analysis, settings_digest) \
         VALUES ($1, $2, $3)",
    )
    .bind(run.first_event)
    .bind(&run.analysis)
    .bind(&run.settings_digest)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A stored event as the analysis saw it.
#[derive(Debug, Clone, FromRow)]
pub struct EventRecord {
    /// Id, the analysis order.
    pub id: i64,
    /// Source kind (`redis`, `kafka`).
    pub source: String,
    /// Channel or topic.
    pub stream: String,
    /// `user_event`, `system_metric` or `business_event`.
    pub kind: String,
    /// The message as stored.
    pub payload: String,
}

/// A stored insight, with what replay compares.
#[derive(Debug, Clone, FromRow)]
pub struct InsightRecord {
    /// Id.
    pub id: i64,
    /// Content hash, 32 bytes.
    pub hash: Vec<u8>,
    /// The canonical JSON that was hashed.
    pub canonical: String,
    /// The event it was computed on.
    pub event_id: i64,
    /// Its batch, once batched.
    pub batch_id: Option<i64>,
    /// Its leaf position in the batch.
    pub leaf_index: Option<i32>,
}

/// A consistent, read-only view of the stored history: every read sees
/// the database as it was when the snapshot was taken, so a node writing
/// meanwhile adds nothing half-way (events without their insights, a batch
/// without its members).
pub struct Snapshot {
    tx: StoreTx,
}

impl Store {
    /// Takes a snapshot (a `REPEATABLE READ`, `READ ONLY` transaction).
    pub async fn snapshot(&self) -> Result<Snapshot, WorkerError> {
        let mut tx = self.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await?;
        Ok(Snapshot { tx })
    }
}

impl Snapshot {
    /// Up to `limit` events with ids above `after`, by id.
    pub async fn events_by_id(
        &mut self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<EventRecord>, WorkerError> {
        let rows = sqlx::query_as(
            "SELECT id, source, stream, kind, payload::text AS payload FROM events \
             WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(rows)
    }

    /// Every insight, by id.
    pub async fn all_insights(&mut self) -> Result<Vec<InsightRecord>, WorkerError> {
        let rows = sqlx::query_as(
            "SELECT id, hash, canonical, event_id, batch_id, leaf_index FROM insights \
             ORDER BY id",
        )
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(rows)
    }

    /// Every run of the analysis, by its first event; none in a database
    /// whose schema predates them.
    pub async fn analysis_runs(&mut self) -> Result<Vec<AnalysisRun>, WorkerError> {
        let exists: bool =
            sqlx::query_scalar("SELECT to_regclass('analysis_runs') IS NOT NULL")
                .fetch_one(&mut *self.tx)
                .await?;
        if !exists {
            return Ok(Vec::new());
        }
        let rows = sqlx::query_as(
            "SELECT first_event, analysis, settings_digest FROM analysis_runs \
             ORDER BY first_event",
        )
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(rows)
    }

    /// Every batch, by id.
    pub async fn all_batches(&mut self) -> Result<Vec<BatchRow>, WorkerError> {
        let sql = format!("SELECT {BATCH_COLUMNS} FROM anchor_batches ORDER BY id");
        let rows = sqlx::query_as(&sql).fetch_all(&mut *self.tx).await?;
        Ok(rows)
    }
}
