use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::helpers::{assert_problem, message, spawn_app};

#[actix_web::test]
async fn a_stored_message_is_listed_for_its_user_only() {
    let app = spawn_app().await;
    let stored = app.send_ok(&message(1, 7, "Processing")).await;
    assert_eq!(stored["created"], true);
    assert_eq!(stored["message"], "order #7 Processing");

    let list = app.list(1).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["order_id"], 7);
    assert_eq!(list[0]["message"], "order #7 Processing");
    assert_eq!(list[0]["email"], "ada@example.com");
    assert!(list[0]["id"].as_i64().unwrap() > 0);
    assert!(list[0]["created"].as_str().unwrap().ends_with('Z'));
    assert!(app.list(2).await.is_empty());
}

#[actix_web::test]
async fn messages_are_listed_newest_first() {
    let app = spawn_app().await;
    for (order, status) in [(7, "Failed"), (7, "Processing"), (8, "Failed")] {
        app.send_ok(&message(1, order, status)).await;
    }
    let texts: Vec<String> = app
        .list(1)
        .await
        .iter()
        .map(|n| n["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        texts,
        ["order #8 Failed", "order #7 Processing", "order #7 Failed"]
    );
}

#[actix_web::test]
async fn a_message_sent_many_times_is_stored_once() {
    let app = spawn_app().await;
    let body = message(1, 9, "Processing");
    let answers: Vec<Value> = join_all((0..20).map(|_| async {
        let res = app.send(&body).await;
        assert_eq!(res.status(), 200);
        res.json::<Value>().await.unwrap()
    }))
    .await;
    let created = answers.iter().filter(|a| a["created"] == true).count();
    assert_eq!(created, 1);
    assert!(answers.iter().all(|a| a["id"] == answers[0]["id"]));
    assert_eq!(app.list(1).await.len(), 1);
}

#[actix_web::test]
async fn a_key_reused_for_another_message_is_a_409() {
    let app = spawn_app().await;
    app.send_ok(&message(1, 9, "Processing")).await;
    let mut other = message(1, 9, "Failed");
    other["key"] = json!("order-9-Processing");
    assert_problem(app.send(&other).await, 409).await;
    let list = app.list(1).await;
    assert_eq!(list.len(), 1, "the first message stands alone");
    assert_eq!(list[0]["message"], "order #9 Processing");
}

#[actix_web::test]
async fn bad_messages_are_400_problems_naming_the_field() {
    let app = spawn_app().await;
    let with = |field: &str, value: Value| {
        let mut body = message(1, 1, "Processing");
        body[field] = value;
        body
    };
    for (body, field) in [
        (with("user_id", json!(0)), "user_id"),
        (with("order_id", json!("x")), "order_id"),
        (with("message", json!("")), "message"),
        (with("message", json!("m".repeat(501))), "message"),
        (with("key", json!(" ")), "key"),
    ] {
        let problem = assert_problem(app.send(&body).await, 400).await;
        assert_eq!(problem["field"], field, "{body}");
    }
    assert!(app.list(1).await.is_empty(), "none of them was stored");
}

#[actix_web::test]
async fn listing_needs_an_identity() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(format!("{}/notification", app.address))
        .send()
        .await
        .unwrap();
    assert_problem(res, 401).await;
}

#[actix_web::test]
async fn internal_create_refuses_calls_without_the_service_credential() {
    let app = spawn_app().await;
    let res = app
        .client
        .post(format!("{}/internal/notifications", app.address))
        .json(&message(1, 7, "Processing"))
        .send()
        .await
        .unwrap();
    assert_problem(res, 401).await;
    assert!(app.list(1).await.is_empty());
}
