//! Billing's queries. Every balance change is one conditional `UPDATE` plus one ledger row in
//! one transaction; the database, not Rust code, decides whether the money is there.

use chrono::NaiveDateTime;
use common::{
    Money,
    db::{AnyConnection, write_transaction},
};
use diesel::{
    prelude::*,
    result::{DatabaseErrorKind, Error as DieselError},
    sql_types::{BigInt, Text, Timestamp},
};

use crate::domain::{Change, MAX_BALANCE, Payment, UserId};

diesel::table! {
    accounts (user_id) {
        user_id -> BigInt,
        balance -> BigInt,
        created_at -> Timestamp,
    }
}

diesel::table! {
    payments (order_id) {
        order_id -> BigInt,
        user_id -> BigInt,
        amount -> BigInt,
        created_at -> Timestamp,
    }
}

diesel::table! {
    change_keys (user_id, idempotency_key) {
        user_id -> BigInt,
        idempotency_key -> Text,
        fingerprint -> Text,
        ledger_id -> Nullable<BigInt>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    ledger (id) {
        id -> BigInt,
        user_id -> BigInt,
        amount -> BigInt,
        balance_after -> BigInt,
        reason -> Text,
        order_id -> Nullable<BigInt>,
        created_at -> Timestamp,
    }
}

/// One ledger row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = ledger)]
pub struct Entry {
    pub id: i64,
    pub amount: i64,
    pub balance_after: i64,
    pub reason: String,
    pub order_id: Option<i64>,
    pub created_at: NaiveDateTime,
}

#[derive(Insertable)]
#[diesel(table_name = ledger)]
struct NewEntry<'a> {
    user_id: i64,
    amount: i64,
    balance_after: i64,
    reason: &'a str,
    order_id: Option<i64>,
    created_at: NaiveDateTime,
}

/// What became of a deposit or withdrawal.
#[derive(Debug)]
pub enum ChangeOutcome {
    Applied(Entry),
    /// The same Idempotency-Key and request again: the entry the first one made.
    Replayed(Entry),
    /// The Idempotency-Key was used before for another amount or reason.
    KeyConflict,
    InsufficientFunds {
        balance: Money,
    },
    BalanceLimit {
        balance: Money,
    },
}

/// What became of a payment.
#[derive(Debug, PartialEq, Eq)]
pub enum PaymentOutcome {
    /// Charged now; `balance` is the balance right after the charge.
    Charged { balance: Money },
    /// Charged before for this order; the first outcome again, nothing charged now.
    Replayed { balance: Money },
    /// Not enough money; nothing recorded, the order may be paid again later.
    Declined { balance: Money },
    /// This order was paid before by another user or with another amount.
    Conflict,
}

fn now() -> NaiveDateTime {
    chrono::Utc::now().naive_utc()
}

/// Opens the account if it does not exist yet. Idempotent; returns true when it was created.
/// Every operation calls it first, so a user whose registration could not reach billing can
/// still deposit: the account opens on first use.
pub fn open_account(conn: &mut AnyConnection, user: UserId) -> Result<bool, DieselError> {
    let created = diesel::sql_query(
        "INSERT INTO accounts (user_id, balance, created_at) VALUES ($1, 0, $2) \
         ON CONFLICT DO NOTHING",
    )
    .bind::<BigInt, _>(user.get())
    .bind::<Timestamp, _>(now())
    .execute(conn)?;
    Ok(created == 1)
}

/// The balance; 0 for a user with no account yet.
pub fn balance(conn: &mut AnyConnection, user: UserId) -> Result<Money, DieselError> {
    let minor = accounts::table
        .find(user.get())
        .select(accounts::balance)
        .first::<i64>(conn)
        .optional()?;
    Ok(Money::from_minor(minor.unwrap_or(0)))
}

