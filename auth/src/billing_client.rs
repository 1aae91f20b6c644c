//! Auth's one call to billing: open the new user's account.

use common::http::PropagateRequestId;
use serde_json::json;

/// Typed client of billing's internal API.
#[derive(Clone)]
pub struct BillingClient {
    http: reqwest::Client,
    accounts_url: String,
}

impl BillingClient {
    pub fn new(http: reqwest::Client, billing_url: &str) -> Self {
        let accounts_url = format!("{}/internal/accounts", billing_url.trim_end_matches('/'));
        Self { http, accounts_url }
    }

    /// Opens the account (idempotent on billing's side). Failure is not fatal for the caller:
    /// billing also opens accounts on first use.
    pub async fn open_account(&self, user_id: i64) -> anyhow::Result<()> {
        let res = self
            .http
            .post(&self.accounts_url)
            .propagate_request_id()
            .json(&json!({ "user_id": user_id }))
            .send()
            .await?;
        if !res.status().is_success() {
            anyhow::bail!("billing answered {}", res.status());
        }
        Ok(())
    }
}
