-- Set when delivery is given up after OUTBOX_MAX_ATTEMPTS failures (and logged as an error):
-- the relay stops retrying; the row keeps its last error for whoever investigates.
ALTER TABLE outbox ADD COLUMN abandoned_at TIMESTAMP;
