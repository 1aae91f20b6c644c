//! Logs: `tracing` events, written by `tracing-subscriber` to stderr.
//!
//! - `LOG_FORMAT=json`: one JSON object per line (what a log collector wants; the Kubernetes
//!   manifests set it), with the event's fields and the request it was logged for:
//!   `{"timestamp":…,"level":"INFO","target":"billing::routes","message":"charged",
//!   "order_id":7,"amount":"30.00",…,"span":{"name":"request","request_id":…,"trace_id":…}}`.
//! - otherwise (the default): one human-readable line per event,
//!   `2026-12-01T06:00:00.123456Z  INFO request{request_id=… trace_id=…}: billing::routes:
//!   charged order_id=7 amount=30.00 …`.
//!
//! `RUST_LOG` filters by target and level, default `info,actix_server=warn`
//! (`RUST_LOG=debug`, `RUST_LOG=info,order=debug`). Records of crates that log through the
//! `log` facade (actix, r2d2) arrive as events too. Values are fields, never parts of the
//! message, and no field ever holds a password, a session id or a token.
//!
//! OTLP: a binary built with the cargo feature `otlp` (`cargo build --features common/otlp`,
//! or the Dockerfile's `--build-arg FEATURES=common/otlp`) exports every request span to the
//! OpenTelemetry collector at `OTEL_EXPORTER_OTLP_ENDPOINT` (HTTP/protobuf,
//! `…/v1/traces`), as service `OTEL_SERVICE_NAME` (default: the binary's name), in the trace
//! its `traceparent` names. Unset, nothing is exported and nothing is added to a request; a
//! build without the feature does not contain the exporter at all.

use std::io::IsTerminal;

use tracing::Subscriber;
use tracing_subscriber::{
    Layer, filter::Targets, fmt::MakeWriter, layer::SubscriberExt, registry::LookupSpan,
    util::SubscriberInitExt,
};

use crate::trace_context::TraceContext;

mod format;

/// The filter when `RUST_LOG` is unset.
pub const DEFAULT_FILTER: &str = "info,actix_server=warn";

/// How log lines are written (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

impl Format {
    /// `LOG_FORMAT`: `json`, or `text` (the default when unset).
    pub fn from_env() -> Result<Self, String> {
        match std::env::var("LOG_FORMAT").as_deref() {
            Err(_) | Ok("" | "text") => Ok(Format::Text),
            Ok("json") => Ok(Format::Json),
            Ok(other) => Err(format!(
                "invalid setting LOG_FORMAT: {other:?} (text or json)"
            )),
        }
    }
}

/// The `RUST_LOG` filter, or the default; a filter that does not parse is reported on
/// stderr (logging is not up yet) and the default used.
fn filter() -> Targets {
    let default = || DEFAULT_FILTER.parse().expect("the default filter parses");
    match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => spec.parse().unwrap_or_else(|e| {
            eprintln!("invalid setting RUST_LOG={spec:?} ({e}); using {DEFAULT_FILTER:?}");
            default()
        }),
        _ => default(),
    }
}

/// The JSON lines of `LOG_FORMAT=json`, written to `writer`: the event's fields at the top
/// level, its request under `span`.
pub fn json_layer<S, W>(writer: W) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .event_format(format::Json::new())
        .with_writer(writer)
}

/// What `main` holds while the process runs: when dropped, spans not yet exported are sent.
#[must_use = "hold it until the process ends: dropping it stops the span export"]
pub struct Telemetry {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(Err(e)) = self.provider.take().map(|p| p.shutdown()) {
            eprintln!("OTLP: spans not yet exported are lost: {e}");
        }
    }
}

impl Telemetry {
    /// Sends the spans ended so far now (tests; the exporter batches them otherwise).
    pub fn flush(&self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = &self.provider {
            let _ = provider.force_flush();
        }
    }
}

/// Initialises logging (and, with the `otlp` feature and its endpoint set, span export) once;
/// later calls (several services in one process, tests) change nothing.
pub fn init() -> Telemetry {
    install(
        #[cfg(feature = "otlp")]
        std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok(),
    )
}

/// [`init`], exporting spans to the OTLP collector at `endpoint` (tests).
#[cfg(feature = "otlp")]
pub fn init_exporting_to(endpoint: &str) -> Telemetry {
    install(Some(endpoint.to_string()))
}

