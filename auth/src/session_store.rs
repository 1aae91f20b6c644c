//! actix-session's `SessionStore` backed by auth's own database.
//!
//! Sessions are server-side: logout deletes the row, so a replayed cookie is worthless; they
//! survive restarts and are shared by every replica. Rows are keyed by the SHA-256 of the
//! session key. Expired rows are refused when read and swept by [`spawn_cleanup`].

use std::{collections::HashMap, time::Duration};

use actix_session::storage::{
    LoadError, SaveError, SessionKey, SessionStore, UpdateError, generate_session_key,
};
use actix_web::cookie::time::Duration as CookieDuration;
use common::db::{self, DbError, Pool};
use sha2::{Digest, Sha256};

use crate::{
    db::{now, session},
    session_cache::SessionCache,
};

type State = HashMap<String, String>;

/// The session entry holding the logged-in user's id.
pub const USER_ID: &str = "user_id";

#[derive(Clone)]
pub struct DbSessionStore {
    pool: Pool,
    /// The forward-auth check's cache: what this store changes or deletes, it evicts.
    cache: SessionCache,
}

impl DbSessionStore {
    pub fn new(pool: Pool, cache: SessionCache) -> Self {
        Self { pool, cache }
    }
}

/// The id of a session's row: the SHA-256 of its key.
pub fn row_id(key: &SessionKey) -> String {
    hex::encode(Sha256::digest(key.as_ref().as_bytes()))
}

/// The user a session state names (actix-session keeps each value as JSON: `"42"`).
fn user_of(state: &State) -> Option<i64> {
    state.get(USER_ID).and_then(|v| v.parse().ok())
}

fn expiry(ttl: &CookieDuration) -> chrono::NaiveDateTime {
    now() + chrono::Duration::seconds(ttl.whole_seconds())
}

impl SessionStore for DbSessionStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<State>, LoadError> {
        let id = row_id(key);
        let state = db::run(&self.pool, move |conn| {
            session::load(conn, &id, now()).map_err(DbError::from)
        })
        .await
        .map_err(|e| LoadError::Other(e.into()))?;
        state
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(|e| LoadError::Deserialization(e.into()))
    }

    async fn save(&self, state: State, ttl: &CookieDuration) -> Result<SessionKey, SaveError> {
        let body = serde_json::to_string(&state).map_err(|e| SaveError::Serialization(e.into()))?;
        let key = generate_session_key();
        let (id, expires_at, user) = (row_id(&key), expiry(ttl), user_of(&state));
        db::run(&self.pool, move |conn| {
            session::insert(conn, &id, &body, user, expires_at).map_err(DbError::from)
        })
        .await
        .map_err(|e| SaveError::Other(e.into()))?;
        Ok(key)
    }

    async fn update(
        &self,
        key: SessionKey,
        state: State,
        ttl: &CookieDuration,
    ) -> Result<SessionKey, UpdateError> {
        let body =
            serde_json::to_string(&state).map_err(|e| UpdateError::Serialization(e.into()))?;
        let (id, expires_at, user) = (row_id(&key), expiry(ttl), user_of(&state));
        let evicted = id.clone();
        let found = db::run(&self.pool, move |conn| {
            session::update(conn, &id, Some((&body, user)), expires_at).map_err(DbError::from)
        })
        .await;
        self.cache.evict_session(&evicted);
        let found = found.map_err(|e| UpdateError::Other(e.into()))?;
        if found {
            Ok(key)
        } else {
            // gone meanwhile (revoked or expired): start a fresh one rather than resurrect it
            self.save(state, ttl)
                .await
                .map_err(|e| UpdateError::Other(e.into()))
        }
    }

    async fn update_ttl(
        &self,
        key: &SessionKey,
        ttl: &CookieDuration,
    ) -> Result<(), anyhow::Error> {
        let (id, expires_at) = (row_id(key), expiry(ttl));
        let evicted = id.clone();
        let updated = db::run(&self.pool, move |conn| {
            session::update(conn, &id, None, expires_at).map_err(DbError::from)
        })
        .await;
        self.cache.evict_session(&evicted);
        updated?;
        Ok(())
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), anyhow::Error> {
        let id = row_id(key);
        let evicted = id.clone();
        let deleted = db::run(&self.pool, move |conn| {
            session::delete(conn, &id).map_err(DbError::from)
        })
        .await;
        // after the delete: a check that read the row before it cannot refill the cache
        self.cache.evict_session(&evicted);
        deleted?;
        Ok(())
    }
}

/// Deletes expired sessions every `every`, for as long as the server runs.
pub fn spawn_cleanup(pool: Pool, every: Duration) {
    actix_web::rt::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        loop {
            ticks.tick().await;
            match db::run(&pool, |conn| {
                session::delete_expired(conn, now()).map_err(DbError::from)
            })
            .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(sessions = n, "removed expired sessions"),
                Err(e) => tracing::warn!(
                    error = %common::problem::chain(&e),
                    "expired-session cleanup failed"
                ),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn session_keys_carry_far_more_than_128_bits_of_randomness() {
        // actix-session's keys: 64 characters drawn uniformly from 62 (a CSPRNG)
        let keys: Vec<String> = (0..2000)
            .map(|_| generate_session_key().as_ref().to_string())
            .collect();
        assert!(keys.iter().all(|k| k.len() == 64), "64 characters each");
        assert!(
            keys.iter()
                .all(|k| k.bytes().all(|b| b.is_ascii_alphanumeric())),
            "alphanumeric"
        );
        let alphabet: HashSet<u8> = keys.iter().flat_map(|k| k.bytes()).collect();
        assert_eq!(alphabet.len(), 62, "every one of the 62 symbols is used");
        let bits = 64.0 * (alphabet.len() as f64).log2();
        assert!(bits >= 128.0, "{bits:.0} bits");
        assert_eq!(keys.iter().collect::<HashSet<_>>().len(), keys.len());
        // the database holds only a digest of the key, never the key itself
        let key = generate_session_key();
        assert_eq!(row_id(&key).len(), 64);
        assert!(!row_id(&key).contains(key.as_ref()));
    }
}
