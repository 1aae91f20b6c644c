//! Prometheus metrics: every service serves `GET /metrics` on its own port (never routed by
//! the ingress or the `cargo run` gateway).
//!
//! Built on the `prometheus` crate: one [`Registry`] per service, so the four services of
//! the one-process `cargo run` stack each report only their own series, and its process
//! collector for `process_*` (RSS, CPU, open file descriptors, threads). What every service
//! gets from here:
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `shop_http_requests_total` | route, method, status | requests answered |
//! | `shop_http_request_duration_seconds` | route, method, status | time to the response head |
//! | `shop_downstream_requests_total` | target, operation, outcome | calls to another service |
//! | `shop_downstream_request_duration_seconds` | target, operation, outcome | their duration |
//! | `shop_downstream_retries_total` | target, operation | calls tried again |
//! | `shop_db_pool_connections` | state (`idle`, `in_use`) | the connection pool, at scrape |
//! | `shop_db_pool_max_connections` | | its size |
//! | `shop_db_pool_wait_seconds` | | time a query waited for a connection |
//! | `shop_db_pool_timeouts_total` | | waits that gave up (`DB_TIMEOUT`) |
//! | `shop_db_transaction_duration_seconds` | operation | the money path's transactions |
//! | `shop_build_info` | version, revision | always 1 |
//!
//! Cardinality is bounded by construction: `route` is the route *template*
//! (`/order/{id}/pay`), and every path that matched no route is one value, `unmatched`;
//! `method` is one of the standard methods or `other`; no label ever holds a user, order or
//! session id. Each service adds its business counters to the same registry.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use actix_web::{
    HttpResponse,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::{Method, StatusCode, header},
    middleware::Next,
    web,
};
use prometheus::{HistogramOpts, HistogramVec, Opts, Registry, core::Collector};

use crate::db::{AnyConnection, DbError, Pool};

/// The metric types the services use for their own counters and gauges.
pub use prometheus::{Gauge, Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};

/// Request-duration buckets: 1 ms … 5 s, dense where the shop's SLOs are (10–250 ms).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The `route` of a request that matched no route: one value for every unknown path.
pub const UNMATCHED: &str = "unmatched";

/// The revision the binary was built from (`SHOP_REVISION` at build time; the Dockerfile
/// and the test command set it).
pub const REVISION: &str = match option_env!("SHOP_REVISION") {
    Some(revision) => revision,
    None => "unknown",
};

/// Work done at each scrape with a pooled connection, to read gauges that live in the
/// database (order's outbox depth).
type ScrapeHook = dyn Fn(&mut AnyConnection) -> Result<(), DbError> + Send + Sync;

/// One service's metrics: cheap to clone, shared by its workers.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

struct Inner {
    registry: Registry,
    requests: IntCounterVec,
    durations: HistogramVec,
    downstream_requests: IntCounterVec,
    downstream_durations: HistogramVec,
    downstream_retries: IntCounterVec,
    pool_connections: IntGaugeVec,
    pool_max: IntGauge,
    pool: PoolEvents,
    transactions: HistogramVec,
    scrape_hooks: Mutex<Vec<Arc<ScrapeHook>>>,
}

