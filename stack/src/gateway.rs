//! A forward-auth gateway that behaves like the production ingress (ingress-nginx with
//! `auth-url`), so that what works through it locally works through the cluster's ingress.
//! `docs/reference/ingress-nginx-forward-auth.conf` is what ingress-nginx renders for such an
//! Ingress; what matters from it is that the auth sub-request is a bodiless GET carrying every
//! client header, that only a 2xx lets the request through, and that the
//! `auth-response-headers` replace (or remove) the client's headers of the same names:
//!
//! - the paths of the two Ingresses in `k8s/ingress.yaml`, with their `pathType`: auth's
//!   public routes (`/register`, `/login`, `/logout`, `/signin`, `/auth`, exact paths) go
//!   straight to auth (the course's auth-proxy Ingress, without `auth-url`); a test keeps
//!   the table `ROUTES` and that file equal;
//! - every other public route is first checked with auth's `GET /auth`, sent the client's
//!   headers and no body (plus `X-Original-URL`, `X-Sent-From` … as nginx sends them). On 2xx
//!   the five identity headers of auth's answer are set on the upstream request, replacing any
//!   the client sent (a header auth omits is removed); 401/403 → 401; anything else → 5xx;
//! - `/internal/*`, `/metrics`, `/health`, `/ready` and unknown paths are not routed (404);
//! - a call that failed at the connection level is tried once more when that is safe, as
//!   nginx's `proxy_next_upstream error` does (see `retry_reason`);
//! - `X-Request-Id` is taken from the client or generated, and sent upstream;
//! - `/openapi.json` is the OpenAPI 3.1 description of the public API ([`crate::openapi`]).

use std::{error::Error, net::TcpListener};

use actix_web::{
    App, HttpRequest, HttpResponse, HttpServer,
    dev::Server,
    http::{
        StatusCode,
        header::{self, HeaderMap, HeaderName, HeaderValue},
    },
    middleware::from_fn,
    web,
};
use common::{identity, problem, request_id, trace_context};

/// The services behind the gateway.
#[derive(Debug, Clone)]
pub struct Upstreams {
    pub auth: String,
    pub billing: String,
    pub order: String,
    pub notification: String,
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// Straight through, no check (auth's public routes).
    Public(Service),
    /// Through forward-auth first.
    Protected(Service),
    /// Never routed from outside.
    NotRouted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Auth,
    Billing,
    Order,
    Notification,
}

/// An Ingress path's `pathType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PathType {
    /// The path itself only.
    Exact,
    /// The path and everything below it, element by element (`/order` matches `/order` and
    /// `/order/7/pay`, not `/orders`).
    Prefix,
}

/// One path of an Ingress: how it matches, where it goes, and whether its Ingress has
/// `auth-url` (forward-auth) or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IngressPath {
    path: &'static str,
    path_type: PathType,
    service: Service,
    forward_auth: bool,
}

const fn public(path: &'static str) -> IngressPath {
    IngressPath {
        path,
        path_type: PathType::Exact,
        service: Service::Auth,
        forward_auth: false,
    }
}

const fn protected(path: &'static str, service: Service) -> IngressPath {
    IngressPath {
        path,
        path_type: PathType::Prefix,
        service,
        forward_auth: true,
    }
}

/// The paths of the two Ingresses in `k8s/ingress.yaml`, the one source of truth for what is
/// public, protected and not routed; a test fails when the two differ.
const ROUTES: [IngressPath; 9] = [
    // Ingress auth-public: no auth-url
    public("/register"),
    public("/login"),
    public("/logout"),
    public("/signin"),
    public("/auth"),
    // Ingress shop-protected: auth-url, forward-auth first
    protected("/users", Service::Auth),
    protected("/billing", Service::Billing),
    protected("/order", Service::Order),
    protected("/notification", Service::Notification),
];

