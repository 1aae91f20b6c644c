//! The whole shop in one process: `cargo run` at the repository root.
//!
//! Each service is started from its own library, exactly as its binary starts it, on its own
//! port; they talk to each other over real HTTP, each with its own database (SQLite files
//! under `DATA_DIR` unless a `<SERVICE>_DATABASE_URL` says otherwise). In front of them,
//! [`gateway`] plays the production ingress with forward-auth.
//!
//! Settings: `GATEWAY_HOST`/`GATEWAY_PORT` (127.0.0.1:8000), `GATEWAY_HTTP_POOL_IDLE_TIMEOUT`
//! (30s), `DATA_DIR` (`data`), and any service setting prefixed with the service's name:
//! `AUTH_PORT=9001`, `BILLING_DATABASE_URL=postgres://…`, `AUTH_BCRYPT_COST=10`. The services
//! share one `INTERNAL_TOKEN`, random per run unless given. The stack knows every client and
//! every server, so it refuses to start when a service's `KEEP_ALIVE` is not longer than the
//! pool idle timeout of a client that calls it (see [`StackSettings::check_keep_alive`]).

pub mod gateway;

use std::{collections::HashMap, path::PathBuf, time::Duration};

use common::{
    http::Running,
    settings::{ClientSettings, ServerSettings},
};
use futures_util::future::try_join_all;
use utoipa::{
    OpenApi,
    openapi::{InfoBuilder, LicenseBuilder, OpenApiBuilder},
};

/// The shop's public API as clients see it through the gateway or the ingress: the four
/// services' descriptions, generated from their handlers, merged. The gateway serves it at
/// `/openapi.json`; `openapi.json` at the repository root is a copy a test keeps in step.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let info = InfoBuilder::new()
        .title("shop")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "A shop of four services behind an ingress with forward-auth: register and log in \
             (auth), keep money (billing), create and pay orders (order), read what you were \
             told (notification). Errors are RFC 9457 problem details; money is a JSON number \
             with at most 2 decimal places.",
        ))
        .license(Some(
            LicenseBuilder::new().name("MIT OR Apache-2.0").build(),
        ))
        .build();
    let mut doc = OpenApiBuilder::new().info(info).build();
    for part in [
        auth::routes::ApiDoc::openapi(),
        billing::routes::ApiDoc::openapi(),
        order::routes::ApiDoc::openapi(),
        notification::routes::ApiDoc::openapi(),
    ] {
        doc.merge(part);
    }
    doc
}

/// How the stack is laid out.
#[derive(Debug, Clone)]
pub struct StackSettings {
    pub gateway_host: String,
    pub gateway_port: u16,
    pub data_dir: PathBuf,
    /// `GATEWAY_HTTP_POOL_IDLE_TIMEOUT`: how long the gateway keeps an idle connection to a
    /// service (ingress-nginx: `upstream-keepalive-timeout`); shorter than every `KEEP_ALIVE`.
    pub gateway_pool_idle_timeout: Duration,
    /// Environment-style variables; `AUTH_…`, `BILLING_…` … go to that service.
    pub vars: HashMap<String, String>,
    /// The service credential every service shares: `INTERNAL_TOKEN`, or a fresh random one.
    internal_token: String,
}

impl StackSettings {
    /// From the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_vars(std::env::vars().collect())
    }

    pub fn from_vars(vars: HashMap<String, String>) -> anyhow::Result<Self> {
        let gateway_port = match vars.get("GATEWAY_PORT") {
            Some(p) => p.parse().map_err(|_| {
                anyhow::anyhow!("invalid setting GATEWAY_PORT: {p:?} is not a port")
            })?,
            None => 8000,
        };
        let gateway_pool_idle_timeout = match vars.get("GATEWAY_HTTP_POOL_IDLE_TIMEOUT") {
            Some(value) => humantime::parse_duration(value).map_err(|e| {
                anyhow::anyhow!("invalid setting GATEWAY_HTTP_POOL_IDLE_TIMEOUT: {value:?}: {e}")
            })?,
            None => common::settings::DEFAULT_POOL_IDLE_TIMEOUT,
        };
        Ok(Self {
            gateway_host: vars
                .get("GATEWAY_HOST")
                .cloned()
                .unwrap_or_else(|| "127.0.0.1".into()),
            gateway_port,
            gateway_pool_idle_timeout,
            data_dir: vars
                .get("DATA_DIR")
                .map_or_else(|| PathBuf::from("data"), PathBuf::from),
            internal_token: vars
                .get("INTERNAL_TOKEN")
                .cloned()
                .unwrap_or_else(random_token),
            vars,
        })
    }

    /// The settings of `service`: stack defaults, then `SERVICE_*` variables (prefix removed).
    fn service<T>(&self, service: &str, defaults: &[(&str, String)]) -> anyhow::Result<T>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Default,
    {
        let prefix = format!("{}_", service.to_ascii_uppercase());
        let database_url = self.data_dir.join(format!("{service}.db"));
        let mut vars: Vec<(String, String)> = vec![
            (
                "DATABASE_URL".into(),
                database_url.to_string_lossy().into_owned(),
            ),
            ("INTERNAL_TOKEN".into(), self.internal_token.clone()),
        ];
        vars.extend(defaults.iter().map(|(k, v)| (k.to_string(), v.clone())));
        vars.extend(self.vars.iter().filter_map(|(k, v)| {
            k.strip_prefix(&prefix)
                .map(|name| (name.to_string(), v.clone()))
        }));
        common::settings::load_from(vars).map_err(|e| anyhow::anyhow!("{service}: {e}"))
    }
}

