//! The HTTP skeleton every service shares: one place decides the middleware order, body
//! limit, extractor error shapes, health routes and the outgoing client's timeouts.

use std::net::TcpListener;

use actix_web::{
    App, HttpRequest, HttpResponse, HttpServer,
    dev::Server,
    error::{PathError, QueryPayloadError},
    http::StatusCode,
    middleware::from_fn,
    web,
};
use actix_web::{
    body::{EitherBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    middleware::Next,
};
use secrecy::ExposeSecret;
use serde_json::json;

use crate::{
    db::{self, Pool},
    metrics::{self, Metrics},
    problem::{self, Problem},
    request_id,
    settings::{ClientSettings, ServerSettings},
};

/// An answer slower than this is logged at `info` even when it succeeded.
pub const SLOW_REQUEST: std::time::Duration = std::time::Duration::from_millis(500);

/// The access log: one event per request — client, method, path, status, bytes, duration
/// as fields — in the request's span like every other event. Its level says whether an
/// operator needs it: `warn` for a 5xx, `info` for an answer slower than [`SLOW_REQUEST`],
/// `debug` for the rest. At `RUST_LOG=info` a healthy request writes nothing here (the
/// events that move money or change a session are logged at `info` where they happen);
/// `RUST_LOG=debug` logs every request. Measured: at `info` the access lines were 2 of the
/// ~11 lines, and most of the bytes, that one order + pay wrote across the services.
pub async fn access_log(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let res = next.call(req).await?;
    let (status, took) = (res.status(), started.elapsed());
    // one macro per level: tracing's levels are static
    macro_rules! access {
        ($level:expr) => {
            if tracing::enabled!(target: "access", $level) {
                let req = res.request();
                let service = req.app_data::<web::Data<ServiceName>>().map_or("-", |n| n.0);
                let bytes = match res.response().body().size() {
                    actix_web::body::BodySize::Sized(n) => Some(n),
                    _ => None,
                };
                tracing::event!(
                    target: "access",
                    $level,
                    service,
                    client = req.connection_info().realip_remote_addr().unwrap_or("-"),
                    method = %req.method(),
                    path = %req.uri(),
                    status = status.as_u16(),
                    bytes,
                    ms = took.as_secs_f64() * 1000.0,
                    "request answered"
                );
            }
        };
    }
    if status.is_server_error() {
        access!(tracing::Level::WARN);
    } else if took >= SLOW_REQUEST {
        access!(tracing::Level::INFO);
    } else {
        access!(tracing::Level::DEBUG);
    }
    Ok(res)
}

/// The service's name, a field of its access events: in the one-process stack, lines say
/// whose they are.
#[derive(Debug, Clone, Copy)]
pub struct ServiceName(pub &'static str);

/// How request bodies are read: at most `limit` bytes, within `timeout`.
#[derive(Debug, Clone, Copy)]
pub struct BodyConfig {
    pub limit: usize,
    pub timeout: std::time::Duration,
}

/// A started service: its port, and a future that ends when the server stops.
pub struct Running {
    pub name: &'static str,
    pub port: u16,
    server: Server,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish (`graceful`), then resolves.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }
}

impl std::future::IntoFuture for Running {
    type Output = std::io::Result<()>;
    type IntoFuture = Server;
    fn into_future(self) -> Server {
        self.server
    }
}

/// Everything a service does to start: open its database (applying migrations), let
/// `routes` build the route table from the pool (session stores, outbox relays… need it)
/// and the service's metrics (its business counters go there), bind the port and serve.
pub fn launch<B, F>(
    name: &'static str,
    server: &ServerSettings,
    database: &crate::settings::DatabaseSettings,
    migrations: db::Migrations,
    routes: B,
) -> anyhow::Result<Running>
where
    B: FnOnce(&Pool, &Metrics) -> anyhow::Result<F>,
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    let metrics = Metrics::new();
    let pool = db::open_observed(database, migrations, Some(metrics.pool_events()))?;
    let configure = routes(&pool, &metrics)?;
    let listener = bind(name, server)?;
    start(name, listener, server, pool, metrics, configure)
}

