//! Auth's one call to billing: open the new user's account.

use common::{
    http::{CallFailure, PropagateRequestId},
    metrics::Downstream,
    retry::RetryPolicy,
};
use serde_json::json;

/// The operation's name in `shop_downstream_*{target="billing"}`.
const OPEN_ACCOUNT: &str = "open_account";

/// Typed client of billing's internal API.
#[derive(Clone)]
pub struct BillingClient {
    http: reqwest::Client,
    accounts_url: String,
    retry: RetryPolicy,
    calls: Downstream,
}

impl BillingClient {
    pub fn new(
        http: reqwest::Client,
        billing_url: &str,
        retry: RetryPolicy,
        calls: Downstream,
    ) -> Self {
        let accounts_url = format!("{}/internal/accounts", billing_url.trim_end_matches('/'));
        Self {
            http,
            accounts_url,
            retry,
            calls,
        }
    }

    /// Opens the account (idempotent on billing's side, so a call that failed fast is
    /// retried). Failure is not fatal for the caller: billing also opens accounts on first use.
    pub async fn open_account(&self, user_id: i64) -> anyhow::Result<()> {
        self.calls
            .with_retries(
                OPEN_ACCOUNT,
                &self.retry,
                &format!("opening the account of user {user_id}"),
                || self.open_account_once(user_id),
                |e: &CallFailure| e.retryable,
            )
            .await
            .map_err(|e| anyhow::anyhow!("billing: {e}"))
    }

    async fn open_account_once(&self, user_id: i64) -> Result<(), CallFailure> {
        let request = self
            .http
            .post(&self.accounts_url)
            .propagate_request_id()
            .json(&json!({ "user_id": user_id }));
        let res = self.calls.send(OPEN_ACCOUNT, request).await?;
        match res.status() {
            s if s.is_success() => Ok(()),
            s => Err(CallFailure::status(s)),
        }
    }
}
