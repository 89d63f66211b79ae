-- The anchoring transaction manager: every anchoring transaction is a row
-- whose state follows an explicit state machine, and the schema refuses any
-- change the machine does not allow (for batches as well as transactions).
-- Each batch also commits to the dead letters rejected since the previous
-- batch, through a manifest leaf in its Merkle tree.

-- Allowed state changes, per machine. A trigger checks every UPDATE of a
-- state column against this table.
CREATE TABLE state_transitions (
    machine    TEXT NOT NULL,
    from_state TEXT NOT NULL,
    to_state   TEXT NOT NULL,
    PRIMARY KEY (machine, from_state, to_state)
);

INSERT INTO state_transitions (machine, from_state, to_state) VALUES
    -- An anchoring transaction: signed and recorded before it is sent, so
    -- a crash between the two resends the very same bytes.
    ('anchor_tx', 'unsent',    'broadcast'),
    ('anchor_tx', 'unsent',    'failed'),     -- the node refused it
    ('anchor_tx', 'unsent',    'included'),   -- sent just before a crash
    ('anchor_tx', 'broadcast', 'included'),
    ('anchor_tx', 'broadcast', 'replaced'),   -- a higher-fee copy took its nonce
    ('anchor_tx', 'broadcast', 'failed'),     -- reverted, or its nonce went elsewhere
    ('anchor_tx', 'replaced',  'included'),   -- the replaced copy won after all
    ('anchor_tx', 'replaced',  'failed'),     -- its nonce went elsewhere, or reverted
    ('anchor_tx', 'included',  'final'),
    ('anchor_tx', 'included',  'reorged'),    -- its block left the canonical chain
    ('anchor_tx', 'included',  'failed'),     -- included but reverted
    -- A batch.
    ('anchor_batch', 'pending',   'submitted'),
    ('anchor_batch', 'pending',   'anchored'),  -- found on chain after a restart
    ('anchor_batch', 'submitted', 'anchored'),
    ('anchor_batch', 'submitted', 'pending'),   -- every transaction failed
    ('anchor_batch', 'anchored',  'final'),
    ('anchor_batch', 'anchored',  'pending');   -- reorged: anchored again

-- One function for both machines: TG_ARGV[0] names the machine and
-- TG_ARGV[1] the state column.
CREATE FUNCTION check_state_transition() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    old_state TEXT := to_jsonb(OLD) ->> TG_ARGV[1];
    new_state TEXT := to_jsonb(NEW) ->> TG_ARGV[1];
BEGIN
    IF old_state IS DISTINCT FROM new_state AND NOT EXISTS (
        SELECT 1 FROM state_transitions
        WHERE machine = TG_ARGV[0] AND from_state = old_state AND to_state = new_state
    ) THEN
        RAISE EXCEPTION 'illegal % state change: % -> %', TG_ARGV[0], old_state, new_state
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER anchor_batches_state
    BEFORE UPDATE OF status ON anchor_batches
    FOR EACH ROW EXECUTE FUNCTION check_state_transition('anchor_batch', 'status');

-- Every anchoring transaction. Copies of one transaction (fee bumps) share
-- the batch and the nonce; at most one copy of a batch is included.
CREATE TABLE anchor_txs (
    id                       BIGSERIAL PRIMARY KEY,
    batch_id                 BIGINT      NOT NULL REFERENCES anchor_batches (id),
    state                    TEXT        NOT NULL DEFAULT 'unsent'
        CHECK (state IN ('unsent', 'broadcast', 'included', 'final',
                         'replaced', 'failed', 'reorged')),
    sender                   BYTEA       NOT NULL CHECK (length(sender) = 20),
    nonce                    BIGINT      NOT NULL CHECK (nonce >= 0),
    max_fee_per_gas          NUMERIC(78) NOT NULL CHECK (max_fee_per_gas > 0),
    max_priority_fee_per_gas NUMERIC(78) NOT NULL
        CHECK (max_priority_fee_per_gas >= 0
               AND max_priority_fee_per_gas <= max_fee_per_gas),
    gas_limit                BIGINT      NOT NULL CHECK (gas_limit > 0),
    tx_hash                  BYTEA       NOT NULL CHECK (length(tx_hash) = 32),
    raw                      BYTEA       NOT NULL,
    -- The chain head when it was broadcast, to tell when it is stuck.
    sent_at_block            BIGINT,
    block_number             BIGINT,
    block_hash               BYTEA CHECK (length(block_hash) = 32),
    error                    TEXT,
    created_at               TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at               TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (state NOT IN ('broadcast', 'replaced') OR sent_at_block IS NOT NULL),
    CHECK (state NOT IN ('included', 'final') OR block_hash IS NOT NULL)
);
CREATE INDEX anchor_txs_by_batch ON anchor_txs (batch_id, id);
-- The same signed bytes may be recorded again after a copy failed or was
-- reorged out (sending them again is then right), but are never live twice.
CREATE UNIQUE INDEX anchor_txs_live_hash ON anchor_txs (tx_hash)
    WHERE state NOT IN ('failed', 'reorged');
