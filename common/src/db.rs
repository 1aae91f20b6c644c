//! One binary, two databases: PostgreSQL in Kubernetes, an embedded SQLite file locally.
//!
//! The backend is picked at start from `DATABASE_URL`. Queries are written once against
//! [`AnyConnection`] using the column types both backends share (BIGINT minor units, TEXT,
//! TIMESTAMP). Each service embeds one migration set per backend and hands both to
//! [`Migrations`]; they run at start-up and through the `migrate` subcommand.
//!
//! Diesel is synchronous, so every query runs on actix's blocking pool through [`run`],
//! which also takes the pooled connection inside the closure: an async worker never waits
//! for a connection or a query.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use diesel::{
    connection::{
        AnsiTransactionManager, CacheSize, Instrumentation, InstrumentationEvent, SimpleConnection,
        TransactionManager,
    },
    pg::PgConnection,
    prelude::*,
    r2d2::{ConnectionManager, CustomizeConnection, ManageConnection, R2D2Connection},
    result::{DatabaseErrorKind, Error as DieselError},
    sqlite::SqliteConnection,
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};

use crate::settings::DatabaseSettings;

/// A connection to either backend; queries are written once against it.
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

pub type Pool = diesel::r2d2::Pool<Manager>;

/// How long a connection may sit idle in the pool and still be handed out without a check.
///
/// r2d2's default check is a `SELECT 1` before *every* checkout: one extra round trip and one
/// extra PostgreSQL transaction per query, which was a third of all transactions of a pay.
/// Like HikariCP's `aliveBypassWindow`, a connection used this recently is trusted; one that
/// has been idle longer (a restarted server or a dropped idle connection may have closed it)
/// is pinged first, and one whose last query found the connection closed is discarded when
/// it is returned ([`Manager`]).
pub const TRUST_RECENTLY_USED: Duration = Duration::from_secs(2);

/// The pool's connection manager: diesel's, with a cheaper health check.
///
/// Each connection carries a [`Health`] instrumentation that watches its queries: a query
/// that fails because the connection is gone (`ClosedConnection`, `UnableToSendCommand`)
/// marks it broken, and r2d2 drops it on return instead of handing it out again. At checkout
/// a connection is pinged only if it has been idle longer than [`TRUST_RECENTLY_USED`].
#[derive(Debug)]
pub struct Manager {
    inner: ConnectionManager<AnyConnection>,
}

/// What the pool knows of one connection's health (its diesel instrumentation).
#[derive(Debug)]
struct Health {
    /// A query found the connection closed: never reuse it.
    lost: bool,
    /// When it was last returned to the pool (or opened).
    returned_at: Instant,
}

impl Health {
    fn new() -> Self {
        Self {
            lost: false,
            returned_at: Instant::now(),
        }
    }

    /// Whether a checkout must ping the connection first.
    fn needs_ping(&self, now: Instant) -> bool {
        self.lost || now.duration_since(self.returned_at) >= TRUST_RECENTLY_USED
    }
}

impl Instrumentation for Health {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::FinishQuery {
            error: Some(DieselError::DatabaseError(kind, _)),
            ..
        } = event
            && matches!(
                kind,
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand
            )
        {
            self.lost = true;
        }
    }
}

/// The connection's [`Health`]; `None` only if something replaced the instrumentation.
fn health(conn: &mut AnyConnection) -> Option<&mut Health> {
    conn.instrumentation().as_any_mut().downcast_mut::<Health>()
}

impl ManageConnection for Manager {
    type Connection = AnyConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<AnyConnection, Self::Error> {
        let mut conn = self.inner.connect()?;
        conn.set_instrumentation(Health::new());
        Ok(conn)
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), Self::Error> {
        match health(conn) {
            Some(h) if !h.needs_ping(Instant::now()) => Ok(()),
            _ => conn.ping().map_err(diesel::r2d2::Error::QueryError),
        }
    }

    fn has_broken(&self, conn: &mut AnyConnection) -> bool {
        if self.inner.has_broken(conn) {
            return true;
        }
        match health(conn) {
            Some(h) => {
                h.returned_at = Instant::now();
                h.lost
            }
            None => false,
        }
    }
}