impl IngressPath {
    /// Whether `path` matches, as the Ingress API defines `pathType` (a trailing `/` on
    /// either side is ignored).
    fn matches(&self, path: &str) -> bool {
        let own = self.path.trim_end_matches('/');
        match self.path_type {
            PathType::Exact => path == self.path,
            PathType::Prefix => path
                .strip_prefix(own)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
        }
    }
}

/// The routing table of the two Ingresses: among the paths that match, an exact one wins over
/// a prefix, and a longer prefix over a shorter one (the Ingress API's precedence).
fn route(path: &str) -> Route {
    ROUTES
        .iter()
        .filter(|route| route.matches(path))
        .max_by_key(|route| (route.path_type == PathType::Exact, route.path.len()))
        .map_or(Route::NotRouted, |route| match route.forward_auth {
            true => Route::Protected(route.service),
            false => Route::Public(route.service),
        })
}

/// Headers that belong to one connection, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-connection",
];

fn forwardable(name: &HeaderName) -> bool {
    !HOP_BY_HOP.contains(&name.as_str()) && name != header::HOST && name != header::CONTENT_LENGTH
}

struct Gateway {
    upstreams: Upstreams,
    http: reqwest::Client,
}

impl Gateway {
    fn base(&self, service: Service) -> &str {
        match service {
            Service::Auth => &self.upstreams.auth,
            Service::Billing => &self.upstreams.billing,
            Service::Order => &self.upstreams.order,
            Service::Notification => &self.upstreams.notification,
        }
    }

