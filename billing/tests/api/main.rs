//! Billing's black-box tests: the real service on a random port with a fresh database
//! (SQLite, or PostgreSQL when `TEST_DATABASE_URL` is set), driven over HTTP.

mod changes;
mod charge_race;
mod concurrency;
mod harness;
mod helpers;
mod limits;
mod metrics;
mod payments;
mod pool;
mod pooler;
