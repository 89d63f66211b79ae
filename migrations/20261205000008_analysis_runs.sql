-- Each start of the analysis. A node starts its analysis afresh (empty
-- windows, detectors and activity figures), so replay starts afresh at the
-- first event each run analysed, with that run's analyser and settings.
CREATE TABLE analysis_runs (
    id BIGSERIAL PRIMARY KEY,
    -- The id of the first event the run analysed: every event from it on,
    -- up to the next run's first event, was analysed by this run.
    first_event BIGINT NOT NULL UNIQUE,
    -- The analyser and its version (`engine/2`, ...).
    analysis TEXT NOT NULL,
    -- keccak256 of the canonical JSON of the `[analysis]` settings, 0x-hex.
    settings_digest TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
