//! Order's typed clients of billing and notification. Each call carries the request id (and
//! the service credential every client sends), goes only to an internal endpoint, and is
//! bounded by the client's connect and total timeouts; payments are also retried when they
//! fail fast. Who the user is travels in the body: internal endpoints read no identity
//! headers.

use common::{
    Money,
    http::{CallFailure, PropagateRequestId},
    metrics::Downstream,
    retry::RetryPolicy,
};
use serde::Deserialize;
use serde_json::json;

use crate::db::OutboxRow;

// The `status` of `POST /internal/payments`: billing writes it from its own enum, and any
// other value is refused when the answer is read. Order's pay answer passes it on.
/// Billing's verdict: `OK` charged (by this pay or an earlier one), `ERROR` declined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[schema(as = PaymentStatus)]
pub enum PaymentStatus {
    /// Charged, by this call or an earlier one for the same order.
    #[serde(rename = "OK")]
    Charged,
    /// Not charged: insufficient funds.
    #[serde(rename = "ERROR")]
    Declined,
}

/// Billing's answer to a payment.
#[derive(Debug, Clone, Deserialize)]
pub struct PaymentAnswer {
    pub status: PaymentStatus,
    /// May pass what one request may move (the balance cap is far above it).
    #[serde(deserialize_with = "Money::deserialize_answer")]
    pub balance: Money,
    /// Why billing declined (`Declined` only).
    #[serde(default)]
    pub message: Option<String>,
    /// The order was charged by an earlier call; this one changed nothing.
    #[serde(default)]
    pub replayed: bool,
}

impl PaymentAnswer {
    pub fn is_paid(&self) -> bool {
        self.status == PaymentStatus::Charged
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
    /// A 2xx answer that is not a payment answer (another `status`, a missing field): the two
    /// services disagree on the contract. Not retried: the same call gets the same answer.
    #[error("billing's answer is not a payment answer: {0}")]
    BadAnswer(String),
}

#[derive(Clone)]
pub struct BillingClient {
    http: reqwest::Client,
    payments_url: String,
    retry: RetryPolicy,
    calls: Downstream,
}

/// The operation's name in `shop_downstream_*{target="billing"}`.
const PAY: &str = "pay";

impl BillingClient {
    pub fn new(
        http: reqwest::Client,
        billing_url: &str,
        retry: RetryPolicy,
        calls: Downstream,
    ) -> Self {
        Self {
            http,
            payments_url: format!("{}/internal/payments", billing_url.trim_end_matches('/')),
            retry,
            calls,
        }
    }

    /// Charges `amount` for `order_id` to `user_id` (once per order, whatever the retries).
    /// A call that failed fast is retried by the client's [`RetryPolicy`]: billing keys the
    /// charge by the order, so a repeat after an unknown outcome answers the first charge.
    pub async fn pay(
        &self,
        user_id: i64,
        order_id: i64,
        amount: Money,
    ) -> Result<PaymentAnswer, BillingError> {
        self.calls
            .with_retries(
                PAY,
                &self.retry,
                &format!("payment of order {order_id}"),
                || self.pay_once(user_id, order_id, amount),
                |e| matches!(e, BillingError::Unavailable(_)),
            )
            .await
    }

    async fn pay_once(
        &self,
        user_id: i64,
        order_id: i64,
        amount: Money,
    ) -> Result<PaymentAnswer, BillingError> {
        let request = self
            .http
            .post(&self.payments_url)
            .propagate_request_id()
            .json(&json!({ "order_id": order_id, "user_id": user_id, "amount": amount }));
        let res = self
            .calls
            .send(PAY, request)
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
        // a body cut short is as unknown as no answer; a whole body that does not parse is not
        let body = res
            .bytes()
            .await
            .map_err(|e| BillingError::from(CallFailure::from(e)))?;
        serde_json::from_slice(&body).map_err(|e| {
            BillingError::BadAnswer(format!("{e}: {}", String::from_utf8_lossy(&body)))
        })
    }
}

/// Why a message did not land in notification.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Refused, reset, timed out or 5xx: notification may be down; the outbox tries again.
    #[error("notification unavailable: {0}")]
    Unavailable(#[from] CallFailure),
    /// Notification refused the message itself (4xx): trying again will not help, but the
    /// outbox still retries (bounded by `OUTBOX_MAX_ATTEMPTS`) in case it is a rollout.
    #[error("notification refused the message: {status}: {body}")]
    Refused {
        status: reqwest::StatusCode,
        body: String,
    },
}

#[derive(Clone)]
pub struct NotificationClient {
    http: reqwest::Client,
    notifications_url: String,
    calls: Downstream,
}

impl NotificationClient {
    pub fn new(http: reqwest::Client, notification_url: &str, calls: Downstream) -> Self {
        let base = notification_url.trim_end_matches('/');
        Self {
            http,
            notifications_url: format!("{base}/internal/notifications"),
            calls,
        }
    }

    /// Sends one outbox message, counted under `operation`. Notification stores it once per
    /// key, so sending again after an unknown outcome is safe.
    pub async fn send(
        &self,
        message: &OutboxRow,
        operation: &'static str,
    ) -> Result<(), SendError> {
        // the request id and trace of the pay that queued it, also when the relay sends it
        // much later (it runs each delivery in the context of the pay: outbox::spawn_relay)
        let req = self
            .http
            .post(&self.notifications_url)
            .propagate_request_id();
        let req = req.json(&json!({
            "user_id": message.user_id,
            "email": message.email,
            "order_id": message.order_id,
            "message": message.message,
            "key": message.idempotency_key,
        }));
        let res = self
            .calls
            .send(operation, req)
            .await
            .map_err(CallFailure::from)?;
        match res.status() {
            s if s.is_success() => Ok(()),
            s if s.is_server_error() => Err(CallFailure::status(s).into()),
            status => Err(SendError::Refused {
                status,
                body: res.text().await.unwrap_or_default(),
            }),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_answers_are_read_strictly() {
        let paid: PaymentAnswer =
            serde_json::from_str(r#"{"status":"OK","balance":20.5,"replayed":true}"#).unwrap();
        assert_eq!(paid.status, PaymentStatus::Charged);
        assert!(paid.is_paid() && paid.replayed);
        assert_eq!(paid.balance, Money::from_minor(2050));
        let declined: PaymentAnswer = serde_json::from_str(
            r#"{"status":"ERROR","balance":1,"message":"insufficient funds"}"#,
        )
        .unwrap();
        assert_eq!(declined.status, PaymentStatus::Declined);
        assert!(!declined.is_paid() && !declined.replayed);
        for unknown in ["ok", "PAID", "", "Error"] {
            let body = format!(r#"{{"status":"{unknown}","balance":1}}"#);
            assert!(
                serde_json::from_str::<PaymentAnswer>(&body).is_err(),
                "{unknown:?} must not be read as an outcome"
            );
        }
    }
}
