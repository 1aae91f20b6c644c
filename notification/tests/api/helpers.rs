pub use common::testing::assert_problem;
use common::testing::{Spawned, http_client};
use serde_json::{Value, json};

/// A running notification service with its own database, and one method per endpoint.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    /// The running service: dropping it stops it and removes its database.
    _notification: Spawned,
}

pub async fn spawn_app() -> TestApp {
    let notification = notification::testing::spawn(&[]).await;
    TestApp {
        address: notification.address.clone(),
        client: http_client(),
        _notification: notification,
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

    /// Sends a message that must be accepted.
    pub async fn send_ok(&self, body: &Value) -> Value {
        let res = self.send(body).await;
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
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
