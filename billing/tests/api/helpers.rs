use common::testing::fresh_database_url;
use serde_json::{Value, json};

/// A running billing service with its own database.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub database_url: String,
    handle: actix_web::dev::ServerHandle,
}

/// Starts billing on port 0 with a fresh database.
pub async fn spawn_app() -> TestApp {
    spawn_app_on(fresh_database_url("billing")).await
}

/// Starts billing on an existing database (to test a restart).
pub async fn spawn_app_on(database_url: String) -> TestApp {
    spawn_app_with(database_url, &[]).await
}

/// Starts billing on `database_url` with extra settings.
pub async fn spawn_app_with(database_url: String, extra: &[(&str, &str)]) -> TestApp {
    common::telemetry::init_for_tests();
    let mut vars = vec![
        ("PORT", "0"),
        ("WORKERS", "2"),
        ("DB_POOL_SIZE", "8"),
        ("INTERNAL_TOKEN", common::testing::INTERNAL_TOKEN),
        ("DATABASE_URL", database_url.as_str()),
    ];
    vars.extend_from_slice(extra);
    let settings: billing::Settings = common::settings::load_from(vars).expect("test settings");
    let running = billing::start(settings).expect("billing starts");
    let address = format!("http://127.0.0.1:{}", running.port);
    let handle = running.handle();
    actix_web::rt::spawn(running.into_future());
    TestApp {
        address,
        client: common::testing::http_client(),
        database_url,
        handle,
    }
}

impl TestApp {
    pub async fn stop(&self) {
        self.handle.stop(true).await;
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

    /// Balance equals the ledger sum and is never negative: the invariant of the service.
    pub async fn assert_ledger_matches_balance(&self, user: i64) -> f64 {
        let balance = self.balance(user).await.as_f64().unwrap();
        let entries = self.history(user).await;
        let sum: f64 = entries.iter().map(|e| e["amount"].as_f64().unwrap()).sum();
        assert!(balance >= 0.0, "negative balance {balance}");
        assert!(
            (sum - balance).abs() < 1e-9,
            "ledger sum {sum} != balance {balance}"
        );
        balance
    }
}

pub use common::testing::assert_problem;
