use std::sync::Arc;

use common::testing::{Spawned, http_client};
use reqwest::{Response, header::HeaderMap};
use serde_json::{Value, json};

pub use auth::testing::SESSION_KEY;
pub const PASSWORD: &str = "correct horse battery";

/// auth (and the billing it calls, when it has one of its own), and one method per endpoint.
pub struct TestApp {
    pub address: String,
    pub billing_address: String,
    pub client: reqwest::Client,
    pub auth: Spawned,
    /// Shared by the auths a test starts on one database.
    billing: Option<Arc<Spawned>>,
}

/// auth and a billing of its own, each with a fresh database.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// auth with extra settings, and a billing of its own.
pub async fn spawn_app_with(extra: &[(&str, &str)]) -> TestApp {
    let billing = Arc::new(billing::testing::spawn(&[]).await);
    let auth = auth::testing::spawn(&billing.address, extra).await;
    let address = billing.address.clone();
    TestApp::new(auth, &address, Some(billing))
}

/// auth calling a billing at `billing_url` that the test runs (or leaves down) itself.
pub async fn spawn_auth_calling(billing_url: &str) -> TestApp {
    TestApp::new(
        auth::testing::spawn(billing_url, &[]).await,
        billing_url,
        None,
    )
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
    fn new(auth: Spawned, billing_address: &str, billing: Option<Arc<Spawned>>) -> Self {
        Self {
            address: auth.address.clone(),
            billing_address: billing_address.to_string(),
            client: http_client(),
            auth,
            billing,
        }
    }

    /// Another auth on this one's database and billing, with extra settings: a restart, or
    /// a replica configured differently.
    pub async fn on_same_database(&self, extra: &[(&str, &str)]) -> TestApp {
        let auth =
            auth::testing::spawn_on(self.auth.database(), &self.billing_address, extra).await;
        TestApp::new(auth, &self.billing_address, self.billing.clone())
    }

    /// The `DATABASE_URL` auth runs on, to look at its tables.
    pub fn database_url(&self) -> &str {
        self.auth.database_url()
    }

    pub async fn stop(&self) {
        self.auth.stop().await;
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(format!("{}{path}", self.address))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// A request without a cookie or identity headers.
    pub async fn anonymous(&self, method: reqwest::Method, path: &str) -> Response {
        self.client
            .request(method, format!("{}{path}", self.address))
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
