-- The W3C traceparent of the pay that queued the message: a delivery made later by the relay
-- continues that pay's trace, so its log lines in order and notification share its trace id.
ALTER TABLE outbox ADD COLUMN traceparent TEXT;