    /// nginx's `auth_request`: a bodiless GET to auth with the client's headers. The identity
    /// headers of a 2xx answer (and any cookie auth sets), or the response to send instead.
    async fn check(
        &self,
        req: &HttpRequest,
    ) -> Result<(HeaderMap, Vec<HeaderValue>), HttpResponse> {
        let uri = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let host = req.connection_info().host().to_string();
        let url = format!("{}/auth", self.upstreams.auth);
        let original_url = format!("http://{host}{uri}");
        let (request_id, traceparent) = ids();
        let build = || {
            let mut check = self.http.get(url.as_str());
            for (name, value) in req.headers() {
                if forwardable(name) && name != header::CONTENT_TYPE && name != TRACEPARENT {
                    check = check.header(name.as_str(), value.as_bytes());
                }
            }
            check
                .header("X-Original-URL", original_url.as_str())
                .header("X-Original-Method", req.method().as_str())
                .header("X-Sent-From", "nginx-ingress-controller")
                .header("X-Auth-Request-Redirect", uri)
                .header("X-Request-ID", request_id.as_str())
                .header(trace_context::HEADER, traceparent.as_str())
        };
        let answer = self
            .send(Service::Auth, &reqwest::Method::GET, build)
            .await
            .map_err(|e| {
                tracing::error!(error = %problem::chain(&e), "forward-auth: auth unreachable");
                problem::response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "authentication service unavailable",
                )
            })?;
        let status = answer.status().as_u16();
        match status {
            200..=299 => {
                let mut identity = HeaderMap::new();
                for name in identity::HEADERS {
                    if let Some(value) = answer.headers().get(name.as_str()) {
                        identity.insert(
                            name,
                            HeaderValue::from_bytes(value.as_bytes()).expect("a header value"),
                        );
                    }
                }
                let cookies = answer
                    .headers()
                    .get_all(header::SET_COOKIE.as_str())
                    .iter()
                    .filter_map(|v| HeaderValue::from_bytes(v.as_bytes()).ok())
                    .collect();
                Ok((identity, cookies))
            }
            401 | 403 => Err(problem::response(
                StatusCode::UNAUTHORIZED,
                "not logged in: POST /login first",
            )),
            other => {
                tracing::error!(
                    status = other,
                    "forward-auth: auth answered neither 2xx nor 401/403"
                );
                Err(problem::response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "authentication check failed",
                ))
            }
        }
    }

    /// Sends the request `build` makes to `service`; when that fails before any answer in a
    /// way [`retry_reason`] finds safe to repeat, builds and sends it once more (the failed
    /// connection is gone: the retry goes out on another). A request that succeeds is built
    /// and sent once, exactly as without retries.
    async fn send(
        &self,
        service: Service,
        method: &reqwest::Method,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> reqwest::Result<reqwest::Response> {
        match build().send().await {
            Err(error) => match retry_reason(method, &error) {
                Some(reason) => {
                    tracing::warn!(
                        upstream = ?service,
                        reason,
                        error = %problem::chain(&error),
                        %method,
                        "upstream failed before answering; sending once more"
                    );
                    build().send().await
                }
                None => Err(error),
            },
            answer => answer,
        }
    }

    /// Proxies the request to `service`, with `identity` (or none) as the identity headers.
    async fn forward(
        &self,
        req: &HttpRequest,
        body: web::Bytes,
        service: Service,
        identity: Option<HeaderMap>,
    ) -> HttpResponse {
        let uri = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let method =
            reqwest::Method::from_bytes(req.method().as_str().as_bytes()).expect("a valid method");
        let url = format!("{}{uri}", self.base(service));
        let peer = req
            .peer_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        let host = req.connection_info().host().to_string();
        let (request_id, traceparent) = ids();
        let build = || {
            let mut upstream = self.http.request(method.clone(), url.as_str());
            for (name, value) in req.headers() {
                // identity headers from the client are never passed on
                if forwardable(name)
                    && !identity::HEADERS.contains(name)
                    && name != request_id::HEADER
                    && name != TRACEPARENT
                {
                    upstream = upstream.header(name.as_str(), value.as_bytes());
                }
            }
            for (name, value) in identity.iter().flatten() {
                upstream = upstream.header(name.as_str(), value.as_bytes());
            }
            upstream
                .header("X-Request-ID", request_id.as_str())
                .header(trace_context::HEADER, traceparent.as_str())
                .header("X-Forwarded-For", peer.as_str())
                .header("X-Real-IP", peer.as_str())
                .header("X-Forwarded-Host", host.as_str())
                .header("X-Forwarded-Proto", "http")
                // a reference-counted handle on the same bytes, not a copy
                .body(body.clone())
        };
        let answer = self.send(service, &method, build).await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) => {
                tracing::error!(upstream = ?service, error = %problem::chain(&e), "upstream unreachable");
                return problem::response(
                    StatusCode::BAD_GATEWAY,
                    format!("{service:?} is unavailable").to_lowercase(),
                );
            }
        };
        let mut res = HttpResponse::build(
            StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
        );
        for (name, value) in answer.headers() {
            let name = HeaderName::from_bytes(name.as_str().as_bytes()).expect("a header name");
            if forwardable(&name) && name != request_id::HEADER {
                res.append_header((
                    name,
                    HeaderValue::from_bytes(value.as_bytes()).expect("a header value"),
                ));
            }
        }
        match answer.bytes().await {
            Ok(bytes) => res.body(bytes),
            Err(e) => {
                tracing::error!(
                    upstream = ?service,
                    error = %problem::chain(&e),
                    "upstream answer cut short"
                );
                problem::response(StatusCode::BAD_GATEWAY, "upstream answer cut short")
            }
        }
    }
}