/// [`serve`], logging where the service listens.
pub fn start<F>(
    name: &'static str,
    listener: TcpListener,
    settings: &ServerSettings,
    pool: Pool,
    metrics: Metrics,
    configure: F,
) -> anyhow::Result<Running>
where
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    let addr = listener.local_addr()?;
    let server = serve(name, listener, settings, pool, metrics, configure)?;
    tracing::info!(service = name, %addr, "listening");
    Ok(Running {
        name,
        port: addr.port(),
        server,
    })
}

/// Binds the listener a service will serve on; the error names the address (and the
/// variables that set it).
pub fn bind(name: &str, settings: &ServerSettings) -> anyhow::Result<TcpListener> {
    TcpListener::bind((settings.host.as_str(), settings.port)).map_err(|e| {
        anyhow::anyhow!(
            "{name}: cannot listen on {}:{} (HOST, PORT): {e}",
            settings.host,
            settings.port
        )
    })
}

/// Starts a service's HTTP server on `listener`.
///
/// `configure` registers the service's own routes and data; this adds, for every service:
/// metrics → request id → access log → problem+json for bare errors → the service
/// credential check on `/internal/*` (outermost first), the body limit and the slow-client
/// timeout (`client_timeout` for the head, then for the body), 400 problem+json for bad path
/// and query parameters, the pool as `web::Data<Pool>` and the metrics as
/// `web::Data<Metrics>`, and `GET /health`, `GET /ready` and `GET /metrics`. SIGTERM/SIGINT
/// stop it gracefully: in-flight requests get `shutdown_timeout` to finish.
pub fn serve<F>(
    name: &'static str,
    listener: TcpListener,
    settings: &ServerSettings,
    pool: Pool,
    metrics: Metrics,
    configure: F,
) -> std::io::Result<Server>
where
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    let body = BodyConfig {
        limit: settings.body_limit,
        timeout: settings.client_timeout,
    };
    // Blocking work is database work (and auth's bcrypt): a blocking task beyond the pool's
    // size would only wait for a connection, on a thread of its own. With actix's default
    // (512 threads per worker), one bench run at c=64 left order with 86 threads and 21.5 MB
    // RSS; capped per worker at the pool size, 20 threads and 18.7 MB, orders/s unchanged.
    let blocking_threads = pool.max_size() as usize; // r2d2 refuses a size of 0
    let pool = web::Data::new(pool);
    let metrics = web::Data::new(metrics);
    let internal = web::Data::new(InternalToken(settings.internal_token.clone()));
    if settings.internal_token.is_none() {
        tracing::warn!(
            service = name,
            "INTERNAL_TOKEN is unset: /internal/* accepts calls without a service credential"
        );
    }
    let mut server = HttpServer::new(move || {
        App::new()
            .wrap(from_fn(internal_guard))
            .wrap(problem::middleware())
            // inside the request id's scope, so the access line carries it
            .wrap(from_fn(access_log))
            .wrap(from_fn(request_id::middleware))
            // outermost: the status counted is the one the client gets
            .wrap(from_fn(metrics::middleware))
            .app_data(web::Data::new(ServiceName(name)))
            .app_data(web::PayloadConfig::new(body.limit))
            .app_data(body)
            .app_data(web::PathConfig::default().error_handler(path_error))
            .app_data(web::QueryConfig::default().error_handler(query_error))
            .app_data(pool.clone())
            .app_data(internal.clone())
            .app_data(metrics.clone())
            .route("/health", web::get().to(health))
            .route("/metrics", web::get().to(metrics::handler))
            .route("/ready", web::get().to(ready))
            .configure(configure.clone())
    })
    .listen(listener)?
    .client_request_timeout(settings.client_timeout)
    // longer than any client or proxy in front keeps a connection idle (see KEEP_ALIVE)
    .keep_alive(settings.keep_alive)
    .shutdown_timeout(settings.shutdown_timeout.as_secs())
    .worker_max_blocking_threads(blocking_threads);
    if let Some(workers) = settings.workers {
        server = server.workers(workers);
    }
    Ok(server.run())
}

