//! Every wait is bounded. Slow clients cannot hold a worker: the request head and then the
//! body must each arrive within `CLIENT_TIMEOUT`. A statement cannot hold a connection for
//! ever: PostgreSQL cancels it after `DB_STATEMENT_TIMEOUT`, SQLite gives up waiting for the
//! write lock after its `busy_timeout`.

use std::{
    io::{ErrorKind, Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use common::testing::TestDatabase;
use diesel::{QueryableByName, RunQueryDsl, connection::SimpleConnection, sql_types::BigInt};

use crate::helpers::{TestApp, spawn_app_with};

/// Starts billing with `CLIENT_TIMEOUT=1s`, sends `sent` and stalls; asserts the answer is
/// a 408 that came well before the 10 s the client waits, and returns it with the app.
/// (Not shorter: on a loaded machine a worker may take a few hundred ms to read a head that
/// arrived at once, and this app's other requests are under the same timeout.)
async fn stall_and_expect_408(sent: &'static [u8]) -> (TestApp, String) {
    let app = spawn_app_with(&[("CLIENT_TIMEOUT", "1s")]).await;
    let addr = app.address.trim_start_matches("http://").to_string();
    let (answer, took) = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let started = Instant::now();
        stream.write_all(sent).unwrap();
        let mut answer = Vec::new();
        // the server answers, then closes the connection (or resets it: the answer is in)
        match stream.read_to_end(&mut answer) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Err(e) => panic!("no answer within 10 s: {e}"),
        }
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
    let reader = app.on_same_database().await;
    assert!(reader.history(1).await.is_empty());
}

/// On PostgreSQL a statement running past `DB_STATEMENT_TIMEOUT` is cancelled. SQLite has no
/// statement timeout; what can hold one of its statements is the write lock another
/// connection holds, and `busy_timeout` bounds that wait: the statement waits (rather than
/// failing at once with "database is locked"), then gives up. Either way the wait ends with
/// an error, and the connection stays usable.
#[test]
fn a_statement_that_waits_past_its_bound_fails_and_the_connection_stays_usable() {
    use common::db::AnyConnection;

    #[derive(QueryableByName)]
    struct BusyTimeout {
        #[diesel(sql_type = BigInt)]
        timeout: i64,
    }

    let database = TestDatabase::fresh("billing");
    let settings = common::settings::DatabaseSettings {
        db_pool_size: 2,
        db_statement_timeout: Duration::from_millis(200),
        ..common::settings::DatabaseSettings {
            database_url: database.url().to_string(),
            ..common::settings::DatabaseSettings::local("billing")
        }
    };
    let pool = common::db::connect(&settings).unwrap();
    let mut conn = pool.get().unwrap();
    let (bound, took, err) = match &mut *conn {
        AnyConnection::Postgresql(pg) => {
            let started = Instant::now();
            let err = diesel::sql_query("SELECT pg_sleep(5)")
                .execute(pg)
                .unwrap_err();
            (settings.db_statement_timeout, started.elapsed(), err)
        }
        AnyConnection::Sqlite(waiter) => {
            let bound = diesel::sql_query("PRAGMA busy_timeout")
                .get_result::<BusyTimeout>(waiter)
                .unwrap()
                .timeout;
            assert!(
                bound > 0,
                "no busy_timeout: a locked write would fail at once"
            );
            let bound = Duration::from_millis(bound.unsigned_abs());
            // another connection of the pool takes the write lock and keeps it
            let mut holder = pool.get().unwrap();
            holder.batch_execute("BEGIN IMMEDIATE").unwrap();
            let started = Instant::now();
            let err = waiter.batch_execute("BEGIN IMMEDIATE").unwrap_err();
            let took = started.elapsed();
            holder.batch_execute("ROLLBACK").unwrap();
            (bound, took, err)
        }
    };
    println!(
        "{}: a stuck statement failed after {took:?} (bound {bound:?}): {err}",
        common::testing::backend_name()
    );
    let message = err.to_string();
    assert!(
        message.contains("statement timeout") || message.contains("database is locked"),
        "{message}"
    );
    // it waited its bound, and not much longer (slack for a loaded machine)
    assert!(
        took >= bound.mul_f64(0.9),
        "gave up after {took:?}, before {bound:?}"
    );
    assert!(
        took < bound + Duration::from_secs(3),
        "gave up after {took:?}"
    );
    // the connection stays usable, for writes too
    conn.batch_execute("BEGIN; CREATE TABLE probe (x INTEGER); COMMIT;")
        .unwrap();
}
