-- Same schema as migrations/postgres; only the id column differs (SQLite's rowid).
CREATE TABLE accounts (
    user_id    BIGINT PRIMARY KEY NOT NULL,
    balance    BIGINT NOT NULL DEFAULT 0 CHECK (balance >= 0),
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE payments (
    order_id   BIGINT PRIMARY KEY NOT NULL,
    user_id    BIGINT NOT NULL REFERENCES accounts (user_id),
    amount     BIGINT NOT NULL CHECK (amount > 0),
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE ledger (
    id            INTEGER PRIMARY KEY NOT NULL,
    user_id       BIGINT NOT NULL REFERENCES accounts (user_id),
    amount        BIGINT NOT NULL CHECK (amount <> 0),
    balance_after BIGINT NOT NULL CHECK (balance_after >= 0),
    reason        TEXT NOT NULL,
    order_id      BIGINT UNIQUE REFERENCES payments (order_id),
    created_at    TIMESTAMP NOT NULL
);
CREATE INDEX ledger_by_user ON ledger (user_id, id DESC);