/// The configured service credential, if any.
struct InternalToken(Option<secrecy::SecretString>);

/// The header that carries the service credential between services.
pub const INTERNAL_TOKEN_HEADER: &str = "x-internal-token";

/// Refuses `/internal/*` calls without the service credential: defence in depth behind the
/// ingress, which never routes `/internal` at all.
async fn internal_guard(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let expected = req
        .app_data::<web::Data<InternalToken>>()
        .and_then(|t| t.0.clone());
    if let (true, Some(expected)) = (req.path().starts_with("/internal/"), expected) {
        let given = req
            .headers()
            .get(INTERNAL_TOKEN_HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or(b"");
        if !constant_time_eq(given, expected.expose_secret().as_bytes()) {
            tracing::warn!(
                method = %req.method(),
                path = req.path(),
                "refused: missing or wrong service credential"
            );
            let res = Problem::new(
                StatusCode::UNAUTHORIZED,
                "internal endpoint: missing or invalid service credential",
            )
            .to_response();
            return Ok(req.into_response(res).map_into_right_body());
        }
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

/// Equal in time that does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn path_error(err: PathError, req: &HttpRequest) -> actix_web::Error {
    let detail = match req.match_info().iter().next() {
        Some((name, value)) => format!("{name}: {value:?} is not a valid value"),
        None => err.to_string(),
    };
    Problem::new(StatusCode::BAD_REQUEST, detail).into()
}

fn query_error(err: QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    Problem::new(
        StatusCode::BAD_REQUEST,
        format!("invalid query string: {err}"),
    )
    .into()
}

/// Liveness: the process answers.
async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "OK"}))
}

