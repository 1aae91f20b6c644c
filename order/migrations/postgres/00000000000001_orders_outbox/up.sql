CREATE TABLE orders (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id             BIGINT NOT NULL,
    amount              BIGINT NOT NULL CHECK (amount > 0),
    description         TEXT NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('Pending', 'Processing', 'Failed')),
    -- the client's Idempotency-Key (unique per user; NULLs do not collide) and a hash of
    -- the request it came with: the same key with another body is refused
    idempotency_key     TEXT,
    request_fingerprint TEXT,
    created_at          TIMESTAMP NOT NULL,
    updated_at          TIMESTAMP NOT NULL,
    UNIQUE (user_id, idempotency_key)
);
CREATE INDEX orders_by_user ON orders (user_id, id DESC);

-- Messages to notification, written in the same transaction as the status change they
-- announce, and delivered until they land. The key (order-<id>-<status>) is also the
-- idempotency key notification stores them under: one message per status change.
CREATE TABLE outbox (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    user_id         BIGINT NOT NULL,
    email           TEXT NOT NULL,
    order_id        BIGINT NOT NULL REFERENCES orders (id),
    message         TEXT NOT NULL,
    request_id      TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP NOT NULL,
    delivered_at    TIMESTAMP,
    last_error      TEXT,
    created_at      TIMESTAMP NOT NULL
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE delivered_at IS NULL;
