//! Paying an order: the use case behind `PUT /order/{id}/pay`, free of HTTP.
//!
//! 1. Find the caller's order (missing or someone else's: [`OrderError::NotFound`]).
//! 2. Ask billing to charge it. Billing charges an order id at most once, so this step may be
//!    repeated freely — by the client's retry policy, or by the user paying again after a 503.
//! 3. Record billing's verdict and queue the message announcing it, in one transaction
//!    (`Processing` is final: a late decline cannot overwrite it).
//! 4. Send the message now; if notification is down it stays in the outbox and the relay
//!    delivers it later ([`outbox`]).
//!
//! Nothing here knows about requests or JSON: [`Payments::pay`] returns a [`PayOutcome`] and
//! the handler turns it into the answer.

use common::{
    Identity,
    db::{self, Pool},
};

use std::sync::Arc;

use crate::{
    clients::{BillingClient, PaymentAnswer},
    db::{OrderRow, Payer},
    domain::Status,
    error::{OrderError, Result},
    metrics::OrderMetrics,
    outbox::{Outbox, Sender},
};

/// What paying needs: the order database, billing, the outbox (notification) and the
/// metrics.
pub struct Payments {
    pub pool: Pool,
    pub billing: BillingClient,
    pub outbox: Outbox,
    pub metrics: Arc<OrderMetrics>,
}

/// How a pay ended, when it reached a verdict.
#[derive(Debug)]
pub struct PayOutcome {
    /// The order after the pay: `Processing` if charged (now or before), `Failed` if
    /// declined.
    pub order: OrderRow,
    /// Billing's verdict, with the balance after it.
    pub payment: PaymentAnswer,
    /// Whether the user has been told.
    pub delivery: Delivery,
}

/// Where the message announcing the order's status is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Notification stored it (now, or at an earlier pay).
    Delivered { message: String },
    /// Notification could not be reached; the outbox relay will deliver it.
    Queued { message: String },
    /// No message: the order's status has none queued (cannot happen after a verdict, but
    /// an order paid before the outbox existed would have none).
    Nothing,
}

impl Payments {
    /// Pays `order_id` for `customer` (see the module documentation for the steps).
    pub async fn pay(&self, customer: &Identity, order_id: i64) -> Result<PayOutcome> {
        let result = self.pay_uncounted(customer, order_id).await;
        self.metrics
            .pay(result.as_ref().map(|outcome| outcome.payment.is_paid()));
        result
    }

    async fn pay_uncounted(&self, customer: &Identity, order_id: i64) -> Result<PayOutcome> {
        let user_id = customer.user_id;
        let order = db::run(&self.pool, move |conn| {
            crate::db::find(conn, user_id, order_id).map_err(OrderError::from)
        })
        .await?
        .ok_or(OrderError::NotFound)?;

        let payment = self.billing.pay(user_id, order.id, order.amount()).await?;
        let verdict = if payment.is_paid() {
            Status::Processing
        } else {
            Status::Failed
        };

        let email = customer.email.clone();
        let context = common::request_id::context();
        let request_id = context.as_ref().map(|c| c.id.clone());
        let traceparent = context.map(|c| c.trace.to_string());
        let before = order.status;
        let timer = self.metrics.record_outcome.clone();
        let (order, message) = db::run(&self.pool, move |conn| {
            let _timed = timer.start_timer();
            let payer = Payer {
                user_id,
                email: &email,
                request_id: request_id.as_deref(),
                traceparent: traceparent.as_deref(),
            };
            crate::db::record_outcome(conn, &payer, order, verdict).map_err(OrderError::from)
        })
        .await?;
        self.metrics.transition(before, order.status);
        tracing::info!(
            order_id,
            user_id,
            billing = ?payment.status,
            replayed = payment.replayed,
            status = %order.status,
            "order paid"
        );

        let delivery = match message {
            None => Delivery::Nothing,
            Some(m) if m.delivered_at.is_some() => Delivery::Delivered { message: m.message },
            Some(m) => {
                if self.outbox.deliver(&m, Sender::Pay).await {
                    Delivery::Delivered { message: m.message }
                } else {
                    Delivery::Queued { message: m.message }
                }
            }
        };
        Ok(PayOutcome {
            order,
            payment,
            delivery,
        })
    }
}
