//! Test support (feature `test-util`): billing as its own tests and its callers' tests start
//! it, on a free loopback port with a fresh database.

use std::sync::Arc;

use common::testing::{Spawned, TestDatabase, spawn_service};

/// What every billing under test runs with unless a test says otherwise.
const DEFAULTS: &[(&str, &str)] = &[("WORKERS", "2"), ("DB_POOL_SIZE", "8")];

/// Billing with a fresh database; `extra` settings win over the defaults (`("PORT", "…")`
/// brings it up on a port a test kept free). Must run inside an actix runtime.
pub async fn spawn(extra: &[(&str, &str)]) -> Spawned {
    spawn_on(TestDatabase::fresh("billing"), extra).await
}

/// Billing on an existing database: a restart, or a second instance reading the first's data.
pub async fn spawn_on(database: Arc<TestDatabase>, extra: &[(&str, &str)]) -> Spawned {
    spawn_service("billing", database, DEFAULTS, extra, crate::start).await
}
