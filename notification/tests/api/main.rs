//! Notification's black-box tests: the real service on a random port with a fresh database.

mod helpers;
mod notifications;
