-- Since when a destination fails (issue 13: give up after --federation-give-up).
ALTER TABLE outbox_retry ADD COLUMN since_ms INTEGER NOT NULL DEFAULT 0;
