//! A JSON body extractor whose every rejection is a problem+json naming what is wrong.
//!
//! actix's own `web::Json` answers a wrong type with "Json deserialize error: invalid type…
//! at line 1 column 12"; clients want to know *which field*. This one deserializes through
//! `serde_path_to_error`, so `{"amount": "x"}` becomes
//! `400 {"detail": "amount: invalid type: string \"x\", expected a JSON number", "field": "amount"}`.

use actix_web::{
    FromRequest, HttpRequest,
    dev::Payload,
    http::{StatusCode, header},
    web,
};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use crate::problem::Problem;

/// A request body deserialized from JSON. `Content-Type` may be absent (curl users forget
/// it) or any JSON type; anything else is 415.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = Problem;
    type Future = LocalBoxFuture<'static, Result<Self, Problem>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let content_type_ok = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(is_json_content_type);
        let config = req.app_data::<crate::http::BodyConfig>().copied();
        let timeout = config.map_or(std::time::Duration::from_secs(5), |c| c.timeout);
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            if !content_type_ok {
                return Err(Problem::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "expected Content-Type: application/json",
                ));
            }
            let bytes = tokio::time::timeout(timeout, bytes).await.map_err(|_| {
                Problem::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!("request body not received within {timeout:?}"),
                )
            })?;
            let bytes = bytes.map_err(|e| {
                if e.as_response_error().status_code() == StatusCode::PAYLOAD_TOO_LARGE {
                    let limit = config
                        .map(|c| format!(" of {} bytes", c.limit))
                        .unwrap_or_default();
                    Problem::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("request body exceeds the limit{limit}"),
                    )
                } else {
                    Problem::new(StatusCode::BAD_REQUEST, "could not read the request body")
                }
            })?;
            parse(&bytes).map(Json)
        })
    }
}

fn is_json_content_type(value: &str) -> bool {
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence.ends_with("+json")
}

/// Deserializes `bytes`, naming the field at fault on error.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "request body is empty; expected a JSON object",
        ));
    }
    // serde would also accept a struct written as an array (`[5000, "x"]`); this API only
    // speaks objects, so say so rather than guess.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() && first != Some(&b'{') {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "request body must be a JSON object",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        describe(path, &inner)
    })?;
    de.end().map_err(|e| describe(".".into(), &e))?;
    Ok(value)
}

fn describe(path: String, error: &serde_json::Error) -> Problem {
    use serde_json::error::Category;
    let full = error.to_string();
    let position = format!(" at line {} column {}", error.line(), error.column());
    let message = full.strip_suffix(&position).unwrap_or(&full);
    match error.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            Problem::new(StatusCode::BAD_REQUEST, format!("malformed JSON: {full}"))
        }
        Category::Data => {
            // serde reports a missing field at the parent's path; name the field itself.
            let missing = message
                .strip_prefix("missing field `")
                .and_then(|rest| rest.strip_suffix('`'));
            let field = match (missing, path.as_str()) {
                (Some(name), ".") => name.to_string(),
                (Some(name), parent) => format!("{parent}.{name}"),
                (None, ".") => return Problem::new(StatusCode::BAD_REQUEST, message.to_string()),
                (None, path) => path.to_string(),
            };
            let message = if missing.is_some() {
                "is required"
            } else {
                message
            };
            Problem::invalid_field(field, message)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::Money;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Change {
        amount: Money,
        reason: Option<String>,
    }

    fn field_of(body: &str) -> (StatusCode, Option<String>, String) {
        let p = parse::<Change>(body.as_bytes()).unwrap_err();
        (p.status, p.field, p.detail)
    }

    #[test]
    fn names_the_field_of_a_wrong_type() {
        let (status, field, detail) = field_of(r#"{"amount": "abc"}"#);
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(field.as_deref(), Some("amount"));
        assert!(
            detail.starts_with("amount: invalid type: string"),
            "{detail}"
        );
        assert!(!detail.contains("line 1"), "{detail}");
    }

    #[test]
    fn names_a_missing_field() {
        let (_, field, detail) = field_of(r#"{"reason": "x"}"#);
        assert_eq!(field.as_deref(), Some("amount"));
        assert_eq!(detail, "amount: is required");
    }

    #[test]
    fn names_the_field_of_a_bad_amount() {
        let (_, field, detail) = field_of(r#"{"amount": 1.001}"#);
        assert_eq!(field.as_deref(), Some("amount"));
        assert!(detail.contains("at most 2 decimal places"), "{detail}");
    }

    #[test]
    fn reports_malformed_json_and_empty_bodies() {
        let (status, field, detail) = field_of(r#"{"amount": "#);
        assert_eq!((status, field), (StatusCode::BAD_REQUEST, None));
        assert!(detail.starts_with("malformed JSON"), "{detail}");
        assert!(field_of("  ").2.contains("empty"));
        assert!(
            field_of(r#"{"amount": 1} trailing"#)
                .2
                .contains("malformed JSON")
        );
        assert!(field_of("[1]").2.contains("must be a JSON object"));
        assert!(field_of("5000").2.contains("must be a JSON object"));
    }

    #[test]
    fn accepts_json_content_types_only() {
        assert!(is_json_content_type("application/json"));
        assert!(is_json_content_type("application/json; charset=utf-8"));
        assert!(is_json_content_type("application/merge-patch+json"));
        assert!(!is_json_content_type("text/plain"));
        assert!(!is_json_content_type("application/x-www-form-urlencoded"));
    }
}
