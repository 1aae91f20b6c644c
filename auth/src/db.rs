//! Auth's queries: users and server-side sessions.

use chrono::NaiveDateTime;
use common::db::AnyConnection;
use diesel::{prelude::*, result::Error as DieselError};

diesel::table! {
    users (id) {
        id -> BigInt,
        login -> Text,
        login_key -> Text,
        password_hash -> Text,
        email -> Text,
        first_name -> Text,
        last_name -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    login_attempts (login_key) {
        login_key -> Text,
        failures -> Integer,
        window_start -> Timestamp,
    }
}

diesel::table! {
    sessions (id) {
        id -> Text,
        state -> Text,
        expires_at -> Timestamp,
        user_id -> Nullable<BigInt>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(users, sessions);

/// A user as stored, password hash included: never serialize this.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: i64,
    pub login: String,
    pub password_hash: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
}

/// What the forward-auth check tells about a session's user (no password hash).
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct SessionUser {
    pub id: i64,
    pub login: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
}

#[derive(Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub login: &'a str,
    pub login_key: &'a str,
    pub password_hash: &'a str,
    pub email: &'a str,
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// Profile fields a user may change; `None` keeps the current value.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = users)]
pub struct ProfileChange {
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub updated_at: Option<NaiveDateTime>,
}

pub fn now() -> NaiveDateTime {
    chrono::Utc::now().naive_utc()
}

/// Inserts a user; a taken login fails with a unique violation.
pub fn insert_user(conn: &mut AnyConnection, user: &NewUser<'_>) -> Result<i64, DieselError> {
    diesel::insert_into(users::table)
        .values(user)
        .returning(users::id)
        .get_result(conn)
}

pub fn user_by_id(conn: &mut AnyConnection, id: i64) -> Result<Option<User>, DieselError> {
    users::table
        .find(id)
        .select(User::as_select())
        .first(conn)
        .optional()
}

pub fn user_by_login_key(conn: &mut AnyConnection, key: &str) -> Result<Option<User>, DieselError> {
    users::table
        .filter(users::login_key.eq(key))
        .select(User::as_select())
        .first(conn)
        .optional()
}

/// Applies a profile change; `None` if the user does not exist.
pub fn update_profile(
    conn: &mut AnyConnection,
    id: i64,
    change: &ProfileChange,
) -> Result<Option<User>, DieselError> {
    conn.transaction(|conn| {
        diesel::update(users::table.find(id))
            .set(change)
            .execute(conn)?;
        user_by_id(conn, id)
    })
}

pub mod session {
    //! Rows of the session store, keyed by the hash of the session key.
    use super::*;

    /// The state of a live session; expired sessions are deleted on sight.
    pub fn load(
        conn: &mut AnyConnection,
        id: &str,
        now: NaiveDateTime,
    ) -> Result<Option<String>, DieselError> {
        let row = sessions::table
            .find(id)
            .select((sessions::state, sessions::expires_at))
            .first::<(String, NaiveDateTime)>(conn)
            .optional()?;
        match row {
            Some((state, expires_at)) if expires_at > now => Ok(Some(state)),
            Some(_) => {
                delete(conn, id)?;
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// Who a live session belongs to, in one statement: the forward-auth check. A session
    /// found expired is deleted on sight (a second statement, only then).
    pub fn identity(
        conn: &mut AnyConnection,
        id: &str,
        now: NaiveDateTime,
    ) -> Result<Option<(SessionUser, NaiveDateTime)>, DieselError> {
        let found = sessions::table
            .inner_join(users::table.on(sessions::user_id.eq(users::id.nullable())))
            .filter(sessions::id.eq(id))
            .filter(sessions::expires_at.gt(now))
            .select((SessionUser::as_select(), sessions::expires_at))
            .first(conn)
            .optional()?;
        if found.is_none() {
            diesel::delete(sessions::table.find(id))
                .filter(sessions::expires_at.le(now))
                .execute(conn)?;
        }
        Ok(found)
    }

    /// Stores a new session; `user_id` is the user its state names, if any.
    pub fn insert(
        conn: &mut AnyConnection,
        id: &str,
        state: &str,
        user_id: Option<i64>,
        expires_at: NaiveDateTime,
    ) -> Result<(), DieselError> {
        diesel::insert_into(sessions::table)
            .values((
                sessions::id.eq(id),
                sessions::state.eq(state),
                sessions::user_id.eq(user_id),
                sessions::expires_at.eq(expires_at),
            ))
            .execute(conn)
            .map(drop)
    }

    /// Updates a session (its state and user, or only its expiry); false if it no longer
    /// exists (expired and cleaned, or revoked).
    pub fn update(
        conn: &mut AnyConnection,
        id: &str,
        state: Option<(&str, Option<i64>)>,
        expires_at: NaiveDateTime,
    ) -> Result<bool, DieselError> {
        let target = sessions::table.find(id);
        let updated = match state {
            Some((state, user_id)) => diesel::update(target)
                .set((
                    sessions::state.eq(state),
                    sessions::user_id.eq(user_id),
                    sessions::expires_at.eq(expires_at),
                ))
                .execute(conn)?,
            None => diesel::update(target)
                .set(sessions::expires_at.eq(expires_at))
                .execute(conn)?,
        };
        Ok(updated == 1)
    }

    pub fn delete(conn: &mut AnyConnection, id: &str) -> Result<(), DieselError> {
        diesel::delete(sessions::table.find(id))
            .execute(conn)
            .map(drop)
    }

    /// Deletes every expired session; returns how many.
    pub fn delete_expired(
        conn: &mut AnyConnection,
        now: NaiveDateTime,
    ) -> Result<usize, DieselError> {
        diesel::delete(sessions::table.filter(sessions::expires_at.le(now))).execute(conn)
    }

    pub fn count(conn: &mut AnyConnection) -> Result<i64, DieselError> {
        sessions::table.count().get_result(conn)
    }
}

pub mod attempts {
    //! Failed logins per login key, counted in a fixed window.
    use diesel::sql_types::{Text, Timestamp};

    use super::*;

    /// Failures of `key` in the window that is still open at `now`, and when it closes.
    pub fn current(
        conn: &mut AnyConnection,
        key: &str,
        now: NaiveDateTime,
        window: chrono::Duration,
    ) -> Result<Option<(i32, NaiveDateTime)>, DieselError> {
        let row = login_attempts::table
            .find(key)
            .select((login_attempts::failures, login_attempts::window_start))
            .first::<(i32, NaiveDateTime)>(conn)
            .optional()?;
        Ok(row
            .filter(|(_, start)| *start + window > now)
            .map(|(failures, start)| (failures, start + window)))
    }

    /// Counts one more failure: a window that has closed starts over at 1. One statement,
    /// so concurrent failures are all counted.
    pub fn record_failure(
        conn: &mut AnyConnection,
        key: &str,
        now: NaiveDateTime,
        window: chrono::Duration,
    ) -> Result<(), DieselError> {
        diesel::sql_query(
            "INSERT INTO login_attempts (login_key, failures, window_start) VALUES ($1, 1, $2) \
             ON CONFLICT (login_key) DO UPDATE SET \
               failures = CASE WHEN login_attempts.window_start <= $3 THEN 1 ELSE login_attempts.failures + 1 END, \
               window_start = CASE WHEN login_attempts.window_start <= $3 THEN $2 ELSE login_attempts.window_start END",
        )
        .bind::<Text, _>(key)
        .bind::<Timestamp, _>(now)
        .bind::<Timestamp, _>(now - window)
        .execute(conn)
        .map(drop)
    }

    /// A successful login forgets the failures.
    pub fn clear(conn: &mut AnyConnection, key: &str) -> Result<(), DieselError> {
        diesel::delete(login_attempts::table.find(key))
            .execute(conn)
            .map(drop)
    }
}
