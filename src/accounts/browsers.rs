//! The browsers known to each account: those that signed up or signed in to it, by a keyed
//! hash of the random id in their long-lived browser cookie (`web::browser`). A sign-in from a
//! browser not known yet is told to the account's verified email.
//!
//! Bounded: an account keeps its [`MAX_PER_ACCOUNT`] most recently used browsers; one that was
//! forgotten counts as new again (one more notice, never a missing one).

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::db::schema::known_browsers;
use crate::db::{AnyConnection, db_time};

pub const MAX_PER_ACCOUNT: i64 = 50;

/// Records that the browser signed up or signed in to the account at `now`. True when the
/// account did not know it before. Concurrent calls for one browser: exactly one sees it new.
pub fn remember(conn: &mut AnyConnection, user_id: i64, browser_hash: &str, now: DateTime<Utc>) -> QueryResult<bool> {
    let now = db_time(now);
    let insert = diesel::insert_into(known_browsers::table)
        .values((
            known_browsers::user_id.eq(user_id),
            known_browsers::browser_hash.eq(browser_hash),
            known_browsers::first_seen.eq(now),
            known_browsers::last_seen.eq(now),
        ))
        .on_conflict((known_browsers::user_id, known_browsers::browser_hash))
        .do_nothing();
    // Diesel's multi-backend connection has no upsert, hence one arm per backend.
    let inserted = match conn {
        AnyConnection::Postgresql(pg) => insert.execute(pg)?,
        AnyConnection::Sqlite(lite) => insert.execute(lite)?,
    };
    if inserted == 0 {
        diesel::update(known_browsers::table.find((user_id, browser_hash)))
            .set(known_browsers::last_seen.eq(now))
            .execute(conn)?;
        return Ok(false);
    }
    let beyond: Vec<String> = known_browsers::table
        .filter(known_browsers::user_id.eq(user_id))
        .order((known_browsers::last_seen.desc(), known_browsers::browser_hash.desc()))
        .offset(MAX_PER_ACCOUNT)
        .select(known_browsers::browser_hash)
        .load(conn)?;
    if !beyond.is_empty() {
        diesel::delete(
            known_browsers::table
                .filter(known_browsers::user_id.eq(user_id))
                .filter(known_browsers::browser_hash.eq_any(beyond)),
        )
        .execute(conn)?;
    }
    Ok(true)
}

/// How many browsers the account knows.
pub fn count(conn: &mut AnyConnection, user_id: i64) -> QueryResult<i64> {
    known_browsers::table.filter(known_browsers::user_id.eq(user_id)).count().get_result(conn)
}
