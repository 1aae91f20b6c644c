//! Two pays of one order that meet at the account's row lock, on PostgreSQL.
//!
//! There a charge is one statement whose "paid before?" check sees the statement's snapshot:
//! a pay that waited for the lock while the other pay charged passes that check, debits —
//! and its payment row then collides with the first one's primary key, which fails the whole
//! statement, debit included. The test makes that race happen every time: a transaction
//! holds the account's row lock until both pays are waiting for it.

use std::{
    thread,
    time::{Duration, Instant},
};

use billing::{
    db::PaymentOutcome,
    domain::{Change, Payment, UserId},
};
use common::{
    Money,
    db::{AnyConnection, Backend, Pool},
    settings::DatabaseSettings,
    testing::TestDatabase,
};
use diesel::{QueryableByName, RunQueryDsl, connection::SimpleConnection, sql_types::BigInt};

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn count(conn: &mut AnyConnection, sql: &str) -> i64 {
    diesel::sql_query(sql).get_result::<Count>(conn).unwrap().n
}

#[test]
fn two_pays_of_one_order_that_meet_at_the_account_lock_charge_once() {
    if common::testing::backend() == Backend::Sqlite {
        // SQLite charges in a write transaction; one writer at a time, no such race
        return;
    }
    let database = TestDatabase::fresh("billing");
    let pool: Pool = common::db::connect(&DatabaseSettings {
        database_url: database.url().to_string(),
        db_pool_size: 4,
        ..DatabaseSettings::local("billing")
    })
    .unwrap();
    common::db::migrate(&pool, billing::MIGRATIONS).unwrap();
    let user = UserId::parse("user_id", 1).unwrap();
    let deposit = Change::parse(Money::units(1000), None).unwrap();
    billing::db::apply_change(&mut pool.get().unwrap(), user, &deposit, None).unwrap();

    let mut locker = pool.get().unwrap();
    locker
        .batch_execute("BEGIN; SELECT 1 FROM accounts WHERE user_id = 1 FOR UPDATE")
        .unwrap();
    let pays: Vec<_> = (0..2)
        .map(|_| {
            let pool = pool.clone();
            thread::spawn(move || {
                let payment = Payment::parse(77, 1, Money::units(300)).unwrap();
                billing::db::pay(&mut pool.get().unwrap(), &payment).unwrap()
            })
        })
        .collect();
    let mut observer = pool.get().unwrap();
    let started = Instant::now();
    while count(
        &mut observer,
        "SELECT count(*) AS n FROM pg_stat_activity \
         WHERE wait_event_type = 'Lock' AND datname = current_database()",
    ) < 2
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "both pays should be waiting for the account's lock"
        );
        thread::sleep(Duration::from_millis(10));
    }
    locker.batch_execute("COMMIT").unwrap();

    let mut outcomes: Vec<PaymentOutcome> = pays.into_iter().map(|t| t.join().unwrap()).collect();
    outcomes.sort_by_key(|o| matches!(o, PaymentOutcome::Replayed { .. }));
    let balance = Money::units(700);
    assert_eq!(
        outcomes,
        [
            PaymentOutcome::Charged { balance },
            PaymentOutcome::Replayed { balance }
        ]
    );
    let conn = &mut observer;
    assert_eq!(
        count(conn, "SELECT balance AS n FROM accounts WHERE user_id = 1"),
        70_000
    );
    assert_eq!(count(conn, "SELECT count(*) AS n FROM payments"), 1);
    assert_eq!(
        count(conn, "SELECT count(*) AS n FROM ledger WHERE order_id = 77"),
        1
    );
}
