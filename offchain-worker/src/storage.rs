//! PostgreSQL storage: every SQL statement of the worker lives here.
//!
//! Writes of one pipeline batch (events, metrics, insights, dead letters)
//! happen in one transaction. Event ids are reserved from the sequence
//! before the insert so the analysis can cite them. Events and metric
//! samples, the bulk of a batch, go in by binary `COPY`
//! ([`binary_copy`]); the other bulk inserts go through `UNNEST`, so a
//! batch costs a handful of round trips.

use alloy_primitives::{Address, B256};
use serde_json::Value;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{FromRow, Postgres, Transaction};
use time::OffsetDateTime;

use crate::error::WorkerError;
use binary_copy::CopyRows;

mod binary_copy;

/// A transaction on the store.
pub type StoreTx = Transaction<'static, Postgres>;

/// An event row to insert.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Reserved id.
    pub id: i64,
    /// Source kind (`redis`).
    pub source: String,
    /// Channel or topic.
    pub stream: String,
    /// Partition.
    pub partition: i32,
    /// Offset in a log-based source.
    pub offset: Option<i64>,
    /// `user_event`, `system_metric` or `business_event`.
    pub kind: &'static str,
    /// The event type, when the event has one.
    pub event_type: Option<String>,
    /// The user, when the event has one.
    pub user_id: Option<String>,
    /// The message text, a JSON object.
    pub payload: String,
    /// The event's own time.
    pub event_time: OffsetDateTime,
    /// When the worker received it.
    pub received_at: OffsetDateTime,
}

/// A metric row to insert.
#[derive(Debug, Clone)]
pub struct NewMetric {
    /// Reserved id, set by [`insert_metrics`].
    pub id: i64,
    /// The event it came from.
    pub event_id: i64,
    /// Metric name.
    pub name: String,
    /// Value.
    pub value: f64,
    /// Change against the previous sample, percent.
    pub change_percent: Option<f64>,
    /// Tags object.
    pub tags: Value,
    /// Sample time.
    pub metric_time: OffsetDateTime,
}

/// An insight row to insert.
#[derive(Debug, Clone)]
pub struct NewInsight {
    /// Content hash.
    pub hash: B256,
    /// Kind name.
    pub kind: String,
    /// Subject.
    pub subject: String,
    /// Severity name.
    pub severity: Option<String>,
    /// The canonical JSON that was hashed.
    pub canonical: String,
    /// The event it was computed on.
    pub event_id: i64,
    /// Stamped block number.
    pub block_number: i64,
    /// Stamped block time.
    pub block_time: OffsetDateTime,
}

/// A dead letter to insert.
#[derive(Debug, Clone)]
pub struct NewDeadLetter {
    /// Source kind.
    pub source: String,
    /// Channel or topic.
    pub stream: String,
    /// Partition.
    pub partition: i32,
    /// Offset in a log-based source.
    pub offset: Option<i64>,
    /// The message bytes, unchanged.
    pub raw: Vec<u8>,
    /// Why it was rejected.
    pub reason: String,
    /// When the worker received it.
    pub received_at: OffsetDateTime,
}

/// A stored insight.
#[derive(Debug, Clone, FromRow)]
pub struct InsightRow {
    /// Id.
    pub id: i64,
    /// Content hash, 32 bytes.
    pub hash: Vec<u8>,
    /// Kind.
    pub kind: String,
    /// Subject.
    pub subject: String,
    /// Severity.
    pub severity: Option<String>,
    /// Canonical JSON that was hashed.
    pub canonical: String,
    /// Event id.
    pub event_id: i64,
    /// Stamped block number.
    pub block_number: i64,
    /// Stamped block time.
    pub block_time: OffsetDateTime,
    /// When it was stored.
    pub created_at: OffsetDateTime,
    /// Its batch, once batched.
    pub batch_id: Option<i64>,
    /// Its leaf position in the batch.
    pub leaf_index: Option<i32>,
}

