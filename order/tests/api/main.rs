//! Order's black-box tests: order with a real billing and a real notification, each on a
//! random port with a fresh database, driven over HTTP. Faults are real too: a service that
//! is down is a closed port, a hanging one is a socket that never answers.

mod create;
mod faults;
mod helpers;
mod otlp;
mod pay;
mod trace;
