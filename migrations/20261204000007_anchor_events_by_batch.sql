-- A batch's status changes, found without reading them all: the anchorer
-- checks after a restart that a submitted batch's submission was recorded.
CREATE INDEX anchor_events_batch ON anchor_events (batch_id, status);
