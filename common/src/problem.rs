//! RFC 9457 problem details (`application/problem+json`) for every protocol error.
//!
//! Services build their responses with [`response`] from their one `ResponseError` impl.
//! [`middleware`] catches the error responses nobody wrote a body for (unknown route,
//! wrong method, extractor rejections) and gives them the same shape, so a client never
//! sees an empty or HTML error.

use actix_web::{
    HttpResponse, ResponseError,
    body::MessageBody,
    dev::ServiceResponse,
    http::{StatusCode, header},
    middleware::{ErrorHandlerResponse, ErrorHandlers},
};
use problem_details::ProblemDetails;
use serde::Serialize;

pub const CONTENT_TYPE: &str = "application/problem+json";

/// Extension members we add to a problem: the request field at fault, when there is one.
#[derive(Debug, Default, Serialize)]
pub struct Extensions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// A problem ready to be sent. `detail` is shown to the client: never put a cause chain,
/// SQL or a secret in it (log those instead).
#[derive(Debug)]
pub struct Problem {
    pub status: StatusCode,
    pub detail: String,
    pub field: Option<String>,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            field: None,
        }
    }

    /// 400 for one request field; `detail` says what is wrong with it.
    pub fn invalid_field(field: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        let field = field.into();
        Self {
            status: StatusCode::BAD_REQUEST,
            detail: format!("{field}: {detail}"),
            field: Some(field),
        }
    }

    pub fn to_response(&self) -> HttpResponse {
        let status = http::StatusCode::from_u16(self.status.as_u16())
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        // `about:blank`: the status code says it all; `title` is its reason phrase (RFC 9457 §4.2.1)
        let body = ProblemDetails::from_status_code(status)
            .with_type(problem_details::ProblemType::default())
            .with_detail(self.detail.clone())
            .with_extensions(Extensions {
                field: self.field.clone(),
            });
        HttpResponse::build(self.status)
            .content_type(CONTENT_TYPE)
            .json(body)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.detail)
    }
}

impl std::error::Error for Problem {}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        self.to_response()
    }
}

/// Shorthand for a problem response.
pub fn response(status: StatusCode, detail: impl Into<String>) -> HttpResponse {
    Problem::new(status, detail).to_response()
}

/// The detail sent for a 5xx: opaque on purpose; the cause is in the log under the same
/// request id.
pub fn internal_detail() -> String {
    match crate::request_id::current() {
        Some(id) => format!("internal error; quote request id {id} when reporting it"),
        None => "internal error".to_string(),
    }
}

/// An error and all its causes on one line, for the log: `a: b: c`.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Middleware turning any 4xx/5xx that is not already problem+json into one.
pub fn middleware<B: MessageBody + 'static>() -> ErrorHandlers<B> {
    ErrorHandlers::new().default_handler(|res: ServiceResponse<B>| {
        let is_problem = res
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(CONTENT_TYPE.as_bytes()));
        if is_problem {
            return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
        }
        let status = res.status();
        let detail = match status {
            StatusCode::NOT_FOUND => "no such resource".to_string(),
            StatusCode::METHOD_NOT_ALLOWED => {
                format!("method {} is not allowed here", res.request().method())
            }
            s if s.is_server_error() => internal_detail(),
            s => s
                .canonical_reason()
                .unwrap_or("request rejected")
                .to_string(),
        };
        let (req, old) = res.into_parts();
        let mut new = Problem::new(status, detail).to_response();
        // keep headers such as Allow or Set-Cookie that the original response carried
        for (name, value) in old.headers() {
            if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                new.headers_mut().insert(name.clone(), value.clone());
            }
        }
        Ok(ErrorHandlerResponse::Response(
            ServiceResponse::new(req, new).map_into_right_body(),
        ))
    })
}
