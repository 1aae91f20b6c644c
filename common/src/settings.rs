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

/// The default `KEEP_ALIVE`: above every idle timeout in front of a service
/// ([`DEFAULT_POOL_IDLE_TIMEOUT`], [`INGRESS_NGINX_KEEPALIVE_TIMEOUT`]), and the same as
/// ingress-nginx's own keep-alive towards its clients (`keep-alive: 75`).
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(75);

/// The default `HTTP_POOL_IDLE_TIMEOUT`: well below [`DEFAULT_KEEP_ALIVE`], and below the 90 s
/// reqwest keeps idle connections by default (longer than any service keeps them open).
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long ingress-nginx keeps an idle connection to a service: its defaults for
/// `upstream-keepalive-timeout` (controller ConfigMap) and `auth-keepalive-timeout` (Ingress
/// annotation) are both 60 s. Every service's `KEEP_ALIVE` must be longer; a test checks the
/// manifests against it, and `scripts/lib/nginx_from_ingress.py` renders the same value.
pub const INGRESS_NGINX_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);

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
    /// `KEEP_ALIVE`: how long an idle keep-alive connection stays open before the service
    /// closes it. It must be longer (by [`KEEP_ALIVE_MARGIN`]) than any client or proxy in
    /// front keeps a connection idle (`HTTP_POOL_IDLE_TIMEOUT` of the other services, 30 s;
    /// ingress-nginx's `upstream-keepalive-timeout` and `auth-keepalive-timeout`, 60 s): then
    /// a client always drops an idle connection before the service closes it, and never
    /// writes a request on one that the service is closing at that moment, which fails the
    /// call ("connection closed before message completed"). actix's own default, 5 s, is
    /// shorter than all of them. `0s` turns keep-alive off (a connection per request).
    #[serde(with = "duration")]
    pub keep_alive: Duration,
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
            keep_alive: DEFAULT_KEEP_ALIVE,
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
    /// then fails with a 5xx instead of holding a connection). On SQLite it is the
    /// `busy_timeout`: how long a statement waits for the write lock before it fails.
    #[serde(with = "duration")]
    pub db_statement_timeout: Duration,
    /// `DB_STATEMENT_CACHE`: PostgreSQL only. `true` (the default): each connection prepares
    /// a statement once, by name, and then only executes it. `false`: every statement is sent
    /// with its parameters in one unnamed round trip (libpq's `PQsendQueryParams`), which is
    /// what a pooler in transaction mode (PgBouncer `pool_mode = transaction`, before 1.21's
    /// `max_prepared_statements`) can pass on: there a named statement, prepared on one
    /// server connection, is missing on the next. Costs PostgreSQL a parse and plan per
    /// statement (BENCHMARKS.md, "Past one machine").
    pub db_statement_cache: bool,
}

