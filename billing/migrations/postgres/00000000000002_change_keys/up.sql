-- Idempotency-Key of POST /billing/change: a key, per user, is bound to one request (amount
-- and reason) and to the ledger entry it made; a replay answers that entry again.
CREATE TABLE change_keys (
    user_id         BIGINT NOT NULL REFERENCES accounts (user_id),
    idempotency_key TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    ledger_id       BIGINT REFERENCES ledger (id),
    created_at      TIMESTAMP NOT NULL,
    PRIMARY KEY (user_id, idempotency_key)
);
