//! Order's queries: orders, and the outbox of messages to notification.

use chrono::NaiveDateTime;
use common::{
    Money,
    db::{AnyConnection, write_transaction},
};
use diesel::{
    prelude::*,
    result::Error as DieselError,
    sql_types::{BigInt, Nullable, Text, Timestamp},
};

use crate::domain::{NewOrder, Status, status_message, status_message_key};

diesel::table! {
    orders (id) {
        id -> BigInt,
        user_id -> BigInt,
        amount -> BigInt,
        description -> Text,
        status -> Text,
        idempotency_key -> Nullable<Text>,
        request_fingerprint -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    outbox (id) {
        id -> BigInt,
        idempotency_key -> Text,
        user_id -> BigInt,
        email -> Text,
        order_id -> BigInt,
        message -> Text,
        request_id -> Nullable<Text>,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        delivered_at -> Nullable<Timestamp>,
        last_error -> Nullable<Text>,
        created_at -> Timestamp,
        abandoned_at -> Nullable<Timestamp>,
        traceparent -> Nullable<Text>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(orders, outbox);

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = orders)]
pub struct OrderRow {
    pub id: i64,
    pub user_id: i64,
    pub amount: i64,
    pub description: String,
    pub status: Status,
    pub request_fingerprint: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl OrderRow {
    pub fn amount(&self) -> Money {
        Money::from_minor(self.amount)
    }
}

/// A message waiting for (or done with) delivery.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = outbox)]
pub struct OutboxRow {
    pub id: i64,
    pub idempotency_key: String,
    pub user_id: i64,
    pub email: String,
    pub order_id: i64,
    pub message: String,
    pub request_id: Option<String>,
    /// The `traceparent` of the pay that queued it: a later delivery continues its trace.
    pub traceparent: Option<String>,
    pub attempts: i32,
    pub delivered_at: Option<NaiveDateTime>,
}

/// The time, to the microsecond both databases keep: a row built in memory from it equals
/// the row read back.
pub fn now() -> NaiveDateTime {
    use chrono::SubsecRound;
    chrono::Utc::now().naive_utc().trunc_subsecs(6)
}

/// How a create with an idempotency key went.
pub enum Created {
    New(OrderRow),
    /// The key was used before with the same request: the order it made.
    Replayed(OrderRow),
    /// The key was used before with another request.
    KeyConflict,
}

/// Creates an order; with a key, at most one per (user, key) however many arrive at once.
/// One statement, unless the key was used before (then its order is read).
pub fn create(
    conn: &mut AnyConnection,
    user_id: i64,
    order: &NewOrder,
    key: Option<&str>,
) -> Result<Created, DieselError> {
    let at = now();
    let row = |id, request_fingerprint| OrderRow {
        id,
        user_id,
        amount: order.amount.minor(),
        description: order.description.clone(),
        status: Status::Pending,
        request_fingerprint,
        created_at: at,
        updated_at: at,
    };
    let Some(key) = key else {
        let id = diesel::insert_into(orders::table)
            .values((
                orders::user_id.eq(user_id),
                orders::amount.eq(order.amount.minor()),
                orders::description.eq(&order.description),
                orders::status.eq(Status::Pending),
                orders::created_at.eq(at),
                orders::updated_at.eq(at),
            ))
            .returning(orders::id)
            .get_result::<i64>(conn)?;
        return Ok(Created::New(row(id, None)));
    };
    let fingerprint = order.fingerprint();
    // a concurrent duplicate waits here for the first and then sees its row
    let inserted = diesel::sql_query(
        "INSERT INTO orders (user_id, amount, description, status, idempotency_key, \
         request_fingerprint, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (user_id, idempotency_key) DO NOTHING RETURNING id",
    )
    .bind::<BigInt, _>(user_id)
    .bind::<BigInt, _>(order.amount.minor())
    .bind::<Text, _>(&order.description)
    .bind::<Text, _>(Status::Pending)
    .bind::<Nullable<Text>, _>(Some(key))
    .bind::<Nullable<Text>, _>(Some(&fingerprint))
    .bind::<Timestamp, _>(at)
    .bind::<Timestamp, _>(at)
    .get_result::<Id>(conn)
    .optional()?;
    if let Some(Id { id }) = inserted {
        return Ok(Created::New(row(id, Some(fingerprint))));
    }
    let first = orders::table
        .filter(orders::user_id.eq(user_id))
        .filter(orders::idempotency_key.eq(key))
        .select(OrderRow::as_select())
        .first(conn)?;
    Ok(
        if first.request_fingerprint.as_deref() == Some(fingerprint.as_str()) {
            Created::Replayed(first)
        } else {
            Created::KeyConflict
        },
    )
}

/// One of the user's orders; `None` if it does not exist or is someone else's.
pub fn find(
    conn: &mut AnyConnection,
    user_id: i64,
    id: i64,
) -> Result<Option<OrderRow>, DieselError> {
    orders::table
        .filter(orders::id.eq(id))
        .filter(orders::user_id.eq(user_id))
        .select(OrderRow::as_select())
        .first(conn)
        .optional()
}

/// The user's newest `limit` orders.
pub fn list(
    conn: &mut AnyConnection,
    user_id: i64,
    limit: i64,
) -> Result<Vec<OrderRow>, DieselError> {
    orders::table
        .filter(orders::user_id.eq(user_id))
        .order(orders::id.desc())
        .limit(limit)
        .select(OrderRow::as_select())
        .load(conn)
}

/// Who is paying, for the message, and the request and trace the pay belongs to.
pub struct Payer<'a> {
    pub user_id: i64,
    pub email: &'a str,
    pub request_id: Option<&'a str>,
    pub traceparent: Option<&'a str>,
}

/// Records billing's answer: the order moves to `to` (unless it is already `Processing`,
/// which is final) and, when its status changed, the message announcing it is queued with the
/// change, atomically. Returns the order and the message of its current status.
///
/// `order` is the row as read before billing was asked; when this call moves it, the answer
/// is built from it and the new message's id, else both are read back. On PostgreSQL the move
/// and the message are one statement (a data-modifying `WITH`: one round trip, no `BEGIN` and
/// `COMMIT`); SQLite, which has no such `WITH`, runs the same two statements in a write
/// transaction.
pub fn record_outcome(
    conn: &mut AnyConnection,
    payer: &Payer<'_>,
    order: OrderRow,
    to: Status,
) -> Result<(OrderRow, Option<OutboxRow>), DieselError> {
    let order_id = order.id;
    let at = now();
    let (key, message) = (
        status_message_key(order_id, to),
        status_message(order_id, to),
    );
    let queued = if let AnyConnection::Postgresql(_) = conn {
        queue_message(conn, payer, order_id, at, &key, &message, Some(to))?
    } else {
        write_transaction(conn, |conn| {
            let changed = diesel::update(orders::table.find(order_id))
                .filter(orders::user_id.eq(payer.user_id))
                .filter(orders::status.ne(Status::Processing))
                .filter(orders::status.ne(to))
                .set((orders::status.eq(to), orders::updated_at.eq(at)))
                .execute(conn)?;
            if changed == 0 {
                return Ok(None);
            }
            queue_message(conn, payer, order_id, at, &key, &message, None)
        })?
    };
    if let Some(id) = queued {
        let order = OrderRow {
            status: to,
            updated_at: at,
            ..order
        };
        let message = OutboxRow {
            id,
            idempotency_key: key,
            user_id: payer.user_id,
            email: payer.email.to_string(),
            order_id,
            message,
            request_id: payer.request_id.map(str::to_string),
            traceparent: payer.traceparent.map(str::to_string),
            attempts: 0,
            delivered_at: None,
        };
        return Ok((order, Some(message)));
    }
    // not moved now (paid before, or a late decline of a Processing order), or moved with its
    // message already queued: what is stored is the answer
    let order = find(conn, payer.user_id, order_id)?.ok_or(DieselError::NotFound)?;
    let message = message_of(conn, order_id, order.status)?;
    Ok((order, message))
}

/// Queues the message of a status change; its id, unless the message was queued before.
///
/// `move_to: None` (SQLite): the change was made just before, in the same transaction.
/// `move_to: Some(status)` (PostgreSQL): the change is made by the same statement, a
/// data-modifying `WITH` (one round trip, no `BEGIN` and `COMMIT`), and the message is queued
/// only if the order moved.
fn queue_message(
    conn: &mut AnyConnection,
    payer: &Payer<'_>,
    order_id: i64,
    at: NaiveDateTime,
    key: &str,
    message: &str,
    move_to: Option<Status>,
) -> Result<Option<i64>, DieselError> {
    const INSERT: &str = "INSERT INTO outbox (idempotency_key, user_id, email, order_id, message, \
                          request_id, traceparent, attempts, next_attempt_at, created_at)";
    // SQLite numbers `$N` parameters in order of first appearance: keep them in order here
    const ROW: &str = "$1, $2, $3, $4, $5, $6, $7, 0, $8, $8";
    const UNLESS_QUEUED: &str = "ON CONFLICT (idempotency_key) DO NOTHING RETURNING id";
    let sql = match move_to {
        None => format!("{INSERT} VALUES ({ROW}) {UNLESS_QUEUED}"),
        Some(_) => format!(
            "WITH moved AS ( \
               UPDATE orders SET status = $9, updated_at = $8 \
               WHERE id = $4 AND user_id = $2 AND status <> $10 AND status <> $9 \
               RETURNING id) \
             {INSERT} SELECT {ROW} FROM moved {UNLESS_QUEUED}"
        ),
    };
    let mut query = diesel::sql_query(sql)
        .into_boxed::<<AnyConnection as diesel::Connection>::Backend>()
        .bind::<Text, _>(key)
        .bind::<BigInt, _>(payer.user_id)
        .bind::<Text, _>(payer.email)
        .bind::<BigInt, _>(order_id)
        .bind::<Text, _>(message)
        .bind::<Nullable<Text>, _>(payer.request_id)
        .bind::<Nullable<Text>, _>(payer.traceparent)
        .bind::<Timestamp, _>(at);
    if let Some(to) = move_to {
        query = query
            .bind::<Text, _>(to)
            .bind::<Text, _>(Status::Processing);
    }
    query
        .get_result::<Id>(conn)
        .optional()
        .map(|queued| queued.map(|Id { id }| id))
}

/// A row id `RETURNING` gave.
#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// The message announcing that `order_id` reached `status`, if one was queued.
pub fn message_of(
    conn: &mut AnyConnection,
    order_id: i64,
    status: Status,
) -> Result<Option<OutboxRow>, DieselError> {
    outbox::table
        .filter(outbox::idempotency_key.eq(status_message_key(order_id, status)))
        .select(OutboxRow::as_select())
        .first(conn)
        .optional()
}

/// The outbox as an operator sees it (the metrics read it at each scrape).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxStats {
    /// Messages still to deliver (abandoned ones excluded).
    pub pending: i64,
    /// When the oldest of them was queued.
    pub oldest_pending: Option<NaiveDateTime>,
    /// Messages given up and never delivered.
    pub abandoned: i64,
}

