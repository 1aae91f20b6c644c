//! The forward-auth check's cache: session → identity, in each auth process.
//!
//! The ingress asks `GET /auth` before every protected request, so the answer is kept in
//! memory: a hit costs no database round trip and no thread-pool hop. A cached answer must
//! never outlive what it was read from, so:
//!
//! - **Eviction everywhere.** PostgreSQL announces every change of a session or a user on
//!   channel `auth_cache` (triggers, migration 3: a logout on any replica, a profile change, a
//!   user removed by hand, the expiry sweep). [`spawn_listener`] keeps a connection that
//!   `LISTEN`s and evicts what it hears, polling every [`POLL`]; its own changes the process
//!   evicts at once. On SQLite one process owns the file and evicts directly.
//! - **Bypassed when deaf.** Until the listener is subscribed, and whenever its connection is
//!   lost, the cache is off: every check reads the database. Announcements sent while it was
//!   deaf are lost, so it starts empty when it resubscribes.
//! - **No stale refill.** A check that missed reads the database and then fills the cache —
//!   unless something was evicted in between (an epoch counter), because that eviction may
//!   have been the answer it just read.
//! - The session's absolute expiry is kept with the entry; at [`SessionCache::capacity`]
//!   entries the cache starts over.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock, Weak},
    time::{Duration, Instant},
};

use chrono::NaiveDateTime;
use common::Identity;
use diesel::{Connection, RunQueryDsl, pg::PgConnection};

/// How often the listener looks for announcements: the bound on how long another replica's
/// logout takes to reach this one's cache (plus the commit and the network).
pub const POLL: Duration = Duration::from_millis(10);
/// How often the listener checks that its connection is alive when nothing is announced.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// The channel the triggers announce on (migration 3).
pub const CHANNEL: &str = "auth_cache";

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The session's identity, still valid.
    Hit(Arc<Identity>),
    /// Read the database, then offer the answer with [`SessionCache::fill`] and this ticket.
    Miss(Ticket),
}

/// Proof of when a lookup missed: an answer read after it may fill the cache only if
/// nothing was evicted since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(Option<u64>);

struct Entry {
    identity: Arc<Identity>,
    expires_at: NaiveDateTime,
}

struct Inner {
    entries: HashMap<String, Entry>,
    /// Bumped by every eviction; a fill must carry the epoch its lookup saw.
    epoch: u64,
    /// Off until the listener is subscribed (PostgreSQL), and while it is not.
    live: bool,
    capacity: usize,
}

/// Session row id → identity. Cheap to clone (shared).
#[derive(Clone)]
pub struct SessionCache {
    inner: Arc<RwLock<Inner>>,
}

impl SessionCache {
    /// A cache of at most `capacity` sessions (0: no cache, every check reads the database),
    /// `live` from the start (SQLite) or once a listener subscribes (PostgreSQL).
    pub fn new(capacity: usize, live: bool) -> Self {
        Self {
            inner: Arc::new(RwLock::new(Inner {
                entries: HashMap::new(),
                epoch: 0,
                live: live && capacity > 0,
                capacity,
            })),
        }
    }

