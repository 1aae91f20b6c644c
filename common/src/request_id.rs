//! `X-Request-Id`: taken from the request when it is sane, generated otherwise, echoed on the
//! response, written on every log line of the request and sent on every downstream call.
//!
//! The id travels in a tokio task-local for async code and in a thread-local inside
//! [`crate::db::run`]'s blocking closures, so code that logs never has to pass it around.

use std::cell::RefCell;

use actix_web::{
    Error,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::header::{HeaderName, HeaderValue},
    middleware::Next,
};

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static TASK_ID: String;
}

thread_local! {
    static BLOCKING_ID: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The request id of the request being served on this task or thread, if any.
pub fn current() -> Option<String> {
    TASK_ID
        .try_with(Clone::clone)
        .ok()
        .or_else(|| BLOCKING_ID.with(|id| id.borrow().clone()))
}

/// Runs `future` with `id` as the current request id: for background work started on behalf
/// of a request (for example a delivery retried later).
pub async fn scope<F: Future>(id: String, future: F) -> F::Output {
    TASK_ID.scope(id, future).await
}

/// Runs blocking `f` with `id` as the current request id of this thread.
pub(crate) fn with_blocking<T>(id: Option<String>, f: impl FnOnce() -> T) -> T {
    let previous = BLOCKING_ID.with(|slot| slot.replace(id));
    let result = f();
    BLOCKING_ID.with(|slot| *slot.borrow_mut() = previous);
    result
}

/// An incoming id is kept only if it is short printable ASCII: it ends up in log lines and
/// headers, so anything else is replaced rather than trusted.
fn accept(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?;
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(&b));
    ok.then(|| s.to_string())
}

/// Middleware: assigns the id, runs the request inside its scope, echoes it on the response.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let id = req
        .headers()
        .get(HEADER)
        .and_then(accept)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let header = HeaderValue::from_str(&id).expect("request ids are printable ASCII");
    let mut res = TASK_ID.scope(id, next.call(req)).await?;
    res.headers_mut().insert(HEADER, header);
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_ids_are_kept_and_odd_ones_replaced() {
        let keep = HeaderValue::from_static("abc-123_x.y");
        assert_eq!(accept(&keep).as_deref(), Some("abc-123_x.y"));
        assert_eq!(accept(&HeaderValue::from_static("")), None);
        assert_eq!(accept(&HeaderValue::from_static("has space")), None);
        let long = "a".repeat(129);
        assert_eq!(accept(&HeaderValue::from_str(&long).unwrap()), None);
    }

    #[test]
    fn blocking_scope_sets_and_restores_the_id() {
        assert_eq!(current(), None);
        let seen = with_blocking(Some("r1".into()), current);
        assert_eq!(seen.as_deref(), Some("r1"));
        assert_eq!(current(), None);
    }
}
