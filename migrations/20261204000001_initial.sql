-- Events, metrics, insights, anchor batches and dead letters.

-- Every accepted message, as parsed. (source, stream, partition, "offset")
-- identifies a message in a log-based source (Kafka, Redis Streams) so a
-- replayed message is never stored twice; pub/sub messages have no offset.
CREATE TABLE events (
    id          BIGSERIAL PRIMARY KEY,
    source      TEXT        NOT NULL,
    stream      TEXT        NOT NULL,
    partition   INTEGER     NOT NULL DEFAULT 0,
    "offset"    BIGINT,
    kind        TEXT        NOT NULL
        CHECK (kind IN ('user_event', 'system_metric', 'business_event')),
    event_type  TEXT,
    user_id     TEXT,
    payload     JSONB       NOT NULL,
    event_time  TIMESTAMPTZ NOT NULL,
    received_at TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX events_source_position
    ON events (source, stream, partition, "offset")
    WHERE "offset" IS NOT NULL;
CREATE INDEX events_by_time ON events (event_time);
CREATE INDEX events_by_user ON events (user_id, event_time)
    WHERE user_id IS NOT NULL;

-- Metric samples: system metrics as received and metrics derived from
-- business events (total_revenue, new_users).
CREATE TABLE metrics (
    id             BIGSERIAL PRIMARY KEY,
    event_id       BIGINT           NOT NULL REFERENCES events (id),
    name           TEXT             NOT NULL,
    value          DOUBLE PRECISION NOT NULL,
    change_percent DOUBLE PRECISION,
    tags           JSONB            NOT NULL DEFAULT '{}',
    metric_time    TIMESTAMPTZ      NOT NULL
);
CREATE INDEX metrics_by_name_time ON metrics (name, metric_time DESC);

-- One Merkle batch of insights and its anchoring on chain. Batches form a
-- hash chain through prev_root, as the contract enforces.
CREATE TABLE anchor_batches (
    id              BIGSERIAL PRIMARY KEY,
    root            BYTEA       NOT NULL UNIQUE CHECK (length(root) = 32),
    prev_root       BYTEA       NOT NULL CHECK (length(prev_root) = 32),
    leaf_count      INTEGER     NOT NULL CHECK (leaf_count > 0),
    status          TEXT        NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'submitted', 'anchored', 'final')),
    contract        BYTEA       NOT NULL CHECK (length(contract) = 20),
    chain_id        BIGINT      NOT NULL,
    tx_hash         BYTEA,
    onchain_batch   BIGINT,
    block_number    BIGINT,
    block_hash      BYTEA,
    block_timestamp BIGINT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    anchored_at     TIMESTAMPTZ,
    finalized_at    TIMESTAMPTZ,
    CHECK (status IN ('pending', 'submitted')
        OR (tx_hash IS NOT NULL AND block_number IS NOT NULL))
);
CREATE INDEX anchor_batches_open ON anchor_batches (id)
    WHERE status <> 'final';

-- Insights. `canonical` is the exact RFC 8785 text that was hashed.
CREATE TABLE insights (
    id           BIGSERIAL PRIMARY KEY,
    hash         BYTEA       NOT NULL UNIQUE CHECK (length(hash) = 32),
    kind         TEXT        NOT NULL,
    subject      TEXT        NOT NULL,
    severity     TEXT,
    canonical    TEXT        NOT NULL,
    event_id     BIGINT      NOT NULL REFERENCES events (id),
    block_number BIGINT      NOT NULL,
    block_time   TIMESTAMPTZ NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    batch_id     BIGINT REFERENCES anchor_batches (id),
    leaf_index   INTEGER,
    CHECK ((batch_id IS NULL) = (leaf_index IS NULL))
);
CREATE INDEX insights_by_time ON insights (created_at);
CREATE INDEX insights_by_kind_time ON insights (kind, created_at);
CREATE INDEX insights_by_batch ON insights (batch_id, leaf_index);
CREATE INDEX insights_unbatched ON insights (id) WHERE batch_id IS NULL;

-- Messages that could not be accepted, kept whole with the reason.
CREATE TABLE dead_letters (
    id          BIGSERIAL PRIMARY KEY,
    source      TEXT        NOT NULL,
    stream      TEXT        NOT NULL,
    partition   INTEGER     NOT NULL DEFAULT 0,
    "offset"    BIGINT,
    raw         BYTEA       NOT NULL,
    reason      TEXT        NOT NULL,
    received_at TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX dead_letters_source_position
    ON dead_letters (source, stream, partition, "offset")
    WHERE "offset" IS NOT NULL;
CREATE INDEX dead_letters_by_time ON dead_letters (received_at);
