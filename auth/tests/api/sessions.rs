use std::time::Duration;

use common::{db::AnyConnection, testing::wait_until};
use diesel::{Connection, RunQueryDsl};
use reqwest::Method;
use serde_json::Value;

use crate::helpers::{
    PASSWORD, SESSION_KEY, assert_problem, session_cookie, spawn_app, spawn_app_with,
};

/// Direct access to auth's database, to age sessions without waiting a day.
fn connect(url: &str) -> AnyConnection {
    AnyConnection::establish(url).unwrap()
}

/// Ages every session past its expiry; returns how many there were.
fn expire_all_sessions(url: &str) -> usize {
    diesel::sql_query("UPDATE sessions SET expires_at = '2000-01-01 00:00:00'")
        .execute(&mut connect(url))
        .unwrap()
}

fn session_rows(url: &str) -> i64 {
    auth::db::session::count(&mut connect(url)).unwrap()
}

#[actix_web::test]
async fn the_session_lifecycle_login_check_logout() {
    let app = spawn_app().await;
    let (cookie, id) = app.logged_in_user().await;

    let check = app.auth(Some(&cookie)).await;
    assert_eq!(check.status(), 200);
    let h = check.headers().clone();
    assert_eq!(h["x-userid"], id.to_string().as_str());
    assert!(h["x-user"].to_str().unwrap().starts_with("user_"));
    assert!(h["x-email"].to_str().unwrap().ends_with("@example.com"));
    assert_eq!(h["x-first-name"], "Ada");
    assert_eq!(h["x-last-name"], "Lovelace");
    assert!(
        h.get("set-cookie").is_none(),
        "a check must not set cookies (nginx would forward them)"
    );
    let body: Value = check.json().await.unwrap();
    assert_eq!(body["id"], id);
    assert_eq!(body["first_name"], "Ada");

    let out = app.logout(&cookie).await;
    assert_eq!(out.status(), 200);
    assert!(
        out.headers().get_all("set-cookie").iter().any(|v| v
            .to_str()
            .unwrap()
            .starts_with("session_id=;")
            || v.to_str().unwrap().contains("Max-Age=0")),
        "logout clears the cookie"
    );
    assert_eq!(
        out.json::<Value>().await.unwrap(),
        serde_json::json!({"status": "ok"})
    );

    // the same cookie, replayed after logout, is worthless: the session is gone server-side
    assert_problem(app.auth(Some(&cookie)).await, 401).await;
    assert_eq!(session_rows(app.database_url()), 0);
}

#[actix_web::test]
async fn the_ingress_sub_request_gets_headers_and_an_empty_body() {
    let app = spawn_app().await;
    let (cookie, id) = app.logged_in_user().await;
    let res = app
        .client
        .get(format!("{}/auth", app.address))
        .header("Cookie", &cookie)
        .header("X-Original-URL", "http://arch.homework/order")
        .header("X-Sent-From", "nginx-ingress-controller")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-userid"], id.to_string().as_str());
    assert_eq!(res.headers()["content-length"], "0");
    assert!(res.bytes().await.unwrap().is_empty());
}

#[actix_web::test]
async fn auth_never_trusts_identity_headers_from_the_request() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(format!("{}/auth", app.address))
        .header("X-UserId", "1")
        .header("X-User", "admin")
        .send()
        .await
        .unwrap();
    assert_problem(res, 401).await;
    // with a valid session, spoofed headers do not change who you are
    let (cookie, id) = app.logged_in_user().await;
    let res = app
        .client
        .get(format!("{}/auth", app.address))
        .header("Cookie", &cookie)
        .header("X-UserId", "999")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-userid"], id.to_string().as_str());
}

#[actix_web::test]
async fn no_cookie_or_a_forged_cookie_is_a_401() {
    let app = spawn_app().await;
    assert_problem(app.auth(None).await, 401).await;
    assert_problem(app.auth(Some("session_id=forged-value")).await, 401).await;
    let (cookie, _) = app.logged_in_user().await;
    let tampered = format!("{}x", cookie);
    assert_problem(app.auth(Some(&tampered)).await, 401).await;
}

#[actix_web::test]
async fn every_login_gets_a_new_session_id_and_the_old_one_dies() {
    let app = spawn_app().await;
    let (login, _) = app.register_user().await;
    let first = session_cookie(&app.login(&login, PASSWORD).await).unwrap();
    let second_res = app
        .client
        .post(format!("{}/login", app.address))
        .header("Cookie", &first)
        .json(&serde_json::json!({"login": login, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let second = session_cookie(&second_res).unwrap();
    assert_ne!(first, second);
    assert_problem(app.auth(Some(&first)).await, 401).await;
    assert_eq!(app.auth(Some(&second)).await.status(), 200);
}

#[actix_web::test]
async fn logging_out_without_a_session_is_fine() {
    let app = spawn_app().await;
    let res = app.anonymous(Method::GET, "/logout").await;
    assert_eq!(res.status(), 200);
}

#[actix_web::test]
async fn a_session_survives_a_restart_of_auth() {
    let app = spawn_app().await;
    let (cookie, id) = app.logged_in_user().await;
    app.stop().await;
    let restarted = app.on_same_database(&[]).await;
    let res = restarted.auth(Some(&cookie)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-userid"], id.to_string().as_str());
}

#[actix_web::test]
async fn a_session_from_another_key_is_refused() {
    let app = spawn_app().await;
    let (cookie, _) = app.logged_in_user().await;
    // differs in its last byte only
    let other_key = format!("{}!", &SESSION_KEY[..SESSION_KEY.len() - 1]);
    let other = app.on_same_database(&[("SESSION_KEY", &other_key)]).await;
    assert_problem(other.auth(Some(&cookie)).await, 401).await;
}

#[actix_web::test]
async fn an_expired_session_is_refused_and_removed() {
    let app = spawn_app().await;
    let (cookie, _) = app.logged_in_user().await;
    assert_eq!(session_rows(app.database_url()), 1);
    assert_eq!(expire_all_sessions(app.database_url()), 1);
    assert_problem(app.auth(Some(&cookie)).await, 401).await;
    assert_eq!(session_rows(app.database_url()), 0);
}

#[actix_web::test]
async fn expired_sessions_are_swept_in_the_background() {
    let app = spawn_app_with(&[("SESSION_CLEANUP_INTERVAL", "200ms")]).await;
    app.logged_in_user().await;
    app.logged_in_user().await;
    assert_eq!(expire_all_sessions(app.database_url()), 2);
    let live = app.logged_in_user().await;
    // nothing reads the expired ones: only the sweeper can remove them, within a few sweeps
    wait_until(
        "only the live session is left",
        Duration::from_secs(10),
        || async { (session_rows(app.database_url()) == 1).then_some(()) },
    )
    .await;
    assert_eq!(app.auth(Some(&live.0)).await.status(), 200);
}
