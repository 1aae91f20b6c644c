//! Many requests on one account at once: the balance is exact, never negative, and equals
//! the ledger sum. Run on SQLite and on PostgreSQL by the test command.

use common::Money;
use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::helpers::spawn_app;

const PARALLEL: usize = 50;

#[actix_web::test]
async fn concurrent_withdrawals_never_overdraw() {
    let app = spawn_app().await;
    app.deposit(1, 1000).await;
    // 50 × 30 = 1500 asked for, 1000 available: exactly 33 may pass
    let answers: Vec<Value> = join_all((0..PARALLEL).map(|_| async {
        let res = app.change(1, json!({"amount": -30})).await;
        assert_eq!(res.status(), 200);
        res.json::<Value>().await.unwrap()
    }))
    .await;
    let ok = answers.iter().filter(|a| a["status"] == "OK").count();
    let refused = answers.iter().filter(|a| a["status"] == "ERROR").count();
    println!(
        "{} withdrawals: {ok} applied, {refused} refused",
        common::testing::backend_name()
    );
    assert_eq!((ok, refused), (33, 17));
    assert_eq!(app.balance(1).await, 10);
    assert_eq!(app.assert_ledger_matches_balance(1).await, Money::units(10));
}

#[actix_web::test]
async fn concurrent_payments_of_different_orders_never_overdraw() {
    let app = spawn_app().await;
    app.deposit(1, 1000).await;
    let answers: Vec<Value> =
        join_all((1..=PARALLEL as i64).map(|order| app.pay(order, 1, 30))).await;
    let charged = answers.iter().filter(|a| a["status"] == "OK").count();
    println!(
        "{} payments: {charged} charged, {} declined",
        common::testing::backend_name(),
        PARALLEL - charged
    );
    assert_eq!(charged, 33);
    assert_eq!(app.assert_ledger_matches_balance(1).await, Money::units(10));
}

#[actix_web::test]
async fn concurrent_replays_of_one_payment_charge_once() {
    let app = spawn_app().await;
    app.deposit(1, 1000).await;
    let answers: Vec<Value> = join_all((0..PARALLEL).map(|_| app.pay(77, 1, 300))).await;
    // every answer agrees: paid, and the balance right after the one charge
    for answer in &answers {
        assert_eq!(answer["status"], "OK", "{answer}");
        assert_eq!(answer["balance"], 700, "{answer}");
    }
    let fresh = answers.iter().filter(|a| a["replayed"] == false).count();
    println!(
        "{} replays of one order: {fresh} charge, {} replayed",
        common::testing::backend_name(),
        PARALLEL - fresh
    );
    assert_eq!(fresh, 1);
    assert_eq!(app.balance(1).await, 700);
    assert_eq!(app.history(1).await.len(), 2);
}

#[actix_web::test]
async fn concurrent_mixed_deposits_withdrawals_and_payments_keep_the_ledger_exact() {
    let app = spawn_app().await;
    app.deposit(1, 500).await;
    let answers = join_all((0..PARALLEL as i64).map(|i| {
        let app = &app;
        async move {
            match i % 3 {
                0 => app
                    .change(1, json!({"amount": 7}))
                    .await
                    .json::<Value>()
                    .await
                    .unwrap(),
                1 => app
                    .change(1, json!({"amount": -11}))
                    .await
                    .json::<Value>()
                    .await
                    .unwrap(),
                _ => app.pay(1000 + i, 1, 13).await,
            }
        }
    }))
    .await;
    assert!(
        answers
            .iter()
            .all(|a| a["status"] == "OK" || a["status"] == "ERROR")
    );
    // the balance is exactly the start plus what every applied answer moved
    let moved: i64 = answers
        .iter()
        .enumerate()
        .filter(|(_, answer)| answer["status"] == "OK")
        .map(|(i, _)| match i % 3 {
            0 => Money::units(7),
            1 => Money::units(-11),
            _ => Money::units(-13),
        })
        .map(Money::minor)
        .sum();
    assert_eq!(
        app.assert_ledger_matches_balance(1).await,
        Money::from_minor(Money::units(500).minor() + moved)
    );
}
