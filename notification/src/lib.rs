//! `notification`: stores the messages `order` sends when an order is paid or declined, once
//! per idempotency key however often they are sent, and lists a user's messages.

pub mod db;
pub mod error;
pub mod metrics;
pub mod routes;
pub mod settings;
#[cfg(feature = "test-util")]
pub mod testing;

use actix_web::web;
use common::{
    db::Migrations,
    http::{self, Running},
};
use diesel_migrations::embed_migrations;

pub use settings::Settings;

/// Notification's schema, one set per backend.
pub const MIGRATIONS: Migrations = Migrations {
    postgres: embed_migrations!("migrations/postgres"),
    sqlite: embed_migrations!("migrations/sqlite"),
};

/// Applies pending migrations and exits: `notification migrate`, the init container.
pub fn migrate(settings: &Settings) -> anyhow::Result<()> {
    common::db::open(&settings.database, MIGRATIONS).map(drop)
}

/// Opens the database (applying migrations), binds the port and starts serving.
pub fn start(settings: Settings) -> anyhow::Result<Running> {
    http::launch(
        "notification",
        &settings.server,
        &settings.database,
        MIGRATIONS,
        |_, registry| {
            let metrics = web::Data::new(metrics::NotificationMetrics::new(registry));
            Ok(move |cfg: &mut web::ServiceConfig| routes::configure(cfg, &metrics))
        },
    )
}
