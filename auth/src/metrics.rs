//! Auth's business metrics, in the service's registry beside the shared ones
//! ([`common::metrics`]).
//!
//! | metric | labels |
//! |---|---|
//! | `shop_registrations_total` | |
//! | `shop_logins_total` | outcome: `ok`, `refused` (wrong login or password), `throttled` (429) |
//! | `shop_sessions_revoked_total` | |

use common::metrics::{self, IntCounter, IntCounterVec, Metrics};

pub struct AuthMetrics {
    registrations: IntCounter,
    logins: IntCounterVec,
    revoked: IntCounter,
}

/// How a login ended.
#[derive(Debug, Clone, Copy)]
pub enum Login {
    Ok,
    Refused,
    Throttled,
}

impl AuthMetrics {
    pub fn new(registry: &Metrics) -> Self {
        let m = Self {
            registrations: metrics::counter_total("shop_registrations_total", "Users registered."),
            logins: metrics::counter(
                "shop_logins_total",
                "Login attempts, by outcome (ok, refused, throttled).",
                &[("outcome", &["ok", "refused", "throttled"])],
            ),
            revoked: metrics::counter_total(
                "shop_sessions_revoked_total",
                "Sessions ended by a logout.",
            ),
        };
        registry.register(m.registrations.clone());
        registry.register(m.logins.clone());
        registry.register(m.revoked.clone());
        m
    }

    pub fn registered(&self) {
        self.registrations.inc();
    }

    pub fn login(&self, outcome: Login) {
        let label = match outcome {
            Login::Ok => "ok",
            Login::Refused => "refused",
            Login::Throttled => "throttled",
        };
        self.logins.with_label_values(&[label]).inc();
    }

    pub fn revoked(&self) {
        self.revoked.inc();
    }
}