/// Why a call that failed with `error` may be sent once more, or `None` when it must not be.
/// nginx's rule (`proxy_next_upstream error`, ingress-nginx's default; since nginx 1.9.13 a
/// POST, LOCK or PATCH is not passed on once it was sent), in terms of what is known about
/// the request:
///
/// - a timeout (connect or total) is never retried: the service may still be working on the
///   request, and the client's time is spent;
/// - a connection that could not be opened carried nothing: any method is safe to send again;
/// - a request hyper hands back unsent ("canceled": its connection closed before the request
///   was written) carried nothing either: any method. hyper-util already retries this itself
///   on a reused connection; this covers a fresh one;
/// - a connection closed or reset before any answer ("connection closed before message
///   completed"): the request may have been written and acted on, so only an idempotent
///   method goes again — GET, HEAD, PUT, DELETE, OPTIONS, TRACE, whose repetition has the
///   effect of one request (RFC 9110 §9.2.2); a POST is the client's to repeat, with its
///   `Idempotency-Key`;
/// - anything else (a malformed answer, a bad request) is not a connection failure.
fn retry_reason(method: &reqwest::Method, error: &reqwest::Error) -> Option<&'static str> {
    let causes = || sources(error);
    let hyper = |check: fn(&hyper::Error) -> bool| {
        causes()
            .filter_map(|cause| cause.downcast_ref::<hyper::Error>())
            .any(check)
    };
    let dropped = || {
        causes()
            .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
            .any(|io| {
                use std::io::ErrorKind::*;
                matches!(
                    io.kind(),
                    ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
                )
            })
    };
    if error.is_timeout() {
        None
    } else if error.is_connect() {
        Some("cannot connect")
    } else if hyper(hyper::Error::is_canceled) {
        Some("connection closed before the request was sent")
    } else if method.is_idempotent() && (hyper(hyper::Error::is_incomplete_message) || dropped()) {
        Some("connection closed before an answer")
    } else {
        None
    }
}

/// `error` and its causes, outermost first.
fn sources<'a>(error: &'a reqwest::Error) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    let first: &'a (dyn Error + 'static) = error;
    std::iter::successors(Some(first), |&cause: &&'a (dyn Error + 'static)| {
        cause.source()
    })
}

async fn handle(req: HttpRequest, body: web::Bytes, gateway: web::Data<Gateway>) -> HttpResponse {
    match route(req.path()) {
        Route::NotRouted => problem::response(StatusCode::NOT_FOUND, "no such resource"),
        Route::Public(service) => gateway.forward(&req, body, service, None).await,
        Route::Protected(service) => match gateway.check(&req).await {
            Err(refused) => refused,
            Ok((identity, cookies)) => {
                let mut res = gateway.forward(&req, body, service, Some(identity)).await;
                // nginx: auth_request_set $auth_cookie …; add_header Set-Cookie $auth_cookie
                for cookie in cookies {
                    res.headers_mut().append(header::SET_COOKIE, cookie);
                }
                res
            }
        },
    }
}

/// The public API description, rendered once.
struct OpenApiJson(String);

/// `GET /openapi.json`: the OpenAPI 3.1 description of everything routed here.
async fn openapi_json(doc: web::Data<OpenApiJson>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(doc.0.clone())
}

/// Starts the gateway on `listener`.
pub fn serve(
    listener: TcpListener,
    upstreams: Upstreams,
    http: reqwest::Client,
) -> std::io::Result<Server> {
    let gateway = web::Data::new(Gateway { upstreams, http });
    let openapi = web::Data::new(OpenApiJson(
        crate::openapi().to_json().map_err(std::io::Error::other)?,
    ));
    Ok(HttpServer::new(move || {
        App::new()
            .wrap(problem::middleware())
            .wrap(from_fn(common::http::access_log))
            .wrap(from_fn(request_id::middleware))
            .app_data(web::Data::new(common::http::ServiceName("gateway")))
            .app_data(gateway.clone())
            // nginx's default client_max_body_size; the services enforce their own, smaller limit
            .app_data(web::PayloadConfig::new(1024 * 1024))
            .app_data(openapi.clone())
            .route("/openapi.json", web::get().to(openapi_json))
            .default_service(web::to(handle))
    })
    .listen(listener)?
    // ingress-nginx's keep-alive towards its clients (`keep-alive: 75`), not actix's 5 s
    .keep_alive(CLIENT_KEEP_ALIVE)
    .run())
}

/// How long the gateway keeps an idle client connection open: ingress-nginx's default.
const CLIENT_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(75);

/// `traceparent`, which the gateway sets itself: it is a hop of the trace.
const TRACEPARENT: HeaderName = HeaderName::from_static(trace_context::HEADER);