CREATE INDEX anchor_txs_by_hash ON anchor_txs (tx_hash);
CREATE INDEX anchor_txs_live ON anchor_txs (id)
    WHERE state IN ('unsent', 'broadcast', 'replaced', 'included');
-- At most one copy of a batch's transaction is ever included.
CREATE UNIQUE INDEX anchor_txs_one_included
    ON anchor_txs (batch_id) WHERE state IN ('included', 'final');

CREATE TRIGGER anchor_txs_state
    BEFORE UPDATE OF state ON anchor_txs
    FOR EACH ROW EXECUTE FUNCTION check_state_transition('anchor_tx', 'state');

-- The manifest leaf of a batch: canonical JSON naming the previous root
-- and the count and digest of the dead letters the batch accounts for.
ALTER TABLE anchor_batches
    ADD COLUMN manifest      TEXT,
    ADD COLUMN manifest_hash BYTEA CHECK (length(manifest_hash) = 32),
    ADD CHECK ((manifest IS NULL) = (manifest_hash IS NULL));

-- The batch whose manifest accounts for a dead letter.
ALTER TABLE dead_letters
    ADD COLUMN batch_id BIGINT REFERENCES anchor_batches (id);
CREATE INDEX dead_letters_unbatched ON dead_letters (id) WHERE batch_id IS NULL;
CREATE INDEX dead_letters_by_batch ON dead_letters (batch_id, id);

-- Rows of the two machines are born in their first state, are never
-- deleted, and keep what identifies them: only states and what the chain
-- told about them change. TG_ARGV: the state column, the first state, then
-- the columns that never change.
CREATE FUNCTION guard_anchoring_row() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION '% rows are never deleted', TG_TABLE_NAME
            USING ERRCODE = 'check_violation';
    END IF;
    IF TG_OP = 'INSERT' THEN
        IF (to_jsonb(NEW) ->> TG_ARGV[0]) IS DISTINCT FROM TG_ARGV[1] THEN
            RAISE EXCEPTION 'a new % row starts as %', TG_TABLE_NAME, TG_ARGV[1]
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END IF;
    FOR i IN 2 .. TG_NARGS - 1 LOOP
        IF (to_jsonb(OLD) -> TG_ARGV[i]) IS DISTINCT FROM (to_jsonb(NEW) -> TG_ARGV[i]) THEN
            RAISE EXCEPTION '%.% never changes', TG_TABLE_NAME, TG_ARGV[i]
                USING ERRCODE = 'check_violation';
        END IF;
    END LOOP;
    RETURN NEW;
END;
$$;

CREATE TRIGGER anchor_txs_guard
    BEFORE INSERT OR UPDATE OR DELETE ON anchor_txs
    FOR EACH ROW EXECUTE FUNCTION guard_anchoring_row(
        'state', 'unsent', 'batch_id', 'sender', 'nonce', 'max_fee_per_gas',
        'max_priority_fee_per_gas', 'gas_limit', 'tx_hash', 'raw');

CREATE TRIGGER anchor_batches_guard
    BEFORE INSERT OR UPDATE OR DELETE ON anchor_batches
    FOR EACH ROW EXECUTE FUNCTION guard_anchoring_row(
        'status', 'pending', 'root', 'prev_root', 'leaf_count', 'contract',
        'chain_id', 'manifest', 'manifest_hash');
