//! The session cache of the forward-auth check never outlives what it was read from: a
//! logout or a profile change is seen at once by the replica that made it and, on
//! PostgreSQL, by every other replica within 100 ms — also right after the listener lost its
//! connection (the cache is bypassed until it has resubscribed).

use std::time::{Duration, Instant};

use common::{
    db::{AnyConnection, Backend},
    testing::backend,
};
use diesel::{Connection, QueryableByName, RunQueryDsl, sql_types::Text};
use serde_json::json;

use crate::helpers::{PASSWORD, TestApp, session_cookie, spawn_app};

/// The bound the issue sets for a revocation to reach another replica.
const WITHIN: Duration = Duration::from_millis(100);

async fn email_seen(app: &TestApp, cookie: &str) -> String {
    let res = app.auth(Some(cookie)).await;
    assert_eq!(res.status(), 200);
    res.headers()["x-email"].to_str().unwrap().to_string()
}

async fn change_email(app: &TestApp, cookie: &str, email: &str) {
    let req = app
        .client
        .put(format!("{}/users/me", app.address))
        .json(&json!({ "email": email }));
    assert_eq!(app.through_gateway(cookie, req).await.status(), 200);
}

/// Polls `app`'s `/auth` with `cookie` until it answers `status`; how long that took.
async fn until_status(app: &TestApp, cookie: &str, status: u16, bound: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if app.auth(Some(cookie)).await.status() == status {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < bound * 10,
            "/auth did not answer {status} within {:?}",
            bound * 10
        );
        actix_web::rt::time::sleep(Duration::from_millis(1)).await;
    }
}

#[actix_web::test]
async fn a_logout_and_a_profile_change_are_seen_at_once_by_the_same_replica() {
    let app = spawn_app().await;
    let (cookie, _) = app.logged_in_user().await;
    // cached by the first check
    for _ in 0..3 {
        assert!(email_seen(&app, &cookie).await.ends_with("@example.com"));
    }
    change_email(&app, &cookie, "changed@example.org").await;
    assert_eq!(email_seen(&app, &cookie).await, "changed@example.org");
    assert_eq!(app.logout(&cookie).await.status(), 200);
    assert_eq!(app.auth(Some(&cookie)).await.status(), 401);
}

#[derive(QueryableByName)]
struct Pid {
    #[diesel(sql_type = Text)]
    pid: String,
}

/// The pids of the connections that LISTEN for revocations.
fn listeners(url: &str) -> Vec<String> {
    diesel::sql_query(
        "SELECT pid::text AS pid FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .load::<Pid>(&mut AnyConnection::establish(url).unwrap())
    .unwrap()
    .into_iter()
    .map(|p| p.pid)
    .collect()
}

/// Waits until both replicas' listeners are subscribed (each cache is off until then).
async fn both_listening(app: &TestApp) {
    common::testing::wait_until("both listeners", Duration::from_secs(10), || async {
        (listeners(app.database_url()).len() == 2).then_some(())
    })
    .await;
}

#[actix_web::test]
async fn a_logout_on_one_replica_is_refused_by_another_within_100ms_1000_times() {
    if backend() != Backend::Postgres {
        return; // one process owns a SQLite file: there is no other replica
    }
    let a = spawn_app().await;
    let b = a.on_same_database(&[]).await;
    let (login, _) = a.register_user().await;
    both_listening(&a).await;

    let rounds = 1000;
    let mut took = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let res = a.login(&login, PASSWORD).await;
        let cookie = session_cookie(&res).expect("a session");
        // B has the session cached
        assert_eq!(b.auth(Some(&cookie)).await.status(), 200);
        assert_eq!(b.auth(Some(&cookie)).await.status(), 200);
        assert_eq!(a.logout(&cookie).await.status(), 200);
        took.push(until_status(&b, &cookie, 401, WITHIN).await);
    }
    took.sort();
    let (p50, p99, max) = (took[rounds / 2], took[rounds * 99 / 100], took[rounds - 1]);
    println!("logout on A → refused by B: {rounds} rounds, p50 {p50:?}, p99 {p99:?}, max {max:?}");
    assert!(max <= WITHIN, "a revocation took {max:?} to reach B");

    // a profile change on A reaches B's cached identity headers too
    let res = a.login(&login, PASSWORD).await;
    let cookie = session_cookie(&res).unwrap();
    email_seen(&b, &cookie).await;
    change_email(&a, &cookie, "moved@example.org").await;
    let started = Instant::now();
    while email_seen(&b, &cookie).await != "moved@example.org" {
        assert!(started.elapsed() <= WITHIN, "B kept the old email");
        actix_web::rt::time::sleep(Duration::from_millis(1)).await;
    }
    println!("profile change on A → seen by B in {:?}", started.elapsed());
}

#[actix_web::test]
async fn a_replica_whose_listener_lost_its_connection_does_not_answer_from_its_cache() {
    if backend() != Backend::Postgres {
        return;
    }
    let a = spawn_app().await;
    let b = a.on_same_database(&[]).await;
    let (cookie, _) = a.logged_in_user().await;
    both_listening(&a).await;
    assert_eq!(b.auth(Some(&cookie)).await.status(), 200); // cached by B

    // every listener's connection is cut, then the session is revoked on A at once: the
    // announcement is lost, B must still refuse the cookie
    let mut admin = AnyConnection::establish(a.database_url()).unwrap();
    for pid in listeners(a.database_url()) {
        diesel::sql_query(format!("SELECT pg_terminate_backend({pid})::text AS pid"))
            .load::<Pid>(&mut admin)
            .unwrap();
    }
    assert_eq!(a.logout(&cookie).await.status(), 200);
    let took = until_status(&b, &cookie, 401, WITHIN).await;
    println!("listener cut, logout on A → refused by B in {took:?}");
    assert!(
        took <= WITHIN,
        "B answered from a cache it could not keep in step"
    );

    // and the listeners come back by themselves
    common::testing::wait_until(
        "the listeners resubscribe",
        Duration::from_secs(10),
        || async { (listeners(a.database_url()).len() == 2).then_some(()) },
    )
    .await;
}
