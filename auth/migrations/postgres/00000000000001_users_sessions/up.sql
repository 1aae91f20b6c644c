CREATE TABLE users (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    login         TEXT NOT NULL,
    -- lower(login): "Alice" and "alice" are the same account
    login_key     TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    email         TEXT NOT NULL,
    first_name    TEXT NOT NULL,
    last_name     TEXT NOT NULL,
    created_at    TIMESTAMP NOT NULL,
    updated_at    TIMESTAMP NOT NULL
);

-- Server-side sessions. The id is the SHA-256 of the session key, so a copy of this table
-- opens no session; the key itself only ever lives in the client's (encrypted) cookie.
CREATE TABLE sessions (
    id         TEXT PRIMARY KEY,
    state      TEXT NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