/// Counts the outbox's undelivered messages: three reads of the partial index on undelivered
/// rows, so a scrape costs the same however many messages were ever delivered.
pub fn outbox_stats(conn: &mut AnyConnection) -> Result<OutboxStats, DieselError> {
    let undelivered = || outbox::table.filter(outbox::delivered_at.is_null());
    let pending = undelivered()
        .filter(outbox::abandoned_at.is_null())
        .count()
        .get_result(conn)?;
    let oldest_pending = undelivered()
        .filter(outbox::abandoned_at.is_null())
        .select(diesel::dsl::min(outbox::created_at))
        .first(conn)?;
    let abandoned = undelivered()
        .filter(outbox::abandoned_at.is_not_null())
        .count()
        .get_result(conn)?;
    Ok(OutboxStats {
        pending,
        oldest_pending,
        abandoned,
    })
}

/// Undelivered messages whose next attempt is due, oldest first.
pub fn due_messages(conn: &mut AnyConnection, limit: i64) -> Result<Vec<OutboxRow>, DieselError> {
    outbox::table
        .filter(outbox::delivered_at.is_null())
        .filter(outbox::abandoned_at.is_null())
        .filter(outbox::next_attempt_at.le(now()))
        .order(outbox::id.asc())
        .limit(limit)
        .select(OutboxRow::as_select())
        .load(conn)
}

