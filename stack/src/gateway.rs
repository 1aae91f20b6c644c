//! A forward-auth gateway that behaves like the production ingress (ingress-nginx with
//! `auth-url`, see `../shared/TOOLCHAIN.md`), so that what works through it locally works
//! through the cluster's ingress:
//!
//! - `/register`, `/login`, `/logout`, `/signin` and `/auth` go straight to auth (the course's
//!   auth-proxy Ingress, without `auth-url`);
//! - every other public route is first checked with auth's `GET /auth`, sent the client's
//!   headers and no body (plus `X-Original-URL`, `X-Sent-From` … as nginx sends them). On 2xx
//!   the five identity headers of auth's answer are set on the upstream request, replacing any
//!   the client sent (a header auth omits is removed); 401/403 → 401; anything else → 5xx;
//! - `/internal/*`, `/metrics`, `/health`, `/ready` and unknown paths are not routed (404);
//! - `X-Request-Id` is taken from the client or generated, and sent upstream;
//! - `/openapi.json` is the OpenAPI 3.1 description of the public API ([`crate::openapi`]).

use std::net::TcpListener;

use actix_web::{
    App, HttpRequest, HttpResponse, HttpServer,
    dev::Server,
    http::{
        StatusCode,
        header::{self, HeaderMap, HeaderName, HeaderValue},
    },
    middleware::{Logger, from_fn},
    web,
};
use common::{identity, problem, request_id};

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

/// `path` is `prefix` or below it (`/order`, `/order/7/pay`; not `/orders`).
fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The routing table of the two Ingresses.
fn route(path: &str) -> Route {
    const PUBLIC: [&str; 5] = ["/register", "/login", "/logout", "/signin", "/auth"];
    const PROTECTED: [(&str, Service); 4] = [
        ("/users", Service::Auth),
        ("/billing", Service::Billing),
        ("/order", Service::Order),
        ("/notification", Service::Notification),
    ];
    if PUBLIC.iter().any(|p| under(path, p)) {
        return Route::Public(Service::Auth);
    }
    PROTECTED
        .iter()
        .find(|(prefix, _)| under(path, prefix))
        .map_or(Route::NotRouted, |(_, service)| Route::Protected(*service))
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
        let mut check = self.http.get(format!("{}/auth", self.upstreams.auth));
        for (name, value) in req.headers() {
            if forwardable(name) && name != header::CONTENT_TYPE {
                check = check.header(name.as_str(), value.as_bytes());
            }
        }
        let answer = check
            .header("X-Original-URL", format!("http://{host}{uri}"))
            .header("X-Original-Method", req.method().as_str())
            .header("X-Sent-From", "nginx-ingress-controller")
            .header("X-Auth-Request-Redirect", uri)
            .header("X-Request-ID", request_id::current().unwrap_or_default())
            .send()
            .await
            .map_err(|e| {
                log::error!("forward-auth: auth unreachable: {}", problem::chain(&e));
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
                log::error!("forward-auth: auth answered {other}");
                Err(problem::response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "authentication check failed",
                ))
            }
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
        let mut upstream = self
            .http
            .request(method, format!("{}{uri}", self.base(service)));
        for (name, value) in req.headers() {
            // identity headers from the client are never passed on
            if forwardable(name) && !identity::HEADERS.contains(name) && name != request_id::HEADER
            {
                upstream = upstream.header(name.as_str(), value.as_bytes());
            }
        }
        for (name, value) in identity.iter().flatten() {
            upstream = upstream.header(name.as_str(), value.as_bytes());
        }
        let peer = req
            .peer_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        let host = req.connection_info().host().to_string();
        let answer = upstream
            .header("X-Request-ID", request_id::current().unwrap_or_default())
            .header("X-Forwarded-For", peer.as_str())
            .header("X-Real-IP", peer.as_str())
            .header("X-Forwarded-Host", host)
            .header("X-Forwarded-Proto", "http")
            .body(body)
            .send()
            .await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) => {
                log::error!("upstream {service:?} unreachable: {}", problem::chain(&e));
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
                log::error!(
                    "upstream {service:?} answer cut short: {}",
                    problem::chain(&e)
                );
                problem::response(StatusCode::BAD_GATEWAY, "upstream answer cut short")
            }
        }
    }
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
            .wrap(from_fn(request_id::middleware))
            .wrap(Logger::new(common::http::ACCESS_LOG_FORMAT).log_target("gateway"))
            .app_data(gateway.clone())
            // nginx's default client_max_body_size; the services enforce their own, smaller limit
            .app_data(web::PayloadConfig::new(1024 * 1024))
            .app_data(openapi.clone())
            .route("/openapi.json", web::get().to(openapi_json))
            .default_service(web::to(handle))
    })
    .listen(listener)?
    .run())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_routing_table_matches_the_ingresses() {
        for public in ["/register", "/login", "/logout", "/signin", "/auth"] {
            assert_eq!(route(public), Route::Public(Service::Auth), "{public}");
        }
        assert_eq!(route("/users/me"), Route::Protected(Service::Auth));
        assert_eq!(route("/billing/change"), Route::Protected(Service::Billing));
        assert_eq!(route("/order"), Route::Protected(Service::Order));
        assert_eq!(route("/order/7/pay"), Route::Protected(Service::Order));
        assert_eq!(
            route("/notification"),
            Route::Protected(Service::Notification)
        );
        for hidden in [
            "/internal/payments",
            "/internal/accounts",
            "/metrics",
            "/health",
            "/ready",
            "/",
            "/orders",
            "/authx",
        ] {
            assert_eq!(route(hidden), Route::NotRouted, "{hidden}");
        }
    }
}
