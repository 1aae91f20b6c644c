//! Who is calling: the identity the ingress copied from auth's forward-auth answer.
//!
//! Behind the ingress (or the local gateway) a protected request carries five headers that
//! auth set and the ingress wrote over anything the client sent. Handlers that need a user
//! take [`Identity`]; a request without one is answered 401 before the handler runs.

use actix_web::{
    FromRequest, HttpRequest,
    dev::Payload,
    http::{
        StatusCode,
        header::{HeaderMap, HeaderName, HeaderValue},
    },
};
use futures_util::future::{Ready, ready};

use crate::problem::Problem;

pub const USER_ID: HeaderName = HeaderName::from_static("x-userid");
pub const USER: HeaderName = HeaderName::from_static("x-user");
pub const EMAIL: HeaderName = HeaderName::from_static("x-email");
pub const FIRST_NAME: HeaderName = HeaderName::from_static("x-first-name");
pub const LAST_NAME: HeaderName = HeaderName::from_static("x-last-name");

/// The five identity headers, in the order of the ingress's `auth-response-headers`.
pub const HEADERS: [HeaderName; 5] = [USER_ID, USER, EMAIL, FIRST_NAME, LAST_NAME];

/// The authenticated user of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: i64,
    pub login: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
}

impl Identity {
    /// Reads the identity headers; `None` unless `X-UserId` is a positive integer.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let text = |name: &HeaderName| {
            headers
                .get(name)
                .and_then(|v| String::from_utf8(v.as_bytes().to_vec()).ok())
                .unwrap_or_default()
        };
        let user_id = text(&USER_ID)
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|id| *id > 0)?;
        Some(Self {
            user_id,
            login: text(&USER),
            email: text(&EMAIL),
            first_name: text(&FIRST_NAME),
            last_name: text(&LAST_NAME),
        })
    }

    /// The headers as auth sends them to the ingress and services send them to each other.
    /// Values are UTF-8 bytes; validation upstream keeps control characters out.
    pub fn to_headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let value =
            |s: &str| HeaderValue::from_bytes(s.as_bytes()).unwrap_or(HeaderValue::from_static(""));
        vec![
            (USER_ID, HeaderValue::from(self.user_id)),
            (USER, value(&self.login)),
            (EMAIL, value(&self.email)),
            (FIRST_NAME, value(&self.first_name)),
            (LAST_NAME, value(&self.last_name)),
        ]
    }
}

impl FromRequest for Identity {
    type Error = Problem;
    type Future = Ready<Result<Self, Problem>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Identity::from_headers(req.headers()).ok_or_else(|| {
            Problem::new(StatusCode::UNAUTHORIZED, "not logged in: POST /login first")
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Identity {
        Identity {
            user_id: 7,
            login: "alice".into(),
            email: "alice@example.com".into(),
            first_name: "Zoë".into(),
            last_name: "O'Neil".into(),
        }
    }

    #[test]
    fn headers_round_trip_including_non_ascii_names() {
        let mut headers = HeaderMap::new();
        for (name, value) in sample().to_headers() {
            headers.insert(name, value);
        }
        assert_eq!(Identity::from_headers(&headers), Some(sample()));
    }

    #[test]
    fn a_missing_or_bogus_user_id_is_no_identity() {
        let mut headers = HeaderMap::new();
        assert_eq!(Identity::from_headers(&headers), None);
        for bogus in ["", "abc", "0", "-3", "1.5"] {
            headers.insert(USER_ID, HeaderValue::from_str(bogus).unwrap());
            assert_eq!(Identity::from_headers(&headers), None, "{bogus}");
        }
    }
}
