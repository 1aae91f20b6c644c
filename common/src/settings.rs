//! Typed settings from environment variables with flat names (`PORT`, `DATABASE_URL`, …).
//!
//! Each service declares a `Settings` struct whose field names are the lower-case variable
//! names, implements [`Default`] with values that work on a laptop, and calls [`load`].
//! The pieces every service has ([`ServerSettings`], [`DatabaseSettings`],
//! [`ClientSettings`]) are flattened into it, so their variables are the same everywhere.

use std::time::Duration;

use figment::{Figment, providers::Serialized};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// Serde helper for durations written as `5s`, `24h`, `1m 30s`:
/// `#[serde(with = "common::settings::duration")]`.
pub use humantime_serde as duration;

/// Loads `T` from its defaults overlaid with the process environment.
///
/// A variable that does not parse is reported by its name, e.g.
/// `invalid setting PORT: invalid type: found string "abc", expected u16`.
pub fn load<T>() -> anyhow::Result<T>
where
    T: Serialize + DeserializeOwned + Default,
{
    load_from(std::env::vars())
}

/// Like [`load`], but from explicit `(NAME, value)` pairs instead of the environment: used by
/// tests and by the local stack runner, which start several services in one process.
pub fn load_from<T, I, K, V>(vars: I) -> anyhow::Result<T>
where
    T: Serialize + DeserializeOwned + Default,
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    // Names with dots or dashes cannot be settings and would be read as nested keys.
    let vars: Vec<(String, String)> = vars
        .into_iter()
        .map(|(k, v)| (k.as_ref().to_ascii_lowercase(), v.as_ref().to_string()))
        .filter(|(k, _)| k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .collect();
    let with = |vars: &[(String, String)]| {
        vars.iter().fold(
            Figment::from(Serialized::defaults(T::default())),
            |figment, (name, value)| {
                figment.merge(Serialized::default(name, parse_env_value(value)))
            },
        )
    };
    with(&vars).extract::<T>().map_err(|error| {
        // Through `#[serde(flatten)]` figment loses the key; find it by trying one at a time.
        let name = if error.path.is_empty() {
            vars.iter()
                .find(|var| with(std::slice::from_ref(var)).extract::<T>().is_err())
                .map(|(name, _)| name.clone())
                .unwrap_or_default()
        } else {
            error.path.join("_")
        };
        let kind = &error.kind;
        match name.to_ascii_uppercase() {
            name if name.is_empty() => anyhow::anyhow!("invalid settings: {kind}"),
            name => anyhow::anyhow!("invalid setting {name}: {kind}"),
        }
    })
}

/// Environment values are strings; read them as figment's `Env` provider does, so `"8001"`
/// is a number and `"true"` a bool.
fn parse_env_value(value: &str) -> figment::value::Value {
    value
        .parse::<figment::value::Value>()
        .unwrap_or_else(|_| value.into())
}

/// Where and how a service listens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerSettings {
    /// `HOST`: address to bind. Loopback by default; containers set `0.0.0.0`.
    pub host: String,
    /// `PORT`: TCP port to bind; `0` picks a free one (tests do).
    pub port: u16,
    /// `WORKERS`: actix worker threads; defaults to the number of CPUs.
    pub workers: Option<usize>,
    /// `SHUTDOWN_TIMEOUT`: how long in-flight requests get to finish after SIGTERM.
    #[serde(with = "duration")]
    pub shutdown_timeout: Duration,
    /// `BODY_LIMIT`: largest accepted request body, in bytes.
    pub body_limit: usize,
    /// `CLIENT_TIMEOUT`: how long a client may take to send a request's head, and then its
    /// body; a slower one gets 408 and is disconnected, so slow clients cannot hold workers.
    #[serde(with = "duration")]
    pub client_timeout: Duration,
    /// `INTERNAL_TOKEN`: the service credential. `/internal/*` refuses calls that do not carry
    /// it in `X-Internal-Token`, and calls to other services send it. The same value for every
    /// service (a Kubernetes Secret). Unset: `/internal/*` is open — local development only.
    #[serde(skip_serializing)]
    pub internal_token: Option<secrecy::SecretString>,
}

