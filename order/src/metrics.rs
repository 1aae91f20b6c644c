//! Order's business metrics, in the service's registry beside the shared ones
//! ([`common::metrics`]).
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `shop_orders_created_total` | | new orders (not replays of a creation) |
//! | `shop_order_transitions_total` | from, to | status changes (`Pending` → `Processing`…) |
//! | `shop_order_pays_total` | outcome: `charged`, `declined`, `billing_unavailable`, `billing_error`, `not_found`, `error` | pays, as the user saw them |
//! | `shop_outbox_deliveries_total` | outcome: `delivered`, `failed` | delivery attempts to notification |
//! | `shop_outbox_abandoned_total` | | messages given up after `OUTBOX_MAX_ATTEMPTS` |
//! | `shop_outbox_pending_messages` | | undelivered, not abandoned (read from the database at scrape: the same on every replica, so `max`, not `sum`) |
//! | `shop_outbox_oldest_pending_age_seconds` | | age of the oldest of them, 0 when none |
//! | `shop_outbox_abandoned_messages` | | abandoned and still undelivered (read at scrape) |
//!
//! `record_outcome` transactions are timed in `shop_db_transaction_duration_seconds`.

use common::{
    db::DbError,
    metrics::{self, Gauge, Histogram, IntCounter, IntCounterVec, IntGauge, Metrics},
};

use crate::{domain::Status, error::OrderError};

pub struct OrderMetrics {
    created: IntCounter,
    transitions: IntCounterVec,
    pays: IntCounterVec,
    deliveries: IntCounterVec,
    abandoned: IntCounter,
    /// `record_outcome` transactions.
    pub record_outcome: Histogram,
}

impl OrderMetrics {
    /// Registers order's metrics, and the outbox gauges read from `registry`'s pool at each
    /// scrape.
    pub fn new(registry: &Metrics) -> Self {
        let m = Self {
            created: metrics::counter_total("shop_orders_created_total", "Orders created."),
            transitions: metrics::counter(
                "shop_order_transitions_total",
                "Order status changes, by the status before and after.",
                &[("from", &[]), ("to", &[])],
            ),
            pays: metrics::counter(
                "shop_order_pays_total",
                "Pays of an order, by outcome (charged, declined, billing_unavailable, billing_error, not_found, error).",
                &[(
                    "outcome",
                    &[
                        "charged",
                        "declined",
                        "billing_unavailable",
                        "billing_error",
                        "not_found",
                        "error",
                    ],
                )],
            ),
            deliveries: metrics::counter(
                "shop_outbox_deliveries_total",
                "Attempts to deliver an outbox message to notification, by outcome (delivered, failed).",
                &[("outcome", &["delivered", "failed"])],
            ),
            abandoned: metrics::counter_total(
                "shop_outbox_abandoned_total",
                "Outbox messages given up after OUTBOX_MAX_ATTEMPTS failed deliveries.",
            ),
            record_outcome: registry.transaction("record_outcome"),
        };
        for (from, to) in [
            (Status::Pending, Status::Processing),
            (Status::Pending, Status::Failed),
            (Status::Failed, Status::Processing),
        ] {
            m.transitions
                .with_label_values(&[from.as_str(), to.as_str()]);
        }
        registry.register(m.created.clone());
        registry.register(m.transitions.clone());
        registry.register(m.pays.clone());
        registry.register(m.deliveries.clone());
        registry.register(m.abandoned.clone());

        let pending = IntGauge::new(
            "shop_outbox_pending_messages",
            "Outbox messages not yet delivered to notification (abandoned ones excluded). Read from the database: every replica reports the same number, so aggregate with max.",
        )
        .expect("valid metric");
        let oldest = Gauge::new(
            "shop_outbox_oldest_pending_age_seconds",
            "Age of the oldest outbox message not yet delivered; 0 when there is none. The same on every replica (max).",
        )
        .expect("valid metric");
        let abandoned_now = IntGauge::new(
            "shop_outbox_abandoned_messages",
            "Outbox messages given up and never delivered: each needs an operator. The same on every replica (max).",
        )
        .expect("valid metric");
        registry.register(pending.clone());
        registry.register(oldest.clone());
        registry.register(abandoned_now.clone());
        registry.on_scrape(move |conn| {
            let stats = crate::db::outbox_stats(conn).map_err(DbError::from)?;
            pending.set(stats.pending);
            abandoned_now.set(stats.abandoned);
            let age = stats
                .oldest_pending
                .map(|at| (crate::db::now() - at).as_seconds_f64().max(0.0));
            oldest.set(age.unwrap_or(0.0));
            Ok(())
        });
        m
    }

    pub fn created(&self) {
        self.created.inc();
    }

    /// An order moved from `from` to `to` (nothing is counted when they are equal).
    pub fn transition(&self, from: Status, to: Status) {
        if from != to {
            self.transitions
                .with_label_values(&[from.as_str(), to.as_str()])
                .inc();
        }
    }

    /// How a pay ended: `Ok(paid)` with billing's verdict, or the error the user got.
    pub fn pay(&self, result: Result<bool, &OrderError>) {
        let outcome = match result {
            Ok(true) => "charged",
            Ok(false) => "declined",
            Err(OrderError::BillingUnavailable(_)) => "billing_unavailable",
            Err(OrderError::BillingRefused(_) | OrderError::BillingBadAnswer(_)) => "billing_error",
            Err(OrderError::NotFound) => "not_found",
            Err(_) => "error",
        };
        self.pays.with_label_values(&[outcome]).inc();
    }

    pub fn delivery(&self, delivered: bool) {
        let outcome = if delivered { "delivered" } else { "failed" };
        self.deliveries.with_label_values(&[outcome]).inc();
    }

    pub fn abandoned(&self) {
        self.abandoned.inc();
    }
}