impl Metrics {
    /// A fresh registry with the shared families, the process collector and `build_info`.
    pub fn new() -> Self {
        let registry = Registry::new();
        let http = ["route", "method", "status"];
        let call = ["target", "operation", "outcome"];
        let inner = Inner {
            requests: counter_vec(
                "shop_http_requests_total",
                "HTTP requests answered, by route template, method and status.",
                &http,
            ),
            durations: histogram_vec(
                "shop_http_request_duration_seconds",
                "Time from a request's arrival to its response head, by route template, method and status.",
                &http,
            ),
            downstream_requests: counter_vec(
                "shop_downstream_requests_total",
                "Calls to another service, by target, operation and outcome (ok, 4xx, 5xx, timeout, unreachable).",
                &call,
            ),
            downstream_durations: histogram_vec(
                "shop_downstream_request_duration_seconds",
                "Duration of calls to another service, by target, operation and outcome.",
                &call,
            ),
            downstream_retries: counter_vec(
                "shop_downstream_retries_total",
                "Calls to another service tried again after a failure, by target and operation.",
                &["target", "operation"],
            ),
            pool_connections: gauge(
                "shop_db_pool_connections",
                "Open database connections, by state (idle, in_use).",
                &["state"],
            ),
            pool_max: IntGauge::new(
                "shop_db_pool_max_connections",
                "Size of the database connection pool (DB_POOL_SIZE).",
            )
            .expect("valid metric"),
            pool: PoolEvents::new(),
            transactions: histogram_vec(
                "shop_db_transaction_duration_seconds",
                "Duration of the money path's database transactions, by operation.",
                &["operation"],
            ),
            scrape_hooks: Mutex::new(Vec::new()),
            registry,
        };
        let build_info = gauge(
            "shop_build_info",
            "Always 1: the version and source revision of the running binary.",
            &["version", "revision"],
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), REVISION])
            .set(1);
        let metrics = Metrics(Arc::new(inner));
        let i = &metrics.0;
        metrics.register(build_info);
        metrics.register(i.requests.clone());
        metrics.register(i.durations.clone());
        metrics.register(i.downstream_requests.clone());
        metrics.register(i.downstream_durations.clone());
        metrics.register(i.downstream_retries.clone());
        metrics.register(i.pool_connections.clone());
        metrics.register(i.pool_max.clone());
        metrics.register(i.pool.wait.clone());
        metrics.register(i.pool.timeouts.clone());
        metrics.register(i.transactions.clone());
        #[cfg(target_os = "linux")]
        metrics.register(prometheus::process_collector::ProcessCollector::for_self());
        metrics
    }

    /// Adds a service's own metric (a business counter) to this registry. Names are fixed
    /// in the code, so a clash is a programming error.
    pub fn register<C: Collector + 'static>(&self, collector: C) {
        self.0
            .registry
            .register(Box::new(collector))
            .expect("each metric is registered once");
    }

    /// Runs `hook` with a pooled connection before each scrape (for gauges read from the
    /// database). A failing hook is logged and leaves its gauges as they were.
    pub fn on_scrape(
        &self,
        hook: impl Fn(&mut AnyConnection) -> Result<(), DbError> + Send + Sync + 'static,
    ) {
        self.0
            .scrape_hooks
            .lock()
            .expect("not poisoned")
            .push(Arc::new(hook));
    }

    /// The handlers r2d2 reports checkouts and time-outs to, for [`crate::db::connect`].
    pub fn pool_events(&self) -> PoolEvents {
        self.0.pool.clone()
    }

    /// The duration histogram of one money-path transaction (`charge`, `deposit`,
    /// `record_outcome`…): `let _timer = metrics.transaction("charge").start_timer();`
    /// inside the blocking closure times the transaction itself, not the wait for a thread
    /// or a connection.
    pub fn transaction(&self, operation: &'static str) -> Histogram {
        self.0.transactions.with_label_values(&[operation])
    }

    /// The calls this service makes to `target` (`billing`, `notification`).
    pub fn downstream(&self, target: &'static str) -> Downstream {
        Downstream {
            metrics: self.clone(),
            target,
        }
    }

    /// The exposition text of every metric of this service.
    pub fn render(&self) -> String {
        prometheus::TextEncoder::new()
            .encode_to_string(&self.0.registry.gather())
            .unwrap_or_else(|e| format!("# encoding failed: {e}\n"))
    }

    fn observe_request(&self, route: &str, method: &Method, status: StatusCode, took: Duration) {
        let labels = [route, method_label(method), status.as_str()];
        self.0.requests.with_label_values(&labels).inc();
        self.0
            .durations
            .with_label_values(&labels)
            .observe(took.as_secs_f64());
    }

    /// Reads the pool's state and runs the scrape hooks.
    async fn refresh(&self, pool: &Pool) {
        let state = pool.state();
        let i = &self.0;
        i.pool_max.set(i64::from(pool.max_size()));
        i.pool_connections
            .with_label_values(&["idle"])
            .set(i64::from(state.idle_connections));
        i.pool_connections
            .with_label_values(&["in_use"])
            .set(i64::from(state.connections - state.idle_connections));
        let hooks = i.scrape_hooks.lock().expect("not poisoned").clone();
        if hooks.is_empty() {
            return;
        }
        let result = crate::db::run(pool, move |conn| {
            hooks.iter().try_for_each(|hook| hook(conn))
        })
        .await;
        if let Err(e) = result {
            tracing::warn!(
                error = %crate::problem::chain(&e),
                "metrics read from the database are stale"
            );
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
}

fn histogram_vec(name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
        labels,
    )
    .expect("valid metric")
}

/// A counter family for a service's business metrics, with every combination of
/// `values` (one list per label) present at 0 from the start: a series that appears only
/// when first counted gives `rate()` nothing to compare, and an alert on it stays silent.
pub fn counter(name: &str, help: &str, labels: &[(&str, &[&str])]) -> IntCounterVec {
    let names: Vec<&str> = labels.iter().map(|(label, _)| *label).collect();
    let family = counter_vec(name, help, &names);
    let mut combinations: Vec<Vec<&str>> = vec![vec![]];
    for (_, values) in labels {
        combinations = combinations
            .into_iter()
            .flat_map(|prefix| {
                values.iter().map(move |v| {
                    let mut next = prefix.clone();
                    next.push(v);
                    next
                })
            })
            .collect();
    }
    for combination in combinations {
        family.with_label_values(&combination);
    }
    family
}

/// A counter without labels, for a service's business metrics.
pub fn counter_total(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).expect("valid metric")
}

/// A gauge family, for a service's business metrics.
pub fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
}

