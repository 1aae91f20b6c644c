//! Logs: `tracing` events, written by `tracing-subscriber` to stderr.
//!
//! - `LOG_FORMAT=json`: one JSON object per line (what a log collector wants; the Kubernetes
//!   manifests set it), with the event's fields and its request span:
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

use std::io::IsTerminal;

use tracing_subscriber::{
    Layer, Registry, filter::Targets, fmt::MakeWriter, layer::SubscriberExt,
    util::SubscriberInitExt,
};

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
/// level, its request span under `span`.
pub fn json_layer<W>(writer: W) -> impl Layer<tracing_subscriber::layer::Layered<Targets, Registry>>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(writer)
}

/// Initialises logging once; later calls (several services in one process, tests) are no-ops.
pub fn init() {
    let format = Format::from_env().unwrap_or_else(|e| {
        eprintln!("{e}; writing text");
        Format::Text
    });
    let registry = tracing_subscriber::registry().with(filter());
    let _ = match format {
        Format::Json => registry.with(json_layer(std::io::stderr)).try_init(),
        Format::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
}

/// Logging for tests: quiet unless `TEST_LOG` is set, so failures are readable.
pub fn init_for_tests() {
    if std::env::var_os("TEST_LOG").is_some() {
        init();
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