/// Adds `amount` (> 0) unless the balance would pass [`MAX_BALANCE`]; the new balance.
fn credit(
    conn: &mut AnyConnection,
    user: UserId,
    amount: Money,
) -> Result<Option<Money>, DieselError> {
    diesel::update(accounts::table.find(user.get()))
        .filter(accounts::balance.le(MAX_BALANCE.minor() - amount.minor()))
        .set(accounts::balance.eq(accounts::balance + amount.minor()))
        .returning(accounts::balance)
        .get_result::<i64>(conn)
        .optional()
        .map(|b| b.map(Money::from_minor))
}

/// Takes `amount` (> 0) if the balance covers it; the new balance. One statement: two
/// concurrent withdrawals can never both pass a check made in Rust.
fn debit(
    conn: &mut AnyConnection,
    user: UserId,
    amount: Money,
) -> Result<Option<Money>, DieselError> {
    diesel::update(accounts::table.find(user.get()))
        .filter(accounts::balance.ge(amount.minor()))
        .set(accounts::balance.eq(accounts::balance - amount.minor()))
        .returning(accounts::balance)
        .get_result::<i64>(conn)
        .optional()
        .map(|b| b.map(Money::from_minor))
}

fn record(
    conn: &mut AnyConnection,
    user: UserId,
    amount: Money,
    balance_after: Money,
    reason: &str,
    order_id: Option<i64>,
) -> Result<Entry, DieselError> {
    let created_at = now();
    // `returning(Entry::as_returning())` does not render for the multi-backend connection;
    // the id is all the database adds.
    let id = diesel::insert_into(ledger::table)
        .values(NewEntry {
            user_id: user.get(),
            amount: amount.minor(),
            balance_after: balance_after.minor(),
            reason,
            order_id,
            created_at,
        })
        .returning(ledger::id)
        .get_result::<i64>(conn)?;
    Ok(Entry {
        id,
        amount: amount.minor(),
        balance_after: balance_after.minor(),
        reason: reason.to_string(),
        order_id,
        created_at,
    })
}

/// Deposits or withdraws, writing the balance and the ledger row in one transaction.
///
/// With an idempotency key the key is claimed first, in the same transaction: a concurrent
/// duplicate waits for the first and then replays its entry; a refused change (insufficient
/// funds, balance limit) rolls its claim back, so the same key may be tried again later.
pub fn apply_change(
    conn: &mut AnyConnection,
    user: UserId,
    change: &Change,
    key: Option<&str>,
) -> Result<ChangeOutcome, DieselError> {
    let result = write_transaction(conn, |conn| {
        open_account(conn, user)?;
        if let Some(key) = key {
            let fingerprint = format!("{}|{}", change.amount().minor(), change.reason());
            let claimed = diesel::sql_query(
                "INSERT INTO change_keys (user_id, idempotency_key, fingerprint, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind::<BigInt, _>(user.get())
            .bind::<Text, _>(key)
            .bind::<Text, _>(&fingerprint)
            .bind::<Timestamp, _>(now())
            .execute(conn)?;
            if claimed == 0 {
                let (bound_to, ledger_id) = change_keys::table
                    .find((user.get(), key))
                    .select((change_keys::fingerprint, change_keys::ledger_id))
                    .first::<(String, Option<i64>)>(conn)?;
                if bound_to != fingerprint {
                    return Ok(ChangeOutcome::KeyConflict);
                }
                let id = ledger_id.ok_or(DieselError::NotFound)?;
                let entry = ledger::table
                    .find(id)
                    .select(Entry::as_select())
                    .first(conn)?;
                return Ok(ChangeOutcome::Replayed(entry));
            }
        }
        let amount = change.amount();
        let updated = if amount.is_positive() {
            credit(conn, user, amount)?
        } else {
            debit(conn, user, amount.abs())?
        };
        let Some(balance_after) = updated else {
            let balance = balance(conn, user)?;
            return Err(Rollback::With(if amount.is_positive() {
                ChangeOutcome::BalanceLimit { balance }
            } else {
                ChangeOutcome::InsufficientFunds { balance }
            }));
        };
        let entry = record(conn, user, amount, balance_after, change.reason(), None)?;
        if let Some(key) = key {
            diesel::update(change_keys::table.find((user.get(), key)))
                .set(change_keys::ledger_id.eq(Some(entry.id)))
                .execute(conn)?;
        }
        Ok(ChangeOutcome::Applied(entry))
    });
    Rollback::settle(result)
}

/// Ends a transaction with an outcome that must not be committed (a decline, a refusal):
/// the transaction rolls back, and the outcome is still answered.
enum Rollback<T> {
    With(T),
    Db(DieselError),
}

impl<T> From<DieselError> for Rollback<T> {
    fn from(e: DieselError) -> Self {
        Rollback::Db(e)
    }
}

impl<T> Rollback<T> {
    fn settle(result: Result<T, Rollback<T>>) -> Result<T, DieselError> {
        match result {
            Ok(outcome) | Err(Rollback::With(outcome)) => Ok(outcome),
            Err(Rollback::Db(e)) => Err(e),
        }
    }
}

/// Charges an order once.
///
/// On PostgreSQL this is one statement (see [`charge_in_one_statement`]); on SQLite, which
/// has no data-modifying `WITH`, one write transaction ([`charge_in_a_transaction`]). Both
/// keep the same guarantees: an order id is charged at most once, a decline records nothing
/// (the order may be paid later), and a replay answers the first outcome.
pub fn pay(conn: &mut AnyConnection, payment: &Payment) -> Result<PaymentOutcome, DieselError> {
    if let AnyConnection::Postgresql(_) = conn {
        return charge_in_one_statement(conn, payment);
    }
    match charge_in_a_transaction(conn, payment) {
        // the user has no account yet (billing was down when auth announced them): the
        // claim's foreign key refused it; open one and charge again (declined: it is empty)
        Err(DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _)) => {
            open_account(conn, payment.user_id)?;
            charge_in_a_transaction(conn, payment)
        }
        outcome => outcome,
    }
}