/// A stored batch.
#[derive(Debug, Clone, FromRow)]
pub struct BatchRow {
    /// Id.
    pub id: i64,
    /// Merkle root.
    pub root: Vec<u8>,
    /// Root of the previous batch (zero for the first).
    pub prev_root: Vec<u8>,
    /// Number of leaves: the insights and the manifest.
    pub leaf_count: i32,
    /// `pending`, `submitted`, `anchored` or `final`.
    pub status: String,
    /// Contract address.
    pub contract: Vec<u8>,
    /// Chain id.
    pub chain_id: i64,
    /// Anchoring transaction.
    pub tx_hash: Option<Vec<u8>>,
    /// Batch id the contract assigned.
    pub onchain_batch: Option<i64>,
    /// Anchoring block number.
    pub block_number: Option<i64>,
    /// Anchoring block hash.
    pub block_hash: Option<Vec<u8>>,
    /// Anchoring block time, Unix seconds.
    pub block_timestamp: Option<i64>,
    /// When the batch was formed.
    pub created_at: OffsetDateTime,
    /// When it was seen anchored.
    pub anchored_at: Option<OffsetDateTime>,
    /// When it became final.
    pub finalized_at: Option<OffsetDateTime>,
    /// Canonical JSON of the batch's manifest leaf.
    pub manifest: Option<String>,
    /// keccak256 of `manifest`: the value of the batch's last leaf.
    pub manifest_hash: Option<Vec<u8>>,
}

/// Where a batch landed on chain.
#[derive(Debug, Clone, Copy)]
pub struct Inclusion {
    /// Transaction hash.
    pub tx_hash: B256,
    /// Batch id the contract assigned.
    pub onchain_batch: u64,
    /// Block number.
    pub block_number: u64,
    /// Block hash.
    pub block_hash: B256,
    /// Block time, Unix seconds.
    pub block_timestamp: u64,
}

/// A metric sample for history queries.
#[derive(Debug, Clone, FromRow)]
pub struct MetricSample {
    /// Name.
    pub name: String,
    /// Value.
    pub value: f64,
    /// Change in percent.
    pub change_percent: Option<f64>,
    /// Tags.
    pub tags: Value,
    /// Time.
    pub metric_time: OffsetDateTime,
}

/// Filters of [`Store::list_insights`].
#[derive(Debug, Clone, Default)]
pub struct InsightFilter {
    /// Only this kind.
    pub kind: Option<String>,
    /// Only this subject.
    pub subject: Option<String>,
    /// Only ids below this (paging backwards).
    pub before_id: Option<i64>,
    /// At most this many (capped by the caller).
    pub limit: i64,
}

/// Database row counts for health reports.
#[derive(Debug, Clone, Copy, Default, FromRow)]
pub struct Counts {
    /// Events.
    pub events: i64,
    /// Dead letters.
    pub dead_letters: i64,
    /// Insights.
    pub insights: i64,
    /// Batches.
    pub batches: i64,
}

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    /// Connects a pool of at most `max_connections`.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, WorkerError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(url)
            .await?;
        Ok(Self { pool })
    }

    /// A pool that connects on first use.
    pub fn connect_lazy(url: &str, max_connections: u32) -> Result<Self, WorkerError> {
        let pool =
            PgPoolOptions::new().max_connections(max_connections).connect_lazy(url)?;
        Ok(Self { pool })
    }

    /// The underlying pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<(), WorkerError> {
        crate::MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// Starts a transaction.
    pub async fn begin(&self) -> Result<StoreTx, WorkerError> {
        Ok(self.pool.begin().await?)
    }

    /// Reserves `count` event ids, in increasing order.
    pub async fn reserve_event_ids(&self, count: usize) -> Result<Vec<i64>, WorkerError> {
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        let ids = sqlx::query_scalar(
            "SELECT nextval('events_id_seq') FROM generate_series(1, $1) ORDER BY 1",
        )
        .bind(count)
        .fetch_all(&self.pool)
        .await?;
        Ok(ids)
    }
}

