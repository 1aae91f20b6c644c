//! Order's errors, as the client sees them, mapped to problem+json in one place.

use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use common::{
    db::DbError,
    problem::{self, Problem},
};

use crate::clients::BillingError;

pub type Result<T, E = OrderError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("{0}")]
    Invalid(#[from] Problem),
    /// Missing, or someone else's: the same answer, so ids cannot be probed.
    #[error("order not found")]
    NotFound,
    #[error("Idempotency-Key was already used with a different request")]
    KeyConflict,
    /// Billing could not be asked: nothing changed, paying again is safe.
    #[error("billing unavailable; the order is unchanged, retry later")]
    BillingUnavailable(String),
    #[error("billing refused the payment")]
    BillingRefused(String),
    /// Billing answered, but not as agreed: whether it charged is unknown here. Paying again
    /// is safe (billing charges an order once) and gets billing's answer again.
    #[error("billing's answer could not be read; paying again is safe")]
    BillingBadAnswer(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Billing gave no answer to act on: unknown outcome (503, pay again), refused (502), or an
/// answer order cannot read (502).
impl From<BillingError> for OrderError {
    fn from(e: BillingError) -> Self {
        match e {
            BillingError::Unavailable(_) | BillingError::TimedOut(_) => {
                OrderError::BillingUnavailable(e.to_string())
            }
            BillingError::Refused(_) => OrderError::BillingRefused(e.to_string()),
            BillingError::BadAnswer(_) => OrderError::BillingBadAnswer(e.to_string()),
        }
    }
}

impl From<diesel::result::Error> for OrderError {
    fn from(e: diesel::result::Error) -> Self {
        OrderError::Db(DbError::Query(e))
    }
}

impl ResponseError for OrderError {
    fn status_code(&self) -> StatusCode {
        match self {
            OrderError::Invalid(p) => p.status,
            OrderError::NotFound => StatusCode::NOT_FOUND,
            OrderError::KeyConflict => StatusCode::UNPROCESSABLE_ENTITY,
            OrderError::BillingUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            OrderError::BillingRefused(_) | OrderError::BillingBadAnswer(_) => {
                StatusCode::BAD_GATEWAY
            }
            OrderError::Db(e) => e.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        match self {
            OrderError::Invalid(p) => p.to_response(),
            OrderError::Db(e) => e.to_response("order"),
            OrderError::BillingUnavailable(cause)
            | OrderError::BillingRefused(cause)
            | OrderError::BillingBadAnswer(cause) => {
                tracing::error!(%cause, "{self}");
                problem::response(status, self.to_string())
            }
            other => problem::response(status, other.to_string()),
        }
    }
}
