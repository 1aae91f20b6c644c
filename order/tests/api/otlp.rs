//! OTLP export (feature `otlp`: `cargo nextest run -p order --features test-util,otlp otlp`):
//! one pay's request spans in order, billing and notification reach an OTLP/HTTP collector,
//! all in the trace of the client's `traceparent`, the first one a child of the client's span.
#![cfg(feature = "otlp")]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use actix_web::{App, HttpResponse, HttpServer, web};
use reqwest::Method;

use crate::helpers::spawn_app;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// How often `needle` occurs in `haystack`.
fn occurrences(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

fn bytes_of(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[actix_web::test]
async fn a_pays_spans_reach_the_collector_in_the_clients_trace() {
    // a collector that keeps every export it is sent (OTLP/HTTP: protobuf bodies)
    let received: Arc<Mutex<Vec<u8>>> = Arc::default();
    let sink = received.clone();
    let collector = HttpServer::new(move || {
        let sink = sink.clone();
        App::new().default_service(web::to(move |body: web::Bytes| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().extend_from_slice(&body);
                HttpResponse::Ok()
                    .content_type("application/x-protobuf")
                    .finish()
            }
        }))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let address = format!("http://{}", collector.addrs()[0]);
    actix_web::rt::spawn(collector.run());
    let telemetry = Arc::new(common::telemetry::init_exporting_to(&address));

    let app = spawn_app().await;
    app.deposit(1, 5000).await;
    let id = app.order(1, 3000).await;
    let res = app
        .as_user(Method::PUT, format!("{}/order/{id}/pay", app.address), 1)
        .header("traceparent", format!("00-{TRACE}-{CLIENT_SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // spans end when their requests are answered; send what is batched now
    actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    let flushing = telemetry.clone();
    actix_web::rt::task::spawn_blocking(move || flushing.flush())
        .await
        .unwrap();

    let exported = received.lock().unwrap().clone();
    let in_trace = occurrences(&exported, &bytes_of(TRACE));
    // order's request span, billing's and notification's (each span carries its trace id)
    assert!(in_trace >= 3, "{in_trace} exported span(s) in the trace");
    assert!(
        occurrences(&exported, &bytes_of(CLIENT_SPAN)) >= 1,
        "order's span is a child of the client's"
    );
    assert!(occurrences(&exported, b"request") >= 3, "the request spans");
}