/// Inserts events with one binary `COPY`.
pub async fn insert_events(
    tx: &mut StoreTx,
    rows: &[NewEvent],
) -> Result<(), WorkerError> {
    if rows.is_empty() {
        return Ok(());
    }
    let size = rows.iter().map(|r| r.payload.len() + 160).sum();
    let mut copy = CopyRows::new(11, size);
    for row in rows {
        copy.row();
        copy.int8(row.id);
        copy.text(&row.source);
        copy.text(&row.stream);
        copy.int4(row.partition);
        copy.opt_int8(row.offset);
        copy.text(row.kind);
        copy.opt_text(row.event_type.as_deref());
        copy.opt_text(row.user_id.as_deref());
        copy.jsonb(&row.payload);
        copy.timestamptz(row.event_time);
        copy.timestamptz(row.received_at);
    }
    let statement = "COPY events (id, source, stream, partition, \"offset\", kind, \
         event_type, user_id, payload, event_time, received_at) FROM STDIN (FORMAT binary)";
    copy_in(tx, statement, copy).await
}

/// Inserts metric samples with one binary `COPY`, assigning their ids in
/// order from `metrics_id_seq`.
pub async fn insert_metrics(
    tx: &mut StoreTx,
    rows: &mut [NewMetric],
) -> Result<(), WorkerError> {
    if rows.is_empty() {
        return Ok(());
    }
    let count = i64::try_from(rows.len()).unwrap_or(i64::MAX);
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT nextval('metrics_id_seq') FROM generate_series(1, $1) ORDER BY 1",
    )
    .bind(count)
    .fetch_all(&mut **tx)
    .await?;
    let mut copy = CopyRows::new(7, rows.len() * 120);
    for (row, id) in rows.iter_mut().zip(ids) {
        row.id = id;
        copy.row();
        copy.int8(id);
        copy.int8(row.event_id);
        copy.text(&row.name);
        copy.float8(row.value);
        copy.opt_float8(row.change_percent);
        copy.jsonb(&row.tags.to_string());
        copy.timestamptz(row.metric_time);
    }
    let statement = "COPY metrics (id, event_id, name, value, change_percent, tags, \
         metric_time) FROM STDIN (FORMAT binary)";
    copy_in(tx, statement, copy).await
}

async fn copy_in(
    tx: &mut StoreTx,
    statement: &str,
    rows: CopyRows,
) -> Result<(), WorkerError> {
    let mut copy = tx.copy_in_raw(statement).await?;
    copy.send(rows.finish()).await?;
    copy.finish().await?;
    Ok(())
}

/// Inserts insights in one statement, returning their ids in input order.
pub async fn insert_insights(
    tx: &mut StoreTx,
    rows: &[NewInsight],
) -> Result<Vec<i64>, WorkerError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<(i64, i32)> = sqlx::query_as(
        "WITH input AS (SELECT * FROM UNNEST($1::bytea[], $2::text[], $3::text[], \
         $4::text[], $5::text[], $6::int8[], $7::int8[], $8::timestamptz[]) \
         WITH ORDINALITY AS x(h, k, s, sv, c, e, b, bt, n)), \
         ins AS (INSERT INTO insights (hash, kind, subject, severity, canonical, \
         event_id, block_number, block_time) \
         SELECT h, k, s, sv, c, e, b, bt FROM input ORDER BY n RETURNING id, hash) \
         SELECT ins.id, input.n::int4 FROM ins JOIN input ON input.h = ins.hash \
         ORDER BY input.n",
    )
    .bind(rows.iter().map(|r| r.hash.to_vec()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.kind.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.subject.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.severity.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.canonical.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.event_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.block_number).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.block_time).collect::<Vec<_>>())
    .fetch_all(&mut **tx)
    .await?;
    Ok(ids.into_iter().map(|(id, _)| id).collect())
}

/// Where a message sits in a log-based source: source, stream, partition,
/// offset.
pub type Position = (String, String, i32, i64);