/// Who calls whom over HTTP in the stack: each caller's pooled connections must be dropped
/// before the callee's keep-alive closes them.
const CALLS: [(&str, &[&str]); 3] = [
    ("auth", &["billing"]),
    ("order", &["billing", "notification"]),
    ("gateway", &["auth", "billing", "order", "notification"]),
];

/// The connection settings of one service, read as the service reads them (same variables,
/// same defaults: `ServerSettings::local` and `ClientSettings::default`).
#[derive(serde::Serialize, serde::Deserialize)]
struct Connections {
    #[serde(flatten)]
    server: ServerSettings,
    #[serde(flatten)]
    client: ClientSettings,
}

impl Default for Connections {
    fn default() -> Self {
        Self {
            server: ServerSettings::local(0),
            client: ClientSettings::default(),
        }
    }
}

impl StackSettings {
    /// Refuses settings under which a client could reuse a pooled connection its server is
    /// closing: for every call in [`CALLS`], the callee's `KEEP_ALIVE` must be at least
    /// `common::settings::KEEP_ALIVE_MARGIN` (1 s) longer than the caller's
    /// `HTTP_POOL_IDLE_TIMEOUT`. The error names every pair that is not.
    pub fn check_keep_alive(&self) -> anyhow::Result<()> {
        let connections = |name: &str| self.service::<Connections>(name, &[]);
        let mut errors = Vec::new();
        for (caller, callees) in CALLS {
            let idle_timeout = match caller {
                "gateway" => self.gateway_pool_idle_timeout,
                service => connections(service)?.client.http_pool_idle_timeout,
            };
            let client_var = format!("{}_HTTP_POOL_IDLE_TIMEOUT", caller.to_ascii_uppercase());
            for callee in callees {
                let keep_alive = connections(callee)?.server.keep_alive;
                let server_var = format!("{}_KEEP_ALIVE", callee.to_ascii_uppercase());
                if let Err(e) = common::settings::check_keep_alive(
                    (&server_var, keep_alive),
                    (&client_var, idle_timeout),
                ) {
                    errors.push(e.to_string());
                }
            }
        }
        match errors.is_empty() {
            true => Ok(()),
            false => anyhow::bail!("{}", errors.join("\n")),
        }
    }
}

/// 32 random bytes, hex: the per-run service credential of the local stack.
fn random_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A started stack.
pub struct Stack {
    pub gateway_url: String,
    pub services: Vec<(Running, String)>,
    gateway: actix_web::dev::Server,
}

fn url(running: &Running) -> String {
    format!("http://127.0.0.1:{}", running.port)
}

/// Checks the settings' keep-alives, then starts billing and notification, then auth and order
/// (which call them), then the gateway.
pub fn start(settings: &StackSettings) -> anyhow::Result<Stack> {
    settings.check_keep_alive()?;
    let db = |name: &str| {
        let key = format!("{}_DATABASE_URL", name.to_ascii_uppercase());
        let url = settings.vars.get(&key).cloned();
        url.map(|u| common::db::redacted_url(&u))
            .unwrap_or_else(|| {
                settings
                    .data_dir
                    .join(format!("{name}.db"))
                    .display()
                    .to_string()
            })
    };
    let billing = billing::start(settings.service("billing", &[("PORT", "8002".into())])?)?;
    let notification =
        notification::start(settings.service("notification", &[("PORT", "8004".into())])?)?;
    let auth = auth::start(
        settings.service(
            "auth",
            &[
                ("PORT", "8001".into()),
                ("BILLING_URL", url(&billing)),
                (
                    "SESSION_KEY_FILE",
                    settings
                        .data_dir
                        .join("auth-session.key")
                        .to_string_lossy()
                        .into_owned(),
                ),
            ],
        )?,
    )?;
    let order = order::start(settings.service(
        "order",
        &[
            ("PORT", "8003".into()),
            ("BILLING_URL", url(&billing)),
            ("NOTIFICATION_URL", url(&notification)),
        ],
    )?)?;
    let upstreams = gateway::Upstreams {
        auth: url(&auth),
        billing: url(&billing),
        order: url(&order),
        notification: url(&notification),
    };
    let listener =
        std::net::TcpListener::bind((settings.gateway_host.as_str(), settings.gateway_port))
            .map_err(|e| {
                anyhow::anyhow!(
                    "gateway: cannot bind {}:{}: {e}",
                    settings.gateway_host,
                    settings.gateway_port
                )
            })?;
    let gateway_url = format!("http://{}", listener.local_addr()?);
    // the gateway plays the ingress: it carries no service credential
    let timeouts = ClientSettings {
        http_connect_timeout: Duration::from_secs(1),
        http_timeout: Duration::from_secs(30),
        // not used by the gateway: it repeats only what nginx would (gateway::retry_reason)
        http_retries: 0,
        http_retry_backoff: Duration::ZERO,
        http_pool_idle_timeout: settings.gateway_pool_idle_timeout,
    };
    let http = common::http::client(&timeouts, None)?;
    let gateway = gateway::serve(listener, upstreams, http)?;
    let services = vec![
        (db("auth"), auth),
        (db("billing"), billing),
        (db("order"), order),
        (db("notification"), notification),
    ]
    .into_iter()
    .map(|(db, running)| (running, db))
    .collect();
    Ok(Stack {
        gateway_url,
        services,
        gateway,
    })
}

