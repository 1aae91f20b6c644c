use chrono::NaiveDateTime;
pub use common::testing::assert_problem;
use common::{
    db::AnyConnection,
    testing::{Spawned, http_client},
};
use diesel::{
    Connection, QueryableByName, RunQueryDsl,
    sql_types::{Bool, Integer, Timestamp},
};
use reqwest::{Method, Response};
use serde_json::{Value, json};

/// order, plus the billing and notification it calls, and one method per endpoint.
pub struct TestApp {
    pub address: String,
    /// Where the test's own deposits and ledger reads go.
    pub billing: String,
    /// Where the test reads the user's notifications.
    pub notification: String,
    pub client: reqwest::Client,
    pub order: Spawned,
    /// The peers `spawn_app` started, kept running as long as the app.
    peers: Vec<Spawned>,
}

/// order calling `billing` and `notification` (which the test runs, or leaves down), with
/// extra settings.
pub async fn spawn_order(billing: &str, notification: &str, extra: &[(&str, &str)]) -> TestApp {
    let order = order::testing::spawn(billing, notification, extra).await;
    TestApp {
        address: order.address.clone(),
        billing: billing.to_string(),
        notification: notification.to_string(),
        client: http_client(),
        order,
        peers: Vec::new(),
    }
}

/// order with a billing and a notification of its own.
pub async fn spawn_app() -> TestApp {
    let billing = billing::testing::spawn(&[]).await;
    let notification = notification::testing::spawn(&[]).await;
    let mut app = spawn_order(&billing.address, &notification.address, &[]).await;
    app.peers = vec![billing, notification];
    app
}

/// One of order's outbox rows, read from its database: what the relay has done with a
/// message and will do next.
#[derive(Debug, QueryableByName)]
pub struct OutboxRow {
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
    #[diesel(sql_type = Bool)]
    pub delivered: bool,
    #[diesel(sql_type = Bool)]
    pub abandoned: bool,
    /// UTC, as order writes it.
    #[diesel(sql_type = Timestamp)]
    pub next_attempt_at: NaiveDateTime,
}

impl TestApp {
    pub fn as_user(&self, method: Method, url: String, user: i64) -> reqwest::RequestBuilder {
        self.client
            .request(method, url)
            .header("X-UserId", user)
            .header("X-User", format!("user{user}"))
            .header("X-Email", format!("user{user}@example.com"))
    }

    /// A request of `user` to `path` of the service at `base`; the answer must be a 200.
    async fn ok(&self, method: Method, base: &str, path: &str, user: i64) -> Response {
        let res = self
            .as_user(method, format!("{base}{path}"), user)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
        res
    }

    pub async fn deposit(&self, user: i64, amount: i64) {
        let res = self
            .as_user(
                Method::POST,
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
            .ok(Method::GET, &self.billing, "/billing/current", user)
            .await;
        res.json::<Value>().await.unwrap()["balance"].clone()
    }

    /// How many of the user's ledger entries are payments of an order.
    pub async fn charges(&self, user: i64) -> usize {
        let res = self
            .ok(Method::GET, &self.billing, "/billing/history", user)
            .await;
        let entries: Vec<Value> = res.json().await.unwrap();
        entries
            .iter()
            .filter(|e| e.get("order_id").is_some())
            .count()
    }

    /// The user's notifications, newest first.
    pub async fn notifications(&self, user: i64) -> Vec<String> {
        let res = self
            .ok(Method::GET, &self.notification, "/notification", user)
            .await;
        let list: Vec<Value> = res.json().await.unwrap();
        list.iter()
            .map(|n| n["message"].as_str().unwrap().to_string())
            .collect()
    }

    pub async fn create(&self, user: i64, body: Value) -> Response {
        self.as_user(Method::POST, format!("{}/order", self.address), user)
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
        self.as_user(Method::GET, format!("{}{path}", self.address), user)
            .send()
            .await
            .unwrap()
    }

    /// A request without the forward-auth identity headers.
    pub async fn anonymous(&self, method: Method, path: &str) -> Response {
        self.client
            .request(method, format!("{}{path}", self.address))
            .send()
            .await
            .unwrap()
    }

    pub async fn pay(&self, user: i64, id: i64) -> Response {
        self.as_user(
            Method::PUT,
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
        let res = self.get(user, &format!("/order/{id}")).await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        body["status"].as_str().unwrap().to_string()
    }

    /// The outbox row of the message keyed `key` (`order-<id>-<status>`).
    pub fn outbox(&self, key: &str) -> OutboxRow {
        // the key is the test's own; checked, so it is safe to quote
        assert!(
            key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
            "{key}"
        );
        let mut conn = AnyConnection::establish(self.order.database_url()).unwrap();
        diesel::sql_query(format!(
            "SELECT attempts, delivered_at IS NOT NULL AS delivered, \
                    abandoned_at IS NOT NULL AS abandoned, next_attempt_at \
             FROM outbox WHERE idempotency_key = '{key}'"
        ))
        .get_result(&mut conn)
        .unwrap_or_else(|e| panic!("outbox row {key}: {e}"))
    }

    /// Waits until `user` has `count` notifications (at most 10 s, a bound no healthy run
    /// comes near), and returns them.
    pub async fn wait_for_notifications(&self, user: i64, count: usize) -> Vec<String> {
        let what = format!("{count} notifications for user {user}");
        common::testing::wait_until(&what, std::time::Duration::from_secs(10), || async {
            let list = self.notifications(user).await;
            (list.len() >= count).then_some(list)
        })
        .await
    }
}
