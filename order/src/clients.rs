//! Order's typed clients of billing and notification. Each call carries the user's identity
//! and the request id, goes only to an internal endpoint, and is bounded by the client's
//! connect and total timeouts; payments are also retried when they fail fast.

use common::{
    Identity, Money,
    http::{CallFailure, PropagateRequestId},
    identity,
    retry::RetryPolicy,
};
use serde::Deserialize;
use serde_json::json;

use crate::db::OutboxRow;

/// Billing's answer to a payment.
#[derive(Debug, Clone, Deserialize)]
pub struct PaymentAnswer {
    /// `OK` (charged now or before) or `ERROR` (declined).
    pub status: String,
    /// May pass what one request may move (the balance cap is far above it).
    #[serde(deserialize_with = "Money::deserialize_answer")]
    pub balance: Money,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub replayed: bool,
}

impl PaymentAnswer {
    pub fn is_paid(&self) -> bool {
        self.status == "OK"
    }
}

/// Why billing gave no answer to act on.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    /// Unreachable, reset or 5xx: nothing is known to have happened; retrying is safe
    /// because billing charges an order at most once.
    #[error("billing unavailable: {0}")]
    Unavailable(String),
    /// No answer within `HTTP_TIMEOUT`: as unknown as [`Self::Unavailable`], but the call
    /// used its whole budget, so it is not retried here.
    #[error("billing did not answer in time: {0}")]
    TimedOut(String),
    /// Billing refused the request itself (4xx): a bug or a data conflict, not retryable.
    #[error("billing refused the payment: {0}")]
    Refused(String),
}

#[derive(Clone)]
pub struct BillingClient {
    http: reqwest::Client,
    payments_url: String,
    retry: RetryPolicy,
}

impl BillingClient {
    pub fn new(http: reqwest::Client, billing_url: &str, retry: RetryPolicy) -> Self {
        Self {
            http,
            payments_url: format!("{}/internal/payments", billing_url.trim_end_matches('/')),
            retry,
        }
    }

    /// Charges `amount` for `order_id` to the caller (once per order, whatever the retries).
    /// A call that failed fast is retried by the client's [`RetryPolicy`]: billing keys the
    /// charge by the order, so a repeat after an unknown outcome answers the first charge.
    pub async fn pay(
        &self,
        who: &Identity,
        order_id: i64,
        amount: Money,
    ) -> Result<PaymentAnswer, BillingError> {
        self.retry
            .run(
                &format!("payment of order {order_id}"),
                || self.pay_once(who, order_id, amount),
                |e| matches!(e, BillingError::Unavailable(_)),
            )
            .await
    }

    async fn pay_once(
        &self,
        who: &Identity,
        order_id: i64,
        amount: Money,
    ) -> Result<PaymentAnswer, BillingError> {
        let mut req = self.http.post(&self.payments_url).propagate_request_id();
        for (name, value) in who.to_headers() {
            req = req.header(name.as_str(), value.as_bytes());
        }
        let res = req
            .json(&json!({ "order_id": order_id, "user_id": who.user_id, "amount": amount }))
            .send()
            .await
            .map_err(|e| BillingError::from(CallFailure::from(e)))?;
        let status = res.status();
        if status.is_server_error() {
            return Err(BillingError::Unavailable(format!(
                "billing answered {status}"
            )));
        }
        if !status.is_success() {
            let body = res.text().await.unwrap_or_default();
            return Err(BillingError::Refused(format!("{status}: {body}")));
        }
        res.json::<PaymentAnswer>()
            .await
            .map_err(|e| BillingError::from(CallFailure::from(e)))
    }
}

#[derive(Clone)]
pub struct NotificationClient {
    http: reqwest::Client,
    notifications_url: String,
}

impl NotificationClient {
    pub fn new(http: reqwest::Client, notification_url: &str) -> Self {
        let base = notification_url.trim_end_matches('/');
        Self {
            http,
            notifications_url: format!("{base}/internal/notifications"),
        }
    }

    /// Sends one outbox message. Notification stores it once per key, so sending again after
    /// an unknown outcome is safe.
    pub async fn send(&self, message: &OutboxRow) -> Result<(), String> {
        let mut req = self
            .http
            .post(&self.notifications_url)
            .header(identity::USER_ID.as_str(), message.user_id)
            .header(identity::EMAIL.as_str(), message.email.as_bytes());
        // the request id of the pay that queued it, also when a retry sends it much later
        if let Some(id) = &message.request_id {
            req = req.header(common::request_id::HEADER.as_str(), id.as_str());
        }
        let res = req
            .json(&json!({
                "user_id": message.user_id,
                "email": message.email,
                "order_id": message.order_id,
                "message": message.message,
                "key": message.idempotency_key,
            }))
            .send()
            .await
            .map_err(|e| CallFailure::from(e).cause)?;
        match res.status() {
            s if s.is_success() => Ok(()),
            s => Err(format!(
                "notification answered {s}: {}",
                res.text().await.unwrap_or_default()
            )),
        }
    }
}

impl From<CallFailure> for BillingError {
    fn from(failure: CallFailure) -> Self {
        match failure.timed_out {
            true => Self::TimedOut(failure.cause),
            false => Self::Unavailable(failure.cause),
        }
    }
}