impl Stack {
    /// What a newcomer needs to see first.
    pub fn banner(&self) -> String {
        let mut text = String::from(
            "\nshop is running: four services over real HTTP behind a forward-auth gateway\n\n",
        );
        text += &format!(
            "  {:<14}{:<26}{}\n",
            "gateway", self.gateway_url, "← use this one"
        );
        for (running, db) in &self.services {
            text += &format!("  {:<14}{:<26}{}\n", running.name, url(running), db);
        }
        // Metrics are for the cluster's Prometheus: each service's own port, never the gateway.
        let metrics: Vec<String> = self
            .services
            .iter()
            .map(|(running, _)| format!("{}/metrics", url(running)))
            .collect();
        text += &format!(
            "\nMetrics:     {}\n             \
             (each service's own port; Prometheus on them: scripts/prometheus-local)\n",
            metrics.join("  ")
        );
        text += &format!(
            "\nTry it:      curl -s {0}/signin\n\
             API suite:   newman run order.postman_collection.json --env-var baseUrl={0}\n\
             Stop:        Ctrl-C (in-flight requests finish first)\n",
            self.gateway_url
        );
        text
    }

    /// Runs until Ctrl-C / SIGTERM stops every server.
    pub async fn run(self) -> anyhow::Result<()> {
        let mut servers: Vec<actix_web::dev::Server> = self
            .services
            .into_iter()
            .map(|(r, _)| r.into_future())
            .collect();
        servers.push(self.gateway);
        try_join_all(servers).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> StackSettings {
        let data_dir = common::testing::fresh_dir("stack-settings");
        let mut vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        vars.insert("DATA_DIR".into(), data_dir.to_string_lossy().into_owned());
        StackSettings::from_vars(vars).unwrap()
    }

    #[test]
    fn the_default_keep_alives_outlast_every_client_in_the_stack() {
        settings(&[]).check_keep_alive().unwrap();
    }

    #[test]
    fn a_keep_alive_its_callers_could_outlast_is_refused_before_anything_starts() {
        let settings = settings(&[("BILLING_KEEP_ALIVE", "20s"), ("GATEWAY_PORT", "0")]);
        let err = start(&settings).err().expect("refused").to_string();
        // billing's three callers, each named with its variable; nobody else's
        for caller in ["AUTH", "ORDER", "GATEWAY"] {
            let pair = format!(
                "BILLING_KEEP_ALIVE (20s) must be at least 1s longer than {caller}_HTTP_POOL_IDLE_TIMEOUT (30s)"
            );
            assert!(err.contains(&pair), "{err}");
        }
        assert_eq!(err.lines().count(), 3, "{err}");
        assert!(!settings.data_dir.exists(), "nothing was started");
    }

    #[test]
    fn a_client_idle_timeout_its_callees_cannot_outlast_is_refused() {
        let err = settings(&[("GATEWAY_HTTP_POOL_IDLE_TIMEOUT", "75s")])
            .check_keep_alive()
            .unwrap_err()
            .to_string();
        for callee in ["AUTH", "BILLING", "ORDER", "NOTIFICATION"] {
            assert!(
                err.contains(&format!("{callee}_KEEP_ALIVE (75s) must be at least 1s longer than GATEWAY_HTTP_POOL_IDLE_TIMEOUT (75s)")),
                "{err}"
            );
        }
        // scaled down, as the tests run it, the alignment holds
        settings(&[
            ("NOTIFICATION_KEEP_ALIVE", "1500ms"),
            ("ORDER_HTTP_POOL_IDLE_TIMEOUT", "500ms"),
            ("GATEWAY_HTTP_POOL_IDLE_TIMEOUT", "500ms"),
        ])
        .check_keep_alive()
        .unwrap();
    }

    #[test]
    fn a_bad_gateway_idle_timeout_is_named() {
        let mut vars = HashMap::new();
        vars.insert("GATEWAY_HTTP_POOL_IDLE_TIMEOUT".into(), "soon".into());
        let err = StackSettings::from_vars(vars).expect_err("refused");
        assert!(
            err.to_string().contains("GATEWAY_HTTP_POOL_IDLE_TIMEOUT"),
            "{err}"
        );
    }
}
