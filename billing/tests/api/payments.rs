use serde_json::json;

use crate::helpers::{assert_problem, spawn_app};

#[actix_web::test]
async fn opening_an_account_is_idempotent() {
    let app = spawn_app().await;
    let first = app.internal("accounts", json!({"user_id": 9})).await;
    assert_eq!(first.status(), 200);
    assert_eq!(
        first.json::<serde_json::Value>().await.unwrap()["created"],
        true
    );
    app.deposit(9, 50).await;
    let again = app.internal("accounts", json!({"user_id": 9})).await;
    let body: serde_json::Value = again.json().await.unwrap();
    assert_eq!(body["created"], false);
    assert_eq!(body["balance"], 50);
}

#[actix_web::test]
async fn an_account_opens_on_first_use_without_registration() {
    let app = spawn_app().await;
    // user 5 was never announced by auth (billing was down at registration)
    assert_eq!(app.deposit(5, 10).await["balance"], 10);
    assert_eq!(app.pay(1, 6, 10).await["status"], "ERROR");
}

#[actix_web::test]
async fn a_payment_charges_and_answers_the_new_balance() {
    let app = spawn_app().await;
    app.deposit(1, 5000).await;
    let body = app.pay(11, 1, 3000).await;
    assert_eq!(body["status"], "OK");
    assert_eq!(body["balance"], 2000);
    let entries = app.history(1).await;
    assert_eq!(entries[0]["order_id"], 11);
    assert_eq!(entries[0]["amount"], -3000);
    assert_eq!(entries[0]["reason"], "payment for order #11");
}

#[actix_web::test]
async fn a_replayed_payment_returns_the_first_outcome_and_charges_nothing() {
    let app = spawn_app().await;
    app.deposit(1, 5000).await;
    let first = app.pay(11, 1, 3000).await;
    app.deposit(1, 100).await;
    let again = app.pay(11, 1, 3000).await;
    assert_eq!(again["status"], "OK");
    assert_eq!(again["replayed"], true);
    assert_eq!(again["balance"], first["balance"]);
    assert_eq!(app.balance(1).await, 2100);
    assert_eq!(app.history(1).await.len(), 3);
}

#[actix_web::test]
async fn a_declined_payment_records_nothing_and_may_succeed_later() {
    let app = spawn_app().await;
    app.deposit(1, 2000).await;
    let declined = app.pay(12, 1, 3000).await;
    assert_eq!(declined["status"], "ERROR");
    assert_eq!(
        declined["message"],
        "insufficient funds: balance 2000.00 < 3000.00"
    );
    assert_eq!(declined["balance"], 2000);
    assert_eq!(app.history(1).await.len(), 1);
    app.deposit(1, 1000).await;
    let paid = app.pay(12, 1, 3000).await;
    assert_eq!(paid["status"], "OK");
    assert_eq!(paid["balance"], 0);
    app.assert_ledger_matches_balance(1).await;
}

#[actix_web::test]
async fn a_replay_with_another_amount_or_user_is_a_409() {
    let app = spawn_app().await;
    app.deposit(1, 5000).await;
    app.pay(13, 1, 3000).await;
    let other_amount = app
        .internal(
            "payments",
            json!({"order_id": 13, "user_id": 1, "amount": 10}),
        )
        .await;
    assert_problem(other_amount, 409).await;
    let other_user = app
        .internal(
            "payments",
            json!({"order_id": 13, "user_id": 2, "amount": 3000}),
        )
        .await;
    assert_problem(other_user, 409).await;
    assert_eq!(app.balance(1).await, 2000);
}

#[actix_web::test]
async fn bad_internal_requests_are_400_problems_naming_the_field() {
    let app = spawn_app().await;
    let cases = [
        (
            "payments",
            json!({"order_id": 0, "user_id": 1, "amount": 1}),
            "order_id",
        ),
        (
            "payments",
            json!({"order_id": "x", "user_id": 1, "amount": 1}),
            "order_id",
        ),
        (
            "payments",
            json!({"order_id": 1, "user_id": -1, "amount": 1}),
            "user_id",
        ),
        (
            "payments",
            json!({"order_id": 1, "user_id": 1, "amount": -1}),
            "amount",
        ),
        ("payments", json!({"order_id": 1, "user_id": 1}), "amount"),
        ("accounts", json!({"user_id": 0}), "user_id"),
        ("accounts", json!({}), "user_id"),
    ];
    for (path, body, field) in cases {
        let problem = assert_problem(app.internal(path, body.clone()).await, 400).await;
        assert_eq!(problem["field"], field, "{body} → {problem}");
    }
}

#[actix_web::test]
async fn internal_endpoints_refuse_calls_without_the_service_credential() {
    let app = spawn_app().await;
    app.deposit(1, 5000).await;
    let body = json!({"order_id": 1, "user_id": 1, "amount": 3000});
    for token in [None, Some("wrong"), Some("test-internal-toke")] {
        let mut req = app
            .client
            .post(format!("{}/internal/payments", app.address))
            .json(&body);
        if let Some(token) = token {
            req = req.header("X-Internal-Token", token);
        }
        assert_problem(req.send().await.unwrap(), 401).await;
    }
    let res = app
        .client
        .post(format!("{}/internal/accounts", app.address))
        .json(&json!({"user_id": 2}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 401).await;
    assert_eq!(app.balance(1).await, 5000, "nothing was charged");
    // the public routes do not ask for it
    assert_eq!(app.get(1, "/billing/current").await.status(), 200);
}
