//! The rows of the per-IP limit (`ip_limits`): one theoretical arrival time (`tat`, of the
//! generic cell rate algorithm) per client key, shared by every instance on the database. The
//! rule itself belongs to the caller (`web::guard`); this module makes one step of it atomic.

use chrono::{DateTime, DurationRound as _, NaiveDateTime, TimeDelta, Utc};
use diesel::prelude::*;

use super::schema::ip_limits;
use super::{AnyConnection, write_transaction};

/// Applies `step` to the client's tat as one atomic step. `step` gets the stored tat (`None`
/// for a client not seen lately) and answers the new tat, or a refusal that leaves it as it is.
///
/// A refusal is decided on a plain read: a tat only moves forward (a row is pruned only once
/// its tat is past, which counts the same as no row), so a request that does not conform now
/// would not conform under the lock either, and a flood of refused requests takes no write
/// lock. Otherwise the row is locked first, by an upsert that changes nothing (it holds the
/// row's lock on PostgreSQL until commit; on SQLite `BEGIN IMMEDIATE` holds the database's), and
/// the step is applied to the tat the lock saw: concurrent requests of one client take turns,
/// each seeing the one before, so no two of them spend the same room in the bucket.
pub fn take<E>(
    conn: &mut AnyConnection,
    key: &str,
    now: DateTime<Utc>,
    step: impl Fn(Option<DateTime<Utc>>) -> Result<DateTime<Utc>, E>,
) -> QueryResult<Result<(), E>> {
    let now = micros(now);
    let seen =
        ip_limits::table.find(key).select(ip_limits::tat).first::<NaiveDateTime>(conn).optional()?.map(|t| t.and_utc());
    if let Err(refusal) = step(seen) {
        return Ok(Err(refusal));
    }
    write_transaction(conn, |conn| {
        let tat = lock(conn, key, now)?;
        match step(Some(tat)) {
            Ok(next) => {
                let next = micros(next).naive_utc();
                diesel::update(ip_limits::table.find(key)).set(ip_limits::tat.eq(next)).execute(conn)?;
                Ok(Ok(()))
            }
            Err(refusal) => Ok(Err(refusal)),
        }
    })
}

/// Locks the client's row (making it, with tat = `now`, which counts as no history) and returns
/// its tat. Diesel's multi-backend connection has no upsert, hence one arm per backend.
fn lock(conn: &mut AnyConnection, key: &str, now: DateTime<Utc>) -> QueryResult<DateTime<Utc>> {
    let upsert = diesel::insert_into(ip_limits::table)
        .values((ip_limits::key.eq(key), ip_limits::tat.eq(now.naive_utc())))
        .on_conflict(ip_limits::key)
        .do_update()
        .set(ip_limits::tat.eq(ip_limits::tat))
        .returning(ip_limits::tat);
    let tat: NaiveDateTime = match conn {
        AnyConnection::Postgresql(pg) => upsert.get_result(pg)?,
        AnyConnection::Sqlite(lite) => upsert.get_result(lite)?,
    };
    Ok(tat.and_utc())
}

/// Forgets clients whose tat is past: their bucket is full again, as for a client never seen.
pub fn prune(conn: &mut AnyConnection, now: DateTime<Utc>) -> QueryResult<usize> {
    diesel::delete(ip_limits::table.filter(ip_limits::tat.lt(micros(now).naive_utc()))).execute(conn)
}

/// The column's precision (PostgreSQL keeps microseconds), so what is compared is what is stored.
fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(t)
}
