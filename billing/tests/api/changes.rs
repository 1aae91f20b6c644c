use serde_json::json;

use common::Money;
use reqwest::Method;

use crate::helpers::{assert_problem, spawn_app};

#[actix_web::test]
async fn a_new_user_has_a_zero_balance_and_an_empty_history() {
    let app = spawn_app().await;
    assert_eq!(app.balance(1).await, 0);
    assert!(app.history(1).await.is_empty());
}

#[actix_web::test]
async fn a_deposit_answers_the_entry_and_the_new_balance() {
    let app = spawn_app().await;
    let body = app.deposit(1, 5000).await;
    assert_eq!(body["status"], "OK");
    assert_eq!(body["amount"], 5000);
    assert_eq!(body["balance"], 5000);
    assert_eq!(body["reason"], "deposit");
    assert!(body["id"].as_i64().unwrap() > 0);
    assert_eq!(app.balance(1).await, 5000);
}

#[actix_web::test]
async fn fractional_amounts_are_kept_exactly() {
    let app = spawn_app().await;
    for amount in [json!(0.1), json!(0.2)] {
        let res = app.change(1, json!({ "amount": amount })).await;
        assert_eq!(res.status(), 200);
    }
    let res = app
        .change(1, json!({"amount": 2000.5, "reason": "salary"}))
        .await;
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["reason"], "salary");
    // 0.1 + 0.2 is exactly 0.3 here, not 0.30000000000000004
    assert_eq!(body["balance"].to_string(), "2000.8");
    assert_eq!(
        app.assert_ledger_matches_balance(1).await,
        Money::from_minor(200_080)
    );
}

#[actix_web::test]
async fn a_withdrawal_within_the_balance_succeeds() {
    let app = spawn_app().await;
    app.deposit(1, 5000).await;
    let res = app.change(1, json!({"amount": -3000})).await;
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "OK");
    assert_eq!(body["amount"], -3000);
    assert_eq!(body["reason"], "withdrawal");
    assert_eq!(body["balance"], 2000);
}

#[actix_web::test]
async fn insufficient_funds_is_a_200_error_outcome_that_changes_nothing() {
    let app = spawn_app().await;
    app.deposit(1, 2000).await;
    let res = app.change(1, json!({"amount": -3000})).await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ERROR");
    assert_eq!(
        body["message"],
        "insufficient funds: balance 2000.00 < 3000.00"
    );
    assert_eq!(body["balance"], 2000);
    assert_eq!(app.history(1).await.len(), 1);
    app.assert_ledger_matches_balance(1).await;
}

#[actix_web::test]
async fn history_lists_entries_newest_first() {
    let app = spawn_app().await;
    app.deposit(1, 100).await;
    let res = app
        .change(1, json!({"amount": -40, "reason": "coffee"}))
        .await;
    assert_eq!(res.status(), 200);
    let entries = app.history(1).await;
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["amount"], -40);
    assert_eq!(entries[0]["reason"], "coffee");
    assert_eq!(entries[0]["balance"], 60);
    assert_eq!(entries[1]["amount"], 100);
    assert!(entries[0]["created"].as_str().unwrap().ends_with('Z'));
    assert!(entries[0].get("order_id").is_none());
    let limited = app
        .get(1, "/billing/history?limit=1")
        .await
        .json::<Vec<serde_json::Value>>()
        .await
        .unwrap();
    assert_eq!(limited.len(), 1);
}

#[actix_web::test]
async fn users_see_only_their_own_account() {
    let app = spawn_app().await;
    app.deposit(1, 100).await;
    assert_eq!(app.balance(2).await, 0);
    assert!(app.history(2).await.is_empty());
}