impl Store {
    /// Which of `positions` are already stored, as events or dead letters.
    ///
    /// The positions of one (source, stream, partition) are looked up as
    /// one range of offsets on the position indexes, so the cost follows
    /// the batch, not the size of the tables; rows stored inside a range
    /// but not asked for may be returned too.
    pub async fn stored_positions(
        &self,
        positions: &[Position],
    ) -> Result<std::collections::HashSet<Position>, WorkerError> {
        let mut ranges: Vec<(&str, &str, i32, i64, i64)> = Vec::new();
        for (source, stream, partition, offset) in positions {
            let same = |r: &&mut (&str, &str, i32, i64, i64)| {
                r.0 == source && r.1 == stream && r.2 == *partition
            };
            match ranges.iter_mut().find(same) {
                Some(range) => {
                    range.3 = range.3.min(*offset);
                    range.4 = range.4.max(*offset);
                }
                None => ranges.push((source, stream, *partition, *offset, *offset)),
            }
        }
        if ranges.is_empty() {
            return Ok(Default::default());
        }
        let rows: Vec<Position> = sqlx::query_as(
            "SELECT r.source, r.stream, r.partition, s.\"offset\" \
             FROM UNNEST($1::text[], $2::text[], $3::int4[], $4::int8[], $5::int8[]) \
             AS r(source, stream, partition, low, high) \
             CROSS JOIN LATERAL (\
             SELECT e.\"offset\" FROM events e WHERE e.source = r.source \
             AND e.stream = r.stream AND e.partition = r.partition \
             AND e.\"offset\" IS NOT NULL AND e.\"offset\" BETWEEN r.low AND r.high \
             UNION ALL \
             SELECT d.\"offset\" FROM dead_letters d WHERE d.source = r.source \
             AND d.stream = r.stream AND d.partition = r.partition \
             AND d.\"offset\" IS NOT NULL AND d.\"offset\" BETWEEN r.low AND r.high\
             ) AS s",
        )
        .bind(ranges.iter().map(|r| r.0).collect::<Vec<_>>())
        .bind(ranges.iter().map(|r| r.1).collect::<Vec<_>>())
        .bind(ranges.iter().map(|r| r.2).collect::<Vec<_>>())
        .bind(ranges.iter().map(|r| r.3).collect::<Vec<_>>())
        .bind(ranges.iter().map(|r| r.4).collect::<Vec<_>>())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().collect())
    }
}

/// Inserts dead letters in one statement.
pub async fn insert_dead_letters(
    tx: &mut StoreTx,
    rows: &[NewDeadLetter],
) -> Result<(), WorkerError> {
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO dead_letters (source, stream, partition, \"offset\", raw, reason, \
         received_at) SELECT * FROM UNNEST($1::text[], $2::text[], $3::int4[], \
         $4::int8[], $5::bytea[], $6::text[], $7::timestamptz[]) \
         ON CONFLICT (source, stream, partition, \"offset\") WHERE \"offset\" IS NOT NULL \
         DO NOTHING",
    )
    .bind(rows.iter().map(|r| r.source.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.stream.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.partition).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.offset).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.raw.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.reason.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.received_at).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub(crate) const INSIGHT_COLUMNS: &str =
    "id, hash, kind, subject, severity, canonical, event_id, \
     block_number, block_time, created_at, batch_id, leaf_index";

impl Store {
    /// The insight with this id.
    pub async fn insight(&self, id: i64) -> Result<Option<InsightRow>, WorkerError> {
        let sql = format!("SELECT {INSIGHT_COLUMNS} FROM insights WHERE id = $1");
        Ok(sqlx::query_as(&sql).bind(id).fetch_optional(&self.pool).await?)
    }

    /// The insight with this hash.
    pub async fn insight_by_hash(
        &self,
        hash: B256,
    ) -> Result<Option<InsightRow>, WorkerError> {
        let sql = format!("SELECT {INSIGHT_COLUMNS} FROM insights WHERE hash = $1");
        Ok(sqlx::query_as(&sql).bind(hash.to_vec()).fetch_optional(&self.pool).await?)
    }

    /// Insights, newest first.
    pub async fn list_insights(
        &self,
        filter: &InsightFilter,
    ) -> Result<Vec<InsightRow>, WorkerError> {
        let sql = format!(
            "SELECT {INSIGHT_COLUMNS} FROM insights \
             WHERE ($1::text IS NULL OR kind = $1) AND ($2::text IS NULL OR subject = $2) \
             AND ($3::int8 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
        );
        let rows = sqlx::query_as(&sql)
            .bind(&filter.kind)
            .bind(&filter.subject)
            .bind(filter.before_id)
            .bind(filter.limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows)
    }

