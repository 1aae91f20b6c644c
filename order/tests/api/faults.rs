//! Faults of order's peers, made real: a service that is down is a closed port, a hanging one
//! a socket that never answers, a flaky one a stand-in that answers 503. Waits are for a
//! condition under a deadline, never for a fixed time: a slow machine makes these tests
//! slower, not wrong.

use std::{
    net::TcpListener,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::Value;

use common::testing::{Scrape, backend_name, free_port, wait_until};

use crate::helpers::{assert_problem, spawn_order};

/// How long a condition may take to come true before the test fails: far past what any of
/// them takes on a healthy machine (about a second), so only a broken guarantee reaches it.
const DEADLINE: Duration = Duration::from_secs(10);

#[actix_web::test]
async fn billing_down_is_a_503_the_order_is_unchanged_and_a_retry_succeeds() {
    let billing_port = free_port();
    let notification = notification::testing::spawn(&[]).await;
    let app = spawn_order(
        &format!("http://127.0.0.1:{billing_port}"),
        &notification.address,
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

    let _billing = billing::testing::spawn(&[("PORT", &billing_port.to_string())]).await;
    app.deposit(1, 5000).await;
    let body = app.pay_ok(1, id).await;
    assert_eq!(body["status"], "Processing");
    assert_eq!(app.charges(1).await, 1);
}

#[actix_web::test]
async fn a_hanging_billing_times_out_as_a_503_without_a_retry() {
    // accepts connections and holds them, never answering
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
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
    let notification = notification::testing::spawn(&[]).await;
    let app = spawn_order(&url, &notification.address, &[("HTTP_TIMEOUT", "500ms")]).await;
    let id = app.order(1, 10).await;
    let started = Instant::now();
    assert_problem(app.pay(1, id).await, 503).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "gave up after {took:?}");
    assert_eq!(app.status_of(1, id).await, "Pending");
    // the call used its whole budget: retrying would only multiply the wait
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

/// The bodies of the calls a stand-in saw, in order.
type Seen = Arc<Mutex<Vec<Value>>>;

/// A stand-in for a service, on `port` (0: any free one): answers the first `failures` calls
/// with 503, passes the others on to `upstream` (as POSTs, all order makes) and answers what
/// it answered. Returns its URL and the bodies of every call it saw.
async fn stand_in(upstream: &str, port: u16, failures: usize) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let (calls, upstream) = (seen.clone(), upstream.to_string());
    let server = HttpServer::new(move || {
        let (calls, upstream) = (calls.clone(), upstream.clone());
        App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
            let (calls, upstream) = (calls.clone(), upstream.clone());
            async move {
                let earlier = {
                    let mut calls = calls.lock().unwrap();
                    calls.push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                    calls.len() - 1
                };
                if earlier < failures {
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
    .bind(("127.0.0.1", port))
    .unwrap();
    let url = format!("http://{}", server.addrs()[0]);
    actix_web::rt::spawn(server.run());
    (url, seen)
}

/// How many of the calls in `seen` carried the message keyed `key`.
fn calls_with_key(seen: &Seen, key: &str) -> usize {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|body| body["key"] == key)
        .count()
}

#[actix_web::test]
async fn a_pay_that_fails_fast_is_retried_with_backoff_and_charges_once() {
    let billing = billing::testing::spawn(&[]).await;
    let notification = notification::testing::spawn(&[]).await;
    let (flaky, seen) = stand_in(&billing.address, 0, 2).await;
    let mut app = spawn_order(
        &flaky,
        &notification.address,
        &[("HTTP_RETRY_BACKOFF", "50ms")],
    )
    .await;
    app.billing = billing.address.clone(); // the test's own deposits and ledger reads
    app.deposit(1, 5000).await;
    let id = app.order(1, 3000).await;

    let body = app.pay_ok(1, id).await;
    assert_eq!(body["status"], "Processing");
    assert_eq!(seen.lock().unwrap().len(), 3, "two 503s, then the charge");
    assert_eq!(app.charges(1).await, 1);

    let m = Scrape::of(&app.address).await;
    let pay = |outcome| {
        m.value(
            "shop_downstream_requests_total",
            &[
                ("target", "billing"),
                ("operation", "pay"),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!((pay("5xx"), pay("ok")), (2.0, 1.0));
    let retries = [("target", "billing"), ("operation", "pay")];
    assert_eq!(m.value("shop_downstream_retries_total", &retries), 2.0);
}

#[actix_web::test]
async fn retries_are_bounded_by_http_retries() {
    let billing = billing::testing::spawn(&[]).await;
    let notification = notification::testing::spawn(&[]).await;
    let (flaky, seen) = stand_in(&billing.address, 0, 3).await;
    let mut app = spawn_order(
        &flaky,
        &notification.address,
        &[("HTTP_RETRIES", "1"), ("HTTP_RETRY_BACKOFF", "10ms")],
    )
    .await;
    app.billing = billing.address.clone();
    app.deposit(1, 5000).await;
    let id = app.order(1, 3000).await;

    assert_problem(app.pay(1, id).await, 503).await;
    assert_eq!(seen.lock().unwrap().len(), 2, "one try and one retry");
    assert_eq!(app.status_of(1, id).await, "Pending");
    assert_eq!(app.charges(1).await, 0);
}

#[actix_web::test]
async fn notification_down_leaves_the_payment_standing_and_delivers_once_it_returns() {
    let notification_port = free_port();
    let billing = billing::testing::spawn(&[]).await;
    let mut app = spawn_order(
        &billing.address,
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
    let m = Scrape::of(&app.address).await;
    assert_eq!(m.value("shop_outbox_pending_messages", &[]), 2.0);
    assert!(m.value("shop_outbox_oldest_pending_age_seconds", &[]) > 0.0);
    let unreachable = [("target", "notification"), ("outcome", "unreachable")];
    assert!(
        m.value(
            "shop_downstream_requests_total",
            &[("operation", "notify"), unreachable[0], unreachable[1]]
        ) >= 3.0
    );

    // the relay keeps trying while notification is down: each message fails once more after
    // the attempts of the pays (two for the order paid twice, one for the declined one)
    let keys = [
        format!("order-{paid}-Processing"),
        format!("order-{declined}-Failed"),
    ];
    wait_until("a retry of each message by the relay", DEADLINE, || async {
        let retried = app.outbox(&keys[0]).attempts >= 3 && app.outbox(&keys[1]).attempts >= 2;
        retried.then_some(())
    })
    .await;

    // notification returns on its port, behind a stand-in that counts what reaches it
    let notification = notification::testing::spawn(&[]).await;
    let (url, seen) = stand_in(&notification.address, notification_port, 0).await;
    let returned = Instant::now();
    assert_eq!(url, format!("http://127.0.0.1:{notification_port}"));
    app.notification = notification.address.clone();
    // The relay's next attempt comes within OUTBOX_MAX_BACKOFF (1 s, +20 % jitter) plus one
    // OUTBOX_POLL_INTERVAL (100 ms): about 1.3 s. DEADLINE only absorbs a loaded machine.
    wait_until(
        "both messages delivered and marked so",
        DEADLINE,
        || async {
            keys.iter()
                .all(|key| app.outbox(key).delivered)
                .then_some(())
        },
    )
    .await;
    let took = returned.elapsed();
    let mut delivered = app.notifications(1).await;
    println!(
        "{}: delivered {took:?} after notification returned: {delivered:?}",
        backend_name()
    );
    // exactly once each: one call per message reached notification, it holds each once, and
    // order has marked them, so the relay will not send them again
    for key in &keys {
        assert_eq!(calls_with_key(&seen, key), 1, "calls carrying {key}");
    }
    assert_eq!(seen.lock().unwrap().len(), 2);
    delivered.sort();
    let mut expected = [
        format!("order #{paid} Processing"),
        format!("order #{declined} Failed"),
    ];
    expected.sort();
    assert_eq!(delivered, expected);
    assert_eq!(app.pay_ok(1, paid).await["notification"]["status"], "OK");
    assert_eq!(
        seen.lock().unwrap().len(),
        2,
        "a delivered message is not sent again"
    );
    let m = Scrape::of(&app.address).await;
    assert_eq!(m.value("shop_outbox_pending_messages", &[]), 0.0);
    assert_eq!(m.value("shop_outbox_oldest_pending_age_seconds", &[]), 0.0);
    let delivered = [("outcome", "delivered")];
    assert_eq!(m.value("shop_outbox_deliveries_total", &delivered), 2.0);
    let relayed = [
        ("target", "notification"),
        ("operation", "relay_notify"),
        ("outcome", "ok"),
    ];
    assert_eq!(m.value("shop_downstream_requests_total", &relayed), 2.0);
}

#[actix_web::test]
async fn delivery_is_given_up_after_the_configured_attempts() {
    let notification_port = free_port();
    let billing = billing::testing::spawn(&[]).await;
    let mut app = spawn_order(
        &billing.address,
        &format!("http://127.0.0.1:{notification_port}"),
        &[("OUTBOX_MAX_ATTEMPTS", "2"), ("OUTBOX_MAX_BACKOFF", "1s")],
    )
    .await;
    app.deposit(1, 5000).await;
    let given_up = app.order(1, 3000).await;
    assert_eq!(
        app.pay_ok(1, given_up).await["notification"]["status"],
        "PENDING"
    );
    // attempt 1 was the pay's own; the relay makes attempt 2 about a second later, then stops
    let key = format!("order-{given_up}-Processing");
    let row = wait_until("the message set aside", DEADLINE, || async {
        let row = app.outbox(&key);
        row.abandoned.then_some(row)
    })
    .await;
    assert_eq!((row.attempts, row.delivered), (2, false), "{row:?}");
    // were it still eligible, the relay would take it again from its next attempt time on
    wait_until("its next attempt time to pass", DEADLINE, || async {
        (chrono::Utc::now().naive_utc() > row.next_attempt_at).then_some(())
    })
    .await;

    // A later message, failed once like it, that the relay must deliver once notification is
    // back. The relay takes due messages oldest first, so by the time it has delivered this
    // one it has passed over the set-aside one, due for longer: had it tried that one again,
    // its attempts would have grown (notification down) or notification would have seen it.
    let notification = notification::testing::spawn(&[]).await;
    app.notification = notification.address.clone();
    let later = app.order(1, 1000).await;
    assert_eq!(
        app.pay_ok(1, later).await["notification"]["status"],
        "PENDING"
    );
    // back at once (a bind, no start-up), well before the relay's next attempt
    let (_, seen) = stand_in(&notification.address, notification_port, 0).await;
    let later_key = format!("order-{later}-Processing");
    wait_until("the later message delivered", DEADLINE, || async {
        app.outbox(&later_key).delivered.then_some(())
    })
    .await;

    assert_eq!(
        calls_with_key(&seen, &key),
        0,
        "a set-aside message is not sent again"
    );
    assert_eq!(calls_with_key(&seen, &later_key), 1);
    assert_eq!(
        app.notifications(1).await,
        [format!("order #{later} Processing")]
    );
    let row = app.outbox(&key);
    assert_eq!(
        (row.attempts, row.delivered, row.abandoned),
        (2, false, true)
    );
    // the payment itself stands
    assert_eq!(app.status_of(1, given_up).await, "Processing");
    assert_eq!(app.charges(1).await, 2);
    // and the operator is told: the alert on abandoned messages reads these
    let m = Scrape::of(&app.address).await;
    assert_eq!(m.value("shop_outbox_abandoned_messages", &[]), 1.0);
    assert_eq!(m.value("shop_outbox_abandoned_total", &[]), 1.0);
    assert_eq!(m.value("shop_outbox_pending_messages", &[]), 0.0);
}