#[actix_web::test]
async fn requests_without_identity_are_401_problems() {
    let app = spawn_app().await;
    for path in ["/billing/current", "/billing/history"] {
        assert_problem(app.anonymous(Method::GET, path).await, 401).await;
    }
    let res = app
        .client
        .post(format!("{}/billing/change", app.address))
        .json(&json!({"amount": 1}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 401).await;
    assert_eq!(app.balance(1).await, 0, "nothing was deposited");
    let res = app.get(0, "/billing/current").await;
    assert_problem(res, 401).await;
}

#[actix_web::test]
async fn bad_changes_are_400_problems_naming_the_field() {
    let app = spawn_app().await;
    let cases = [
        (json!({"amount": 0}), "amount"),
        (json!({"amount": 1.001}), "amount"),
        (json!({"amount": "100"}), "amount"),
        (json!({"amount": null}), "amount"),
        (json!({}), "amount"),
        (json!({"amount": 1e12}), "amount"),
        (json!({"amount": -1e12}), "amount"),
        (json!({"amount": 10, "reason": "x".repeat(201)}), "reason"),
        (json!({"amount": 10, "reason": 5}), "reason"),
    ];
    for (body, field) in cases {
        let res = app.change(1, body.clone()).await;
        let problem = assert_problem(res, 400).await;
        assert_eq!(problem["field"], field, "{body} → {problem}");
    }
    assert_eq!(app.balance(1).await, 0);
}

#[actix_web::test]
async fn malformed_oversized_and_mistyped_bodies_are_4xx_problems() {
    let app = spawn_app().await;
    let post = |body: &'static str, content_type: &'static str| {
        app.client
            .post(format!("{}/billing/change", app.address))
            .header("X-UserId", 1)
            .header("Content-Type", content_type)
            .body(body)
            .send()
    };
    assert_problem(
        post("{\"amount\": ", "application/json").await.unwrap(),
        400,
    )
    .await;
    assert_problem(post("", "application/json").await.unwrap(), 400).await;
    assert_problem(post("[5000]", "application/json").await.unwrap(), 400).await;
    assert_problem(
        post("amount=5", "application/x-www-form-urlencoded")
            .await
            .unwrap(),
        415,
    )
    .await;
    let huge = format!(
        "{{\"amount\": 1, \"reason\": \"{}\"}}",
        "x".repeat(70 * 1024)
    );
    let res = app
        .client
        .post(format!("{}/billing/change", app.address))
        .header("X-UserId", 1)
        .header("Content-Type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_problem(res, 413).await;
    // no Content-Type at all is accepted: curl users forget it
    let res = app
        .client
        .post(format!("{}/billing/change", app.address))
        .header("X-UserId", 1)
        .body(r#"{"amount": 5}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[actix_web::test]
async fn bad_query_unknown_routes_and_wrong_methods_are_problems() {
    let app = spawn_app().await;
    for query in ["limit=abc", "limit=0", "limit=1001", "limit=-1"] {
        let problem =
            assert_problem(app.get(1, &format!("/billing/history?{query}")).await, 400).await;
        assert_eq!(problem["field"], "limit");
    }
    assert_problem(app.get(1, "/billing/nope").await, 404).await;
    assert_problem(app.anonymous(Method::DELETE, "/billing/current").await, 405).await;
}

#[actix_web::test]
async fn every_response_carries_a_request_id_and_echoes_a_given_one() {
    let app = spawn_app().await;
    let res = app.get(1, "/billing/current").await;
    assert!(!res.headers()["x-request-id"].is_empty());
    let res = app
        .client
        .get(format!("{}/billing/current", app.address))
        .header("X-UserId", 1)
        .header("X-Request-Id", "trace-42")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "trace-42");
    let res = app.anonymous(Method::GET, "/nope").await;
    assert!(!res.headers()["x-request-id"].is_empty());
}

#[actix_web::test]
async fn health_and_readiness_answer() {
    let app = spawn_app().await;
    for path in ["/health", "/ready"] {
        let res = app.anonymous(Method::GET, path).await;
        assert_eq!(res.status(), 200);
        assert_eq!(
            res.json::<serde_json::Value>().await.unwrap()["status"],
            "OK"
        );
    }
}

#[actix_web::test]
async fn balances_survive_a_restart() {
    let app = spawn_app().await;
    app.deposit(1, 700).await;
    app.stop().await;
    let again = app.on_same_database().await;
    assert_eq!(again.balance(1).await, 700);
}

#[actix_web::test]
async fn a_change_replayed_with_its_idempotency_key_is_applied_once() {
    let app = spawn_app().await;
    let first = app
        .change_with_key(1, "dep-1", json!({"amount": 500}))
        .await;
    let first: serde_json::Value = first.json().await.unwrap();
    let again: serde_json::Value = app
        .change_with_key(1, "dep-1", json!({"amount": 500}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first, again, "the replay answers exactly the first answer");
    assert_eq!(app.balance(1).await, 500);
    assert_eq!(app.history(1).await.len(), 1);
    // another body with the same key
    assert_problem(
        app.change_with_key(1, "dep-1", json!({"amount": 501}))
            .await,
        422,
    )
    .await;
    // keys belong to one user
    assert_eq!(
        app.change_with_key(2, "dep-1", json!({"amount": 500}))
            .await
            .status(),
        200
    );
    assert_eq!(app.balance(2).await, 500);
}

#[actix_web::test]
async fn twenty_concurrent_duplicates_of_a_deposit_deposit_once() {
    let app = spawn_app().await;
    let answers: Vec<serde_json::Value> = futures_util::future::join_all((0..20).map(|_| async {
        let res = app
            .change_with_key(
                1,
                "same-deposit",
                json!({"amount": 100, "reason": "top-up"}),
            )
            .await;
        assert_eq!(res.status(), 200);
        res.json::<serde_json::Value>().await.unwrap()
    }))
    .await;
    println!(
        "{}: 20 concurrent duplicate deposits → {} distinct answer(s), balance {}",
        common::testing::backend_name(),
        common::testing::distinct(&answers),
        app.balance(1).await
    );
    assert!(
        answers.iter().all(|a| *a == answers[0]),
        "every answer identical"
    );
    assert_eq!(app.balance(1).await, 100);
    assert_eq!(app.history(1).await.len(), 1);
}

#[actix_web::test]
async fn a_refused_change_leaves_its_key_free_for_a_later_retry() {
    let app = spawn_app().await;
    let refused: serde_json::Value = app
        .change_with_key(1, "wd-1", json!({"amount": -50}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(refused["status"], "ERROR");
    app.deposit(1, 80).await;
    let applied: serde_json::Value = app
        .change_with_key(1, "wd-1", json!({"amount": -50}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(applied["status"], "OK");
    assert_eq!(applied["balance"], 30);
    app.assert_ledger_matches_balance(1).await;
}
