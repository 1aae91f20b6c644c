//! Why the services run behind PgBouncer in transaction mode the way they do (k8s/ha's
//! Pooler, scripts/lib/pgbouncer.sh): what breaks through transaction pooling, shown for
//! real, next to what the services do instead.
//!
//! Needs `TEST_PGBOUNCER_URL`: a PgBouncer in `pool_mode = transaction` in front of the server
//! of `TEST_DATABASE_URL`, passing every database name on (`* = …`), as the test command
//! starts one (`scripts/test`, PostgreSQL run). Without it these tests return at once.
//!
//! Each case makes PgBouncer hand one client's next transaction to another server connection,
//! deterministically: after client A's first statement its server connection is idle, and
//! PgBouncer lends the idle connection used last (`server_round_robin = 0`) to client B's
//! open transaction, so A's next statement gets a second server connection.

use common::{
    db::{AnyConnection, Pool},
    settings::DatabaseSettings,
    testing::TestDatabase,
};
use diesel::{
    Connection, IntoSql, PgConnection, QueryableByName, RunQueryDsl,
    connection::{CacheSize, SimpleConnection},
    sql_types::{BigInt, Bool, Integer},
};

/// `url` (a fresh test database) through the pooler, or `None` when there is none.
fn through_pooler(url: &str) -> Option<String> {
    let pooler = std::env::var("TEST_PGBOUNCER_URL").ok()?;
    let (server, _) = pooler.rsplit_once('/')?;
    let (_, database) = url.rsplit_once('/')?;
    Some(format!("{server}/{database}"))
}

/// A fresh database, and its URL through the pooler; `None` unless both are there.
fn pooled() -> Option<(std::sync::Arc<TestDatabase>, String)> {
    if common::testing::backend() != common::db::Backend::Postgres {
        return None;
    }
    let database = TestDatabase::fresh("pooler");
    let Some(pooled) = through_pooler(database.url()) else {
        eprintln!("TEST_PGBOUNCER_URL unset: the pooler cases are not run");
        return None;
    };
    Some((database, pooled))
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

#[derive(QueryableByName)]
struct Got {
    #[diesel(sql_type = Bool)]
    got: bool,
}

/// A statement with a parameter, as the services' queries are built: diesel prepares it by
/// name when its cache is on (`sql_query` text is never cached, so not that).
fn number(conn: &mut PgConnection, n: i32) -> diesel::QueryResult<i32> {
    diesel::select(n.into_sql::<Integer>()).get_result(conn)
}

/// Client B: an open transaction on the server connection client A used last.
fn hold_last_server(url: &str) -> PgConnection {
    let mut b = PgConnection::establish(url).unwrap();
    b.batch_execute("BEGIN; SELECT 1").unwrap();
    b
}

#[test]
fn named_prepared_statements_break_behind_transaction_pooling_unnamed_ones_do_not() {
    let Some((_db, url)) = pooled() else { return };

    // diesel's default: the statement is prepared once as __diesel_stmt_0, then executed
    let mut a = PgConnection::establish(&url).unwrap();
    assert_eq!(number(&mut a, 1).unwrap(), 1);
    let mut b = hold_last_server(&url);
    let err = number(&mut a, 2).expect_err("the named statement is on the other server");
    assert!(err.to_string().contains("does not exist"), "{err}");
    b.batch_execute("COMMIT").unwrap();

    // DB_STATEMENT_CACHE=false: one unnamed parse-bind-execute per statement
    let mut a = PgConnection::establish(&url).unwrap();
    a.set_prepared_statement_cache_size(CacheSize::Disabled);
    assert_eq!(number(&mut a, 1).unwrap(), 1);
    let mut b = hold_last_server(&url);
    assert_eq!(
        number(&mut a, 2).unwrap(),
        2,
        "another server, the same answer"
    );
    b.batch_execute("COMMIT").unwrap();
}

#[test]
fn the_services_pool_works_behind_transaction_pooling_with_the_cache_off() {
    let Some((_db, url)) = pooled() else { return };
    let pool: Pool = common::db::connect(&DatabaseSettings {
        database_url: url.clone(),
        db_pool_size: 4,
        db_statement_cache: false,
        ..DatabaseSettings::local("billing")
    })
    .unwrap();
    // each pooled connection's statements, on whichever server connection PgBouncer lends
    for round in 0..8 {
        let mut conn = pool.get().unwrap();
        let AnyConnection::Postgresql(pg) = &mut *conn else {
            unreachable!("PostgreSQL")
        };
        assert_eq!(number(pg, round).unwrap(), round);
        let mut b = hold_last_server(&url);
        assert_eq!(number(pg, round + 1).unwrap(), round + 1);
        b.batch_execute("COMMIT").unwrap();
    }
}

#[test]
fn listen_does_not_stay_with_its_client_behind_transaction_pooling() {
    let Some((db, url)) = pooled() else { return };
    let listening = |conn: &mut PgConnection| {
        diesel::sql_query("SELECT count(*) AS count FROM pg_listening_channels()")
            .get_result::<Count>(conn)
            .unwrap()
            .count
    };
    let mut a = PgConnection::establish(&url).unwrap();
    a.batch_execute("LISTEN shop_sessions").unwrap();
    let mut b = hold_last_server(&url);
    assert_eq!(
        listening(&mut a),
        0,
        "A's next transaction runs on a server that listens to nothing"
    );
    b.batch_execute("COMMIT").unwrap();
    // what auth does instead: DATABASE_LISTEN_URL names PostgreSQL itself
    let mut direct = PgConnection::establish(db.url()).unwrap();
    direct.batch_execute("LISTEN shop_sessions").unwrap();
    let mut b = hold_last_server(&url);
    assert_eq!(listening(&mut direct), 1);
    b.batch_execute("COMMIT").unwrap();
}

#[test]
fn a_session_advisory_lock_leaks_behind_transaction_pooling_migrations_take_turns() {
    let Some((_db, url)) = pooled() else { return };
    let try_lock = |conn: &mut PgConnection| {
        diesel::sql_query("SELECT pg_try_advisory_lock(42) AS got")
            .get_result::<Got>(conn)
            .unwrap()
            .got
    };
    // A takes a session lock; its server connection goes back to the pool still holding it,
    // and B's transaction on that connection "gets" the lock A holds
    let mut a = PgConnection::establish(&url).unwrap();
    assert!(try_lock(&mut a));
    let mut b = hold_last_server(&url);
    assert!(
        try_lock(&mut b),
        "B got the lock A holds: mutual exclusion is gone"
    );
    b.batch_execute("COMMIT").unwrap();

    // what migrate does: a transaction-scoped lock inside the one transaction that applies
    // them. Four replicas' init containers at once, through the pooler: each migration
    // applied exactly once, every run succeeds.
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let pool = common::db::connect(&DatabaseSettings {
                    database_url: url,
                    db_pool_size: 1,
                    db_statement_cache: false,
                    ..DatabaseSettings::local("billing")
                })
                .unwrap();
                common::db::migrate(&pool, billing::MIGRATIONS).unwrap()
            })
        })
        .collect();
    let applied: Vec<usize> = runs.into_iter().map(|r| r.join().unwrap()).collect();
    let mut conn = PgConnection::establish(&url).unwrap();
    let rows = diesel::sql_query("SELECT count(*) AS count FROM __diesel_schema_migrations")
        .get_result::<Count>(&mut conn)
        .unwrap()
        .count;
    assert_eq!(applied.iter().sum::<usize>(), rows as usize, "{applied:?}");
    assert_eq!(applied.iter().filter(|&&n| n > 0).count(), 1, "{applied:?}");
}
