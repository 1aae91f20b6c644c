//! Billing's domain types: parsed once at the handler edge, valid from then on.

use common::{Money, problem::Problem};

/// The most one account may hold. Deposits beyond it are refused, so no sum can overflow.
pub const MAX_BALANCE: Money = Money::from_minor(1_000_000_000_000 * 100);

/// A user id as other services send it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserId(i64);

impl UserId {
    pub fn parse(field: &str, id: i64) -> Result<Self, Problem> {
        if id > 0 {
            Ok(UserId(id))
        } else {
            Err(Problem::invalid_field(field, "must be a positive integer"))
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// A requested change of the caller's balance: a deposit or a withdrawal, never zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    amount: Money,
    reason: String,
}

impl Change {
    pub const REASON_MAX_CHARS: usize = 200;

    pub fn parse(amount: Money, reason: Option<String>) -> Result<Self, Problem> {
        if amount == Money::ZERO {
            return Err(Problem::invalid_field(
                "amount",
                "must not be 0: positive deposits, negative withdraws",
            ));
        }
        let reason = reason.map(|r| r.trim().to_string()).unwrap_or_default();
        if reason.chars().count() > Self::REASON_MAX_CHARS {
            return Err(Problem::invalid_field(
                "reason",
                "must be at most 200 characters",
            ));
        }
        if reason.chars().any(char::is_control) {
            return Err(Problem::invalid_field(
                "reason",
                "must not contain control characters",
            ));
        }
        let reason = match reason.is_empty() {
            false => reason,
            true if amount.is_positive() => "deposit".to_string(),
            true => "withdrawal".to_string(),
        };
        Ok(Change { amount, reason })
    }

    pub fn amount(&self) -> Money {
        self.amount
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// A charge for an order, asked for by `order`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payment {
    pub order_id: i64,
    pub user_id: UserId,
    pub amount: Money,
}

impl Payment {
    pub fn parse(order_id: i64, user_id: i64, amount: Money) -> Result<Self, Problem> {
        if order_id <= 0 {
            return Err(Problem::invalid_field(
                "order_id",
                "must be a positive integer",
            ));
        }
        if !amount.is_positive() {
            return Err(Problem::invalid_field("amount", "must be greater than 0"));
        }
        Ok(Payment {
            order_id,
            user_id: UserId::parse("user_id", user_id)?,
            amount,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_never_zero() {
        let err = Change::parse(Money::ZERO, None).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("amount"));
    }

    #[test]
    fn the_reason_defaults_by_direction() {
        assert_eq!(
            Change::parse(Money::units(5), None).unwrap().reason(),
            "deposit"
        );
        assert_eq!(
            Change::parse(Money::units(-5), Some(" ".into()))
                .unwrap()
                .reason(),
            "withdrawal"
        );
        assert_eq!(
            Change::parse(Money::units(5), Some(" gift ".into()))
                .unwrap()
                .reason(),
            "gift"
        );
    }

    #[test]
    fn long_or_binary_reasons_are_refused() {
        assert!(Change::parse(Money::units(5), Some("x".repeat(201))).is_err());
        assert!(Change::parse(Money::units(5), Some("é".repeat(200))).is_ok());
        assert!(Change::parse(Money::units(5), Some("a\u{0}b".into())).is_err());
    }

    #[test]
    fn payments_need_positive_ids_and_amounts() {
        assert!(Payment::parse(1, 1, Money::units(1)).is_ok());
        assert_eq!(
            Payment::parse(0, 1, Money::units(1))
                .unwrap_err()
                .field
                .as_deref(),
            Some("order_id")
        );
        assert_eq!(
            Payment::parse(1, -1, Money::units(1))
                .unwrap_err()
                .field
                .as_deref(),
            Some("user_id")
        );
        assert_eq!(
            Payment::parse(1, 1, Money::units(-1))
                .unwrap_err()
                .field
                .as_deref(),
            Some("amount")
        );
    }
}
