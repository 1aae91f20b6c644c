-- One account per user. The CHECK is the last line of defence: the code never lets a
-- balance go negative, and if it ever tried, the database would refuse.
CREATE TABLE accounts (
    user_id    BIGINT PRIMARY KEY,
    balance    BIGINT NOT NULL DEFAULT 0 CHECK (balance >= 0),
    created_at TIMESTAMP NOT NULL
);

-- A payment is unique per order: the primary key is what makes a replayed pay charge once.
CREATE TABLE payments (
    order_id   BIGINT PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES accounts (user_id),
    amount     BIGINT NOT NULL CHECK (amount > 0),
    created_at TIMESTAMP NOT NULL
);

-- Every change of a balance, in minor units; the balance always equals the sum of its rows.
CREATE TABLE ledger (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       BIGINT NOT NULL REFERENCES accounts (user_id),
    amount        BIGINT NOT NULL CHECK (amount <> 0),
    balance_after BIGINT NOT NULL CHECK (balance_after >= 0),
    reason        TEXT NOT NULL,
    order_id      BIGINT UNIQUE REFERENCES payments (order_id),
    created_at    TIMESTAMP NOT NULL
);
CREATE INDEX ledger_by_user ON ledger (user_id, id DESC);
