use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};

use common::testing::free_port;

use crate::helpers::{assert_problem, spawn_billing, spawn_notification, spawn_order};

#[actix_web::test]
async fn billing_down_is_a_503_the_order_is_unchanged_and_a_retry_succeeds() {
    let billing_port = free_port();
    let notification = spawn_notification(0).await;
    let app = spawn_order(
        &format!("http://127.0.0.1:{billing_port}"),
        &notification,
        &[],
    )
    .await;
    let id = app.order(1, 3000).await;

    let problem = assert_problem(app.pay(1, id).await, 503).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("billing unavailable"),
        "{problem}"
    );
    assert_eq!(app.status_of(1, id).await, "Pending");

    spawn_billing(billing_port).await;
    app.deposit(1, 5000).await;
    let body = app.pay_ok(1, id).await;
    assert_eq!(body["status"], "Processing");
    assert_eq!(app.charges(1).await, 1);
}

#[actix_web::test]
async fn a_hanging_billing_times_out_as_a_503_without_a_retry() {
    // accepts connections and holds them, never answering
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in silent.incoming() {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(conn);
        }
    });
    let notification = spawn_notification(0).await;
    let app = spawn_order(&url, &notification, &[("HTTP_TIMEOUT", "500ms")]).await;
    let id = app.order(1, 10).await;
    let started = Instant::now();
    assert_problem(app.pay(1, id).await, 503).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "gave up after {took:?}");
    assert_eq!(app.status_of(1, id).await, "Pending");
    // the call used its whole budget: retrying would only multiply the wait
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

/// A billing that answers `failures` calls with 503, then passes calls on to `billing`;
/// returns its address and the count of calls it saw.
async fn flaky_billing(billing: &str, failures: usize) -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let (seen, upstream) = (calls.clone(), billing.to_string());
    let server = HttpServer::new(move || {
        let (seen, upstream) = (seen.clone(), upstream.clone());
        App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
            let (seen, upstream) = (seen.clone(), upstream.clone());
            async move {
                if seen.fetch_add(1, Ordering::SeqCst) < failures {
                    return HttpResponse::ServiceUnavailable().finish();
                }
                let mut call = common::testing::http_client()
                    .post(format!("{upstream}{}", req.path()))
                    .body(body);
                for (name, value) in req.headers() {
                    call = call.header(name.as_str(), value.as_bytes());
                }
                let res = call.send().await.unwrap();
                let status = res.status().as_u16();
                HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                    .content_type("application/json")
                    .body(res.bytes().await.unwrap())
            }
        }))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let url = format!("http://{}", server.addrs()[0]);
    actix_web::rt::spawn(server.run());
    (url, calls)
}

#[actix_web::test]
async fn a_pay_that_fails_fast_is_retried_with_backoff_and_charges_once() {
    let billing = spawn_billing(0).await;
    let notification = spawn_notification(0).await;
    let (flaky, calls) = flaky_billing(&billing, 2).await;
    let mut app = spawn_order(&flaky, &notification, &[("HTTP_RETRY_BACKOFF", "50ms")]).await;
    app.billing = billing; // the test's own deposits and ledger reads go straight to billing
    app.deposit(1, 5000).await;
    let id = app.order(1, 3000).await;

    let body = app.pay_ok(1, id).await;
    assert_eq!(body["status"], "Processing");
    assert_eq!(calls.load(Ordering::SeqCst), 3, "two 503s, then the charge");
    assert_eq!(app.charges(1).await, 1);
}

#[actix_web::test]
async fn retries_are_bounded_by_http_retries() {
    let billing = spawn_billing(0).await;
    let notification = spawn_notification(0).await;
    let (flaky, calls) = flaky_billing(&billing, 3).await;
    let mut app = spawn_order(
        &flaky,
        &notification,
        &[("HTTP_RETRIES", "1"), ("HTTP_RETRY_BACKOFF", "10ms")],
    )
    .await;
    app.billing = billing;
    app.deposit(1, 5000).await;
    let id = app.order(1, 3000).await;

    assert_problem(app.pay(1, id).await, 503).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one try and one retry");
    assert_eq!(app.status_of(1, id).await, "Pending");
    assert_eq!(app.charges(1).await, 0);
}

#[actix_web::test]
async fn notification_down_leaves_the_payment_standing_and_delivers_once_it_returns() {
    let notification_port = free_port();
    let billing = spawn_billing(0).await;
    let app = spawn_order(
        &billing,
        &format!("http://127.0.0.1:{notification_port}"),
        &[],
    )
    .await;
    app.deposit(1, 5000).await;
    let paid = app.order(1, 3000).await;
    let declined = app.order(1, 9000).await;

    let body = app.pay_ok(1, paid).await;
    assert_eq!(body["status"], "Processing");
    assert_eq!(body["billing"]["status"], "OK");
    assert_eq!(body["notification"]["status"], "PENDING");
    let body = app.pay_ok(1, declined).await;
    assert_eq!(body["status"], "Failed");
    assert_eq!(body["notification"]["status"], "PENDING");
    // paying again while notification is still down: still one charge, still pending
    assert_eq!(
        app.pay_ok(1, paid).await["notification"]["status"],
        "PENDING"
    );
    assert_eq!(app.charges(1).await, 1);

    // let a few retries fail, then bring notification back
    actix_web::rt::time::sleep(Duration::from_millis(700)).await;
    let notification = spawn_notification(notification_port).await;
    assert_eq!(notification, app.notification);
    let delivered = app.wait_for_notifications(1, 2).await;
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    let mut after = app.notifications(1).await;
    println!(
        "{}: delivered after notification returned: {after:?}",
        common::testing::backend_name()
    );
    assert_eq!(delivered.len(), 2);
    // exactly once each; retries may land in either order
    after.sort();
    let mut expected = [
        format!("order #{paid} Processing"),
        format!("order #{declined} Failed"),
    ];
    expected.sort();
    assert_eq!(after, expected);
    assert_eq!(app.pay_ok(1, paid).await["notification"]["status"], "OK");
}

#[actix_web::test]
async fn delivery_is_given_up_after_the_configured_attempts() {
    let notification_port = free_port();
    let billing = spawn_billing(0).await;
    let app = spawn_order(
        &billing,
        &format!("http://127.0.0.1:{notification_port}"),
        &[("OUTBOX_MAX_ATTEMPTS", "2"), ("OUTBOX_MAX_BACKOFF", "1s")],
    )
    .await;
    app.deposit(1, 5000).await;
    let id = app.order(1, 3000).await;
    assert_eq!(app.pay_ok(1, id).await["notification"]["status"], "PENDING");
    // attempt 1 was the pay's own; the relay makes attempt 2 about a second later, then stops
    actix_web::rt::time::sleep(Duration::from_millis(2500)).await;
    spawn_notification(notification_port).await;
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        app.notifications(1).await.is_empty(),
        "an abandoned message is not sent again"
    );
    // the payment itself stands
    assert_eq!(app.status_of(1, id).await, "Processing");
    assert_eq!(app.charges(1).await, 1);
}