/// The standard methods by name; anything else (a client may send any token) is `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Middleware: counts and times every request by route template, method and status. It is
/// the outermost layer, so the status is the one the client gets.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let method = req.method().clone();
    let result = next.call(req).await;
    if let Some(metrics) = metrics {
        let took = started.elapsed();
        match &result {
            Ok(res) => {
                let route = res.request().match_pattern();
                let route = route.as_deref().unwrap_or(UNMATCHED);
                metrics.observe_request(route, &method, res.status(), took);
            }
            // an error that reached the server: actix answers it with its status
            Err(e) => {
                let status = e.as_response_error().status_code();
                metrics.observe_request(UNMATCHED, &method, status, took);
            }
        }
    }
    result
}

/// `GET /metrics`: refreshes the gauges read at scrape time, then renders the registry.
pub async fn handler(metrics: web::Data<Metrics>, pool: web::Data<Pool>) -> HttpResponse {
    metrics.refresh(&pool).await;
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            prometheus::TEXT_FORMAT, // text/plain; version=0.0.4
        ))
        .body(metrics.render())
}

/// What r2d2 tells about checkouts: the time each one waited, and the waits that gave up.
#[derive(Clone, Debug)]
pub struct PoolEvents {
    wait: Histogram,
    timeouts: IntCounter,
}

impl PoolEvents {
    fn new() -> Self {
        Self {
            wait: Histogram::with_opts(
                HistogramOpts::new(
                    "shop_db_pool_wait_seconds",
                    "Time a database query waited for a pooled connection.",
                )
                .buckets(vec![
                    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    2.5, 5.0,
                ]),
            )
            .expect("valid metric"),
            timeouts: IntCounter::new(
                "shop_db_pool_timeouts_total",
                "Waits for a pooled connection that gave up after DB_TIMEOUT.",
            )
            .expect("valid metric"),
        }
    }
}

impl diesel::r2d2::HandleEvent for PoolEvents {
    fn handle_checkout(&self, event: diesel::r2d2::event::CheckoutEvent) {
        self.wait.observe(event.duration().as_secs_f64());
    }

    fn handle_timeout(&self, _: diesel::r2d2::event::TimeoutEvent) {
        self.timeouts.inc();
    }
}

/// How a call to another service ended, as the `outcome` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx or 3xx answer.
    Ok,
    /// The callee refused the request (4xx).
    ClientError,
    /// The callee failed (5xx).
    ServerError,
    /// No answer within `HTTP_TIMEOUT`.
    Timeout,
    /// Refused, reset or closed before an answer.
    Unreachable,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ClientError => "4xx",
            Outcome::ServerError => "5xx",
            Outcome::Timeout => "timeout",
            Outcome::Unreachable => "unreachable",
        }
    }

    /// The outcome of a sent request.
    pub fn of(result: &Result<reqwest::Response, reqwest::Error>) -> Self {
        match result {
            Ok(res) if res.status().is_server_error() => Outcome::ServerError,
            Ok(res) if res.status().is_client_error() => Outcome::ClientError,
            Ok(_) => Outcome::Ok,
            Err(e) if e.is_timeout() => Outcome::Timeout,
            Err(_) => Outcome::Unreachable,
        }
    }
}

/// The calls of one service to one other, counted and timed by operation and outcome.
#[derive(Clone)]
pub struct Downstream {
    metrics: Metrics,
    target: &'static str,
}

impl Downstream {
    /// Sends `request`, recording its outcome and duration under `operation`.
    pub async fn send(
        &self,
        operation: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let started = Instant::now();
        let result = request.send().await;
        self.record(operation, Outcome::of(&result), started.elapsed());
        result
    }

    /// Records one call that ended with `outcome` after `took`.
    pub fn record(&self, operation: &'static str, outcome: Outcome, took: Duration) {
        let labels = [self.target, operation, outcome.label()];
        let i = &self.metrics.0;
        i.downstream_requests.with_label_values(&labels).inc();
        i.downstream_durations
            .with_label_values(&labels)
            .observe(took.as_secs_f64());
    }

    /// Runs `call` under `policy` ([`crate::retry::RetryPolicy::run`]), counting each try
    /// after the first as a retry of `operation`.
    pub async fn with_retries<T, E, F, Fut>(
        &self,
        operation: &'static str,
        policy: &crate::retry::RetryPolicy,
        what: &str,
        mut call: F,
        retryable: impl Fn(&E) -> bool,
    ) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
        E: std::fmt::Display,
    {
        let mut first = true;
        let counted = || {
            if !std::mem::take(&mut first) {
                self.retried(operation);
            }
            call()
        };
        policy.run(what, counted, retryable).await
    }

    /// Counts one more try of `operation` after a failure.
    pub fn retried(&self, operation: &'static str) {
        self.metrics
            .0
            .downstream_retries
            .with_label_values(&[self.target, operation])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        let custom = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&custom), "other");
    }

    #[test]
    fn a_fresh_registry_renders_build_info_and_the_process() {
        let text = Metrics::new().render();
        assert!(
            text.contains(&format!(
                "shop_build_info{{revision=\"{REVISION}\",version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
        assert!(text.contains("shop_db_pool_max_connections 0"), "{text}");
        #[cfg(target_os = "linux")]
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
    }
}