    /// Insights not yet in a batch, oldest first: `(id, hash)`.
    pub async fn unbatched(&self, limit: i64) -> Result<Vec<(i64, B256)>, WorkerError> {
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT id, hash FROM insights WHERE batch_id IS NULL ORDER BY id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(|(id, hash)| Ok((id, to_b256(&hash)?))).collect()
    }

    /// The leaf values of a batch in leaf order: its insights' hashes, then
    /// its manifest's hash.
    pub async fn batch_hashes(&self, batch_id: i64) -> Result<Vec<B256>, WorkerError> {
        let rows: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT hash FROM (SELECT hash, leaf_index FROM insights WHERE batch_id = $1 \
             UNION ALL SELECT manifest_hash, 2147483647 FROM anchor_batches \
             WHERE id = $1 AND manifest_hash IS NOT NULL) AS leaves ORDER BY leaf_index",
        )
        .bind(batch_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|h| to_b256(h)).collect()
    }
}

pub(crate) const BATCH_COLUMNS: &str =
    "id, root, prev_root, leaf_count, status, contract, chain_id, \
     tx_hash, onchain_batch, block_number, block_hash, block_timestamp, created_at, \
     anchored_at, finalized_at, manifest, manifest_hash";

/// What a new batch is made of.
#[derive(Debug, Clone)]
pub struct NewBatch<'a> {
    /// Merkle root.
    pub root: B256,
    /// Root of the previous batch.
    pub prev_root: B256,
    /// Insight ids in leaf order.
    pub insight_ids: &'a [i64],
    /// The manifest leaf, canonical text and hash, which comes last.
    pub manifest: (String, B256),
    /// The dead letters the manifest accounts for.
    pub dead_letter_ids: &'a [i64],
    /// Contract that anchors it.
    pub contract: Address,
    /// Chain id.
    pub chain_id: u64,
}

impl Store {
    /// The batch with this id.
    pub async fn batch(&self, id: i64) -> Result<Option<BatchRow>, WorkerError> {
        let sql = format!("SELECT {BATCH_COLUMNS} FROM anchor_batches WHERE id = $1");
        Ok(sqlx::query_as(&sql).bind(id).fetch_optional(&self.pool).await?)
    }

    /// The most recent batch of a contract.
    pub async fn last_batch(
        &self,
        contract: Address,
    ) -> Result<Option<BatchRow>, WorkerError> {
        let sql = format!(
            "SELECT {BATCH_COLUMNS} FROM anchor_batches WHERE contract = $1 \
             ORDER BY id DESC LIMIT 1"
        );
        let row = sqlx::query_as(&sql).bind(contract.to_vec()).fetch_optional(&self.pool);
        Ok(row.await?)
    }

    /// Batches of a contract that are not final, oldest first.
    pub async fn open_batches(
        &self,
        contract: Address,
    ) -> Result<Vec<BatchRow>, WorkerError> {
        let sql = format!(
            "SELECT {BATCH_COLUMNS} FROM anchor_batches \
             WHERE status <> 'final' AND contract = $1 ORDER BY id"
        );
        let rows = sqlx::query_as(&sql).bind(contract.to_vec()).fetch_all(&self.pool);
        Ok(rows.await?)
    }

    /// Records a batch, assigns its insights their leaf positions and marks
    /// the dead letters its manifest accounts for. Fails, changing nothing,
    /// when any of them was batched meanwhile.
    pub async fn create_batch(&self, batch: NewBatch<'_>) -> Result<i64, WorkerError> {
        let mut tx = self.pool.begin().await?;
        let count = i32::try_from(batch.insight_ids.len() + 1)
            .map_err(|_| WorkerError::Corrupt("batch too large".into()))?;
        let chain_id = i64::try_from(batch.chain_id)
            .map_err(|_| WorkerError::Corrupt("chain id beyond i64".into()))?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO anchor_batches (root, prev_root, leaf_count, contract, chain_id, \
             manifest, manifest_hash) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(batch.root.to_vec())
        .bind(batch.prev_root.to_vec())
        .bind(count)
        .bind(batch.contract.to_vec())
        .bind(chain_id)
        .bind(&batch.manifest.0)
        .bind(batch.manifest.1.to_vec())
        .fetch_one(&mut *tx)
        .await?;
        let insights = sqlx::query(
            "UPDATE insights SET batch_id = $1, leaf_index = x.n - 1 \
             FROM UNNEST($2::int8[]) WITH ORDINALITY AS x(id, n) \
             WHERE insights.id = x.id AND insights.batch_id IS NULL",
        )
        .bind(id)
        .bind(batch.insight_ids)
        .execute(&mut *tx)
        .await?;
        let letters = sqlx::query(
            "UPDATE dead_letters SET batch_id = $1 \
             WHERE id = ANY($2) AND batch_id IS NULL",
        )
        .bind(id)
        .bind(batch.dead_letter_ids)
        .execute(&mut *tx)
        .await?;
        if insights.rows_affected() != batch.insight_ids.len() as u64
            || letters.rows_affected() != batch.dead_letter_ids.len() as u64
        {
            // Another node batched some of them first; nothing is recorded.
            return Err(WorkerError::Corrupt(
                "batch members were batched meanwhile".into(),
            ));
        }
        tx.commit().await?;
        Ok(id)
    }
}

