//! One pay, one trace: the W3C `traceparent` a client sends is continued by order, billing
//! and notification, and by the outbox relay when it delivers the pay's message later. Read
//! from what the services log (the JSON lines of `LOG_FORMAT=json`), as an operator would.

use std::{collections::BTreeSet, time::Duration};

use common::testing::{LogCapture, free_port, wait_until};
use reqwest::Method;
use serde_json::Value;

use crate::helpers::{TestApp, spawn_app, spawn_order};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn traceparent() -> String {
    format!("00-{TRACE}-00f067aa0ba902b7-01")
}

/// The service an event came from: its access events say it, the others' target starts
/// with the crate's name.
fn service(event: &Value) -> String {
    match event["service"].as_str() {
        Some(service) => service.to_string(),
        None => event["target"]
            .as_str()
            .unwrap_or("")
            .split("::")
            .next()
            .unwrap_or("")
            .to_string(),
    }
}

/// Pays order `id` of user 1 with this test's `traceparent`; the pay's request id.
async fn pay_in_trace(app: &TestApp, id: i64) -> String {
    let res = app
        .as_user(Method::PUT, format!("{}/order/{id}/pay", app.address), 1)
        .header("traceparent", traceparent())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.headers()["x-request-id"].to_str().unwrap().to_string()
}

/// The services that logged an event in `trace`, and the request ids of those events.
fn in_trace(logs: &LogCapture, trace: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let events: Vec<Value> = logs
        .events()
        .into_iter()
        .filter(|e| e["span"]["trace_id"] == trace)
        .collect();
    let services = events.iter().map(service).collect();
    let ids = events
        .iter()
        .filter_map(|e| e["span"]["request_id"].as_str().map(str::to_string))
        .collect();
    (services, ids)
}

#[actix_web::test]
async fn a_pay_is_one_trace_in_order_billing_and_notification() {
    let logs = LogCapture::install();
    let app = spawn_app().await;
    app.deposit(1, 5000).await;
    let id = app.order(1, 3000).await;
    let request_id = pay_in_trace(&app, id).await;

    let (services, ids) = in_trace(&logs, TRACE);
    let expected: BTreeSet<String> = ["billing", "notification", "order"]
        .map(String::from)
        .into();
    assert!(services.is_superset(&expected), "{services:?}");
    assert_eq!(
        ids,
        BTreeSet::from([request_id]),
        "one request id across the trace"
    );
    // the deposit and the creation, sent without a traceparent, are traces of their own
    let traces: BTreeSet<String> = logs
        .events()
        .iter()
        .filter_map(|e| e["span"]["trace_id"].as_str().map(str::to_string))
        .collect();
    assert!(traces.len() >= 3, "{traces:?}");
}

#[actix_web::test]
async fn a_message_the_relay_delivers_later_stays_in_the_trace_of_its_pay() {
    let logs = LogCapture::install();
    let port = free_port();
    let billing = billing::testing::spawn(&[]).await;
    let app = spawn_order(
        &billing.address,
        &format!("http://127.0.0.1:{port}"),
        &[("OUTBOX_MAX_BACKOFF", "1s")],
    )
    .await;
    app.deposit(1, 5000).await;
    let id = app.order(1, 3000).await;
    let request_id = pay_in_trace(&app, id).await;
    let (services, _) = in_trace(&logs, TRACE);
    assert!(!services.contains("notification"), "notification is down");

    // notification comes up; the relay delivers the queued message
    let port = port.to_string();
    let _notification = notification::testing::spawn(&[("PORT", port.as_str())]).await;
    let key = format!("order-{id}-Processing");
    wait_until("the message delivered", Duration::from_secs(10), || async {
        app.outbox(&key).delivered.then_some(())
    })
    .await;

    let (services, ids) = in_trace(&logs, TRACE);
    assert!(services.contains("notification"), "{services:?}");
    assert_eq!(
        ids,
        BTreeSet::from([request_id]),
        "the pay's request id, also later"
    );
}
