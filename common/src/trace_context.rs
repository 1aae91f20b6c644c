//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the `traceparent` header that
//! ties one user action's requests in every service into one trace.
//!
//! `traceparent: 00-<trace id: 32 hex>-<parent span id: 16 hex>-<flags: 2 hex>`. A service
//! continues the trace of a valid incoming header (its own span gets a new id, the trace id
//! stays), or starts one; every call it makes carries the trace on, with its own span as the
//! parent. The outbox keeps the header of the pay that queued a message, so a delivery made
//! minutes later by the relay still belongs to that pay's trace.

use std::fmt;

use rand::Rng;

pub const HEADER: &str = "traceparent";

/// Where a request is in its trace: the trace, this hop's span, and whether the trace is
/// sampled (carried on unchanged; nothing here samples).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: u128,
    span_id: u64,
    /// The caller's span, when the trace was continued from a `traceparent`.
    parent_span_id: Option<u64>,
    sampled: bool,
}

impl TraceContext {
    /// A new trace, sampled: this request is its first hop.
    pub fn root() -> Self {
        let mut rng = rand::rng();
        Self {
            trace_id: rng.random_range(1..=u128::MAX),
            span_id: rng.random_range(1..=u64::MAX),
            parent_span_id: None,
            sampled: true,
        }
    }

    /// The span of this hop in the trace of `parent` (a `traceparent` value), or a new trace
    /// when `parent` is missing or not a valid header.
    pub fn continue_from(parent: Option<&str>) -> Self {
        match parent.and_then(Self::parse) {
            Some(parent) => Self {
                span_id: rand::rng().random_range(1..=u64::MAX),
                parent_span_id: Some(parent.span_id),
                ..parent
            },
            None => Self::root(),
        }
    }

    /// Reads a `traceparent` value. Version 00 must be exactly four fields; a later version
    /// may append fields (read the first four, as the specification asks). All-zero ids, the
    /// invalid version ff and anything but lowercase hex are refused.
    pub fn parse(header: &str) -> Option<Self> {
        let mut fields = header.trim().split('-');
        let (version, trace, span, flags) = (
            fields.next()?,
            fields.next()?,
            fields.next()?,
            fields.next()?,
        );
        let lower_hex = |s: &str, len: usize| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if !lower_hex(version, 2) || version == "ff" || (version == "00" && fields.next().is_some())
        {
            return None;
        }
        if !lower_hex(trace, 32) || !lower_hex(span, 16) || !lower_hex(flags, 2) {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let span_id = u64::from_str_radix(span, 16).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        (trace_id != 0 && span_id != 0).then_some(Self {
            trace_id,
            span_id,
            parent_span_id: None,
            sampled: flags & 1 == 1,
        })
    }

    /// The trace id as it appears in logs and headers (32 lowercase hex digits).
    pub fn trace_id(&self) -> String {
        self.trace_id_hex().to_string()
    }

    /// The trace id, written as [`Self::trace_id`] without allocating (a log field).
    pub fn trace_id_hex(&self) -> impl fmt::Display + use<> {
        struct Hex(u128);
        impl fmt::Display for Hex {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:032x}", self.0)
            }
        }
        Hex(self.trace_id)
    }

    /// This hop's span id (16 lowercase hex digits).
    pub fn span_id(&self) -> String {
        format!("{:016x}", self.span_id)
    }

    /// The ids as numbers: trace, this span, the caller's span; and whether it is sampled.
    pub fn ids(&self) -> (u128, u64, Option<u64>, bool) {
        (
            self.trace_id,
            self.span_id,
            self.parent_span_id,
            self.sampled,
        )
    }

    /// This hop with the trace and span ids an exporter assigned (OTLP: the exported span's).
    pub fn with_ids(self, trace_id: u128, span_id: u64, sampled: bool) -> Self {
        Self {
            trace_id,
            span_id,
            sampled,
            ..self
        }
    }
}

/// The `traceparent` value of a call made from this span: same trace, this span as parent.
impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_header_is_read_and_written_back_the_same() {
        let ctx = TraceContext::parse(EXAMPLE).unwrap();
        assert_eq!(ctx.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(ctx.span_id(), "00f067aa0ba902b7");
        assert_eq!(ctx.to_string(), EXAMPLE);
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert_eq!(
            TraceContext::parse(unsampled).unwrap().to_string(),
            unsampled
        );
    }

    #[test]
    fn invalid_headers_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad:?}");
        }
        // a later version may add fields after the four it shares with 00
        let future = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever";
        assert!(TraceContext::parse(future).is_some());
    }

    #[test]
    fn a_hop_keeps_the_trace_and_gets_its_own_span() {
        let hop = TraceContext::continue_from(Some(EXAMPLE));
        assert_eq!(hop.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(hop.span_id(), "00f067aa0ba902b7");
        let fresh = TraceContext::continue_from(Some("garbage"));
        assert_ne!(fresh.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(fresh.to_string().ends_with("-01"));
    }
}
