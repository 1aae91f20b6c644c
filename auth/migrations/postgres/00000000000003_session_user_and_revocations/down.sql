DROP TRIGGER users_announce_change ON users;
DROP FUNCTION auth_cache_user_changed();
DROP TRIGGER sessions_announce_change ON sessions;
DROP FUNCTION auth_cache_session_changed();
ALTER TABLE sessions DROP COLUMN user_id;
