//! Test support (feature `test-util`): auth on a free loopback port with a fresh database,
//! calling the billing a test gives it.

use std::sync::Arc;

use common::testing::{Spawned, TestDatabase, spawn_service};

/// The session key auth runs with in tests (64 bytes and more, as [`crate::Settings`] wants).
pub const SESSION_KEY: &str =
    "test-session-key-0123456789-0123456789-0123456789-0123456789-0123456789";

/// What every auth under test runs with unless a test says otherwise: the cheapest bcrypt
/// cost, so a login takes milliseconds.
const DEFAULTS: &[(&str, &str)] = &[
    ("WORKERS", "2"),
    ("BCRYPT_COST", "4"),
    ("SESSION_KEY", SESSION_KEY),
    ("HTTP_TIMEOUT", "2s"),
];

/// Auth with a fresh database, opening accounts at the billing at `billing`; `extra`
/// settings win over the defaults. Must run inside an actix runtime.
pub async fn spawn(billing: &str, extra: &[(&str, &str)]) -> Spawned {
    spawn_on(TestDatabase::fresh("auth"), billing, extra).await
}

/// Auth on an existing database: a restart, or a replica with other settings.
pub async fn spawn_on(
    database: Arc<TestDatabase>,
    billing: &str,
    extra: &[(&str, &str)],
) -> Spawned {
    let vars = [[("BILLING_URL", billing)].as_slice(), extra].concat();
    spawn_service("auth", database, DEFAULTS, &vars, crate::start).await
}
