-- The forward-auth check reads a session and its user in one statement: the session row
-- names its user (filled from the session state by the store; sessions that hold no login
-- have none).
ALTER TABLE sessions ADD COLUMN user_id BIGINT;
UPDATE sessions SET user_id = (state::json ->> 'user_id')::BIGINT
 WHERE state::json ->> 'user_id' ~ '^[0-9]+$';

-- Every auth replica caches session → identity. Whatever ends a session or changes a user —
-- a logout on any replica, a profile change, a user removed by hand, the expiry sweep — is
-- announced on channel `auth_cache`, and every replica evicts it (auth::session_cache).
-- Payloads: 's:<session row id>' and 'u:<user id>'. NOTIFY is sent at commit.
CREATE FUNCTION auth_cache_session_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('auth_cache', 's:' || OLD.id);
    RETURN NULL;
END $$;
CREATE TRIGGER sessions_announce_change AFTER UPDATE OR DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION auth_cache_session_changed();

CREATE FUNCTION auth_cache_user_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('auth_cache', 'u:' || OLD.id);
    RETURN NULL;
END $$;
CREATE TRIGGER users_announce_change AFTER UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION auth_cache_user_changed();
