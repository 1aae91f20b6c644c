//! The `Idempotency-Key` request header: a client's promise that requests carrying the same
//! key are the same request, so a retry (after a timeout, a dropped connection) can be
//! answered with the first outcome instead of doing the work twice. What a key is bound to,
//! and where that is stored, is the owning service's business (order: orders; billing:
//! balance changes).

use actix_web::{FromRequest, HttpRequest, dev::Payload};
use futures_util::future::{Ready, ready};

use crate::problem::Problem;

/// A client's `Idempotency-Key`: 1–255 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const HEADER: &str = "Idempotency-Key";

    pub fn parse(raw: &[u8]) -> Result<Self, Problem> {
        let ok =
            !raw.is_empty() && raw.len() <= 255 && raw.iter().all(|b| (0x21..=0x7e).contains(b));
        match (ok, std::str::from_utf8(raw)) {
            (true, Ok(text)) => Ok(IdempotencyKey(text.to_string())),
            _ => Err(Problem::invalid_field(
                Self::HEADER,
                "must be 1 to 255 printable ASCII characters",
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The header, if the request has one; a malformed one is a 400 naming it.
pub struct MaybeIdempotencyKey(pub Option<IdempotencyKey>);

impl FromRequest for MaybeIdempotencyKey {
    type Error = Problem;
    type Future = Ready<Result<Self, Problem>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let key = req
            .headers()
            .get(IdempotencyKey::HEADER)
            .map(|v| IdempotencyKey::parse(v.as_bytes()));
        ready(key.transpose().map(MaybeIdempotencyKey))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_printable_ascii() {
        assert!(IdempotencyKey::parse(b"abc-123").is_ok());
        for bad in [&b""[..], b"has space", "é".as_bytes(), &[b'k'; 256]] {
            assert!(IdempotencyKey::parse(bad).is_err());
        }
    }
}
