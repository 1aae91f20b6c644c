//! Notification's business metric, in the service's registry beside the shared ones
//! ([`common::metrics`]): `shop_notifications_total{outcome}`, where `stored` is a new
//! message, `replayed` one sent again (an outbox retry after an unknown outcome), and
//! `key_reused` a key sent with another message (refused, 409).

use common::metrics::{self, IntCounterVec, Metrics};

pub struct NotificationMetrics {
    notifications: IntCounterVec,
}

impl NotificationMetrics {
    pub fn new(registry: &Metrics) -> Self {
        let notifications = metrics::counter(
            "shop_notifications_total",
            "Messages sent to notification, by outcome (stored, replayed, key_reused).",
            &[("outcome", &["stored", "replayed", "key_reused"])],
        );
        registry.register(notifications.clone());
        Self { notifications }
    }

    pub fn received(&self, outcome: &'static str) {
        self.notifications.with_label_values(&[outcome]).inc();
    }
}
