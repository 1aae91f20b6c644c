//! `auth`: users (bcrypt), logins with a server-side session cookie, and the forward-auth
//! check (`GET /auth`) the ingress asks before every protected request.
//!
//! Layout: [`domain`] parses input (login, password, email, names), [`password`] hashes off
//! the async workers, [`session_store`] keeps sessions in auth's own database,
//! [`session_cache`] answers the forward-auth check from memory, [`db`] holds
//! the queries, [`billing_client`] opens a new user's account, [`routes`] is the HTTP surface.

pub mod billing_client;
pub mod db;
pub mod domain;
pub mod error;
pub mod metrics;
pub mod password;
pub mod routes;
pub mod session_cache;
pub mod session_store;
pub mod settings;
#[cfg(feature = "test-util")]
pub mod testing;

use actix_web::web;
use common::{
    db::{Backend, DatabaseUrl, Migrations},
    http::{self, Running},
};
use diesel_migrations::embed_migrations;

pub use settings::Settings;

/// Auth's schema, one set per backend.
pub const MIGRATIONS: Migrations = Migrations {
    postgres: embed_migrations!("migrations/postgres"),
    sqlite: embed_migrations!("migrations/sqlite"),
};

/// Applies pending migrations and exits: `auth migrate`, the init container.
pub fn migrate(settings: &Settings) -> anyhow::Result<()> {
    common::db::open(&settings.database, MIGRATIONS).map(drop)
}

/// Opens the database (applying migrations), binds the port and starts serving. Must run
/// inside an actix runtime (it starts the expired-session sweeper).
pub fn start(settings: Settings) -> anyhow::Result<Running> {
    settings.validate()?;
    let (server, database) = (settings.server.clone(), settings.database.clone());
    let database_backend = DatabaseUrl::parse(&database.database_url)?.backend();
    http::launch(
        "auth",
        &server,
        &database,
        MIGRATIONS,
        move |pool, registry| {
            let state = web::Data::new(routes::AuthState {
                hasher: password::Hasher::new(settings.bcrypt_cost)?,
                login_limit: routes::LoginLimit {
                    max_failures: i32::try_from(settings.login_max_failures).unwrap_or(i32::MAX),
                    window: chrono::Duration::from_std(settings.login_failure_window)?,
                },
                billing: billing_client::BillingClient::new(
                    http::client(&settings.client, settings.server.internal_token.as_ref())?,
                    &settings.billing_url,
                    settings.client.retry_policy(),
                    registry.downstream("billing"),
                ),
                metrics: metrics::AuthMetrics::new(registry),
            });
            let cache = session_cache::SessionCache::new(
                settings.session_cache_size,
                // SQLite: one process owns the file and evicts by itself; PostgreSQL: once the
                // listener hears every replica's changes
                database_backend == Backend::Sqlite,
            );
            if database_backend == Backend::Postgres {
                let listen_url = (settings.database_listen_url.as_ref())
                    .unwrap_or(&settings.database.database_url);
                session_cache::spawn_listener(listen_url.clone(), &cache)?;
            }
            let sessions = routes::SessionConfig {
                store: session_store::DbSessionStore::new(pool.clone(), cache.clone()),
                cache,
                key: settings.cookie_key()?,
                ttl: settings.session_ttl,
                secure: settings.session_cookie_secure,
            };
            session_store::spawn_cleanup(pool.clone(), settings.session_cleanup_interval);
            Ok(move |cfg: &mut web::ServiceConfig| routes::configure(cfg, &state, &sessions))
        },
    )
}
