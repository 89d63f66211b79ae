-- A metric sample's event_id names the event it came from. The pipeline
-- writes every sample in the same transaction as its event, with the
-- event's id reserved from events_id_seq beforehand, so the reference holds
-- by construction. The foreign key checked it again row by row, locking
-- each event row it named: that check cost twice as much as storing the
-- sample itself, on the hottest write of the ingest path.
ALTER TABLE metrics DROP CONSTRAINT metrics_event_id_fkey;
