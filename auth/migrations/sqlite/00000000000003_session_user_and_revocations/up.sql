-- The forward-auth check reads a session and its user in one statement: the session row
-- names its user (filled from the session state by the store). On SQLite one auth process
-- owns the file and evicts its session cache itself; there is nothing to announce.
ALTER TABLE sessions ADD COLUMN user_id BIGINT;
UPDATE sessions SET user_id = CAST(json_extract(state, '$.user_id') AS INTEGER)
 WHERE json_valid(state) AND json_extract(state, '$.user_id') GLOB '[0-9]*';
