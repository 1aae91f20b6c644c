-- Same schema as migrations/postgres; only the id column differs (SQLite's rowid).
CREATE TABLE notifications (
    id              INTEGER PRIMARY KEY NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    user_id         BIGINT NOT NULL,
    email           TEXT NOT NULL,
    order_id        BIGINT NOT NULL,
    message         TEXT NOT NULL,
    created_at      TIMESTAMP NOT NULL
);
CREATE INDEX notifications_by_user ON notifications (user_id, id DESC);
