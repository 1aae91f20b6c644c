//! Auth's black-box tests: auth and a real billing, each on a random port with a fresh
//! database (SQLite, or PostgreSQL when `TEST_DATABASE_URL` is set), driven over HTTP.

mod helpers;
mod login;
mod register;
mod revocation;
mod sessions;
mod users;
