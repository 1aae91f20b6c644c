//! `billing`: one account per user, deposits and withdrawals, a ledger, and the internal
//! payment endpoint through which `order` charges an order exactly once.
//!
//! Layout: [`domain`] parses input into types that are valid by construction, [`db`] holds
//! every query (each balance change is one conditional UPDATE plus a ledger row in one
//! transaction), [`routes`] is the HTTP surface, [`error`] maps failures to problem+json.

pub mod db;
pub mod domain;
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

/// Billing's schema, one set per backend.
pub const MIGRATIONS: Migrations = Migrations {
    postgres: embed_migrations!("migrations/postgres"),
    sqlite: embed_migrations!("migrations/sqlite"),
};

/// Applies pending migrations and exits: `billing migrate`, the init container.
pub fn migrate(settings: &Settings) -> anyhow::Result<()> {
    common::db::open(&settings.database, MIGRATIONS).map(drop)
}

/// Opens the database (applying migrations), binds the port and starts serving.
pub fn start(settings: Settings) -> anyhow::Result<Running> {
    http::launch(
        "billing",
        &settings.server,
        &settings.database,
        MIGRATIONS,
        |_, registry| {
            let metrics = web::Data::new(metrics::BillingMetrics::new(registry));
            Ok(move |cfg: &mut web::ServiceConfig| routes::configure(cfg, &metrics))
        },
    )
}
