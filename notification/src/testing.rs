//! Test support (feature `test-util`): notification as its own tests and order's tests start
//! it, on a free loopback port with a fresh database.

use std::sync::Arc;

use common::testing::{Spawned, TestDatabase, spawn_service};

/// What every notification under test runs with unless a test says otherwise.
const DEFAULTS: &[(&str, &str)] = &[("WORKERS", "2")];

/// Notification with a fresh database; `extra` settings win over the defaults
/// (`("PORT", "…")` brings it back on the port of one that was down). Must run inside an
/// actix runtime.
pub async fn spawn(extra: &[(&str, &str)]) -> Spawned {
    spawn_on(TestDatabase::fresh("notification"), extra).await
}

/// Notification on an existing database.
pub async fn spawn_on(database: Arc<TestDatabase>, extra: &[(&str, &str)]) -> Spawned {
    spawn_service("notification", database, DEFAULTS, extra, crate::start).await
}