fn install(#[cfg(feature = "otlp")] endpoint: Option<String>) -> Telemetry {
    let format = Format::from_env().unwrap_or_else(|e| {
        eprintln!("{e}; writing text");
        Format::Text
    });
    #[cfg(feature = "otlp")]
    let (provider, exporter_layer) = match otlp::provider(endpoint) {
        Some(provider) => {
            let layer = otlp::layer(&provider);
            otlp::EXPORTING.store(true, std::sync::atomic::Ordering::Relaxed);
            (Some(provider), Some(layer))
        }
        None => (None, None),
    };
    #[cfg(not(feature = "otlp"))]
    let exporter_layer: Option<tracing_subscriber::layer::Identity> = None;
    let registry = tracing_subscriber::registry()
        .with(filter())
        .with(exporter_layer);
    let _ = match format {
        Format::Json => registry.with(json_layer(std::io::stderr)).try_init(),
        Format::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .event_format(format::Text)
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    Telemetry {
        #[cfg(feature = "otlp")]
        provider,
    }
}

/// Whether request spans are exported (the `otlp` feature, with an endpoint set).
pub fn exporting() -> bool {
    #[cfg(feature = "otlp")]
    return otlp::EXPORTING.load(std::sync::atomic::Ordering::Relaxed);
    #[cfg(not(feature = "otlp"))]
    false
}

/// Makes `span` the exported span of this hop of `trace` (OTLP on): its parent is the
/// caller's span, and the hop takes the exported span's ids. Otherwise `trace` as it is.
pub fn export_span(span: &tracing::Span, trace: TraceContext) -> TraceContext {
    #[cfg(feature = "otlp")]
    return otlp::export_span(span, trace);
    #[cfg(not(feature = "otlp"))]
    {
        let _ = span;
        trace
    }
}

#[cfg(feature = "otlp")]
mod otlp {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider,
    };
    use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
    use tracing::Subscriber;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::{Layer, registry::LookupSpan};

    use crate::trace_context::TraceContext;

    /// Set once an exporter is installed.
    pub static EXPORTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    /// The exporting tracer provider, when an endpoint is set (`OTEL_EXPORTER_OTLP_ENDPOINT`,
    /// to which the exporter adds `/v1/traces`).
    pub fn provider(endpoint: Option<String>) -> Option<SdkTracerProvider> {
        use opentelemetry_otlp::WithExportConfig;
        let endpoint = endpoint.filter(|e| !e.trim().is_empty())?;
        let traces = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        // the exporter's client is reqwest too, built without a bundled TLS provider
        crate::http::install_tls_provider();
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(traces)
            .build()
            .map_err(|e| eprintln!("OTLP export off: cannot build the exporter: {e}"))
            .ok()?;
        let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| {
            std::env::args()
                .next()
                .as_deref()
                .and_then(|p| {
                    std::path::Path::new(p)
                        .file_name()?
                        .to_str()
                        .map(String::from)
                })
                .unwrap_or_else(|| "shop".into())
        });
        Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(Resource::builder().with_service_name(service).build())
                .build(),
        )
    }

    pub fn layer<S>(provider: &SdkTracerProvider) -> impl Layer<S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        tracing_opentelemetry::layer().with_tracer(provider.tracer("shop"))
    }

    pub fn export_span(span: &tracing::Span, trace: TraceContext) -> TraceContext {
        let (trace_id, _, parent, sampled) = trace.ids();
        if let Some(parent) = parent {
            let flags = if sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            };
            let caller = SpanContext::new(
                TraceId::from_bytes(trace_id.to_be_bytes()),
                SpanId::from_bytes(parent.to_be_bytes()),
                flags,
                true,
                TraceState::default(),
            );
            // fails only when no exporting layer is installed: then nothing is exported
            let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(caller));
        }
        let context = span.context();
        let exported = context.span().span_context().clone();
        if !exported.is_valid() {
            return trace;
        }
        trace.with_ids(
            u128::from_be_bytes(exported.trace_id().to_bytes()),
            u64::from_be_bytes(exported.span_id().to_bytes()),
            exported.is_sampled(),
        )
    }
}

/// Logging for tests: quiet unless `TEST_LOG` is set, so failures are readable.
pub fn init_for_tests() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_filter_and_common_specs_parse() {
        for spec in [
            DEFAULT_FILTER,
            "debug",
            "info,order=debug",
            "warn,billing::routes=trace",
        ] {
            assert!(spec.parse::<Targets>().is_ok(), "{spec}");
        }
    }
}
