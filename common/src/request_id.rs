//! Who a request is, for logs and for the calls it makes: its `X-Request-Id` (taken from the
//! request when it is sane, generated otherwise, echoed on the response) and its place in a
//! W3C trace ([`TraceContext`]: continued from the request's `traceparent`, or started).
//!
//! Each request runs inside a `tracing` span, `request{request_id, trace_id}`, so every
//! event it logs carries both, in every service. The context also travels in a tokio
//! task-local, which [`crate::http::PropagateRequestId`] reads to put both headers on every
//! downstream call.

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
    /// The span that events logged on behalf of this request belong to. With OTLP export on
    /// (`telemetry`), it is also the exported span, and this hop takes its ids, so the
    /// `traceparent` sent on names the span a tracing backend shows.
    pub fn span(&mut self) -> tracing::Span {
        if !crate::telemetry::exporting() {
            // the common case: the ids are known now, and the span's fields are written once
            return tracing::info_span!(
                "request",
                request_id = %self.id,
                trace_id = %self.trace.trace_id_hex(),
            );
        }
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

/// Runs `future` as part of the request `context`, in its span: for background work done on
/// behalf of a request (a delivery retried later by the outbox relay).
pub async fn scope<F: Future>(mut context: RequestContext, future: F) -> F::Output {
    let span = context.span();
    CONTEXT.scope(context, future.instrument(span)).await
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

/// Middleware: sets the request's context, runs the request inside it and its span, and
/// echoes the id on the response.
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
