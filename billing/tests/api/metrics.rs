//! `GET /metrics` on billing's own port: RED by route template, the payment counters, and
//! series that do not grow with what clients send.

use common::testing::Scrape;
use reqwest::Method;
use serde_json::json;

use crate::helpers::spawn_app;

#[actix_web::test]
async fn unknown_paths_and_methods_do_not_add_series() {
    let app = spawn_app().await;
    // one of each kind first, so that the series they share exist
    app.anonymous(Method::GET, "/no/such/path/0").await;
    app.anonymous(Method::from_bytes(b"BREW").unwrap(), "/billing/current")
        .await;
    Scrape::of(&app.address).await; // and `/metrics` itself
    let before = Scrape::of(&app.address).await;

    for i in 1..=1000 {
        let res = app
            .anonymous(Method::GET, &format!("/no/such/path/{i}?q={i}"))
            .await;
        assert_eq!(res.status(), 404);
    }
    for i in 0..20 {
        let method = Method::from_bytes(format!("METHOD{i}").as_bytes()).unwrap();
        app.anonymous(method, "/billing/current").await;
    }
    let after = Scrape::of(&app.address).await;

    assert_eq!(
        after.series(),
        before.series(),
        "1,000 unknown paths and 20 unknown methods added series"
    );
    let unmatched = [("route", "unmatched"), ("method", "GET"), ("status", "404")];
    assert_eq!(after.value("shop_http_requests_total", &unmatched), 1001.0);
    assert!(
        !after.0.contains("/no/such/path"),
        "a raw path became a label"
    );
    assert!(!after.0.contains("METHOD1"), "a raw method became a label");
}

#[actix_web::test]
async fn payments_are_counted_by_outcome_and_routes_by_template() {
    let app = spawn_app().await;
    app.deposit(1, 5000).await;
    assert_eq!(app.pay(10, 1, 3000).await["status"], "OK");
    assert_eq!(app.pay(10, 1, 3000).await["replayed"], true);
    assert_eq!(app.pay(11, 1, 9000).await["status"], "ERROR");
    app.change(1, json!({"amount": -100})).await;
    app.change(1, json!({"amount": -100000})).await;

    let m = Scrape::of(&app.address).await;
    let payments = |outcome| m.value("shop_payments_total", &[("outcome", outcome)]);
    assert_eq!(
        (
            payments("charged"),
            payments("replayed"),
            payments("declined")
        ),
        (1.0, 1.0, 1.0)
    );
    assert_eq!(payments("conflict"), 0.0, "present at 0 before any");
    let changes = |kind, outcome| {
        m.value(
            "shop_balance_changes_total",
            &[("kind", kind), ("outcome", outcome)],
        )
    };
    assert_eq!(changes("deposit", "applied"), 1.0);
    assert_eq!(changes("withdrawal", "applied"), 1.0);
    assert_eq!(changes("withdrawal", "refused"), 1.0);
    let paid = [
        ("route", "/internal/payments"),
        ("method", "POST"),
        ("status", "200"),
    ];
    assert_eq!(m.value("shop_http_requests_total", &paid), 3.0);
    assert_eq!(
        m.value("shop_http_request_duration_seconds_count", &paid),
        3.0
    );
    assert_eq!(
        m.value(
            "shop_db_transaction_duration_seconds_count",
            &[("operation", "charge")]
        ),
        3.0
    );
    assert!(m.value("shop_db_pool_wait_seconds_count", &[]) >= 5.0);
    assert!(m.value("shop_db_pool_max_connections", &[]) > 0.0);
    assert!(m.value("process_resident_memory_bytes", &[]) > 0.0);
}