/// The request id and the `traceparent` (this hop as parent) that the gateway's calls carry.
fn ids() -> (String, String) {
    let context = request_id::context();
    let request_id = context.as_ref().map(|c| c.id.clone()).unwrap_or_default();
    let trace = context.map_or_else(trace_context::TraceContext::root, |c| c.trace);
    (request_id, trace.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use saphyr::{LoadableYamlNode, Yaml};

    /// A file of `k8s/`, read at test time from inside the repository.
    fn manifest(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../k8s")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The documents of `kind` in a manifest.
    fn documents<'a>(text: &'a str, kind: &str) -> Vec<Yaml<'a>> {
        Yaml::load_from_str(text)
            .expect("valid YAML")
            .into_iter()
            .filter(|doc| doc.as_mapping_get("kind").and_then(Yaml::as_str) == Some(kind))
            .collect()
    }

    /// The node at `keys` below `node`, or `None` where a key is missing.
    fn at<'y, 'a>(node: &'y Yaml<'a>, keys: &[&str]) -> Option<&'y Yaml<'a>> {
        keys.iter()
            .try_fold(node, |node, key| node.as_mapping_get(key))
    }

    fn string<'y>(node: &'y Yaml, keys: &[&str]) -> &'y str {
        at(node, keys)
            .and_then(Yaml::as_str)
            .unwrap_or_else(|| panic!("{keys:?} is not a string"))
    }

    fn annotation<'y>(ingress: &'y Yaml, name: &str) -> Option<&'y str> {
        let key = format!("nginx.ingress.kubernetes.io/{name}");
        at(ingress, &["metadata", "annotations", &key]).and_then(Yaml::as_str)
    }

    /// One path of an Ingress as `k8s/ingress.yaml` writes it: (path, pathType, backend
    /// service, whether its Ingress has `auth-url`).
    type Written = (String, String, String, bool);

    fn ingress_paths() -> Vec<Written> {
        let text = manifest("ingress.yaml");
        let mut paths = Vec::new();
        for ingress in documents(&text, "Ingress") {
            let forward_auth = annotation(&ingress, "auth-url").is_some();
            let rules = at(&ingress, &["spec", "rules"]).and_then(Yaml::as_sequence);
            for rule in rules.expect("spec.rules") {
                let http = at(rule, &["http", "paths"]).and_then(Yaml::as_sequence);
                for path in http.expect("http.paths") {
                    paths.push((
                        string(path, &["path"]).to_string(),
                        string(path, &["pathType"]).to_string(),
                        string(path, &["backend", "service", "name"]).to_string(),
                        forward_auth,
                    ));
                }
            }
        }
        assert!(!paths.is_empty(), "no Ingress paths in k8s/ingress.yaml");
        paths
    }

    fn service_named(name: &str) -> Service {
        [
            Service::Auth,
            Service::Billing,
            Service::Order,
            Service::Notification,
        ]
        .into_iter()
        .find(|service| format!("{service:?}").eq_ignore_ascii_case(name))
        .unwrap_or_else(|| panic!("no service {name:?} behind the gateway"))
    }

    /// Where the Ingresses send `probe`, by the Ingress API's rules, independently of
    /// [`route`]: `Exact` is the path itself; `Prefix` matches the `/`-separated elements of
    /// the path from the start; an exact match wins, then the longest path.
    fn ingress_route(paths: &[Written], probe: &str) -> Route {
        let elements = |path: &str| {
            path.split('/')
                .filter(|e| !e.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        paths
            .iter()
            .filter(|(path, path_type, ..)| match path_type.as_str() {
                "Exact" => path == probe,
                "Prefix" => elements(probe).starts_with(&elements(path)),
                other => panic!("pathType {other} is not supported by the gateway"),
            })
            .max_by_key(|(path, path_type, ..)| (path_type == "Exact", path.len()))
            .map_or(
                Route::NotRouted,
                |(_, _, service, forward_auth)| match forward_auth {
                    true => Route::Protected(service_named(service)),
                    false => Route::Public(service_named(service)),
                },
            )
    }

    /// What the cluster never routes from outside.
    const NOT_ROUTED: [&str; 8] = [
        "/internal/payments",
        "/internal/accounts",
        "/metrics",
        "/health",
        "/ready",
        "/",
        "/unknown",
        "/orders",
    ];

    #[test]
    fn the_routing_table_is_the_one_of_the_ingresses_in_k8s() {
        let mut written = ingress_paths();
        let mut table: Vec<Written> = ROUTES
            .iter()
            .map(|route| {
                (
                    route.path.to_string(),
                    format!("{:?}", route.path_type),
                    format!("{:?}", route.service).to_lowercase(),
                    route.forward_auth,
                )
            })
            .collect();
        written.sort();
        table.sort();
        assert_eq!(
            table, written,
            "gateway::ROUTES differs from k8s/ingress.yaml"
        );

        // every path, below it, beside it: the gateway sends each where the ingress would
        for (path, ..) in &written {
            for probe in [
                path.clone(),
                format!("{path}/"),
                format!("{path}/7/pay"),
                format!("{path}x"),
            ] {
                assert_eq!(route(&probe), ingress_route(&written, &probe), "{probe}");
            }
        }
        for hidden in NOT_ROUTED {
            assert_eq!(
                ingress_route(&written, hidden),
                Route::NotRouted,
                "{hidden}"
            );
            assert_eq!(route(hidden), Route::NotRouted, "{hidden}");
        }
        // the table's kinds, spelled out
        assert_eq!(route("/login"), Route::Public(Service::Auth));
        assert_eq!(
            route("/login/x"),
            Route::NotRouted,
            "Exact: the path itself only"
        );
        assert_eq!(route("/users/me"), Route::Protected(Service::Auth));
        assert_eq!(route("/order/7/pay"), Route::Protected(Service::Order));
    }

    #[test]
    fn forward_auth_asks_auth_and_copies_exactly_the_identity_headers() {
        let text = manifest("ingress.yaml");
        let ingresses = documents(&text, "Ingress");
        let checked: Vec<&Yaml> = ingresses
            .iter()
            .filter(|ingress| annotation(ingress, "auth-url").is_some())
            .collect();
        assert_eq!(checked.len(), 1, "one Ingress with auth-url");
        let auth_url = annotation(checked[0], "auth-url").unwrap();
        assert!(
            auth_url.starts_with("http://auth.") && auth_url.ends_with("/auth"),
            "{auth_url}"
        );
        let mut copied: Vec<String> = annotation(checked[0], "auth-response-headers")
            .expect("auth-response-headers")
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .collect();
        let mut identity: Vec<String> = identity::HEADERS
            .iter()
            .map(|h| h.as_str().to_string())
            .collect();
        copied.sort();
        identity.sort();
        assert_eq!(copied, identity);
    }

    #[test]
    fn the_ingress_drops_idle_connections_before_the_services_close_them() {
        use common::settings::{
            DEFAULT_KEEP_ALIVE, DEFAULT_POOL_IDLE_TIMEOUT, INGRESS_NGINX_KEEPALIVE_TIMEOUT,
            check_keep_alive,
        };
        let ingress = manifest("ingress.yaml");
        let auth_keepalive = documents(&ingress, "Ingress")
            .iter()
            .filter_map(|ingress| annotation(ingress, "auth-keepalive-timeout"))
            .map(|seconds| std::time::Duration::from_secs(seconds.parse().expect("seconds")))
            .max()
            // ingress-nginx's default when the annotation is absent
            .unwrap_or(INGRESS_NGINX_KEEPALIVE_TIMEOUT);
        let duration = |value: &str| humantime::parse_duration(value).expect("a duration");
        let mut fronts = vec![
            (
                "ingress-nginx upstream-keepalive-timeout",
                INGRESS_NGINX_KEEPALIVE_TIMEOUT,
            ),
            ("auth-keepalive-timeout", auth_keepalive),
            (
                "HTTP_POOL_IDLE_TIMEOUT (default)",
                DEFAULT_POOL_IDLE_TIMEOUT,
            ),
        ];
        let mut servers = Vec::new();
        for service in ["auth", "billing", "order", "notification"] {
            let text = manifest(&format!("{service}.yaml"));
            for config in documents(&text, "ConfigMap") {
                let data = |key: &str| at(&config, &["data", key]).and_then(Yaml::as_str);
                let keep_alive = data("KEEP_ALIVE").map_or(DEFAULT_KEEP_ALIVE, duration);
                servers.push((format!("{service} KEEP_ALIVE"), keep_alive));
                if let Some(idle) = data("HTTP_POOL_IDLE_TIMEOUT") {
                    fronts.push(("HTTP_POOL_IDLE_TIMEOUT", duration(idle)));
                }
            }
        }
        assert_eq!(servers.len(), 4, "one ConfigMap per service");
        for (server, keep_alive) in &servers {
            for (front, idle) in &fronts {
                check_keep_alive((server, *keep_alive), (front, *idle)).unwrap();
            }
        }
    }

    /// How a test server treats each connection once it has read the request head.
    #[derive(Debug, Clone, Copy)]
    enum Then {
        /// Closes it (FIN): "connection closed before message completed".
        Close,
        /// Resets it (RST): "connection reset by peer".
        Reset,
        /// Never answers: the client times out.
        Silent,
        /// Answers something that is not HTTP.
        Garbage,
    }

    /// A server on a free loopback port that reads each request head, then does `then`.
    async fn server(then: Then) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        actix_web::rt::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                actix_web::rt::spawn(async move {
                    let (mut head, mut byte) = (Vec::new(), [0u8]);
                    while !head.ends_with(b"\r\n\r\n") {
                        match socket.read(&mut byte).await {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    match then {
                        Then::Close => drop(socket),
                        Then::Reset => socket.set_zero_linger().unwrap(),
                        // holds the connection until the client gives up on it
                        Then::Silent => drop(socket.read(&mut byte).await),
                        Then::Garbage => socket.write_all(b"garbage\r\n\r\n").await.unwrap(),
                    }
                });
            }
        });
        url
    }

    #[actix_web::test]
    async fn a_failed_call_is_repeated_only_when_it_cannot_have_been_acted_on_or_is_idempotent() {
        use reqwest::Method;
        let settings = common::settings::ClientSettings {
            http_timeout: std::time::Duration::from_millis(300),
            ..Default::default()
        };
        let client = common::http::client(&settings, None).unwrap();
        // a port held by a socket that never listens: connecting is refused, and no other
        // server of this or another test can take the port meanwhile (a freed port could be)
        let unlistened = tokio::net::TcpSocket::new_v4().unwrap();
        unlistened.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let refused = format!("http://{}/", unlistened.local_addr().unwrap());
        let (closed, reset) = (server(Then::Close).await, server(Then::Reset).await);
        let (silent, garbage) = (server(Then::Silent).await, server(Then::Garbage).await);
        let never_sent = Some("cannot connect");
        let lost = Some("connection closed before an answer");
        let cases = [
            (&refused, Method::POST, never_sent),
            (&refused, Method::GET, never_sent),
            (&closed, Method::GET, lost),
            (&closed, Method::HEAD, lost),
            (&closed, Method::PUT, lost),
            (&closed, Method::DELETE, lost),
            (&closed, Method::OPTIONS, lost),
            (&closed, Method::POST, None),
            (&closed, Method::PATCH, None),
            (&reset, Method::GET, lost),
            (&reset, Method::POST, None),
            (&silent, Method::GET, None),
            (&garbage, Method::GET, None),
        ];
        for (url, method, expected) in cases {
            let error = client
                .request(method.clone(), url.as_str())
                .send()
                .await
                .expect_err("no answer");
            assert_eq!(
                retry_reason(&method, &error),
                expected,
                "{method} {url}: {}",
                problem::chain(&error)
            );
        }
    }
}