impl DatabaseSettings {
    /// The local default: an embedded SQLite file `data/<service>.db`.
    pub fn local(service: &str) -> Self {
        Self {
            database_url: format!("data/{service}.db"),
            db_pool_size: 8,
            db_timeout: Duration::from_secs(5),
            db_statement_timeout: Duration::from_secs(10),
            db_statement_cache: true,
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
    /// `HTTP_POOL_IDLE_TIMEOUT`: how long a connection to another service may sit idle in the
    /// pool before it is dropped. Must be shorter than the callee's `KEEP_ALIVE`, so the
    /// client, never the server, ends an idle connection: a request is then never written on
    /// one the server is closing at that moment. Enforced when a connection is taken from the
    /// pool, so an older one is never reused.
    #[serde(with = "duration")]
    pub http_pool_idle_timeout: Duration,
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

/// How much longer than the idle timeout in front of it a server's keep-alive must be. actix
/// reckons a connection's keep-alive deadline from a clock it refreshes every 500 ms (its date
/// service), so an idle connection may be closed up to 0.5 s before `KEEP_ALIVE`; the other
/// half second covers scheduling delays on a loaded machine.
pub const KEEP_ALIVE_MARGIN: Duration = Duration::from_secs(1);

/// A server's keep-alive and the idle timeout of a client or proxy in front of it, each with
/// the variable that sets it: an error naming both unless the server keeps idle connections
/// at least [`KEEP_ALIVE_MARGIN`] longer (or not at all: `KEEP_ALIVE=0s` closes every
/// connection after its answer, so none is ever reused).
pub fn check_keep_alive(
    (server_var, keep_alive): (&str, Duration),
    (client_var, idle_timeout): (&str, Duration),
) -> anyhow::Result<()> {
    if keep_alive.is_zero() || keep_alive >= idle_timeout + KEEP_ALIVE_MARGIN {
        return Ok(());
    }
    anyhow::bail!(
        "invalid settings {server_var} and {client_var}: {server_var} ({keep_alive:?}) must be \
         at least {KEEP_ALIVE_MARGIN:?} longer than {client_var} ({idle_timeout:?}), or the \
         client may write a request on a connection the server is closing at that moment"
    )
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            http_connect_timeout: Duration::from_secs(1),
            http_timeout: Duration::from_secs(5),
            http_retries: 2,
            http_retry_backoff: Duration::from_millis(100),
            http_pool_idle_timeout: DEFAULT_POOL_IDLE_TIMEOUT,
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
    fn by_default_servers_keep_idle_connections_longer_than_anything_in_front_of_them() {
        let keep_alive = ServerSettings::local(0).keep_alive;
        let pool_idle = ClientSettings::default().http_pool_idle_timeout;
        // reqwest's own default pool idle timeout is 90 s: it must not be what clients use
        assert!(pool_idle < Duration::from_secs(90), "{pool_idle:?}");
        for (front, idle) in [
            ("HTTP_POOL_IDLE_TIMEOUT", pool_idle),
            (
                "ingress-nginx keepalive_timeout",
                INGRESS_NGINX_KEEPALIVE_TIMEOUT,
            ),
        ] {
            check_keep_alive(("KEEP_ALIVE", keep_alive), (front, idle)).unwrap();
            // a margin no scheduling delay on a loaded machine comes near
            assert!(keep_alive - idle >= Duration::from_secs(10), "{front}");
        }
    }

    #[test]
    fn keep_alive_and_pool_idle_timeout_are_read_from_their_variables() {
        #[derive(Debug, Default, Serialize, Deserialize)]
        struct Both {
            #[serde(flatten)]
            server: Sample,
            #[serde(flatten)]
            client: ClientSettings,
        }
        let s: Both =
            load_from([("KEEP_ALIVE", "1s"), ("HTTP_POOL_IDLE_TIMEOUT", "500ms")]).unwrap();
        assert_eq!(s.server.server.keep_alive, Duration::from_secs(1));
        assert_eq!(s.client.http_pool_idle_timeout, Duration::from_millis(500));
    }

    #[test]
    fn a_keep_alive_not_longer_than_the_idle_timeout_in_front_is_refused_by_name() {
        let second = Duration::from_secs(1);
        // the margin: actix may close an idle connection up to 0.5 s before its keep-alive
        for keep_alive in [second / 2, second, second + second / 2] {
            let err = check_keep_alive(
                ("BILLING_KEEP_ALIVE", keep_alive),
                ("ORDER_HTTP_POOL_IDLE_TIMEOUT", second),
            )
            .unwrap_err()
            .to_string();
            assert!(
                err.contains(&format!("BILLING_KEEP_ALIVE ({keep_alive:?})")),
                "{err}"
            );
            assert!(err.contains("ORDER_HTTP_POOL_IDLE_TIMEOUT (1s)"), "{err}");
        }
        check_keep_alive(
            ("KEEP_ALIVE", second * 2),
            ("HTTP_POOL_IDLE_TIMEOUT", second),
        )
        .unwrap();
        // keep-alive off: the server closes after each answer, nothing is ever reused
        check_keep_alive(
            ("KEEP_ALIVE", Duration::ZERO),
            ("HTTP_POOL_IDLE_TIMEOUT", second),
        )
        .unwrap();
    }

    #[test]
    fn a_bad_value_is_reported_by_its_variable_name() {
        let err = load_from::<Sample, _, _, _>([("PORT", "abc")]).unwrap_err();
        assert!(err.to_string().contains("PORT"), "{err}");
    }
}