/// Which database a URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    /// The backend of a URL that [`DatabaseUrl::parse`] accepts (tests pick their
    /// expectations with it); use [`DatabaseUrl::parse`] to check a URL.
    pub fn of(url: &str) -> Self {
        match DatabaseUrl::parse(url) {
            Ok(DatabaseUrl::Postgres(_)) => Backend::Postgres,
            _ => Backend::Sqlite,
        }
    }
}

/// What `DATABASE_URL` names, checked once at start. The rule:
///
/// - `postgres://…` or `postgresql://…`: PostgreSQL (libpq reads the rest);
/// - `sqlite://PATH`: the SQLite file at `PATH` (relative to the working directory);
/// - a plain path ending in `.db`, `.sqlite` or `.sqlite3` (`data/auth.db`): the same.
///
/// Anything else — another scheme (`mysql://`, `postgre://`), `sqlite:` without `//`, a
/// bare word — is refused, so a typo stops the service instead of quietly creating a SQLite
/// file named after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Postgres(String),
    Sqlite(String),
}

/// Extensions a plain `DATABASE_URL` path must end with.
const SQLITE_EXTENSIONS: [&str; 3] = [".db", ".sqlite", ".sqlite3"];

impl DatabaseUrl {
    /// Parses `DATABASE_URL`; the error names the variable and the accepted forms.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_string()));
        }
        if let Some(path) = url.strip_prefix("sqlite://") {
            anyhow::ensure!(
                !path.is_empty(),
                "invalid setting DATABASE_URL: sqlite:// needs a file path (sqlite://data/shop.db)"
            );
            return Ok(Self::Sqlite(path.to_string()));
        }
        // no scheme of any kind: `sqlite:x.db` is a misspelt `sqlite://x.db`
        let plain_path = !url.contains("://") && !url.starts_with("sqlite:");
        if plain_path && SQLITE_EXTENSIONS.iter().any(|ext| url.ends_with(ext)) {
            return Ok(Self::Sqlite(url.to_string()));
        }
        anyhow::bail!(
            "invalid setting DATABASE_URL: {:?} is not postgres://…, postgresql://…, \
             sqlite://PATH, or a path to a .db, .sqlite or .sqlite3 file",
            redacted_url(url)
        )
    }

    pub fn backend(&self) -> Backend {
        match self {
            Self::Postgres(_) => Backend::Postgres,
            Self::Sqlite(_) => Backend::Sqlite,
        }
    }
}

/// The URL without any password, for log lines and the start-up banner.
pub fn redacted_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// The two embedded migration sets of one service, declared as a `const` by the service:
/// `pub const MIGRATIONS: Migrations = Migrations { postgres: embed_migrations!(…), … };`
pub struct Migrations {
    pub postgres: EmbeddedMigrations,
    pub sqlite: EmbeddedMigrations,
}

/// Errors of the data layer, as the services' error enums see them.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No connection could be had in time: the database is down or saturated (503).
    #[error("database unavailable")]
    Unavailable(#[source] diesel::r2d2::PoolError),
    /// A connection was had, but the database did not answer in time: behind a pooler
    /// (PgBouncer) whose server is gone, a query waits there instead of failing (503).
    #[error("database did not answer within {0:?}")]
    NoAnswer(std::time::Duration),
    /// A query failed.
    #[error("database query failed")]
    Query(#[from] DieselError),
    /// The blocking pool is gone (the server is shutting down) or the closure panicked.
    #[error("database task was cancelled")]
    Cancelled,
}

impl DbError {
    /// True when a unique constraint rejected the write (duplicate login, replayed key, …).
    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            DbError::Query(DieselError::DatabaseError(
                DatabaseErrorKind::UniqueViolation,
                _
            ))
        )
    }
}

