//! Billing's business metrics, in the service's registry beside the shared ones
//! ([`common::metrics`]).
//!
//! | metric | labels |
//! |---|---|
//! | `shop_payments_total` | outcome: `charged`, `declined`, `replayed`, `conflict` |
//! | `shop_balance_changes_total` | kind: `deposit`, `withdrawal`; outcome: `applied`, `replayed`, `refused` |
//! | `shop_accounts_opened_total` | |
//!
//! The money path's transactions are timed in `shop_db_transaction_duration_seconds` with
//! operation `charge` and `balance_change`.

use common::metrics::{self, Histogram, IntCounter, IntCounterVec, Metrics};

use crate::db::{ChangeOutcome, PaymentOutcome};

pub struct BillingMetrics {
    payments: IntCounterVec,
    changes: IntCounterVec,
    accounts: IntCounter,
    /// `charge` transactions.
    pub charge: Histogram,
    /// `balance_change` transactions.
    pub balance_change: Histogram,
}

impl BillingMetrics {
    pub fn new(registry: &Metrics) -> Self {
        let m = Self {
            payments: metrics::counter(
                "shop_payments_total",
                "Charges of an order asked of billing, by outcome (charged, declined, replayed, conflict).",
                &[("outcome", &["charged", "declined", "replayed", "conflict"])],
            ),
            changes: metrics::counter(
                "shop_balance_changes_total",
                "Deposits and withdrawals asked by users, by kind and outcome (applied, replayed, refused).",
                &[
                    ("kind", &["deposit", "withdrawal"]),
                    ("outcome", &["applied", "replayed", "refused"]),
                ],
            ),
            accounts: metrics::counter_total(
                "shop_accounts_opened_total",
                "Accounts opened (one per registered user).",
            ),
            charge: registry.transaction("charge"),
            balance_change: registry.transaction("balance_change"),
        };
        registry.register(m.payments.clone());
        registry.register(m.changes.clone());
        registry.register(m.accounts.clone());
        m
    }

    pub fn payment(&self, outcome: &PaymentOutcome) {
        let label = match outcome {
            PaymentOutcome::Charged { .. } => "charged",
            PaymentOutcome::Declined { .. } => "declined",
            PaymentOutcome::Replayed { .. } => "replayed",
            PaymentOutcome::Conflict => "conflict",
        };
        self.payments.with_label_values(&[label]).inc();
    }

    /// A deposit (or a withdrawal) that ended in `outcome`.
    pub fn change(&self, deposit: bool, outcome: &ChangeOutcome) {
        let kind = if deposit { "deposit" } else { "withdrawal" };
        let outcome = match outcome {
            ChangeOutcome::Applied(_) => "applied",
            ChangeOutcome::Replayed(_) => "replayed",
            ChangeOutcome::InsufficientFunds { .. }
            | ChangeOutcome::BalanceLimit { .. }
            | ChangeOutcome::KeyConflict => "refused",
        };
        self.changes.with_label_values(&[kind, outcome]).inc();
    }

    pub fn account_opened(&self) {
        self.accounts.inc();
    }
}
