//! Who a request is, for logs and for the calls it makes: its `X-Request-Id` (taken from the
//! request when it is sane, generated otherwise, echoed on the response) and its place in a
//! W3C trace ([`TraceContext`]: continued from the request's `traceparent`, or started).
//!
//! The context travels with the request in a tokio task-local: every event logged while
//! serving it is written with both ids (`crate::telemetry`'s line formats read it, in every
//! service), and [`crate::http::PropagateRequestId`] reads it to put both headers on every
//! downstream call. With OTLP export on, the request also runs in an exported `tracing`
//! span.

use actix_web::{
    Error,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::header::{HeaderName, HeaderValue},
    middleware::Next,
};
use tracing::Instrument;

use crate::trace_context::{self, TraceContext};

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The request being served: its id and its hop in the trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    pub id: String,
    pub trace: TraceContext,
}

impl RequestContext {
    /// The span exported for this request (OTLP export on, `telemetry`). This hop takes the
    /// span's ids, so the `traceparent` sent on names the span a tracing backend shows.
    fn exported_span(&mut self) -> tracing::Span {
        let span = tracing::info_span!(
            "request",
            request_id = %self.id,
            trace_id = tracing::field::Empty,
        );
        self.trace = crate::telemetry::export_span(&span, self.trace);
        span.record("trace_id", self.trace.trace_id());
        span
    }
}

tokio::task_local! {
    static CONTEXT: RequestContext;
}

/// The context of the request being served on this task, if any.
pub fn context() -> Option<RequestContext> {
    CONTEXT.try_with(Clone::clone).ok()
}

/// The request id of the request being served on this task, if any.
pub fn current() -> Option<String> {
    CONTEXT.try_with(|c| c.id.clone()).ok()
}

/// `f` of the context of the request being served on this task, if any, without a copy.
pub(crate) fn with_context<R>(f: impl FnOnce(&RequestContext) -> R) -> Option<R> {
    CONTEXT.try_with(f).ok()
}

/// Runs `future` as part of the request `context` (and, exporting, in its span): for a
/// request, and for background work done on behalf of one (a delivery retried later by the
/// outbox relay).
pub async fn scope<F: Future>(mut context: RequestContext, future: F) -> F::Output {
    if crate::telemetry::exporting() {
        let span = context.exported_span();
        return CONTEXT.scope(context, future.instrument(span)).await;
    }
    CONTEXT.scope(context, future).await
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

/// Middleware: sets the request's context, runs the request inside it, and echoes the id on
/// the response.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let id = req
        .headers()
        .get(HEADER)
        .and_then(accept)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let parent = req
        .headers()
        .get(trace_context::HEADER)
        .and_then(|v| v.to_str().ok());
    let context = RequestContext {
        trace: TraceContext::continue_from(parent),
        id,
    };
    let header = HeaderValue::from_str(&context.id).expect("request ids are printable ASCII");
    let mut res = scope(context, next.call(req)).await?;
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

    #[actix_web::test]
    async fn the_context_is_there_inside_its_scope_only() {
        assert_eq!(context(), None);
        let ctx = RequestContext {
            id: "r1".into(),
            trace: TraceContext::root(),
        };
        let seen = scope(ctx.clone(), async { context() }).await;
        assert_eq!(seen, Some(ctx));
        assert_eq!(current(), None);
    }
}
