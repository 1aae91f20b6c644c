-- One row per message. The idempotency key makes delivery exactly-once for the reader:
-- order may send a message any number of times (retries, outbox replays); it is stored once.
CREATE TABLE notifications (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    user_id         BIGINT NOT NULL,
    email           TEXT NOT NULL,
    order_id        BIGINT NOT NULL,
    message         TEXT NOT NULL,
    created_at      TIMESTAMP NOT NULL
);
CREATE INDEX notifications_by_user ON notifications (user_id, id DESC);
