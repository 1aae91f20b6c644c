//! The connection pool's health check (`common::db::Manager`): a connection used a moment ago
//! is handed out without a `SELECT 1`, and one the server closed is dropped after the query
//! that found it closed, so the next checkout gets a working connection.

use common::{
    db::{AnyConnection, Pool},
    settings::DatabaseSettings,
    testing::TestDatabase,
};
use diesel::{QueryableByName, RunQueryDsl, sql_types::Text};

#[derive(QueryableByName)]
struct Pid {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pid: i32,
}

#[derive(QueryableByName)]
struct LastQuery {
    #[diesel(sql_type = Text)]
    query: String,
}

fn pool(database: &TestDatabase, size: u32) -> Pool {
    common::db::connect(&DatabaseSettings {
        database_url: database.url().to_string(),
        db_pool_size: size,
        ..DatabaseSettings::local("billing")
    })
    .unwrap()
}

fn pid(conn: &mut AnyConnection) -> i32 {
    diesel::sql_query("SELECT pg_backend_pid() AS pid")
        .get_result::<Pid>(conn)
        .unwrap()
        .pid
}

#[test]
fn a_recently_used_connection_is_not_pinged_and_a_closed_one_is_replaced() {
    let database = TestDatabase::fresh("billing");
    if common::testing::backend() == common::db::Backend::Sqlite {
        // a file has no server to lose; the check is the same code, exercised on PostgreSQL
        let pool = pool(&database, 2);
        common::db::ping(&mut pool.get().unwrap()).unwrap();
        return;
    }
    let pool = pool(&database, 2);
    let first = {
        let mut conn = pool.get().unwrap();
        diesel::sql_query("SELECT 'marker' AS query")
            .execute(&mut conn)
            .unwrap();
        pid(&mut conn)
    };

    // checked out again at once: its last statement is still ours, no SELECT 1 ran
    let mut again = pool.get().unwrap();
    let mut observer = pool.get().unwrap();
    let last = diesel::sql_query(format!(
        "SELECT query FROM pg_stat_activity WHERE pid = {first}"
    ))
    .get_result::<LastQuery>(&mut observer)
    .unwrap()
    .query;
    assert!(
        last.contains("pg_backend_pid"),
        "a statement ran at checkout; last statement: {last}"
    );
    assert_eq!(
        pid(&mut again),
        first,
        "the pool hands out its idle connection"
    );

    // the server closes it (a restart, an idle-connection killer, a failover)
    diesel::sql_query(format!(
        "SELECT pg_terminate_backend({first})::text AS query"
    ))
    .get_result::<LastQuery>(&mut observer)
    .unwrap();
    drop(observer);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let err = diesel::sql_query("SELECT 1")
        .execute(&mut again)
        .expect_err("the backend is gone");
    println!("the query on the closed connection failed: {err}");
    drop(again);

    // that connection is not handed out again: every checkout now works
    for _ in 0..4 {
        let mut conn = pool.get().unwrap();
        assert_ne!(pid(&mut conn), first, "the closed connection was reused");
    }
}