#[derive(QueryableByName)]
struct Charged {
    #[diesel(sql_type = BigInt)]
    balance_after: i64,
}

/// PostgreSQL: debit, payment row and ledger row in one autocommitted statement.
///
/// The account row is the hot row of a user who pays many orders at once: its lock is held
/// from the debit until the commit. As one statement it is held for the statement's own
/// execution only — no round trip to billing and back, no wait for a descheduled billing
/// thread, while other payers queue behind it. Outcomes:
/// - a row: charged, with the balance after the charge;
/// - no row: nothing was written — the order was paid before (the `NOT EXISTS`), or the
///   balance does not cover it, or there is no account; [`not_charged`] reads which;
/// - a unique violation on `payments`: a concurrent pay of the same order committed first
///   (the `NOT EXISTS` saw the statement's snapshot, the primary key sees the truth). The
///   statement failed as a whole, so its debit never happened; the first outcome is replayed.
fn charge_in_one_statement(
    conn: &mut AnyConnection,
    payment: &Payment,
) -> Result<PaymentOutcome, DieselError> {
    let charged = diesel::sql_query(
        "WITH debit AS ( \
           UPDATE accounts SET balance = balance - $3 \
           WHERE user_id = $2 AND balance >= $3 \
             AND NOT EXISTS (SELECT 1 FROM payments WHERE order_id = $1) \
           RETURNING balance), \
         claim AS ( \
           INSERT INTO payments (order_id, user_id, amount, created_at) \
           SELECT $1, $2, $3, $4 FROM debit \
           RETURNING order_id) \
         INSERT INTO ledger (user_id, amount, balance_after, reason, order_id, created_at) \
         SELECT $2, -$3, debit.balance, $5, claim.order_id, $4 FROM debit, claim \
         RETURNING balance_after",
    )
    .bind::<BigInt, _>(payment.order_id)
    .bind::<BigInt, _>(payment.user_id.get())
    .bind::<BigInt, _>(payment.amount.minor())
    .bind::<Timestamp, _>(now())
    .bind::<Text, _>(payment_reason(payment.order_id))
    .get_result::<Charged>(conn)
    .optional();
    match charged {
        Ok(Some(c)) => Ok(PaymentOutcome::Charged {
            balance: Money::from_minor(c.balance_after),
        }),
        Ok(None) => not_charged(conn, payment),
        Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info))
            if info.table_name() == Some("payments") =>
        {
            replay(conn, payment)
        }
        Err(e) => Err(e),
    }
}

