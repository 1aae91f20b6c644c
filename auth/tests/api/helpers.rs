use common::testing::{fresh_database_url, http_client};
use reqwest::{Response, header::HeaderMap};
use serde_json::{Value, json};

pub const SESSION_KEY: &str =
    "test-session-key-0123456789-0123456789-0123456789-0123456789-0123456789";
pub const PASSWORD: &str = "correct horse battery";

/// auth (and the billing it calls) with their own databases.
pub struct TestApp {
    pub address: String,
    pub billing_address: String,
    pub client: reqwest::Client,
    pub database_url: String,
    handle: actix_web::dev::ServerHandle,
}

pub async fn spawn_app() -> TestApp {
    let billing = spawn_billing().await;
    spawn_auth(fresh_database_url("auth"), &billing, &[]).await
}

/// Billing on a random port, as auth's dependency.
pub async fn spawn_billing() -> String {
    common::telemetry::init_for_tests();
    let settings: billing::Settings = common::settings::load_from([
        ("PORT", "0"),
        ("WORKERS", "1"),
        ("INTERNAL_TOKEN", common::testing::INTERNAL_TOKEN),
        ("DATABASE_URL", fresh_database_url("billing").as_str()),
    ])
    .unwrap();
    let running = billing::start(settings).unwrap();
    let address = format!("http://127.0.0.1:{}", running.port);
    actix_web::rt::spawn(running.into_future());
    address
}

/// auth on `database_url`, calling billing at `billing_url`, with extra settings.
pub async fn spawn_auth(
    database_url: String,
    billing_url: &str,
    extra: &[(&str, &str)],
) -> TestApp {
    common::telemetry::init_for_tests();
    let mut vars = vec![
        ("PORT", "0"),
        ("WORKERS", "2"),
        ("INTERNAL_TOKEN", common::testing::INTERNAL_TOKEN),
        ("BCRYPT_COST", "4"),
        ("SESSION_KEY", SESSION_KEY),
        ("HTTP_TIMEOUT", "2s"),
        ("DATABASE_URL", database_url.as_str()),
        ("BILLING_URL", billing_url),
    ];
    vars.extend_from_slice(extra);
    let settings: auth::Settings = common::settings::load_from(vars).unwrap();
    let running = auth::start(settings).expect("auth starts");
    let address = format!("http://127.0.0.1:{}", running.port);
    let handle = running.handle();
    actix_web::rt::spawn(running.into_future());
    TestApp {
        address,
        billing_address: billing_url.to_string(),
        client: http_client(),
        database_url,
        handle,
    }
}

/// A unique login per call, so tests never collide.
pub fn unique_login() -> String {
    format!("user_{}", &uuid_like()[..12])
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}{:04x}", nanos, N.fetch_add(1, Ordering::Relaxed))
}

/// The `session_id=…` pair from a response's Set-Cookie, if it sets one.
pub fn session_cookie(res: &Response) -> Option<String> {
    set_cookie(res.headers()).map(|c| c.split(';').next().unwrap().to_string())
}

/// The full Set-Cookie header for the session cookie.
pub fn set_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with("session_id="))
}

impl TestApp {
    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(format!("{}{path}", self.address))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn register(&self, body: &Value) -> Response {
        self.post("/register", body).await
    }

    /// Registers a user with the default password; returns its login and id.
    pub async fn register_user(&self) -> (String, i64) {
        let login = unique_login();
        let res = self
            .register(&json!({
                "login": login, "password": PASSWORD, "email": format!("{login}@example.com"),
                "first_name": "Ada", "last_name": "Lovelace"
            }))
            .await;
        assert_eq!(res.status(), 200);
        let id = res.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
        (login, id)
    }

    pub async fn login(&self, login: &str, password: &str) -> Response {
        self.post("/login", &json!({ "login": login, "password": password }))
            .await
    }

    /// Registers and logs in; returns the session cookie and the user id.
    pub async fn logged_in_user(&self) -> (String, i64) {
        let (login, id) = self.register_user().await;
        let res = self.login(&login, PASSWORD).await;
        assert_eq!(res.status(), 200);
        (
            session_cookie(&res).expect("login sets the session cookie"),
            id,
        )
    }

    pub async fn auth(&self, cookie: Option<&str>) -> Response {
        let mut req = self.client.get(format!("{}/auth", self.address));
        if let Some(cookie) = cookie {
            req = req.header("Cookie", cookie);
        }
        req.send().await.unwrap()
    }

    pub async fn logout(&self, cookie: &str) -> Response {
        self.client
            .post(format!("{}/logout", self.address))
            .header("Cookie", cookie)
            .send()
            .await
            .unwrap()
    }

    /// What the ingress does: ask `/auth` with the cookie, then send the protected request
    /// with the identity headers auth answered.
    pub async fn through_gateway(&self, cookie: &str, req: reqwest::RequestBuilder) -> Response {
        let check = self.auth(Some(cookie)).await;
        assert_eq!(check.status(), 200, "forward-auth check");
        let mut req = req;
        for name in [
            "x-userid",
            "x-user",
            "x-email",
            "x-first-name",
            "x-last-name",
        ] {
            req = req.header(name, check.headers()[name].clone());
        }
        req.send().await.unwrap()
    }
}

pub use common::testing::assert_problem;
