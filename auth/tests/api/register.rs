use serde_json::{Value, json};

use crate::helpers::{PASSWORD, assert_problem, spawn_app, spawn_auth_calling, unique_login};

#[actix_web::test]
async fn registering_answers_the_user_without_secrets() {
    let app = spawn_app().await;
    let login = unique_login();
    let res = app
        .register(
            &json!({"login": login, "password": PASSWORD, "email": "ada@example.com",
                          "first_name": "Ada", "last_name": "Lovelace"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert!(body["id"].as_i64().unwrap() > 0);
    assert_eq!(body["login"], login.as_str());
    assert_eq!(body["email"], "ada@example.com");
    assert_eq!(body["first_name"], "Ada");
    assert_eq!(body["last_name"], "Lovelace");
    assert_eq!(body.as_object().unwrap().len(), 5, "{body}");
}

#[actix_web::test]
async fn ids_start_at_1_on_a_fresh_database() {
    let app = spawn_app().await;
    let (_, first) = app.register_user().await;
    let (_, second) = app.register_user().await;
    assert_eq!((first, second), (1, 2));
}

#[actix_web::test]
async fn registering_opens_the_billing_account() {
    let app = spawn_app().await;
    let (_, id) = app.register_user().await;
    let res = app
        .client
        .post(format!("{}/internal/accounts", app.billing_address))
        .header("X-Internal-Token", common::testing::INTERNAL_TOKEN)
        .json(&json!({"user_id": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap()["created"],
        false,
        "auth opened it already"
    );
}

#[actix_web::test]
async fn registering_succeeds_while_billing_is_unreachable() {
    let dead_billing = format!("http://127.0.0.1:{}", common::testing::free_port());
    let app = spawn_auth_calling(&dead_billing).await;
    let started = std::time::Instant::now();
    let (login, _) = app.register_user().await;
    assert!(
        started.elapsed().as_secs() < 3,
        "register must not hang on billing"
    );
    assert_eq!(app.login(&login, PASSWORD).await.status(), 200);
}

#[actix_web::test]
async fn a_taken_login_is_a_409_whatever_its_case() {
    let app = spawn_app().await;
    let (login, _) = app.register_user().await;
    for taken in [login.clone(), login.to_uppercase()] {
        let res = app
            .register(&json!({"login": taken, "password": PASSWORD, "email": "x@example.com"}))
            .await;
        let problem = assert_problem(res, 409).await;
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("already taken"),
            "{problem}"
        );
    }
}

#[actix_web::test]
async fn names_are_optional() {
    let app = spawn_app().await;
    let res = app
        .register(&json!({"login": unique_login(), "password": PASSWORD, "email": "x@example.com"}))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["first_name"], "");
}

#[actix_web::test]
async fn invalid_registrations_are_400_problems_naming_the_field() {
    let app = spawn_app().await;
    let ok = json!({"login": "valid_login", "password": PASSWORD, "email": "a@example.com",
                    "first_name": "A", "last_name": "B"});
    let with = |field: &str, value: Value| {
        let mut body = ok.clone();
        body[field] = value;
        body
    };
    let without = |field: &str| {
        let mut body = ok.clone();
        body.as_object_mut().unwrap().remove(field);
        body
    };
    let cases = [
        (with("login", json!("ab")), "login"),
        (with("login", json!("no spaces")), "login"),
        (with("login", json!("x".repeat(65))), "login"),
        (with("login", json!(42)), "login"),
        (without("login"), "login"),
        (with("password", json!("short")), "password"),
        (with("password", json!("p".repeat(129))), "password"),
        (without("password"), "password"),
        (with("email", json!("not-an-email")), "email"),
        (without("email"), "email"),
        (with("first_name", json!("n".repeat(101))), "first_name"),
        (with("last_name", json!("a\u{7}b")), "last_name"),
    ];
    for (body, field) in cases {
        let problem = assert_problem(app.register(&body).await, 400).await;
        assert_eq!(problem["field"], field, "{body} → {problem}");
    }
    // nothing was created by any of them
    assert_eq!(app.register(&ok).await.status(), 200);
}
