//! Notification's queries.

use chrono::NaiveDateTime;
use common::db::AnyConnection;
use diesel::{
    prelude::*,
    result::Error as DieselError,
    sql_types::{BigInt, Text, Timestamp},
};

diesel::table! {
    notifications (id) {
        id -> BigInt,
        idempotency_key -> Text,
        user_id -> BigInt,
        email -> Text,
        order_id -> BigInt,
        message -> Text,
        created_at -> Timestamp,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = notifications)]
pub struct Notification {
    pub id: i64,
    pub idempotency_key: String,
    pub user_id: i64,
    pub email: String,
    pub order_id: i64,
    pub message: String,
    pub created_at: NaiveDateTime,
}

/// A message to store.
#[derive(Debug, Clone)]
pub struct NewNotification {
    pub key: String,
    pub user_id: i64,
    pub email: String,
    pub order_id: i64,
    pub message: String,
}

/// Stores the message unless its key was stored before. Returns the stored row and whether
/// this call created it. One statement, unless the key was stored before (then its row is
/// read).
pub fn store(
    conn: &mut AnyConnection,
    new: &NewNotification,
) -> Result<(Notification, bool), DieselError> {
    use chrono::SubsecRound;
    // to the microsecond both databases keep: the row built here equals the row read back
    let created_at = chrono::Utc::now().naive_utc().trunc_subsecs(6);
    let inserted = diesel::sql_query(
        "INSERT INTO notifications (idempotency_key, user_id, email, order_id, message, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
    )
    .bind::<Text, _>(&new.key)
    .bind::<BigInt, _>(new.user_id)
    .bind::<Text, _>(&new.email)
    .bind::<BigInt, _>(new.order_id)
    .bind::<Text, _>(&new.message)
    .bind::<Timestamp, _>(created_at)
    .get_result::<Id>(conn)
    .optional()?;
    if let Some(Id { id }) = inserted {
        let stored = Notification {
            id,
            idempotency_key: new.key.clone(),
            user_id: new.user_id,
            email: new.email.clone(),
            order_id: new.order_id,
            message: new.message.clone(),
            created_at,
        };
        return Ok((stored, true));
    }
    let stored = notifications::table
        .filter(notifications::idempotency_key.eq(&new.key))
        .select(Notification::as_select())
        .first(conn)?;
    Ok((stored, false))
}

/// A row id `RETURNING` gave.
#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// A user's newest `limit` messages.
pub fn list(
    conn: &mut AnyConnection,
    user_id: i64,
    limit: i64,
) -> Result<Vec<Notification>, DieselError> {
    notifications::table
        .filter(notifications::user_id.eq(user_id))
        .order(notifications::id.desc())
        .limit(limit)
        .select(Notification::as_select())
        .load(conn)
}