impl ServerSettings {
    pub fn local(port: u16) -> Self {
        Self {
            host: "127.0.0.1".into(),
            port,
            workers: None,
            shutdown_timeout: Duration::from_secs(20),
            body_limit: 64 * 1024,
            client_timeout: Duration::from_secs(5),
            internal_token: None,
        }
    }
}

/// The service's own database.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatabaseSettings {
    /// `DATABASE_URL`: `postgres://user:pass@host/db` (or `postgresql://`), `sqlite://PATH`,
    /// or a plain path ending in `.db`, `.sqlite` or `.sqlite3`; anything else is refused at
    /// start ([`crate::db::DatabaseUrl`]).
    pub database_url: String,
    /// `DB_POOL_SIZE`: connections kept in the pool.
    pub db_pool_size: u32,
    /// `DB_TIMEOUT`: how long a request waits for a pooled connection before it fails with 503.
    #[serde(with = "duration")]
    pub db_timeout: Duration,
    /// `DB_STATEMENT_TIMEOUT`: PostgreSQL cancels a statement that runs longer (the request
    /// then fails with a 5xx instead of holding a connection). SQLite's counterpart is its
    /// fixed 10 s `busy_timeout`.
    #[serde(with = "duration")]
    pub db_statement_timeout: Duration,
}

impl DatabaseSettings {
    /// The local default: an embedded SQLite file `data/<service>.db`.
    pub fn local(service: &str) -> Self {
        Self {
            database_url: format!("data/{service}.db"),
            db_pool_size: 8,
            db_timeout: Duration::from_secs(5),
            db_statement_timeout: Duration::from_secs(10),
        }
    }
}

/// Timeouts of calls to other services.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientSettings {
    /// `HTTP_CONNECT_TIMEOUT`: TCP connect timeout of calls to other services.
    #[serde(with = "duration")]
    pub http_connect_timeout: Duration,
    /// `HTTP_TIMEOUT`: total timeout of one call to another service.
    #[serde(with = "duration")]
    pub http_timeout: Duration,
    /// `HTTP_RETRIES`: further tries of a call that failed fast (refused, reset, 5xx) and is
    /// safe to repeat. A timed-out call is not retried: it has used its whole budget.
    pub http_retries: u32,
    /// `HTTP_RETRY_BACKOFF`: the wait before the first retry; it doubles for each next one
    /// (capped at 1s), ±20 % jitter.
    #[serde(with = "duration")]
    pub http_retry_backoff: Duration,
}

impl ClientSettings {
    /// The retry policy of calls that are safe to repeat.
    pub fn retry_policy(&self) -> crate::retry::RetryPolicy {
        crate::retry::RetryPolicy {
            attempts: self.http_retries.saturating_add(1),
            backoff: crate::retry::Backoff {
                base: self.http_retry_backoff,
                max: Duration::from_secs(1).max(self.http_retry_backoff),
            },
        }
    }
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            http_connect_timeout: Duration::from_secs(1),
            http_timeout: Duration::from_secs(5),
            http_retries: 2,
            http_retry_backoff: Duration::from_millis(100),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, Deserialize)]
    struct Sample {
        #[serde(flatten)]
        server: ServerSettings,
        billing_url: String,
    }

    impl Default for Sample {
        fn default() -> Self {
            Self {
                server: ServerSettings::local(8001),
                billing_url: "http://127.0.0.1:8002".into(),
            }
        }
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let s: Sample = load_from::<Sample, _, &str, &str>([]).unwrap();
        assert_eq!(s.server.port, 8001);
        assert_eq!(s.server.shutdown_timeout, Duration::from_secs(20));
    }

    #[test]
    fn flat_names_override_nested_fields() {
        let s: Sample = load_from([
            ("PORT", "9000"),
            ("SHUTDOWN_TIMEOUT", "3s"),
            ("BILLING_URL", "http://billing:8080"),
        ])
        .unwrap();
        assert_eq!(s.server.port, 9000);
        assert_eq!(s.server.shutdown_timeout, Duration::from_secs(3));
        assert_eq!(s.billing_url, "http://billing:8080");
    }

    #[test]
    fn a_bad_value_is_reported_by_its_variable_name() {
        let err = load_from::<Sample, _, _, _>([("PORT", "abc")]).unwrap_err();
        assert!(err.to_string().contains("PORT"), "{err}");
    }
}
