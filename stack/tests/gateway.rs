//! The whole stack, as `cargo run` starts it (every port 0, a fresh data directory), driven
//! through the gateway only: the course scenario, and what the ingress must guarantee.

use std::{collections::HashMap, sync::Arc};

use common::testing::{TestDatabase, TestDir};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

struct Shop {
    url: String,
    http: reqwest::Client,
    banner: String,
    /// Stop the services when the test ends, before their databases go.
    servers: Vec<actix_web::dev::ServerHandle>,
    /// Removed when the test ends: the data directory and, on PostgreSQL, the databases.
    _data_dir: TestDir,
    _databases: Vec<Arc<TestDatabase>>,
}

impl Drop for Shop {
    fn drop(&mut self) {
        for server in &self.servers {
            drop(server.stop(false));
        }
    }
}

async fn spawn_shop(extra: &[(&str, &str)]) -> Shop {
    common::telemetry::init_for_tests();
    let data_dir = TestDir::new("stack");
    let mut vars: HashMap<String, String> = [
        ("GATEWAY_PORT", "0"),
        ("AUTH_PORT", "0"),
        ("BILLING_PORT", "0"),
        ("ORDER_PORT", "0"),
        ("NOTIFICATION_PORT", "0"),
        ("AUTH_BCRYPT_COST", "4"),
        ("AUTH_WORKERS", "1"),
        ("BILLING_WORKERS", "1"),
        ("ORDER_WORKERS", "1"),
        ("NOTIFICATION_WORKERS", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    vars.insert(
        "DATA_DIR".into(),
        data_dir.path().to_string_lossy().into_owned(),
    );
    // on SQLite the services keep their files in DATA_DIR; on PostgreSQL, a database each
    let mut databases = Vec::new();
    if common::testing::backend_name() == "postgres" {
        for service in ["auth", "billing", "order", "notification"] {
            let database = TestDatabase::fresh(service);
            vars.insert(
                format!("{}_DATABASE_URL", service.to_uppercase()),
                database.url().to_string(),
            );
            databases.push(database);
        }
    }
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let stack = stack::start(&stack::StackSettings::from_vars(vars).unwrap()).unwrap();
    let (url, banner) = (stack.gateway_url.clone(), stack.banner());
    let servers = stack.services.iter().map(|(s, _)| s.handle()).collect();
    // servers only serve while polled: run the stack on this test's runtime
    actix_web::rt::spawn(stack.run());
    Shop {
        url,
        http: common::testing::http_client(),
        banner,
        servers,
        _data_dir: data_dir,
        _databases: databases,
    }
}

impl Shop {
    async fn call(
        &self,
        method: Method,
        path: &str,
        cookie: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(cookie) = cookie {
            req = req.header("Cookie", cookie);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await.unwrap()
    }

    /// Registers and logs in a new user; returns the cookie.
    async fn user(&self, login: &str) -> String {
        let body = json!({"login": login, "password": "secret-password", "email": format!("{login}@example.com"),
                          "first_name": "A", "last_name": "B"});
        assert_eq!(
            self.call(Method::POST, "/register", None, Some(body))
                .await
                .status(),
            200
        );
        let res = self
            .call(
                Method::POST,
                "/login",
                None,
                Some(json!({"login": login, "password": "secret-password"})),
            )
            .await;
        assert_eq!(res.status(), 200);
        let set_cookie = res.headers()["set-cookie"].to_str().unwrap();
        set_cookie.split(';').next().unwrap().to_string()
    }
}

async fn json_of(res: Response) -> Value {
    res.json().await.unwrap()
}

#[actix_web::test]
async fn the_course_scenario_through_the_gateway() {
    let shop = spawn_shop(&[]).await;
    let c = shop.user("alice").await;
    let c = Some(c.as_str());
    let dep = json_of(
        shop.call(
            Method::POST,
            "/billing/change",
            c,
            Some(json!({"amount": 5000})),
        )
        .await,
    )
    .await;
    assert_eq!(dep["balance"], 5000);

    let order = json_of(
        shop.call(Method::POST, "/order", c, Some(json!({"amount": 3000})))
            .await,
    )
    .await;
    let id = order["id"].as_i64().unwrap();
    let paid = json_of(
        shop.call(Method::PUT, &format!("/order/{id}/pay"), c, None)
            .await,
    )
    .await;
    assert_eq!(paid["billing"]["status"], "OK");
    assert_eq!(
        json_of(shop.call(Method::GET, "/billing/current", c, None).await).await["balance"],
        2000
    );
    let notes = json_of(shop.call(Method::GET, "/notification", c, None).await).await;
    assert_eq!(notes[0]["message"], format!("order #{id} Processing"));

    let order = json_of(
        shop.call(Method::POST, "/order", c, Some(json!({"amount": 3000})))
            .await,
    )
    .await;
    let id2 = order["id"].as_i64().unwrap();
    let declined = json_of(
        shop.call(Method::PUT, &format!("/order/{id2}/pay"), c, None)
            .await,
    )
    .await;
    assert_eq!(declined["billing"]["status"], "ERROR");
    assert_eq!(
        json_of(shop.call(Method::GET, "/billing/current", c, None).await).await["balance"],
        2000
    );
    let notes = json_of(shop.call(Method::GET, "/notification", c, None).await).await;
    assert_eq!(notes[0]["message"], format!("order #{id2} Failed"));
}

#[actix_web::test]
async fn identity_headers_from_the_client_never_impersonate_anyone() {
    let shop = spawn_shop(&[]).await;
    let alice = shop.user("alice").await;
    let bob = shop.user("bob").await;
    let deposit = shop
        .call(
            Method::POST,
            "/billing/change",
            Some(&alice),
            Some(json!({"amount": 700})),
        )
        .await;
    assert_eq!(json_of(deposit).await["balance"], 700);
    // anonymous with a forged id: refused before any service sees it
    let forged = shop
        .http
        .get(format!("{}/billing/current", shop.url))
        .header("X-UserId", "1")
        .header("X-User", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    // bob claiming to be alice is still bob
    let res = shop
        .http
        .get(format!("{}/billing/current", shop.url))
        .header("Cookie", &bob)
        .header("X-UserId", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(res).await["balance"], 0);
}

#[actix_web::test]
async fn internal_and_cluster_routes_are_not_routed() {
    let shop = spawn_shop(&[]).await;
    let alice = shop.user("alice").await;
    for (method, path) in [
        (Method::POST, "/internal/payments"),
        (Method::POST, "/internal/accounts"),
        (Method::POST, "/internal/notifications"),
        (Method::GET, "/metrics"),
        (Method::GET, "/health"),
        (Method::GET, "/ready"),
        (Method::GET, "/"),
    ] {
        let res = shop
            .call(
                method.clone(),
                path,
                Some(&alice),
                Some(json!({"order_id": 1, "user_id": 1, "amount": 1})),
            )
            .await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
    }
}

#[actix_web::test]
async fn public_routes_pass_without_a_login_and_protected_ones_do_not() {
    let shop = spawn_shop(&[]).await;
    assert_eq!(
        shop.call(Method::GET, "/signin", None, None).await.status(),
        200
    );
    assert_eq!(
        shop.call(Method::GET, "/auth", None, None).await.status(),
        401
    );
    for path in [
        "/users/me",
        "/billing/current",
        "/billing/history",
        "/order",
        "/notification",
    ] {
        let res = shop.call(Method::GET, path, None, None).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
    }
}

#[actix_web::test]
async fn the_request_id_is_kept_or_made_and_returned() {
    let shop = spawn_shop(&[]).await;
    let res = shop
        .http
        .get(format!("{}/signin", shop.url))
        .header("X-Request-Id", "trace-7")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "trace-7");
    let res = shop.call(Method::GET, "/order", None, None).await;
    assert!(!res.headers()["x-request-id"].is_empty());
}

#[actix_web::test]
async fn the_banner_names_the_gateway_and_the_newman_command() {
    let shop = spawn_shop(&[]).await;
    let banner = &shop.banner;
    assert!(banner.contains(&shop.url));
    assert!(banner.contains("newman run order.postman_collection.json --env-var baseUrl="));
    for name in ["auth", "billing", "order", "notification"] {
        assert!(banner.contains(name));
    }
}

/// The banner's metrics addresses answer, each with its own service's series only: four
/// registries in one process, not one shared.
#[actix_web::test]
async fn each_service_serves_its_own_metrics_where_the_banner_says() {
    let shop = spawn_shop(&[]).await;
    let line = shop
        .banner
        .lines()
        .find(|l| l.starts_with("Metrics:"))
        .expect("a Metrics line");
    let urls: Vec<&str> = line.split_whitespace().skip(1).collect();
    assert_eq!(urls.len(), 4, "{line}");
    // (a metric only this service has, a metric of another service)
    let own = [
        ("shop_registrations_total", "shop_payments_total"),
        ("shop_payments_total", "shop_outbox_pending_messages"),
        ("shop_outbox_pending_messages", "shop_notifications_total"),
        ("shop_notifications_total", "shop_registrations_total"),
    ];
    for (url, (mine, theirs)) in urls.iter().zip(own) {
        let res = shop.http.get(*url).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{url}");
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        let text = res.text().await.unwrap();
        assert!(text.contains("shop_build_info{"), "{url}: {text}");
        assert!(
            text.contains(&format!("# TYPE {mine} ")),
            "{url} lacks {mine}"
        );
        assert!(!text.contains(theirs), "{url} has {theirs}");
    }
}

/// `openapi.json` at the repository root is what the code generates. After changing a
/// handler's description: `cargo run -q -- openapi > openapi.json`.
#[test]
fn the_committed_openapi_json_is_what_the_code_generates() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi.json");
    let committed: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let generated = serde_json::to_value(stack::openapi()).unwrap();
    assert!(
        committed == generated,
        "openapi.json is out of date: run `cargo run -q -- openapi > openapi.json`"
    );
    assert_eq!(generated["openapi"], "3.1.0");
}

/// Every operation the served description lists is routed, and answers with a status (and
/// media type) its description lists — also for a body that is missing every field.
#[actix_web::test]
async fn every_described_operation_is_routed_and_answers_as_described() {
    let shop = spawn_shop(&[]).await;
    let res = shop.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(res.status(), 200);
    let doc = json_of(res).await;
    assert_eq!(doc, serde_json::to_value(stack::openapi()).unwrap());

    let cookie = shop.user("described").await;
    let order = json_of(
        shop.call(
            Method::POST,
            "/order",
            Some(&cookie),
            Some(json!({"amount": 1})),
        )
        .await,
    )
    .await;
    let id = order["id"].as_i64().unwrap().to_string();

    let mut operations: Vec<(String, String, Value)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            operations.push((path.clone(), method.to_uppercase(), op.clone()));
        }
    }
    // logging out ends the session the others use: last
    operations.sort_by_key(|(path, method, _)| (path == "/logout", path.clone(), method.clone()));
    for (path, method, op) in &operations {
        let body = op.get("requestBody").map(|_| json!({}));
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let res = shop
            .call(
                method.clone(),
                &path.replace("{id}", &id),
                Some(&cookie),
                body,
            )
            .await;
        let status = res.status().as_u16().to_string();
        let described = &op["responses"][&status];
        assert!(
            described.is_object(),
            "{method} {path} answered {status}, which its description does not list"
        );
        if let Some(content) = described.get("content").and_then(Value::as_object) {
            let media = res.headers()["content-type"].to_str().unwrap().to_string();
            assert!(
                content.keys().any(|m| media.starts_with(m.as_str())),
                "{method} {path} answered {status} as {media}, described as {:?}",
                content.keys()
            );
        }
    }
    assert_eq!(operations.len(), 16, "the public API has 16 operations");
}
