-- Node settings that must survive restarts (the contract a local chain
-- deployment created), and the index behind "active users in the last
-- five minutes", which filters events by arrival time.

CREATE TABLE node_settings (
    key        TEXT PRIMARY KEY,
    value      TEXT        NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX events_by_received_user ON events (received_at, user_id)
    WHERE user_id IS NOT NULL;
