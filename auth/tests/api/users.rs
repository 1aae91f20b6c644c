use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{assert_problem, spawn_app};

#[actix_web::test]
async fn a_user_reads_their_profile_through_the_gateway() {
    let app = spawn_app().await;
    let (cookie, id) = app.logged_in_user().await;
    let req = app.client.get(format!("{}/users/me", app.address));
    let res = app.through_gateway(&cookie, req).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["id"], id);
    assert_eq!(body["first_name"], "Ada");
    assert!(body.get("password_hash").is_none());
}

#[actix_web::test]
async fn a_profile_update_changes_the_given_fields_and_the_identity() {
    let app = spawn_app().await;
    let (cookie, _) = app.logged_in_user().await;
    let req = app
        .client
        .put(format!("{}/users/me", app.address))
        .json(&json!({"email": "new@example.com", "first_name": "Zoë"}));
    let res = app.through_gateway(&cookie, req).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["email"], "new@example.com");
    assert_eq!(body["first_name"], "Zoë");
    assert_eq!(body["last_name"], "Lovelace", "fields not given are kept");
    // the next forward-auth check carries the new values, non-ASCII included
    let check = app.auth(Some(&cookie)).await;
    assert_eq!(check.headers()["x-email"], "new@example.com");
    assert_eq!(check.headers()["x-first-name"].as_bytes(), "Zoë".as_bytes());
}

#[actix_web::test]
async fn an_invalid_profile_update_is_a_400_and_changes_nothing() {
    let app = spawn_app().await;
    let (cookie, _) = app.logged_in_user().await;
    for (body, field) in [
        (json!({"email": "nope"}), "email"),
        (json!({"last_name": "x".repeat(101)}), "last_name"),
        (json!({"first_name": 3}), "first_name"),
    ] {
        let req = app
            .client
            .put(format!("{}/users/me", app.address))
            .json(&body);
        let problem = assert_problem(app.through_gateway(&cookie, req).await, 400).await;
        assert_eq!(problem["field"], field);
    }
    let check = app.auth(Some(&cookie)).await;
    assert!(
        check.headers()["x-email"]
            .to_str()
            .unwrap()
            .ends_with("@example.com")
    );
    assert_eq!(check.headers()["x-first-name"], "Ada");
    assert_eq!(check.headers()["x-last-name"], "Lovelace");
}

#[actix_web::test]
async fn profile_routes_without_identity_are_401() {
    let app = spawn_app().await;
    assert_problem(app.anonymous(Method::GET, "/users/me").await, 401).await;
    let res = app
        .client
        .put(format!("{}/users/me", app.address))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 401).await;
}

#[actix_web::test]
async fn a_profile_of_a_deleted_or_unknown_user_is_a_404() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(format!("{}/users/me", app.address))
        .header("X-UserId", "424242")
        .send()
        .await
        .unwrap();
    assert_problem(res, 404).await;
}
