//! Notification's errors, as the client sees them, mapped to problem+json in one place.

use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use common::{
    db::DbError,
    problem::{self, Problem},
};

pub type Result<T, E = NotificationError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum NotificationError {
    #[error("{0}")]
    Invalid(#[from] Problem),
    /// The key was used before for a different message.
    #[error("idempotency key '{0}' was already used for a different message")]
    KeyReused(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for NotificationError {
    fn from(e: diesel::result::Error) -> Self {
        NotificationError::Db(DbError::Query(e))
    }
}

impl ResponseError for NotificationError {
    fn status_code(&self) -> StatusCode {
        match self {
            NotificationError::Invalid(p) => p.status,
            NotificationError::KeyReused(_) => StatusCode::CONFLICT,
            NotificationError::Db(e) => e.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            NotificationError::Invalid(p) => p.to_response(),
            NotificationError::Db(e) => e.to_response("notification"),
            other => problem::response(self.status_code(), other.to_string()),
        }
    }
}
