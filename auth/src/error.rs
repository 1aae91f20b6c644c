//! Auth's errors, as the client sees them, mapped to problem+json in one place.

use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use common::{
    db::DbError,
    problem::{self, Problem},
};

pub type Result<T, E = AuthError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Bad input: the problem names the field.
    #[error("{0}")]
    Invalid(#[from] Problem),
    /// Unknown login or wrong password: one message for both, so logins cannot be probed.
    #[error("invalid login or password")]
    InvalidCredentials,
    #[error("not logged in: POST /login first")]
    NotLoggedIn,
    /// Too many failed logins for this login: try again in this many seconds.
    #[error("too many failed logins for this login; try again in {0} s")]
    TooManyAttempts(u64),
    #[error("login '{0}' is already taken")]
    LoginTaken(String),
    #[error("user not found")]
    UserNotFound,
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<diesel::result::Error> for AuthError {
    fn from(e: diesel::result::Error) -> Self {
        AuthError::Db(DbError::Query(e))
    }
}

impl ResponseError for AuthError {
    fn status_code(&self) -> StatusCode {
        match self {
            AuthError::Invalid(p) => p.status,
            AuthError::InvalidCredentials | AuthError::NotLoggedIn => StatusCode::UNAUTHORIZED,
            AuthError::LoginTaken(_) => StatusCode::CONFLICT,
            AuthError::UserNotFound => StatusCode::NOT_FOUND,
            AuthError::TooManyAttempts(_) => StatusCode::TOO_MANY_REQUESTS,
            AuthError::Db(e) => e.status_code(),
            AuthError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        match self {
            AuthError::Invalid(p) => p.to_response(),
            AuthError::Db(e) => e.to_response("auth"),
            AuthError::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "internal error");
                problem::response(status, problem::internal_detail())
            }
            AuthError::TooManyAttempts(seconds) => {
                let mut res = problem::response(status, self.to_string());
                res.headers_mut().insert(
                    actix_web::http::header::RETRY_AFTER,
                    actix_web::http::header::HeaderValue::from(*seconds),
                );
                res
            }
            other => problem::response(status, other.to_string()),
        }
    }
}