impl Store {
    /// A stored node setting.
    pub async fn setting(&self, key: &str) -> Result<Option<String>, WorkerError> {
        let value = sqlx::query_scalar("SELECT value FROM node_settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(value)
    }

    /// Stores a node setting.
    pub async fn set_setting(&self, key: &str, value: &str) -> Result<(), WorkerError> {
        sqlx::query(
            "INSERT INTO node_settings (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = $2, updated_at = now()",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A metric's samples in a time range, newest first.
    pub async fn metric_history(
        &self,
        name: &str,
        from: Option<OffsetDateTime>,
        to: Option<OffsetDateTime>,
        limit: i64,
    ) -> Result<Vec<MetricSample>, WorkerError> {
        let rows = sqlx::query_as(
            "SELECT name, value, change_percent, tags, metric_time FROM metrics \
             WHERE name = $1 AND ($2::timestamptz IS NULL OR metric_time >= $2) \
             AND ($3::timestamptz IS NULL OR metric_time <= $3) \
             ORDER BY metric_time DESC, id DESC LIMIT $4",
        )
        .bind(name)
        .bind(from)
        .bind(to)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Distinct users with events received since `since`.
    pub async fn active_users(&self, since: OffsetDateTime) -> Result<i64, WorkerError> {
        let count = sqlx::query_scalar(
            "SELECT count(DISTINCT user_id) FROM events \
             WHERE received_at >= $1 AND user_id IS NOT NULL",
        )
        .bind(since)
        .fetch_one(&self.pool)
        .await?;
        Ok(count)
    }

    /// Row counts.
    pub async fn counts(&self) -> Result<Counts, WorkerError> {
        let counts = sqlx::query_as(
            "SELECT (SELECT count(*) FROM events) AS events, \
             (SELECT count(*) FROM dead_letters) AS dead_letters, \
             (SELECT count(*) FROM insights) AS insights, \
             (SELECT count(*) FROM anchor_batches) AS batches",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(counts)
    }
}

/// Reads a 32-byte column.
pub fn to_b256(bytes: &[u8]) -> Result<B256, WorkerError> {
    B256::try_from(bytes).map_err(|_| {
        WorkerError::Corrupt(format!("expected 32 bytes, found {}", bytes.len()))
    })
}

pub(crate) fn to_i64(value: u64) -> Result<i64, WorkerError> {
    i64::try_from(value).map_err(|_| WorkerError::Corrupt(format!("{value} exceeds i64")))
}

/// A stored metric sample with its position.
#[derive(Debug, Clone, FromRow)]
pub struct MetricRow {
    /// Id: the sample's position on the dashboard channel.
    pub id: i64,
    /// The event it came from.
    pub event_id: i64,
    /// Name.
    pub name: String,
    /// Value.
    pub value: f64,
    /// Change in percent.
    pub change_percent: Option<f64>,
    /// Tags.
    pub tags: Value,
    /// Time.
    pub metric_time: OffsetDateTime,
}

/// A stored anchoring status change.
#[derive(Debug, Clone, FromRow)]
pub struct AnchorEventRow {
    /// Id: the change's position on the anchors channel.
    pub id: i64,
    /// The broadcast payload.
    pub data: Value,
}

impl Store {
    /// Metric samples after a position, oldest first.
    pub async fn metrics_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<MetricRow>, WorkerError> {
        let rows = sqlx::query_as(
            "SELECT id, event_id, name, value, change_percent, tags, metric_time \
             FROM metrics WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Insights after a position, oldest first, with their batch status;
    /// `alerts_only` keeps high and critical ones.
    pub async fn insights_after(
        &self,
        after: i64,
        limit: i64,
        alerts_only: bool,
    ) -> Result<Vec<(InsightRow, Option<String>)>, WorkerError> {
        let sql = format!(
            "SELECT {INSIGHT_COLUMNS} FROM insights WHERE id > $1 \
             AND (NOT $3 OR severity IN ('high', 'critical')) ORDER BY id LIMIT $2"
        );
        let rows: Vec<InsightRow> = sqlx::query_as(&sql)
            .bind(after)
            .bind(limit)
            .bind(alerts_only)
            .fetch_all(&self.pool)
            .await?;
        let batches: Vec<i64> = rows.iter().filter_map(|r| r.batch_id).collect();
        let statuses: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, status FROM anchor_batches WHERE id = ANY($1)")
                .bind(&batches)
                .fetch_all(&self.pool)
                .await?;
        let status_of = |id: Option<i64>| {
            id.and_then(|id| {
                statuses.iter().find(|(b, _)| *b == id).map(|(_, s)| s.clone())
            })
        };
        Ok(rows
            .into_iter()
            .map(|r| (status_of(r.batch_id), r))
            .map(|(s, r)| (r, s))
            .collect())
    }

    /// How many rows a channel holds after a position.
    pub async fn count_after(
        &self,
        table: ReplayTable,
        after: i64,
    ) -> Result<i64, WorkerError> {
        let sql = match table {
            ReplayTable::Metrics => "SELECT count(*) FROM metrics WHERE id > $1",
            ReplayTable::Insights => "SELECT count(*) FROM insights WHERE id > $1",
            ReplayTable::Alerts => {
                "SELECT count(*) FROM insights WHERE id > $1 AND severity IN ('high', 'critical')"
            }
            ReplayTable::AnchorEvents => "SELECT count(*) FROM anchor_events WHERE id > $1",
        };
        Ok(sqlx::query_scalar(sql).bind(after).fetch_one(&self.pool).await?)
    }

    /// Records an anchoring status change; returns its position.
    pub async fn insert_anchor_event(
        &self,
        batch_id: i64,
        status: &str,
        data: &Value,
    ) -> Result<i64, WorkerError> {
        let id = sqlx::query_scalar(
            "INSERT INTO anchor_events (batch_id, status, data) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(batch_id)
        .bind(status)
        .bind(data)
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// Whether a status change to `status` of the batch is recorded.
    pub async fn has_anchor_event(
        &self,
        batch_id: i64,
        status: &str,
    ) -> Result<bool, WorkerError> {
        let found = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM anchor_events WHERE batch_id = $1 AND status = $2)",
        )
        .bind(batch_id)
        .bind(status)
        .fetch_one(&self.pool)
        .await?;
        Ok(found)
    }

    /// Anchoring status changes after a position, oldest first.
    pub async fn anchor_events_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<AnchorEventRow>, WorkerError> {
        let rows = sqlx::query_as(
            "SELECT id, data FROM anchor_events WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }
}

/// The stored history behind each broadcast channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayTable {
    /// `dashboard`: metric samples.
    Metrics,
    /// `insights`: all insights.
    Insights,
    /// `alerts`: high and critical insights.
    Alerts,
    /// `anchors`: anchoring status changes.
    AnchorEvents,
}

/// Sends a PostgreSQL notification; inside a transaction it is delivered
/// when the transaction commits, and not at all if it rolls back.
pub async fn notify(
    tx: &mut StoreTx,
    channel: &str,
    payload: &str,
) -> Result<(), WorkerError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channel)
        .bind(payload)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl Store {
    /// Sends a PostgreSQL notification outside any transaction.
    pub async fn notify(&self, channel: &str, payload: &str) -> Result<(), WorkerError> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel)
            .bind(payload)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