/// Why [`charge_in_one_statement`] wrote nothing: paid before (replayed), or declined. A user
/// without an account gets one (registration could not reach billing) and is declined.
fn not_charged(conn: &mut AnyConnection, payment: &Payment) -> Result<PaymentOutcome, DieselError> {
    let paid_before = payments::table
        .find(payment.order_id)
        .select(payments::order_id)
        .first::<i64>(conn)
        .optional()?
        .is_some();
    if paid_before {
        return replay(conn, payment);
    }
    open_account(conn, payment.user_id)?;
    Ok(PaymentOutcome::Declined {
        balance: balance(conn, payment.user_id)?,
    })
}

fn payment_reason(order_id: i64) -> String {
    format!("payment for order #{order_id}")
}

/// SQLite: claim, debit, ledger row, in one write transaction, on an account that exists
/// (else the claim's foreign key refuses it).
///
/// The payment row is claimed first (`INSERT … ON CONFLICT DO NOTHING` on the order id):
/// a replay finds it and answers the first outcome instead of charging again. A declined
/// payment rolls its claim back, so the order may be paid later.
fn charge_in_a_transaction(
    conn: &mut AnyConnection,
    payment: &Payment,
) -> Result<PaymentOutcome, DieselError> {
    let result = write_transaction(conn, |conn| {
        let claimed = diesel::sql_query(
            "INSERT INTO payments (order_id, user_id, amount, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind::<BigInt, _>(payment.order_id)
        .bind::<BigInt, _>(payment.user_id.get())
        .bind::<BigInt, _>(payment.amount.minor())
        .bind::<Timestamp, _>(now())
        .execute(conn)?;
        if claimed == 0 {
            return replay(conn, payment).map_err(Rollback::from);
        }
        let Some(balance) = debit(conn, payment.user_id, payment.amount)? else {
            return Err(Rollback::With(PaymentOutcome::Declined {
                balance: self::balance(conn, payment.user_id)?,
            }));
        };
        record(
            conn,
            payment.user_id,
            -payment.amount,
            balance,
            &payment_reason(payment.order_id),
            Some(payment.order_id),
        )?;
        Ok(PaymentOutcome::Charged { balance })
    });
    Rollback::settle(result)
}

/// The first outcome of an order already paid.
fn replay(conn: &mut AnyConnection, payment: &Payment) -> Result<PaymentOutcome, DieselError> {
    let (user_id, amount) = payments::table
        .find(payment.order_id)
        .select((payments::user_id, payments::amount))
        .first::<(i64, i64)>(conn)?;
    if user_id != payment.user_id.get() || amount != payment.amount.minor() {
        return Ok(PaymentOutcome::Conflict);
    }
    let balance_after = ledger::table
        .filter(ledger::order_id.eq(payment.order_id))
        .select(ledger::balance_after)
        .first::<i64>(conn)?;
    Ok(PaymentOutcome::Replayed {
        balance: Money::from_minor(balance_after),
    })
}

/// The newest `limit` ledger rows of a user.
pub fn history(
    conn: &mut AnyConnection,
    user: UserId,
    limit: i64,
) -> Result<Vec<Entry>, DieselError> {
    ledger::table
        .filter(ledger::user_id.eq(user.get()))
        .order(ledger::id.desc())
        .limit(limit)
        .select(Entry::as_select())
        .load(conn)
}
