//! The test harness itself: every test's database is removed when its services are dropped,
//! so a full run on PostgreSQL leaves no database behind (and on SQLite no directory).

use common::testing::database_exists;

use crate::helpers::spawn_app;

#[actix_web::test]
async fn a_spawned_services_database_is_removed_when_its_last_user_is_dropped() {
    let app = spawn_app().await;
    // data and open pooled connections, as every test leaves them
    app.deposit(1, 500).await;
    let url = app.billing.database_url().to_string();
    assert!(database_exists(&url), "{url} does not exist while in use");

    let restarted = app.on_same_database().await;
    drop(app);
    assert!(
        database_exists(&url),
        "{url} was removed while a restarted billing still uses it"
    );
    assert_eq!(restarted.balance(1).await, 500);

    drop(restarted);
    assert!(!database_exists(&url), "{url} survived its last user");
}
