//! Mechanics shared by the four shop services — and nothing else.
//!
//! Every service (`auth`, `billing`, `order`, `notification`) is a library that owns its
//! domain, its database schema and its routes. What they have in common lives here, once:
//!
//! | module | what it gives a service |
//! |---|---|
//! | [`settings`] | typed settings from flat environment variables, with local defaults |
//! | [`db`] | one binary on PostgreSQL or SQLite: pool, pragmas, migrations, `web::block` helper |
//! | [`problem`] | RFC 9457 problem+json responses, and the middleware that makes every error one |
//! | [`json`] | a JSON body extractor whose errors name the offending field |
//! | [`money`] | `Money`: integer minor units inside, an exact decimal JSON number outside |
//! | [`identity`] | the `Identity` extractor built from the forward-auth headers |
//! | [`idempotency`] | the `Idempotency-Key` header, parsed once |
//! | [`request_id`] | `X-Request-Id` and the request's span: on every response, log line and downstream call |
//! | [`trace_context`] | W3C `traceparent`: one trace across every service a request reaches |
//! | [`openapi`] | the shared parts of the OpenAPI description (money, problems, the session) |
//! | [`http`] | the server skeleton (middleware, health routes) and the outgoing HTTP client |
//! | [`metrics`] | Prometheus `GET /metrics`: RED per route, downstream calls, the pool, build info |
//! | [`retry`] | bounded retries with exponential backoff and jitter |
//! | [`telemetry`] | logging set-up: `tracing`, text or JSON (`LOG_FORMAT`) |
//! | [`cli`] | the `serve` / `migrate` command line every binary shares |
//!
//! Business rules never live here: if a type means something to a customer (a login, an
//! order), it belongs to the service that owns it. `Money` is the one exception, because it
//! is a wire format that three services must read and write identically.

pub mod cli;
pub mod db;
pub mod http;
pub mod idempotency;
pub mod identity;
pub mod json;
pub mod metrics;
pub mod money;
pub mod openapi;
pub mod problem;
pub mod request_id;
pub mod retry;
pub mod settings;
pub mod telemetry;
#[cfg(feature = "test-util")]
pub mod testing;
pub mod trace_context;

pub use identity::Identity;
pub use json::Json;
pub use money::Money;
