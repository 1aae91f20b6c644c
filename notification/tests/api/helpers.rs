use common::testing::{fresh_database_url, http_client};
use serde_json::{Value, json};

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
}

pub async fn spawn_app() -> TestApp {
    common::telemetry::init_for_tests();
    let settings: notification::Settings = common::settings::load_from([
        ("PORT", "0"),
        ("WORKERS", "2"),
        ("INTERNAL_TOKEN", common::testing::INTERNAL_TOKEN),
        ("DATABASE_URL", fresh_database_url("notification").as_str()),
    ])
    .unwrap();
    let running = notification::start(settings).unwrap();
    let address = format!("http://127.0.0.1:{}", running.port);
    actix_web::rt::spawn(running.into_future());
    TestApp {
        address,
        client: http_client(),
    }
}

/// The body order sends for "order #`order_id` `status`".
pub fn message(user_id: i64, order_id: i64, status: &str) -> Value {
    json!({
        "user_id": user_id,
        "email": "ada@example.com",
        "order_id": order_id,
        "message": format!("order #{order_id} {status}"),
        "key": format!("order-{order_id}-{status}"),
    })
}

impl TestApp {
    pub async fn send(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}/internal/notifications", self.address))
            .header("X-Internal-Token", common::testing::INTERNAL_TOKEN)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn list(&self, user_id: i64) -> Vec<Value> {
        let res = self
            .client
            .get(format!("{}/notification", self.address))
            .header("X-UserId", user_id)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }
}

pub use common::testing::assert_problem;