    pub fn capacity(&self) -> usize {
        self.read().capacity
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The identity of session `id` if cached and not expired at `now`.
    pub fn lookup(&self, id: &str, now: NaiveDateTime) -> Lookup {
        let inner = self.read();
        if !inner.live {
            return Lookup::Miss(Ticket(None));
        }
        match inner.entries.get(id) {
            Some(entry) if entry.expires_at > now => Lookup::Hit(entry.identity.clone()),
            _ => Lookup::Miss(Ticket(Some(inner.epoch))),
        }
    }

    /// Offers what the database said after the lookup that gave `ticket`; kept only if the
    /// cache is live and nothing was evicted since.
    pub fn fill(
        &self,
        ticket: Ticket,
        id: String,
        identity: Arc<Identity>,
        expires_at: NaiveDateTime,
    ) {
        let mut inner = self.write();
        if !inner.live || ticket.0 != Some(inner.epoch) {
            return;
        }
        if inner.entries.len() >= inner.capacity {
            inner.entries.clear();
        }
        inner.entries.insert(
            id,
            Entry {
                identity,
                expires_at,
            },
        );
    }

    /// Forgets session `id` (logged out, changed, expired).
    pub fn evict_session(&self, id: &str) {
        let mut inner = self.write();
        inner.epoch += 1;
        inner.entries.remove(id);
    }

    /// Forgets every session of `user_id` (profile changed, user removed).
    pub fn evict_user(&self, user_id: i64) {
        let mut inner = self.write();
        inner.epoch += 1;
        inner.entries.retain(|_, e| e.identity.user_id != user_id);
    }

    /// Applies an announcement of channel [`CHANNEL`]: `s:<session id>` or `u:<user id>`.
    /// Anything else empties the cache (an announcement it cannot read may be a revocation).
    pub fn apply(&self, payload: &str) {
        match payload.split_once(':') {
            Some(("s", id)) => self.evict_session(id),
            Some(("u", user)) if user.parse::<i64>().is_ok() => {
                self.evict_user(user.parse().unwrap_or_default())
            }
            _ => {
                tracing::warn!(
                    ?payload,
                    "unknown session-cache announcement; emptying the cache"
                );
                self.set_live(self.is_live());
            }
        }
    }

    /// Turns the cache on or off; either way it starts over empty.
    fn set_live(&self, live: bool) {
        let mut inner = self.write();
        inner.epoch += 1;
        inner.entries.clear();
        inner.live = live && inner.capacity > 0;
    }

    pub fn is_live(&self) -> bool {
        self.read().live
    }

    /// How many sessions are cached.
    pub fn len(&self) -> usize {
        self.read().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Keeps `cache` in step with PostgreSQL's announcements for as long as the cache exists: a
/// thread with its own connection to `url` that `LISTEN`s on [`CHANNEL`], turns the cache on
/// once subscribed and off whenever the connection is lost, and reconnects (every second at
/// most) until it is back.
pub fn spawn_listener(url: String, cache: &SessionCache) -> std::io::Result<()> {
    if cache.capacity() == 0 {
        return Ok(());
    }
    let cache = Arc::downgrade(&cache.inner);
    std::thread::Builder::new()
        .name("auth-session-listener".into())
        .spawn(move || listen(&url, cache))
        .map(drop)
}

fn listen(url: &str, weak: Weak<RwLock<Inner>>) {
    let mut warned = false;
    loop {
        let Some(cache) = upgrade(&weak) else { return };
        match subscribe(url) {
            Ok(mut conn) => {
                cache.set_live(true);
                tracing::info!(
                    channel = CHANNEL,
                    "session cache on: listening for revocations"
                );
                warned = false;
                let error = follow(&mut conn, &weak);
                let Some(cache) = upgrade(&weak) else { return };
                cache.set_live(false);
                tracing::warn!(
                    channel = CHANNEL,
                    %error,
                    "session cache off, every check reads the database: lost the listener"
                );
            }
            Err(error) => {
                if !warned {
                    tracing::warn!(
                        channel = CHANNEL,
                        %error,
                        "session cache off, every check reads the database: cannot listen; \
                         retrying every second"
                    );
                    warned = true;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// The cache again, if the server still has it.
fn upgrade(weak: &Weak<RwLock<Inner>>) -> Option<SessionCache> {
    weak.upgrade().map(|inner| SessionCache { inner })
}

fn subscribe(url: &str) -> Result<PgConnection, String> {
    let mut conn = PgConnection::establish(url).map_err(|e| e.to_string())?;
    diesel::sql_query(format!("LISTEN {CHANNEL}"))
        .execute(&mut conn)
        .map_err(|e| e.to_string())?;
    Ok(conn)
}

/// Applies announcements until the connection fails (the error) or the cache is gone.
fn follow(conn: &mut PgConnection, weak: &Weak<RwLock<Inner>>) -> String {
    let mut checked = Instant::now();
    loop {
        std::thread::sleep(POLL);
        let Some(cache) = upgrade(weak) else {
            return "the server stopped".into();
        };
        for notification in conn.notifications_iter() {
            match notification {
                Ok(n) => cache.apply(&n.payload),
                Err(e) => return e.to_string(),
            }
        }
        if checked.elapsed() >= HEARTBEAT {
            // a connection that died silently shows no error until it is used
            if let Err(e) = diesel::sql_query("SELECT 1").execute(conn) {
                return e.to_string();
            }
            checked = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(user_id: i64) -> Arc<Identity> {
        Arc::new(Identity {
            user_id,
            login: format!("user{user_id}"),
            email: format!("user{user_id}@example.com"),
            first_name: String::new(),
            last_name: String::new(),
        })
    }

    fn at(seconds: i64) -> NaiveDateTime {
        chrono::DateTime::from_timestamp(1_800_000_000 + seconds, 0)
            .unwrap()
            .naive_utc()
    }

    fn ticket(cache: &SessionCache, id: &str) -> Ticket {
        match cache.lookup(id, at(0)) {
            Lookup::Miss(t) => t,
            Lookup::Hit(_) => panic!("{id} is cached"),
        }
    }

    #[test]
    fn a_filled_session_is_a_hit_until_it_expires() {
        let cache = SessionCache::new(10, true);
        let t = ticket(&cache, "a");
        cache.fill(t, "a".into(), identity(1), at(60));
        assert_eq!(cache.lookup("a", at(59)), Lookup::Hit(identity(1)));
        assert!(matches!(cache.lookup("a", at(60)), Lookup::Miss(_)));
    }

    #[test]
    fn an_answer_read_before_an_eviction_does_not_refill_the_cache() {
        let cache = SessionCache::new(10, true);
        let t = ticket(&cache, "a"); // a check misses and goes to the database …
        cache.evict_session("a"); // … meanwhile the session is revoked …
        cache.fill(t, "a".into(), identity(1), at(60)); // … its answer arrives late
        assert!(matches!(cache.lookup("a", at(0)), Lookup::Miss(_)));
    }

    #[test]
    fn evictions_by_session_and_by_user() {
        let cache = SessionCache::new(10, true);
        for (id, user) in [("a", 1), ("b", 1), ("c", 2)] {
            let t = ticket(&cache, id);
            cache.fill(t, id.into(), identity(user), at(60));
        }
        cache.apply("s:c");
        assert!(matches!(cache.lookup("c", at(0)), Lookup::Miss(_)));
        cache.apply("u:1");
        assert!(cache.is_empty());
    }

    #[test]
    fn an_unreadable_announcement_empties_the_cache() {
        let cache = SessionCache::new(10, true);
        let t = ticket(&cache, "a");
        cache.fill(t, "a".into(), identity(1), at(60));
        cache.apply("u:not-a-number");
        assert!(cache.is_empty());
        assert!(cache.is_live());
    }

    #[test]
    fn a_cache_that_is_off_answers_nothing_and_keeps_nothing() {
        let cache = SessionCache::new(10, false);
        assert_eq!(cache.lookup("a", at(0)), Lookup::Miss(Ticket(None)));
        cache.fill(Ticket(None), "a".into(), identity(1), at(60));
        assert!(cache.is_empty());
        // turned off while filled: emptied, and a ticket from before cannot refill it
        let cache = SessionCache::new(10, true);
        let t = ticket(&cache, "a");
        cache.fill(t, "a".into(), identity(1), at(60));
        let late = ticket(&cache, "b");
        cache.set_live(false);
        assert!(cache.is_empty());
        cache.set_live(true);
        cache.fill(late, "b".into(), identity(2), at(60));
        assert!(cache.is_empty());
    }

    #[test]
    fn a_full_cache_starts_over_and_size_zero_is_no_cache() {
        let cache = SessionCache::new(2, true);
        for id in ["a", "b", "c"] {
            let t = ticket(&cache, id);
            cache.fill(t, id.into(), identity(1), at(60));
        }
        assert_eq!(cache.len(), 1);
        let off = SessionCache::new(0, true);
        assert!(!off.is_live());
    }
}