/// Takes a due message for `lease`, so other replicas skip it meanwhile; false if someone
/// else took it (or it was delivered) first.
pub fn claim(
    conn: &mut AnyConnection,
    id: i64,
    lease: chrono::Duration,
) -> Result<bool, DieselError> {
    let at = now();
    let claimed = diesel::update(outbox::table.find(id))
        .filter(outbox::delivered_at.is_null())
        .filter(outbox::next_attempt_at.le(at))
        .set(outbox::next_attempt_at.eq(at + lease))
        .execute(conn)?;
    Ok(claimed == 1)
}

pub fn mark_delivered(conn: &mut AnyConnection, id: i64) -> Result<(), DieselError> {
    diesel::update(outbox::table.find(id))
        .filter(outbox::delivered_at.is_null())
        .set((
            outbox::delivered_at.eq(now()),
            outbox::last_error.eq(None::<String>),
        ))
        .execute(conn)
        .map(drop)
}

/// Stops retrying a message (after too many failed attempts).
pub fn abandon(conn: &mut AnyConnection, id: i64) -> Result<(), DieselError> {
    diesel::update(outbox::table.find(id))
        .filter(outbox::delivered_at.is_null())
        .set(outbox::abandoned_at.eq(Some(now())))
        .execute(conn)
        .map(drop)
}

