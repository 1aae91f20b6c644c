pub use common::testing::assert_problem;
use common::{
    Money,
    testing::{Spawned, money},
};
use serde_json::{Value, json};

/// A running billing service with its own database, and one method per endpoint.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub billing: Spawned,
}

/// Starts billing on port 0 with a fresh database.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Starts billing with a fresh database and extra settings.
pub async fn spawn_app_with(extra: &[(&str, &str)]) -> TestApp {
    TestApp::new(billing::testing::spawn(extra).await)
}

impl TestApp {
    fn new(billing: Spawned) -> Self {
        Self {
            address: billing.address.clone(),
            client: common::testing::http_client(),
            billing,
        }
    }

    /// Another billing on this one's database, with its default settings (a restart, or a
    /// second reader).
    pub async fn on_same_database(&self) -> TestApp {
        TestApp::new(billing::testing::spawn_on(self.billing.database(), &[]).await)
    }

    pub async fn stop(&self) {
        self.billing.stop().await;
    }

    pub async fn change(&self, user: i64, body: Value) -> reqwest::Response {
        self.client
            .post(format!("{}/billing/change", self.address))
            .header("X-UserId", user)
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    pub async fn change_with_key(&self, user: i64, key: &str, body: Value) -> reqwest::Response {
        self.client
            .post(format!("{}/billing/change", self.address))
            .header("X-UserId", user)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    pub async fn deposit(&self, user: i64, amount: i64) -> Value {
        let res = self.change(user, json!({ "amount": amount })).await;
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }

    pub async fn balance(&self, user: i64) -> Value {
        let res = self.get(user, "/billing/current").await;
        assert_eq!(res.status(), 200);
        res.json::<Value>().await.unwrap()["balance"].clone()
    }

    pub async fn history(&self, user: i64) -> Vec<Value> {
        let res = self.get(user, "/billing/history?limit=1000").await;
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }

    pub async fn get(&self, user: i64, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .header("X-UserId", user)
            .send()
            .await
            .expect("request")
    }

    /// A request without the forward-auth identity headers.
    pub async fn anonymous(&self, method: reqwest::Method, path: &str) -> reqwest::Response {
        self.client
            .request(method, format!("{}{path}", self.address))
            .send()
            .await
            .expect("request")
    }

    pub async fn internal(&self, path: &str, body: Value) -> reqwest::Response {
        self.client
            .post(format!("{}/internal/{path}", self.address))
            .header("X-Internal-Token", common::testing::INTERNAL_TOKEN)
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    pub async fn pay(&self, order_id: i64, user: i64, amount: i64) -> Value {
        let res = self
            .internal(
                "payments",
                json!({ "order_id": order_id, "user_id": user, "amount": amount }),
            )
            .await;
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }

    /// The invariant of the service, in exact minor units: the balance is never negative,
    /// equals the sum of the ledger, and every entry's `balance` is the running sum up to
    /// it. Returns the balance.
    pub async fn assert_ledger_matches_balance(&self, user: i64) -> Money {
        let balance = money(&self.balance(user).await);
        let entries = self.history(user).await;
        assert!(!balance.is_negative(), "negative balance {balance}");
        let mut running = 0_i64;
        // the history is newest first
        for entry in entries.iter().rev() {
            running += money(&entry["amount"]).minor();
            assert_eq!(
                money(&entry["balance"]).minor(),
                running,
                "entry {entry} does not carry the running sum"
            );
        }
        assert_eq!(
            running,
            balance.minor(),
            "ledger sum {} != balance {balance}",
            Money::from_minor(running)
        );
        balance
    }
}
