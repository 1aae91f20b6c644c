use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{assert_problem, spawn_app};

#[actix_web::test]
async fn a_new_order_is_pending_and_answered_whole() {
    let app = spawn_app().await;
    let res = app
        .create(1, json!({"amount": 3000, "description": "a book"}))
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["id"], 1, "ids start at 1 on a fresh database");
    assert_eq!(body["user_id"], 1);
    assert_eq!(body["amount"], 3000);
    assert_eq!(body["description"], "a book");
    assert_eq!(body["status"], "Pending");
    assert!(body["created"].as_str().unwrap().ends_with('Z'));
}

#[actix_web::test]
async fn orders_are_listed_newest_first_and_only_to_their_owner() {
    let app = spawn_app().await;
    let first = app.order(1, 10).await;
    let second = app.order(1, 20).await;
    app.order(2, 30).await;
    let list: Vec<Value> = app.get(1, "/order").await.json().await.unwrap();
    let ids: Vec<i64> = list.iter().map(|o| o["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [second, first]);
    let one: Value = app
        .get(1, &format!("/order/{first}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(one["amount"], 10);
}

#[actix_web::test]
async fn another_users_order_or_a_missing_one_is_a_404() {
    let app = spawn_app().await;
    let id = app.order(1, 10).await;
    assert_problem(app.get(2, &format!("/order/{id}")).await, 404).await;
    assert_problem(app.get(1, "/order/999").await, 404).await;
    assert_problem(app.pay(2, id).await, 404).await;
    assert_eq!(app.status_of(1, id).await, "Pending");
}

#[actix_web::test]
async fn a_non_numeric_order_id_is_a_400() {
    let app = spawn_app().await;
    assert_problem(app.get(1, "/order/abc").await, 400).await;
    let res = app
        .as_user(Method::PUT, format!("{}/order/1x/pay", app.address), 1)
        .send()
        .await
        .unwrap();
    assert_problem(res, 400).await;
}

#[actix_web::test]
async fn an_idempotency_key_replay_returns_the_same_order() {
    let app = spawn_app().await;
    let send = |body: Value, key: &'static str| {
        app.as_user(Method::POST, format!("{}/order", app.address), 1)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
    };
    let first: Value = send(json!({"amount": 30, "description": "x"}), "k-1")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let again: Value = send(json!({"amount": 30, "description": "x"}), "k-1")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first, again);
    let list: Vec<Value> = app.get(1, "/order").await.json().await.unwrap();
    assert_eq!(list.len(), 1);
    // same key, other body
    let res = send(json!({"amount": 31, "description": "x"}), "k-1")
        .await
        .unwrap();
    assert_problem(res, 422).await;
    // keys are per user: another user may use the same one
    let other = app
        .as_user(Method::POST, format!("{}/order", app.address), 2)
        .header("Idempotency-Key", "k-1")
        .json(&json!({"amount": 30, "description": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
}

#[actix_web::test]
async fn twenty_concurrent_creates_with_one_key_make_one_order() {
    let app = spawn_app().await;
    let answers: Vec<Value> = join_all((0..20).map(|_| async {
        let res = app
            .as_user(Method::POST, format!("{}/order", app.address), 1)
            .header("Idempotency-Key", "same")
            .json(&json!({"amount": 5}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.json::<Value>().await.unwrap()
    }))
    .await;
    let list: Vec<Value> = app.get(1, "/order").await.json().await.unwrap();
    println!(
        "{}: 20 concurrent duplicate creates → {} distinct answer(s), {} order(s)",
        common::testing::backend_name(),
        common::testing::distinct(&answers),
        list.len()
    );
    assert!(
        answers.iter().all(|a| *a == answers[0]),
        "every answer identical"
    );
    assert_eq!(list.len(), 1);
}

#[actix_web::test]
async fn bad_orders_are_400_problems_naming_the_field() {
    let app = spawn_app().await;
    for (body, field) in [
        (json!({"amount": 0}), "amount"),
        (json!({"amount": -5}), "amount"),
        (json!({"amount": "5"}), "amount"),
        (json!({"amount": 1.001}), "amount"),
        (json!({"amount": 1e10}), "amount"),
        (json!({}), "amount"),
        (
            json!({"amount": 5, "description": "d".repeat(501)}),
            "description",
        ),
    ] {
        let problem = assert_problem(app.create(1, body.clone()).await, 400).await;
        assert_eq!(problem["field"], field, "{body}");
    }
    let bad_key = app
        .as_user(Method::POST, format!("{}/order", app.address), 1)
        .header("Idempotency-Key", "has space")
        .json(&json!({"amount": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        assert_problem(bad_key, 400).await["field"],
        "Idempotency-Key"
    );
}

#[actix_web::test]
async fn order_routes_need_an_identity() {
    let app = spawn_app().await;
    assert_problem(app.anonymous(Method::GET, "/order").await, 401).await;
    assert_problem(app.anonymous(Method::PUT, "/order/1/pay").await, 401).await;
}
