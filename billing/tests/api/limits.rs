//! Slow clients cannot hold a worker: the request head and then the body must each arrive
//! within `CLIENT_TIMEOUT`.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use common::testing::fresh_database_url;

use crate::helpers::{TestApp, spawn_app_on, spawn_app_with};

/// Starts billing with `CLIENT_TIMEOUT=1s`, sends `sent` and stalls; asserts the answer is
/// a 408 that came well before the 10 s the client waits, and returns it with the app.
/// (Not shorter: on a loaded machine a worker may take a few hundred ms to read a head that
/// arrived at once, and this app's other requests are under the same timeout.)
async fn stall_and_expect_408(sent: &'static [u8]) -> (TestApp, String) {
    let app = spawn_app_with(fresh_database_url("billing"), &[("CLIENT_TIMEOUT", "1s")]).await;
    let addr = app.address.trim_start_matches("http://").to_string();
    let (answer, took) = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let started = Instant::now();
        stream.write_all(sent).unwrap();
        let mut answer = Vec::new();
        // the server answers, then closes the connection; a read error ends it too
        let _ = stream.read_to_end(&mut answer);
        (
            String::from_utf8_lossy(&answer).into_owned(),
            started.elapsed(),
        )
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(took < Duration::from_secs(6), "answered after {took:?}");
    (app, answer)
}

#[actix_web::test]
async fn a_request_head_that_never_ends_is_a_408() {
    stall_and_expect_408(b"POST /billing/change HTTP/1.1\r\nHost: x\r\n").await;
}

#[actix_web::test]
async fn a_body_that_never_ends_is_a_408_problem_and_changes_nothing() {
    let (app, answer) = stall_and_expect_408(
        b"POST /billing/change HTTP/1.1\r\nHost: x\r\nX-UserId: 1\r\n\
          Content-Type: application/json\r\nContent-Length: 40\r\n\r\n{\"amount\": ",
    )
    .await;
    assert!(answer.contains("application/problem+json"), "{answer:?}");
    assert!(
        answer.contains("request body not received within 1s"),
        "{answer:?}"
    );
    // read back by a second billing on the same database, with the default timeouts
    let reader = spawn_app_on(app.database_url.clone()).await;
    assert!(reader.history(1).await.is_empty());
}

#[test]
fn a_statement_slower_than_db_statement_timeout_is_cancelled() {
    use common::db::AnyConnection;
    use diesel::{RunQueryDsl, connection::SimpleConnection};

    let settings = common::settings::DatabaseSettings {
        db_pool_size: 1,
        db_statement_timeout: Duration::from_millis(200),
        ..common::settings::DatabaseSettings {
            database_url: fresh_database_url("billing"),
            ..common::settings::DatabaseSettings::local("billing")
        }
    };
    let pool = common::db::connect(&settings).unwrap();
    let mut conn = pool.get().unwrap();
    match &mut *conn {
        AnyConnection::Postgresql(pg) => {
            let started = Instant::now();
            let err = diesel::sql_query("SELECT pg_sleep(5)")
                .execute(pg)
                .unwrap_err();
            let took = started.elapsed();
            assert!(err.to_string().contains("statement timeout"), "{err}");
            assert!(took < Duration::from_secs(3), "cancelled after {took:?}");
            // the connection stays usable
            pg.batch_execute("SELECT 1").unwrap();
        }
        AnyConnection::Sqlite(_) => {
            println!(
                "sqlite: no statement timeout (PostgreSQL only); busy_timeout bounds lock waits"
            );
        }
    }
}
