//! Order's domain types.

use std::fmt;

use common::{Money, problem::Problem};
use diesel::{
    backend::Backend,
    deserialize::{self, FromSql},
    serialize::{self, Output, ToSql},
    sql_types::Text,
};
use sha2::{Digest, Sha256};

// Stored as its name in a TEXT column: reading any other text is an error, never a guess —
// a status this binary does not know must not turn a paid order back into a payable one.
/// Where an order is. `Pending` → `Processing` (paid) or `Failed` (declined); a `Failed` order
/// may be paid again; `Processing` is final.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    serde::Serialize,
    utoipa::ToSchema,
    diesel::expression::AsExpression,
    diesel::deserialize::FromSqlRow,
)]
#[diesel(sql_type = Text)]
#[schema(as = OrderStatus)]
pub enum Status {
    Pending,
    Processing,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "Pending",
            Status::Processing => "Processing",
            Status::Failed => "Failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "Pending" => Some(Status::Pending),
            "Processing" => Some(Status::Processing),
            "Failed" => Some(Status::Failed),
            _ => None,
        }
    }
}

/// Written as its name, on either backend.
impl<DB> ToSql<Text, DB> for Status
where
    DB: Backend,
    str: ToSql<Text, DB>,
{
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, DB>) -> serialize::Result {
        self.as_str().to_sql(out)
    }
}

/// Read back from its name; any other text fails the query.
impl<DB> FromSql<Text, DB> for Status
where
    DB: Backend,
    String: FromSql<Text, DB>,
{
    fn from_sql(bytes: DB::RawValue<'_>) -> deserialize::Result<Self> {
        let text = String::from_sql(bytes)?;
        Status::parse(&text).ok_or_else(|| format!("unknown order status {text:?}").into())
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The message announcing that order `id` reached `status` (the texts the contract fixes).
pub fn status_message(id: i64, status: Status) -> String {
    format!("order #{id} {status}")
}

/// The outbox and notification key of that message: one message per status change.
pub fn status_message_key(id: i64, status: Status) -> String {
    format!("order-{id}-{status}")
}

/// A new order as asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub amount: Money,
    pub description: String,
}

impl NewOrder {
    pub const DESCRIPTION_MAX_CHARS: usize = 500;

    pub fn parse(amount: Money, description: Option<String>) -> Result<Self, Problem> {
        if !amount.is_positive() {
            return Err(Problem::invalid_field("amount", "must be greater than 0"));
        }
        let description = description.unwrap_or_default().trim().to_string();
        if description.chars().count() > Self::DESCRIPTION_MAX_CHARS {
            return Err(Problem::invalid_field(
                "description",
                "must be at most 500 characters",
            ));
        }
        if description
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err(Problem::invalid_field(
                "description",
                "must not contain control characters",
            ));
        }
        Ok(NewOrder {
            amount,
            description,
        })
    }

    /// What an idempotency key is bound to: the same key must come with the same request.
    pub fn fingerprint(&self) -> String {
        let mut hash = Sha256::new();
        hash.update(self.amount.minor().to_be_bytes());
        hash.update(self.description.as_bytes());
        hex::encode(hash.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_messages_match_the_contract() {
        for s in [Status::Pending, Status::Processing, Status::Failed] {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("paid"), None);
        assert_eq!(status_message(7, Status::Processing), "order #7 Processing");
        assert_eq!(status_message(7, Status::Failed), "order #7 Failed");
        assert_eq!(status_message_key(7, Status::Failed), "order-7-Failed");
    }

    #[test]
    fn orders_need_a_positive_amount_and_a_sane_description() {
        assert!(NewOrder::parse(Money::units(1), None).is_ok());
        assert_eq!(
            NewOrder::parse(Money::ZERO, None)
                .unwrap_err()
                .field
                .as_deref(),
            Some("amount")
        );
        assert_eq!(
            NewOrder::parse(Money::units(-1), None)
                .unwrap_err()
                .field
                .as_deref(),
            Some("amount")
        );
        let long = Some("d".repeat(501));
        assert_eq!(
            NewOrder::parse(Money::units(1), long)
                .unwrap_err()
                .field
                .as_deref(),
            Some("description")
        );
        assert!(NewOrder::parse(Money::units(1), Some("a\u{0}".into())).is_err());
    }

    #[test]
    fn fingerprints_differ_when_the_request_differs() {
        let a = NewOrder::parse(Money::units(30), Some("book".into())).unwrap();
        let b = NewOrder::parse(Money::units(30), Some("book ".into())).unwrap();
        let c = NewOrder::parse(Money::units(31), Some("book".into())).unwrap();
        assert_eq!(
            a.fingerprint(),
            b.fingerprint(),
            "surrounding spaces do not count"
        );
        assert_ne!(a.fingerprint(), c.fingerprint());
    }
}
