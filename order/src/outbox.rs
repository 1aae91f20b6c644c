//! Delivery of the outbox: messages to notification, written in the same transaction as the
//! status change they announce, sent until they land.
//!
//! A pay sends its message at once ([`deliver`]); whatever could not be sent then is picked up
//! by [`spawn_relay`], which retries due messages with exponential backoff and jitter. Every
//! failure is logged with its attempt count and the time of the next try. Delivery is
//! at-least-once; notification stores each key once, so the user sees each message once.

use std::{sync::Arc, time::Duration};

use common::{
    db::{self, DbError, Pool},
    request_id::RequestContext,
    trace_context::TraceContext,
};

use crate::{
    clients::NotificationClient,
    db::{OutboxRow, abandon, claim, due_messages, mark_delivered, mark_failed},
    metrics::OrderMetrics,
};

/// Who sends a message: the pay that queued it, or the relay retrying it later. The calls
/// are told apart in `shop_downstream_*{target="notification"}` by this operation name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    Pay,
    Relay,
}

impl Sender {
    pub fn operation(self) -> &'static str {
        match self {
            Sender::Pay => "notify",
            Sender::Relay => "relay_notify",
        }
    }
}

/// What delivering needs: the order database (where the outbox is), notification, the retry
/// policy and the metrics each attempt is counted in.
#[derive(Clone)]
pub struct Outbox {
    pub pool: Pool,
    pub client: NotificationClient,
    pub policy: RetryPolicy,
    pub metrics: Arc<OrderMetrics>,
}

/// How delivery is retried: the backoff cap, and the attempts after which a message is set
/// aside (logged as an error) instead of retried forever.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_backoff: Duration,
    pub max_attempts: i32,
}

/// When to try again after `attempts` failures: 1 s, 2 s, 4 s … capped at `max`, ±20 %
/// jitter so many stuck messages do not retry in lockstep.
pub fn backoff(attempts: i32, max: Duration) -> Duration {
    let backoff = common::retry::Backoff {
        base: Duration::from_secs(1),
        max,
    };
    backoff.delay(u32::try_from(attempts.saturating_add(1)).unwrap_or(1))
}

impl Outbox {
    /// Sends one message and records the result; true if it landed.
    pub async fn deliver(&self, message: &OutboxRow, sender: Sender) -> bool {
        let delivered = deliver(self, message, sender).await;
        self.metrics.delivery(delivered);
        delivered
    }
}

async fn deliver(outbox: &Outbox, message: &OutboxRow, sender: Sender) -> bool {
    let (pool, policy, id) = (&outbox.pool, outbox.policy, message.id);
    match outbox.client.send(message, sender.operation()).await {
        Ok(()) => {
            if let Err(e) = db::run(pool, move |conn| {
                mark_delivered(conn, id).map_err(DbError::from)
            })
            .await
            {
                // delivered but not recorded: it will be sent again, and stored once
                tracing::warn!(
                    key = %message.idempotency_key,
                    error = %common::problem::chain(&e),
                    "message delivered but not marked"
                );
            }
            // a late delivery (the relay) is worth an info line; the usual one is not
            if message.attempts > 0 {
                tracing::info!(
                    order_id = message.order_id,
                    text = %message.message,
                    failed_attempts = message.attempts,
                    "delivered to notification after failed attempts"
                );
            } else {
                tracing::debug!(
                    order_id = message.order_id,
                    text = %message.message,
                    "delivered to notification"
                );
            }
            true
        }
        Err(error) => {
            let retry_in = backoff(message.attempts, policy.max_backoff);
            let wait =
                chrono::Duration::from_std(retry_in).unwrap_or(chrono::Duration::seconds(60));
            let text = error.to_string();
            let attempts = db::run(pool, move |conn| {
                mark_failed(conn, id, &text, wait).map_err(DbError::from)
            })
            .await
            .unwrap_or(message.attempts + 1);
            if attempts >= policy.max_attempts {
                let _ = db::run(pool, move |conn| abandon(conn, id).map_err(DbError::from)).await;
                outbox.metrics.abandoned();
                tracing::error!(
                    order_id = message.order_id,
                    text = %message.message,
                    outbox_id = id,
                    key = %message.idempotency_key,
                    attempts,
                    %error,
                    "giving up on a message: not delivered after the last attempt"
                );
            } else {
                tracing::warn!(
                    order_id = message.order_id,
                    text = %message.message,
                    attempt = attempts,
                    %error,
                    retry_in_s = retry_in.as_secs_f64(),
                    "message not delivered; will retry"
                );
            }
            false
        }
    }
}

/// Retries due messages every `every`, for as long as the server runs.
pub fn spawn_relay(outbox: Outbox, every: Duration, lease: Duration) {
    let pool = outbox.pool.clone();
    let lease = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(30));
    actix_web::rt::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let due =
                match db::run(&pool, |conn| due_messages(conn, 100).map_err(DbError::from)).await {
                    Ok(due) => due,
                    Err(e) => {
                        tracing::warn!(
                            error = %common::problem::chain(&e),
                            "outbox relay cannot read the outbox"
                        );
                        continue;
                    }
                };
            for message in due {
                let id = message.id;
                let claimed = db::run(&pool, move |conn| {
                    claim(conn, id, lease).map_err(DbError::from)
                })
                .await;
                if !matches!(claimed, Ok(true)) {
                    continue; // another replica has it, or it was just delivered
                }
                // a retry runs as part of the pay that queued the message: its request id, and
                // a new span in its trace, on the log lines and on the call to notification
                let context = RequestContext {
                    id: message
                        .request_id
                        .clone()
                        .unwrap_or_else(|| format!("outbox-{id}")),
                    trace: TraceContext::continue_from(message.traceparent.as_deref()),
                };
                common::request_id::scope(context, outbox.deliver(&message, Sender::Relay)).await;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let max = Duration::from_secs(300);
        for (attempts, base) in [(0, 1.0), (1, 2.0), (2, 4.0), (5, 32.0), (30, 300.0)] {
            let got = backoff(attempts, max).as_secs_f64();
            assert!(
                got >= base * 0.8 - 1e-9 && got <= base * 1.2 + 1e-9,
                "{attempts}: {got}"
            );
        }
    }
}
