//! Auth's one call to billing: open the new user's account.

use common::{
    http::{CallFailure, PropagateRequestId},
    retry::RetryPolicy,
};
use serde_json::json;

/// Typed client of billing's internal API.
#[derive(Clone)]
pub struct BillingClient {
    http: reqwest::Client,
    accounts_url: String,
    retry: RetryPolicy,
}

impl BillingClient {
    pub fn new(http: reqwest::Client, billing_url: &str, retry: RetryPolicy) -> Self {
        let accounts_url = format!("{}/internal/accounts", billing_url.trim_end_matches('/'));
        Self {
            http,
            accounts_url,
            retry,
        }
    }

    /// Opens the account (idempotent on billing's side, so a call that failed fast is
    /// retried). Failure is not fatal for the caller: billing also opens accounts on first use.
    pub async fn open_account(&self, user_id: i64) -> anyhow::Result<()> {
        self.retry
            .run(
                &format!("opening the account of user {user_id}"),
                || self.open_account_once(user_id),
                |e| e.retryable,
            )
            .await
            .map_err(|e| anyhow::anyhow!("billing: {e}"))
    }

    async fn open_account_once(&self, user_id: i64) -> Result<(), CallFailure> {
        let res = self
            .http
            .post(&self.accounts_url)
            .propagate_request_id()
            .json(&json!({ "user_id": user_id }))
            .send()
            .await?;
        match res.status() {
            s if s.is_success() => Ok(()),
            s => Err(CallFailure::status(s)),
        }
    }
}
