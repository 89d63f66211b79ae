-- Every anchoring status change of a batch, in order, so a dashboard that
-- reconnects can be sent the changes it missed.
CREATE TABLE anchor_events (
    id         BIGSERIAL PRIMARY KEY,
    batch_id   BIGINT      NOT NULL REFERENCES anchor_batches (id),
    status     TEXT        NOT NULL,
    data       JSONB       NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
