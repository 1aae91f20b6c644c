//! Test support (feature `test-util`): order on a free loopback port with a fresh database,
//! calling the billing and notification a test gives it.

use std::sync::Arc;

use common::testing::{Spawned, TestDatabase, spawn_service};

/// What every order under test runs with unless a test says otherwise: a relay that looks
/// for due messages ten times a second and never waits more than a second between attempts,
/// so delivery tests take seconds, not minutes.
const DEFAULTS: &[(&str, &str)] = &[
    ("WORKERS", "2"),
    ("HTTP_TIMEOUT", "2s"),
    ("OUTBOX_POLL_INTERVAL", "100ms"),
    ("OUTBOX_MAX_BACKOFF", "1s"),
];

/// Order with a fresh database, calling `billing` and `notification`; `extra` settings win
/// over the defaults. Must run inside an actix runtime.
pub async fn spawn(billing: &str, notification: &str, extra: &[(&str, &str)]) -> Spawned {
    spawn_on(TestDatabase::fresh("order"), billing, notification, extra).await
}

/// Order on an existing database.
pub async fn spawn_on(
    database: Arc<TestDatabase>,
    billing: &str,
    notification: &str,
    extra: &[(&str, &str)],
) -> Spawned {
    let peers = [("BILLING_URL", billing), ("NOTIFICATION_URL", notification)];
    let vars = [peers.as_slice(), extra].concat();
    spawn_service("order", database, DEFAULTS, &vars, crate::start).await
}
