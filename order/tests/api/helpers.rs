use common::testing::{fresh_database_url, http_client};
use reqwest::Response;
use serde_json::{Value, json};

/// order, plus the billing and notification it calls.
pub struct TestApp {
    pub address: String,
    pub billing: String,
    pub notification: String,
    pub client: reqwest::Client,
}

pub async fn spawn_billing(port: u16) -> String {
    common::telemetry::init_for_tests();
    let port = port.to_string();
    let settings: billing::Settings = common::settings::load_from([
        ("PORT", port.as_str()),
        ("WORKERS", "2"),
        ("INTERNAL_TOKEN", common::testing::INTERNAL_TOKEN),
        ("DATABASE_URL", &fresh_database_url("billing")),
    ])
    .unwrap();
    let running = billing::start(settings).unwrap();
    let address = format!("http://127.0.0.1:{}", running.port);
    actix_web::rt::spawn(running.into_future());
    address
}

pub async fn spawn_notification(port: u16) -> String {
    let port = port.to_string();
    let settings: notification::Settings = common::settings::load_from([
        ("PORT", port.as_str()),
        ("WORKERS", "1"),
        ("INTERNAL_TOKEN", common::testing::INTERNAL_TOKEN),
        ("DATABASE_URL", &fresh_database_url("notification")),
    ])
    .unwrap();
    let running = notification::start(settings).unwrap();
    let address = format!("http://127.0.0.1:{}", running.port);
    actix_web::rt::spawn(running.into_future());
    address
}

/// order calling `billing` and `notification`, with extra settings.
pub async fn spawn_order(billing: &str, notification: &str, extra: &[(&str, &str)]) -> TestApp {
    common::telemetry::init_for_tests();
    let database_url = fresh_database_url("order");
    let mut vars = vec![
        ("PORT", "0"),
        ("WORKERS", "2"),
        ("INTERNAL_TOKEN", common::testing::INTERNAL_TOKEN),
        ("DATABASE_URL", database_url.as_str()),
        ("BILLING_URL", billing),
        ("NOTIFICATION_URL", notification),
        ("HTTP_TIMEOUT", "2s"),
        ("OUTBOX_POLL_INTERVAL", "100ms"),
        ("OUTBOX_MAX_BACKOFF", "1s"),
    ];
    vars.extend_from_slice(extra);
    let settings: order::Settings = common::settings::load_from(vars).unwrap();
    let running = order::start(settings).expect("order starts");
    let address = format!("http://127.0.0.1:{}", running.port);
    actix_web::rt::spawn(running.into_future());
    TestApp {
        address,
        billing: billing.to_string(),
        notification: notification.to_string(),
        client: http_client(),
    }
}

pub async fn spawn_app() -> TestApp {
    let billing = spawn_billing(0).await;
    let notification = spawn_notification(0).await;
    spawn_order(&billing, &notification, &[]).await
}

impl TestApp {
    pub fn as_user(
        &self,
        method: reqwest::Method,
        url: String,
        user: i64,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(method, url)
            .header("X-UserId", user)
            .header("X-User", format!("user{user}"))
            .header("X-Email", format!("user{user}@example.com"))
    }

    pub async fn deposit(&self, user: i64, amount: i64) {
        let res = self
            .as_user(
                reqwest::Method::POST,
                format!("{}/billing/change", self.billing),
                user,
            )
            .json(&json!({ "amount": amount }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }

    pub async fn balance(&self, user: i64) -> Value {
        let res = self
            .as_user(
                reqwest::Method::GET,
                format!("{}/billing/current", self.billing),
                user,
            )
            .send()
            .await
            .unwrap();
        res.json::<Value>().await.unwrap()["balance"].clone()
    }

    pub async fn charges(&self, user: i64) -> usize {
        let res = self
            .as_user(
                reqwest::Method::GET,
                format!("{}/billing/history", self.billing),
                user,
            )
            .send()
            .await
            .unwrap();
        let entries: Vec<Value> = res.json().await.unwrap();
        entries
            .iter()
            .filter(|e| e.get("order_id").is_some())
            .count()
    }

    pub async fn notifications(&self, user: i64) -> Vec<String> {
        let res = self
            .as_user(
                reqwest::Method::GET,
                format!("{}/notification", self.notification),
                user,
            )
            .send()
            .await
            .unwrap();
        let list: Vec<Value> = res.json().await.unwrap();
        list.iter()
            .map(|n| n["message"].as_str().unwrap().to_string())
            .collect()
    }

    pub async fn create(&self, user: i64, body: Value) -> Response {
        self.as_user(
            reqwest::Method::POST,
            format!("{}/order", self.address),
            user,
        )
        .json(&body)
        .send()
        .await
        .unwrap()
    }

    /// Creates an order of `amount`; returns its id.
    pub async fn order(&self, user: i64, amount: i64) -> i64 {
        let res = self.create(user, json!({ "amount": amount })).await;
        assert_eq!(res.status(), 200);
        res.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
    }

    pub async fn get(&self, user: i64, path: &str) -> Response {
        self.as_user(
            reqwest::Method::GET,
            format!("{}{path}", self.address),
            user,
        )
        .send()
        .await
        .unwrap()
    }

    pub async fn pay(&self, user: i64, id: i64) -> Response {
        self.as_user(
            reqwest::Method::PUT,
            format!("{}/order/{id}/pay", self.address),
            user,
        )
        .send()
        .await
        .unwrap()
    }

    pub async fn pay_ok(&self, user: i64, id: i64) -> Value {
        let res = self.pay(user, id).await;
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }

    pub async fn status_of(&self, user: i64, id: i64) -> String {
        let body: Value = self
            .get(user, &format!("/order/{id}"))
            .await
            .json()
            .await
            .unwrap();
        body["status"].as_str().unwrap().to_string()
    }

    /// Waits (up to 10 s) until `user` has `count` notifications.
    pub async fn wait_for_notifications(&self, user: i64, count: usize) -> Vec<String> {
        for _ in 0..100 {
            let list = self.notifications(user).await;
            if list.len() >= count {
                return list;
            }
            actix_web::rt::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        self.notifications(user).await
    }
}

pub use common::testing::assert_problem;
