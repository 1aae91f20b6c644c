//! `order`: orders, and paying them.
//!
//! A pay asks billing to charge the order (billing charges an order id at most once, so a pay
//! may always be retried), records the outcome and the message announcing it in one
//! transaction, then sends the message to notification. Messages that could not be sent stay
//! in the outbox and are retried with backoff until they land ([`outbox`]).
//!
//! Layout: [`domain`] (statuses, new orders, idempotency keys), [`db`] (queries, outbox
//! rows), [`clients`] (typed billing and notification clients), [`pay`] (the pay use case),
//! [`outbox`] (delivery and the retry relay), [`routes`] (the HTTP surface), [`error`]
//! (problem+json).

pub mod clients;
pub mod db;
pub mod domain;
pub mod error;
pub mod metrics;
pub mod outbox;
pub mod pay;
pub mod routes;
pub mod settings;
#[cfg(feature = "test-util")]
pub mod testing;

use std::sync::Arc;

use actix_web::web;
use common::{
    db::Migrations,
    http::{self, Running},
};
use diesel_migrations::embed_migrations;

pub use settings::Settings;

/// Order's schema, one set per backend.
pub const MIGRATIONS: Migrations = Migrations {
    postgres: embed_migrations!("migrations/postgres"),
    sqlite: embed_migrations!("migrations/sqlite"),
};

/// Applies pending migrations and exits: `order migrate`, the init container.
pub fn migrate(settings: &Settings) -> anyhow::Result<()> {
    common::db::open(&settings.database, MIGRATIONS).map(drop)
}

/// Opens the database (applying migrations), binds the port, starts the outbox relay and
/// serves. Must run inside an actix runtime.
pub fn start(settings: Settings) -> anyhow::Result<Running> {
    settings.validate()?;
    let (server, database) = (settings.server.clone(), settings.database.clone());
    http::launch(
        "order",
        &server,
        &database,
        MIGRATIONS,
        move |pool, registry| {
            let metrics = Arc::new(metrics::OrderMetrics::new(registry));
            let client = http::client(&settings.client, settings.server.internal_token.as_ref())?;
            let outbox = outbox::Outbox {
                pool: pool.clone(),
                client: clients::NotificationClient::new(
                    client.clone(),
                    &settings.notification_url,
                    registry.downstream("notification"),
                ),
                policy: outbox::RetryPolicy {
                    max_backoff: settings.outbox_max_backoff,
                    max_attempts: i32::try_from(settings.outbox_max_attempts).unwrap_or(i32::MAX),
                },
                metrics: metrics.clone(),
            };
            let payments = web::Data::new(pay::Payments {
                pool: pool.clone(),
                billing: clients::BillingClient::new(
                    client,
                    &settings.billing_url,
                    settings.client.retry_policy(),
                    registry.downstream("billing"),
                ),
                outbox: outbox.clone(),
                metrics,
            });
            // a claimed message is left alone for longer than one delivery can take
            let lease = settings.client.http_timeout + std::time::Duration::from_secs(5);
            outbox::spawn_relay(outbox, settings.outbox_poll_interval, lease);
            Ok(move |cfg: &mut web::ServiceConfig| routes::configure(cfg, &payments))
        },
    )
}