impl DbError {
    /// 503 when the database cannot be reached (retrying later may work), else 500.
    pub fn status_code(&self) -> actix_web::http::StatusCode {
        match self {
            DbError::Unavailable(_) | DbError::NoAnswer(_) => {
                actix_web::http::StatusCode::SERVICE_UNAVAILABLE
            }
            _ => actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Logs the cause chain once and answers an opaque problem: the client learns that
    /// `service`'s database failed, never how.
    pub fn to_response(&self, service: &str) -> actix_web::HttpResponse {
        tracing::error!(error = %crate::problem::chain(self), "database failure");
        let status = self.status_code();
        match self {
            DbError::Unavailable(_) | DbError::NoAnswer(_) => crate::problem::response(
                status,
                format!("{service} database unavailable; retry later"),
            ),
            _ => crate::problem::response(status, crate::problem::internal_detail()),
        }
    }
}

/// Set-up of every pooled connection.
///
/// PostgreSQL: `statement_timeout`, so a stuck statement is cancelled instead of holding a
/// connection and a worker, and the statement cache on or off (`DB_STATEMENT_CACHE`).
/// Through a pooler in transaction mode the `SET` lands on whichever server connection ran
/// it; the pooler's own `query_timeout` is the bound there (scripts/lib/pgbouncer.sh, the
/// Pooler of k8s/ha). SQLite: `busy_timeout`, the same bound on the wait for the write
/// lock; without it, concurrent writers fail with
/// "database is locked" (measured: ~90% of writes at 8 threads); WAL lets readers proceed
/// while one writer commits.
#[derive(Debug, Clone, Copy)]
struct ConnectionSetup {
    statement_timeout: std::time::Duration,
    statement_cache: bool,
}

impl CustomizeConnection<AnyConnection, diesel::r2d2::Error> for ConnectionSetup {
    fn on_acquire(&self, conn: &mut AnyConnection) -> Result<(), diesel::r2d2::Error> {
        match conn {
            AnyConnection::Postgresql(conn) => {
                if !self.statement_cache {
                    conn.set_prepared_statement_cache_size(CacheSize::Disabled);
                }
                conn.batch_execute(&format!(
                    "SET statement_timeout = {}",
                    self.statement_timeout.as_millis()
                ))
            }
            // SQLite's bound on a statement is how long it waits for the write lock
            AnyConnection::Sqlite(conn) => conn.batch_execute(&format!(
                "PRAGMA busy_timeout = {};
                 PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = NORMAL;
                 PRAGMA foreign_keys = ON;",
                self.statement_timeout.as_millis()
            )),
        }
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// A PostgreSQL URL with libpq's `connect_timeout` (whole seconds, at least 1) unless it
/// has one: without it, connecting to a host that vanished waits for the kernel's TCP
/// retries (minutes), not `DB_TIMEOUT`.
fn with_connect_timeout(url: &str, timeout: std::time::Duration) -> String {
    if url.contains("connect_timeout=") {
        return url.to_string();
    }
    let seconds = timeout.as_secs_f64().ceil().max(1.0);
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}connect_timeout={seconds}")
}

/// Opens the pool. Connects once first with the concrete driver so a wrong URL or password
/// is reported with the driver's own message instead of a generic pool time-out.
pub fn connect(settings: &DatabaseSettings) -> anyhow::Result<Pool> {
    connect_observed(settings, None)
}

/// [`connect`], reporting every checkout's wait and every time-out to `events` (the
/// service's metrics).
pub fn connect_observed(
    settings: &DatabaseSettings,
    events: Option<crate::metrics::PoolEvents>,
) -> anyhow::Result<Pool> {
    let manager_url = match DatabaseUrl::parse(&settings.database_url)? {
        DatabaseUrl::Postgres(url) => {
            let url = with_connect_timeout(&url, settings.db_timeout);
            PgConnection::establish(&url)
                .map_err(|e| anyhow::anyhow!("cannot connect to {}: {e}", redacted_url(&url)))?;
            url
        }
        DatabaseUrl::Sqlite(path) => {
            if let Some(dir) = Path::new(&path)
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir).map_err(|e| {
                    anyhow::anyhow!("cannot create directory {} for {path}: {e}", dir.display())
                })?;
            }
            SqliteConnection::establish(&path)
                .map_err(|e| anyhow::anyhow!("cannot open SQLite database {path}: {e}"))?;
            path
        }
    };
    let mut builder = diesel::r2d2::Pool::builder();
    if let Some(events) = events {
        builder = builder.event_handler(Box::new(events));
    }
    let pool = builder
        .max_size(settings.db_pool_size)
        // connections are opened as load asks for them; one is kept open for a quick start
        .min_idle(Some(settings.db_pool_size.min(1)))
        .connection_timeout(settings.db_timeout)
        .connection_customizer(Box::new(ConnectionSetup {
            statement_timeout: settings.db_statement_timeout,
            statement_cache: settings.db_statement_cache,
        }))
        .build(Manager {
            inner: ConnectionManager::new(manager_url),
        })?;
    Ok(pool)
}

/// Connects and applies pending migrations: what every service does before it serves.
pub fn open(settings: &DatabaseSettings, migrations: Migrations) -> anyhow::Result<Pool> {
    open_observed(settings, migrations, None)
}

/// [`open`], with the pool's events reported to `events` ([`connect_observed`]).
pub fn open_observed(
    settings: &DatabaseSettings,
    migrations: Migrations,
    events: Option<crate::metrics::PoolEvents>,
) -> anyhow::Result<Pool> {
    let pool = connect_observed(settings, events)?;
    let applied = migrate(&pool, migrations)?;
    tracing::info!(
        database = %redacted_url(&settings.database_url),
        migrations_applied = applied,
        "database ready"
    );
    Ok(pool)
}

/// The PostgreSQL advisory lock key taken while migrating (any fixed number; "shop").
const MIGRATION_LOCK: i64 = 0x73686f70;

/// Applies the pending migrations of whichever backend the pool points at.
///
/// PostgreSQL: every replica's init container migrates at once, so they take turns. All of
/// one run is a single transaction holding a transaction-scoped advisory lock: the others
/// wait for the lock, then find nothing left to do. A session lock would be wrong behind a
/// pooler in transaction mode (PgBouncer): the lock would stay with a server connection that
/// the pooler hands to someone else, and the unlock could run on another. And one
/// transaction means a run that fails leaves nothing half applied.
pub fn migrate(pool: &Pool, migrations: Migrations) -> anyhow::Result<usize> {
    let mut conn = pool.get()?;
    let applied = match &mut *conn {
        AnyConnection::Postgresql(c) => c.transaction::<_, anyhow::Error, _>(|c| {
            diesel::sql_query(format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
                .execute(c)?;
            let applied = c
                .run_pending_migrations(migrations.postgres)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(applied
                .into_iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>())
        }),
        AnyConnection::Sqlite(c) => c
            .run_pending_migrations(migrations.sqlite)
            .map(|v| v.into_iter().map(|m| m.to_string()).collect())
            .map_err(|e| anyhow::anyhow!("{e}")),
    }
    .map_err(|e| anyhow::anyhow!("migration failed: {e}"))?;
    for version in &applied {
        tracing::info!(%version, "applied migration");
    }
    Ok(applied.len())
}

/// Runs `f` with a pooled connection on actix's blocking thread pool.
///
/// Nothing is logged inside the closures (a failed query is returned and logged by the
/// caller, in the request's span), so the span does not follow them to the blocking thread:
/// measured, carrying it over cost more than the rest of the per-request tracing.
pub async fn run<F, T, E>(pool: &Pool, f: F) -> Result<T, E>
where
    F: FnOnce(&mut AnyConnection) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<DbError> + Send + 'static,
{
    let pool = pool.clone();
    actix_web::web::block(move || {
        let mut conn = pool.get().map_err(DbError::Unavailable)?;
        f(&mut conn)
    })
    .await
    .map_err(|_| E::from(DbError::Cancelled))?
}

/// A transaction that writes. On SQLite it starts with `BEGIN IMMEDIATE`, taking the write
/// lock up front: a deferred transaction that reads before it writes fails with "database
/// is locked" under concurrency instead of waiting for its turn. On PostgreSQL it is a plain
/// transaction; correctness there comes from conditional updates and unique keys.
pub fn write_transaction<T, E, F>(conn: &mut AnyConnection, f: F) -> Result<T, E>
where
    F: FnOnce(&mut AnyConnection) -> Result<T, E>,
    E: From<DieselError>,
{
    match conn {
        AnyConnection::Postgresql(_) => conn.transaction(f),
        AnyConnection::Sqlite(sqlite) => {
            AnsiTransactionManager::begin_transaction_sql(sqlite, "BEGIN IMMEDIATE")?;
            match f(conn) {
                Ok(value) => {
                    <AnyConnection as Connection>::TransactionManager::commit_transaction(conn)?;
                    Ok(value)
                }
                Err(error) => {
                    <AnyConnection as Connection>::TransactionManager::rollback_transaction(conn)?;
                    Err(error)
                }
            }
        }
    }
}

/// Cheap query for `/ready`.
pub fn ping(conn: &mut AnyConnection) -> Result<(), DieselError> {
    diesel::sql_query("SELECT 1").execute(conn).map(drop)
}

/// Whether the database answers within `timeout` (a pooled connection, then [`ping`]): what
/// `/ready` asks, with a timeout shorter than the pool's so an outage is reported quickly.
pub async fn check(pool: &Pool, timeout: std::time::Duration) -> Result<(), DbError> {
    let pool = pool.clone();
    let checked = actix_web::web::block(move || {
        let mut conn = pool.get_timeout(timeout).map_err(DbError::Unavailable)?;
        ping(&mut conn).map_err(DbError::from)
    });
    // the ping too: through PgBouncer a connection is had at once, and the query then waits
    // there for a server (up to its query_wait_timeout) when PostgreSQL is gone. The blocking
    // thread finishes on its own when PgBouncer gives up.
    match actix_web::rt::time::timeout(timeout, checked).await {
        Ok(result) => result.map_err(|_| DbError::Cancelled)?,
        Err(_) => Err(DbError::NoAnswer(timeout)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_follow_one_documented_rule() {
        let pg = |u: &str| Some(DatabaseUrl::Postgres(u.to_string()));
        let sqlite = |p: &str| Some(DatabaseUrl::Sqlite(p.to_string()));
        for (url, expected) in [
            ("postgres://u@h/db", pg("postgres://u@h/db")),
            (
                "postgresql://u:p@h:5432/db?sslmode=require",
                pg("postgresql://u:p@h:5432/db?sslmode=require"),
            ),
            ("sqlite://data/auth.db", sqlite("data/auth.db")),
            ("sqlite:///var/lib/shop/auth", sqlite("/var/lib/shop/auth")),
            ("data/auth.db", sqlite("data/auth.db")),
            ("/tmp/x/order.sqlite3", sqlite("/tmp/x/order.sqlite3")),
            ("shop.sqlite", sqlite("shop.sqlite")),
            // refused: each of these once created a SQLite file named after the typo
            ("placeholder", None),
            ("data/auth", None),
            ("", None),
            ("sqlite://", None),
            ("sqlite:x.db", None),
            ("postgre://u@h/db", None),
            ("mysql://u@h/db.db", None),
            ("https://example.com/x.db", None),
        ] {
            assert_eq!(DatabaseUrl::parse(url).ok(), expected, "{url:?}");
        }
        let err = DatabaseUrl::parse("mysql://u:s3cret@h/db")
            .unwrap_err()
            .to_string();
        assert!(err.contains("DATABASE_URL"), "{err}");
        assert!(
            !err.contains("s3cret"),
            "the error must not show a password: {err}"
        );
        assert_eq!(Backend::of("postgresql://u@h/db"), Backend::Postgres);
        assert_eq!(Backend::of("data/auth.db"), Backend::Sqlite);
    }

    #[test]
    fn a_service_refuses_an_unknown_database_url_before_touching_the_disk() {
        let dir = std::env::temp_dir().join(format!("shop-db-url-{}", std::process::id()));
        let url = dir.join("placeholder").to_string_lossy().into_owned();
        let settings = DatabaseSettings {
            database_url: url.clone(),
            ..DatabaseSettings::local("unit")
        };
        let err = connect(&settings).expect_err("refused").to_string();
        assert!(err.starts_with("invalid setting DATABASE_URL"), "{err}");
        assert!(
            !dir.exists(),
            "neither a directory nor a file may be created"
        );
    }

    #[test]
    fn postgres_urls_get_a_connect_timeout_unless_they_have_one() {
        let t = std::time::Duration::from_millis(2500);
        assert_eq!(
            with_connect_timeout("postgres://u@h/db", t),
            "postgres://u@h/db?connect_timeout=3"
        );
        assert_eq!(
            with_connect_timeout("postgres://u@h/db?sslmode=require", t),
            "postgres://u@h/db?sslmode=require&connect_timeout=3"
        );
        assert_eq!(
            with_connect_timeout("postgres://u@h/db?connect_timeout=9", t),
            "postgres://u@h/db?connect_timeout=9"
        );
        assert_eq!(
            with_connect_timeout("postgres://u@h/db", std::time::Duration::ZERO),
            "postgres://u@h/db?connect_timeout=1"
        );
    }

    #[test]
    fn passwords_never_reach_a_log_line() {
        assert_eq!(
            redacted_url("postgres://auth:s3cret@db:5432/auth"),
            "postgres://auth:***@db:5432/auth"
        );
        assert_eq!(redacted_url("data/auth.db"), "data/auth.db");
    }
}
