//! Billing's errors, as the client sees them, mapped to problem+json in one place.

use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use common::{
    db::DbError,
    problem::{self, Problem},
};

pub type Result<T, E = BillingError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    /// Bad input: the problem names the field.
    #[error("{0}")]
    Invalid(#[from] Problem),
    /// The deposit would push the balance past the maximum an account may hold.
    #[error("balance limit reached")]
    BalanceLimit,
    /// The Idempotency-Key was used before with another amount or reason.
    #[error("Idempotency-Key was already used with a different request")]
    KeyConflict,
    /// The order was already paid with another amount or by another user.
    #[error("order {0} was already paid with a different amount or user")]
    PaymentConflict(i64),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for BillingError {
    fn from(e: diesel::result::Error) -> Self {
        BillingError::Db(DbError::Query(e))
    }
}

impl ResponseError for BillingError {
    fn status_code(&self) -> StatusCode {
        match self {
            BillingError::Invalid(p) => p.status,
            BillingError::BalanceLimit => StatusCode::UNPROCESSABLE_ENTITY,
            BillingError::PaymentConflict(_) => StatusCode::CONFLICT,
            BillingError::KeyConflict => StatusCode::UNPROCESSABLE_ENTITY,
            BillingError::Db(e) => e.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        match self {
            BillingError::Invalid(p) => p.to_response(),
            BillingError::Db(e) => e.to_response("billing"),
            other => problem::response(status, other.to_string()),
        }
    }
}
