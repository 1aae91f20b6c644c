use serde_json::{Value, json};

use common::testing::Scrape;
use reqwest::Method;

use crate::helpers::{
    PASSWORD, assert_problem, session_cookie, set_cookie, spawn_app, spawn_app_with,
};

#[actix_web::test]
async fn logging_in_answers_ok_and_sets_a_session_cookie() {
    let app = spawn_app().await;
    let (login, id) = app.register_user().await;
    let res = app.login(&login, PASSWORD).await;
    assert_eq!(res.status(), 200);
    let cookie = set_cookie(res.headers()).expect("Set-Cookie: session_id");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");
    assert!(
        !cookie.contains("Secure"),
        "Secure is off unless configured: {cookie}"
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body, json!({"status": "ok", "id": id, "login": login}));
}

#[actix_web::test]
async fn with_session_cookie_secure_the_cookie_is_secure() {
    // what k8s-tls sets behind an ingress that terminates TLS
    let app = spawn_app_with(&[("SESSION_COOKIE_SECURE", "true")]).await;
    let (login, _) = app.register_user().await;
    let res = app.login(&login, PASSWORD).await;
    assert_eq!(res.status(), 200);
    let cookie = set_cookie(res.headers()).expect("Set-Cookie: session_id");
    for attribute in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attribute), "{attribute}: {cookie}");
    }
}

#[actix_web::test]
async fn logins_are_case_insensitive() {
    let app = spawn_app().await;
    let (login, _) = app.register_user().await;
    assert_eq!(
        app.login(&login.to_uppercase(), PASSWORD).await.status(),
        200
    );
}

#[actix_web::test]
async fn a_wrong_password_and_an_unknown_login_get_the_same_401() {
    let app = spawn_app().await;
    let (login, _) = app.register_user().await;
    let wrong = assert_problem(app.login(&login, "wrong password").await, 401).await;
    let unknown = assert_problem(app.login("nobody_here", PASSWORD).await, 401).await;
    assert_eq!(wrong["detail"], "invalid login or password");
    assert_eq!(wrong["detail"], unknown["detail"]);
}

#[actix_web::test]
async fn a_failed_login_sets_no_cookie() {
    let app = spawn_app().await;
    let (login, _) = app.register_user().await;
    let res = app.login(&login, "wrong password").await;
    assert!(session_cookie(&res).is_none());
    assert_problem(res, 401).await;
}

#[actix_web::test]
async fn a_login_request_missing_fields_is_a_400() {
    let app = spawn_app().await;
    let problem = assert_problem(app.post("/login", &json!({"login": "x"})).await, 400).await;
    assert_eq!(problem["field"], "password");
}

#[actix_web::test]
async fn signin_tells_where_to_go() {
    let app = spawn_app().await;
    let res = app.anonymous(Method::GET, "/signin").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"message": "Please go to login and provide Login/Password"})
    );
}

#[actix_web::test]
async fn repeated_failures_for_one_login_are_refused_with_429() {
    let app = spawn_app().await;
    let (login, _) = app.register_user().await;
    for _ in 0..5 {
        assert_problem(app.login(&login, "wrong password").await, 401).await;
    }
    // locked: even the right password is refused, without spending bcrypt time on it
    let res = app.login(&login, PASSWORD).await;
    let retry_after: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    let problem = assert_problem(res, 429).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("too many failed logins"),
        "{problem}"
    );
    // other logins are not affected
    let (other, _) = app.register_user().await;
    let res = app.login(&other, PASSWORD).await;
    assert_eq!(res.status(), 200);
    app.logout(&session_cookie(&res).unwrap()).await;

    // what an operator sees: the refusals, the lock, the registrations, the logout
    let m = Scrape::of(&app.address).await;
    let logins = |outcome| m.value("shop_logins_total", &[("outcome", outcome)]);
    assert_eq!(
        (logins("refused"), logins("throttled"), logins("ok")),
        (5.0, 1.0, 1.0)
    );
    assert_eq!(m.value("shop_registrations_total", &[]), 2.0);
    assert_eq!(m.value("shop_sessions_revoked_total", &[]), 1.0);
    let accounts = [
        ("target", "billing"),
        ("operation", "open_account"),
        ("outcome", "ok"),
    ];
    assert_eq!(m.value("shop_downstream_requests_total", &accounts), 2.0);
}

#[actix_web::test]
async fn unknown_logins_are_limited_like_known_ones() {
    let app = spawn_app().await;
    for _ in 0..5 {
        assert_problem(app.login("nobody_here", "wrong password").await, 401).await;
    }
    assert_problem(app.login("nobody_here", "wrong password").await, 429).await;
}

#[actix_web::test]
async fn the_window_closes_and_a_success_forgets_the_failures() {
    let app = spawn_app_with(&[("LOGIN_MAX_FAILURES", "2"), ("LOGIN_FAILURE_WINDOW", "1s")]).await;
    let (login, _) = app.register_user().await;
    for _ in 0..2 {
        assert_problem(app.login(&login, "wrong password").await, 401).await;
    }
    assert_eq!(app.login(&login, PASSWORD).await.status(), 429);
    // not a synchronisation: the scenario is that the window's second goes by
    actix_web::rt::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        app.login(&login, PASSWORD).await.status(),
        200,
        "the window closed"
    );
    // the success cleared the count: one failure is not yet a lock
    assert_problem(app.login(&login, "wrong password").await, 401).await;
    assert_eq!(app.login(&login, PASSWORD).await.status(), 200);
}