/// How long `/ready` waits for the database: well inside the probes' 2 s `timeoutSeconds`,
/// so an outage is a quick 503, not a probe timeout.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Readiness: the database answers within [`READY_TIMEOUT`].
async fn ready(pool: web::Data<Pool>) -> HttpResponse {
    match db::check(&pool, READY_TIMEOUT).await {
        Ok(()) => HttpResponse::Ok().json(json!({"status": "OK", "database": "up"})),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            problem::response(StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
    }
}

/// The client for calls to other services: connect and total timeouts from settings, idle
/// pooled connections dropped after `HTTP_POOL_IDLE_TIMEOUT` (before the callee's
/// `KEEP_ALIVE` closes them), no redirects, no proxies from the environment (calls stay
/// inside the cluster), and the service credential on every call when one is configured.
///
/// What the connection pool underneath (hyper-util's legacy client) retries by itself: a
/// request handed to a *reused* connection that turned out closed before the request was
/// written (`retry_canceled_requests`, on by default; `is_reused` tells fresh from reused).
/// What it does not: a request already written when the connection closed or was reset
/// ("connection closed before message completed") — the server may have acted on it — and
/// any failure on a fresh connection. With the idle timeout below the callee's keep-alive, a
/// reused connection is never one the server is closing; what else fails is retried by the
/// caller where the call is safe to repeat (`HTTP_RETRIES`).
pub fn client(
    settings: &ClientSettings,
    internal_token: Option<&secrecy::SecretString>,
) -> anyhow::Result<reqwest::Client> {
    install_tls_provider();
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = internal_token {
        let mut value =
            reqwest::header::HeaderValue::from_str(token.expose_secret()).map_err(|_| {
                anyhow::anyhow!("invalid setting INTERNAL_TOKEN: must be printable ASCII")
            })?;
        value.set_sensitive(true);
        headers.insert(INTERNAL_TOKEN_HEADER, value);
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .connect_timeout(settings.http_connect_timeout)
        .timeout(settings.http_timeout)
        .pool_idle_timeout(settings.http_pool_idle_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("shop/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| anyhow::anyhow!("cannot build the HTTP client: {e}"))
}

/// A call to another service that got no usable answer: why, whether it used its whole time
/// budget (`HTTP_TIMEOUT`), and whether trying again at once may help (it failed fast:
/// refused, reset, 5xx — not a timeout, not a 4xx).
#[derive(Debug, thiserror::Error)]
#[error("{cause}")]
pub struct CallFailure {
    pub cause: String,
    pub timed_out: bool,
    pub retryable: bool,
}

impl CallFailure {
    /// The callee answered `status`, which is not a success.
    pub fn status(status: reqwest::StatusCode) -> Self {
        Self {
            cause: format!("answered {status}"),
            timed_out: false,
            retryable: status.is_server_error(),
        }
    }
}

impl From<reqwest::Error> for CallFailure {
    /// The error with its causes ("connection refused", "operation timed out").
    fn from(error: reqwest::Error) -> Self {
        Self {
            cause: problem::chain(&error),
            timed_out: error.is_timeout(),
            retryable: !error.is_timeout(),
        }
    }
}

/// `?limit=N` of a list endpoint: 1 to [`Limit::MAX`], [`Limit::DEFAULT`] when absent. A
/// bad value is a 400 naming `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(pub i64);

impl Limit {
    pub const DEFAULT: i64 = 100;
    pub const MAX: i64 = 1000;

    fn parse(query: &str) -> Result<Self, Problem> {
        #[derive(serde::Deserialize)]
        struct Q {
            limit: Option<String>,
        }
        let q = web::Query::<Q>::from_query(query).map_err(|e| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                format!("invalid query string: {e}"),
            )
        })?;
        match q.limit.as_deref().map(str::parse::<i64>) {
            None => Ok(Limit(Self::DEFAULT)),
            Some(Ok(n)) if (1..=Self::MAX).contains(&n) => Ok(Limit(n)),
            Some(_) => Err(Problem::invalid_field(
                "limit",
                "must be an integer from 1 to 1000",
            )),
        }
    }
}

impl actix_web::FromRequest for Limit {
    type Error = Problem;
    type Future = std::future::Ready<Result<Self, Problem>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(Limit::parse(req.query_string()))
    }
}

/// reqwest is built without a bundled TLS provider (ring builds in a fraction of aws-lc's
/// time on 2 cores); install it once before any client is built.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Adds the current request's id and trace (`X-Request-Id`, `traceparent`) to an outgoing
/// call.
pub trait PropagateRequestId {
    fn propagate_request_id(self) -> Self;
}

impl PropagateRequestId for reqwest::RequestBuilder {
    fn propagate_request_id(self) -> Self {
        match request_id::context() {
            Some(ctx) => self
                .header(request_id::HEADER.as_str(), ctx.id)
                .header(crate::trace_context::HEADER, ctx.trace.to_string()),
            None => self,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_equal_only_when_identical() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"secret"));
    }

    #[test]
    fn only_server_errors_among_answers_are_worth_retrying() {
        use reqwest::StatusCode as S;
        for (status, retryable) in [
            (S::SERVICE_UNAVAILABLE, true),
            (S::BAD_GATEWAY, true),
            (S::INTERNAL_SERVER_ERROR, true),
            (S::UNAUTHORIZED, false),
            (S::CONFLICT, false),
            (S::UNPROCESSABLE_ENTITY, false),
        ] {
            let failure = CallFailure::status(status);
            assert_eq!(failure.retryable, retryable, "{status}");
            assert!(!failure.timed_out);
        }
    }

    #[test]
    fn limit_defaults_and_bounds() {
        assert_eq!(Limit::parse("").unwrap(), Limit(100));
        assert_eq!(Limit::parse("limit=1").unwrap(), Limit(1));
        assert_eq!(Limit::parse("other=x&limit=1000").unwrap(), Limit(1000));
        for bad in ["limit=0", "limit=1001", "limit=-1", "limit=abc", "limit="] {
            assert_eq!(
                Limit::parse(bad).unwrap_err().field.as_deref(),
                Some("limit"),
                "{bad}"
            );
        }
    }
}