/// Records a failed attempt; the next one waits `retry_in`. Returns the attempt count.
pub fn mark_failed(
    conn: &mut AnyConnection,
    id: i64,
    error: &str,
    retry_in: chrono::Duration,
) -> Result<i32, DieselError> {
    diesel::update(outbox::table.find(id))
        .filter(outbox::delivered_at.is_null())
        .set((
            outbox::attempts.eq(outbox::attempts + 1),
            outbox::next_attempt_at.eq(now() + retry_in),
            outbox::last_error.eq(error),
        ))
        .returning(outbox::attempts)
        .get_result::<i32>(conn)
        .optional()
        .map(|a| a.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use common::{Money, settings::DatabaseSettings};

    use super::*;

    #[test]
    fn a_stored_status_that_is_not_ours_fails_the_read_instead_of_becoming_pending() {
        let dir = std::env::temp_dir().join(format!(
            "shop-order-status-{}-{}",
            std::process::id(),
            now().and_utc().timestamp_nanos_opt().unwrap_or_default()
        ));
        let settings = DatabaseSettings {
            database_url: dir.join("order.db").to_string_lossy().into_owned(),
            ..DatabaseSettings::local("order")
        };
        let pool = common::db::open(&settings, crate::MIGRATIONS).expect("a fresh database");
        let conn = &mut pool.get().expect("a connection");
        let order = NewOrder::parse(Money::units(30), None).expect("an order");
        let Created::New(row) = create(conn, 7, &order, None).expect("created") else {
            panic!("a new order")
        };
        assert_eq!(row.status, Status::Pending);

        // The schema's CHECK refuses such a write, but a row can still hold a status this
        // binary does not know: one a newer release added, read by an older replica during a
        // rolling update. Simulated by switching the check off for this connection.
        diesel::sql_query("PRAGMA ignore_check_constraints = ON")
            .execute(conn)
            .expect("SQLite pragma");
        diesel::sql_query("UPDATE orders SET status = 'Paid' WHERE id = $1")
            .bind::<BigInt, _>(row.id)
            .execute(conn)
            .expect("corrupt the row");
        let read = find(conn, 7, row.id);
        assert!(
            matches!(read, Err(DieselError::DeserializationError(ref e)) if format!("{e:?}").contains("unknown order status")),
            "{read:?}"
        );
        assert!(list(conn, 7, 10).is_err(), "lists refuse it too");
        drop(pool);
        std::fs::remove_dir_all(&dir).expect("remove the test database");
    }
}
