//! The two line formats, each naming the request an event was logged for.
//!
//! The request's id and trace id come from the task-local [`RequestContext`]
//! (`crate::request_id`), read when an event is written, rather than from a `tracing` span
//! opened per request: a span costs every request its creation, its fields formatted up
//! front, and an enter and exit at each poll, whether anything is logged or not (measured in
//! BENCHMARKS.md, "What observability costs"). A span is opened only when it is exported
//! (OTLP); its ids are the context's then, so the lines read the same.
//!
//! The services open no other spans, so these formats write none.

use std::fmt::{self, Write as _};

use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::{
    fmt::{
        FmtContext, FormatEvent, FormatFields,
        format::{self, Writer},
        time::{FormatTime, SystemTime},
    },
    registry::LookupSpan,
};

use crate::request_id::{self, RequestContext};

/// `2026-12-01T06:00:00.123456Z  INFO request{request_id=… trace_id=…}: billing::routes:
/// charged order_id=7 amount=30.00`, coloured when written to a terminal.
pub struct Text;

impl<S, N> FormatEvent<S, N> for Text
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // a record of the `log` facade (actix, r2d2) names its own target and level
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let ansi = Ansi(writer.has_ansi_escapes());

        write!(writer, "{}", ansi.dim())?;
        SystemTime.format_time(&mut writer)?;
        let level = meta.level();
        write!(
            writer,
            "{} {}{:>5}{} ",
            ansi.reset(),
            ansi.level(level),
            level.as_str(),
            ansi.reset()
        )?;
        request_id::with_context(|c| {
            write!(
                writer,
                "{}request{}{{request_id={} trace_id={}}}: ",
                ansi.bold(),
                ansi.reset(),
                c.id,
                c.trace.trace_id_hex()
            )
        })
        .transpose()?;
        write!(writer, "{}{}:{} ", ansi.dim(), meta.target(), ansi.reset())?;
        ctx.format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Escape codes, or nothing when the writer is not a terminal.
#[derive(Clone, Copy)]
struct Ansi(bool);

impl Ansi {
    fn code(self, code: &'static str) -> &'static str {
        if self.0 { code } else { "" }
    }

    fn reset(self) -> &'static str {
        self.code("\x1b[0m")
    }

    fn dim(self) -> &'static str {
        self.code("\x1b[2m")
    }

    fn bold(self) -> &'static str {
        self.code("\x1b[1m")
    }

    fn level(self, level: &Level) -> &'static str {
        self.code(match *level {
            Level::ERROR => "\x1b[31m",
            Level::WARN => "\x1b[33m",
            Level::INFO => "\x1b[32m",
            Level::DEBUG => "\x1b[34m",
            Level::TRACE => "\x1b[35m",
        })
    }
}

/// One JSON object per line: the event as `tracing-subscriber` writes it (timestamp, level,
/// the fields at the top level, target), then the request under `span`, as a request span
/// would appear: `"span":{"name":"request","request_id":…,"trace_id":…}`.
pub struct Json {
    event: format::Format<format::Json>,
}

impl Json {
    pub fn new() -> Self {
        Self {
            event: format::format()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false),
        }
    }
}

impl<S, N> FormatEvent<S, N> for Json
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let Some(request) = request_id::with_context(span_object) else {
            return self.event.format_event(ctx, writer, event);
        };
        let mut line = String::with_capacity(256);
        self.event
            .format_event(ctx, Writer::new(&mut line), event)?;
        // the object ends the line: put the request in as its last member
        let object = line.trim_end().strip_suffix('}').ok_or(fmt::Error)?;
        writer.write_str(object)?;
        writer.write_str(&request)?;
        writer.write_str("}\n")
    }
}

/// `,"span":{…}` for `context`, its values escaped as JSON strings.
fn span_object(context: &RequestContext) -> String {
    let text = |value: &str| serde_json::Value::from(value).to_string();
    let mut member = String::with_capacity(128);
    let _ = write!(
        member,
        r#","span":{{"name":"request","request_id":{},"trace_id":"{}"}}"#,
        text(&context.id),
        context.trace.trace_id_hex()
    );
    member
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::trace_context::TraceContext;

    /// The lines `format` writes for one event logged inside request `context`, and one
    /// logged outside any request.
    async fn lines<F>(format: F, context: RequestContext) -> Vec<String>
    where
        F: FormatEvent<tracing_subscriber::Registry, format::DefaultFields> + Send + Sync + 'static,
    {
        let buffer = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = buffer.clone();
        let layer = tracing_subscriber::fmt::layer()
            .event_format(format)
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()));
        let subscriber = tracing_subscriber::registry().with(layer);
        let _default = tracing::subscriber::set_default(subscriber);
        request_id::scope(context, async {
            tracing::info!(
                order_id = 7,
                amount = "30.00",
                text = "a \"quoted\" word",
                "charged"
            );
        })
        .await;
        tracing::warn!("outside");
        let bytes = buffer.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    }

    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn context() -> RequestContext {
        RequestContext {
            id: "req-1".into(),
            trace: TraceContext::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
                .unwrap(),
        }
    }

    #[actix_web::test]
    async fn text_lines_name_the_request_and_carry_the_fields() {
        let lines = lines(Text, context()).await;
        assert_eq!(lines.len(), 2, "{lines:?}");
        let (_, inside) = lines[0].split_once(' ').unwrap();
        assert_eq!(
            inside,
            " INFO request{request_id=req-1 trace_id=0af7651916cd43dd8448eb211c80319c}: \
             common::telemetry::format::tests: charged order_id=7 amount=\"30.00\" \
             text=\"a \\\"quoted\\\" word\""
        );
        let (_, outside) = lines[1].split_once(' ').unwrap();
        assert_eq!(outside, " WARN common::telemetry::format::tests: outside");
    }

    #[actix_web::test]
    async fn json_lines_are_objects_with_the_request_as_span() {
        let lines = lines(Json::new(), context()).await;
        assert_eq!(lines.len(), 2, "{lines:?}");
        let inside: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(inside["message"], "charged");
        assert_eq!(inside["order_id"], 7);
        assert_eq!(inside["text"], "a \"quoted\" word");
        assert_eq!(inside["level"], "INFO");
        assert_eq!(inside["target"], "common::telemetry::format::tests");
        assert_eq!(
            inside["span"],
            serde_json::json!({
                "name": "request",
                "request_id": "req-1",
                "trace_id": "0af7651916cd43dd8448eb211c80319c",
            })
        );
        let outside: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(outside["message"], "outside");
        assert!(outside.get("span").is_none(), "{outside}");
    }
}
