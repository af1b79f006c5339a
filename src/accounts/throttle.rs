//! The one backoff rule (django-flex-user's `TimeoutError`): after the n-th consecutive failure,
//! refuse every attempt for 2^(n-1) seconds, up to a cap. One-time codes cap it at an hour,
//! sign-in at 15 minutes.

use chrono::{DateTime, Duration, Utc};

pub const CODE_BACKOFF_CAP: Duration = Duration::hours(1);
pub const SIGN_IN_BACKOFF_CAP: Duration = Duration::minutes(15);

/// Refused: too many failures; nothing is checked or counted until `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Too many failed attempts. Please try again later.")]
pub struct Throttled {
    pub until: DateTime<Utc>,
    /// Consecutive failures so far.
    pub failures: u32,
}

impl Throttled {
    /// Whole seconds to wait from `now`, rounded up, at least 1 (for `Retry-After`).
    pub fn retry_after_secs(&self, now: DateTime<Utc>) -> u64 {
        let millis = (self.until - now).num_milliseconds().max(0) as u64;
        millis.div_ceil(1000).max(1)
    }
}

/// A failure count and the window it opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backoff {
    pub failures: u32,
    pub until: Option<DateTime<Utc>>,
}

impl Backoff {
    /// `Err` while the window of the last failure is open.
    pub fn check(&self, now: DateTime<Utc>) -> Result<(), Throttled> {
        match self.until {
            Some(until) if now < until => Err(Throttled { until, failures: self.failures }),
            _ => Ok(()),
        }
    }

    /// One more failure at `now`: the window becomes 2^(n-1) seconds, at most `cap`.
    pub fn fail(&self, now: DateTime<Utc>, cap: Duration) -> Backoff {
        let failures = self.failures.saturating_add(1);
        Backoff { failures, until: Some(now + window(failures, cap)) }
    }
}

/// 2^(n-1) seconds after the n-th failure, capped.
pub fn window(failures: u32, cap: Duration) -> Duration {
    let exponent = failures.saturating_sub(1).min(40);
    Duration::seconds(1i64 << exponent).min(cap)
}

/// Backoff rows for attempts with no token of their own (sign-in per identifier, known or not;
/// reset codes per typed identifier), in the `throttles` table. `key` is already a keyed hash.
///
/// An attempt *claims* its turn before it is evaluated: one compare-and-swap that refuses inside
/// an open window and otherwise counts the attempt as a failure and opens the next window at
/// once. A success then clears the row. So concurrent attempts cannot pass the check together:
/// one claims, the rest are refused; every evaluated attempt counts, and nothing succeeds inside
/// a window, however many requests or instances there are.
pub(crate) mod store {
    use chrono::{DateTime, Duration, NaiveDateTime, Utc};
    use diesel::prelude::*;

    use super::{Backoff, Throttled};
    use crate::db::schema::throttles;
    use crate::db::{AnyConnection, db_time};

    fn load(conn: &mut AnyConnection, key: &str) -> QueryResult<Option<(Backoff, i32)>> {
        throttles::table
            .find(key)
            .select((throttles::failures, throttles::until, throttles::version))
            .first::<(i32, Option<NaiveDateTime>, i32)>(conn)
            .optional()
            .map(|row| {
                row.map(|(failures, until, version)| {
                    (Backoff { failures: failures.max(0) as u32, until: until.map(|t| t.and_utc()) }, version)
                })
            })
    }

    /// A turn [`claim`] took: what [`release`] needs to hand it back.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[must_use = "a claimed turn is cleared on success, or released when never evaluated"]
    pub(crate) struct Claim {
        /// The row before the claim (`None`: there was none).
        before: Option<Backoff>,
        /// The row's version once claimed.
        version: i32,
    }

    /// Claims one attempt: `Err` while the window is open (nothing counted); else the attempt is
    /// counted as a failure and the next window opened, until [`clear`] says it succeeded.
    pub(crate) fn claim(
        conn: &mut AnyConnection,
        key: &str,
        now: DateTime<Utc>,
        cap: Duration,
    ) -> QueryResult<Result<Claim, Throttled>> {
        for _ in 0..64 {
            match load(conn, key)? {
                None => {
                    let next = Backoff::default().fail(now, cap);
                    let inserted = diesel::insert_into(throttles::table)
                        .values((
                            throttles::key.eq(key),
                            throttles::failures.eq(next.failures as i32),
                            throttles::until.eq(next.until.map(db_time)),
                            throttles::updated_at.eq(db_time(now)),
                            throttles::version.eq(0),
                        ))
                        .execute(conn);
                    match inserted {
                        Ok(_) => return Ok(Ok(Claim { before: None, version: 0 })),
                        // someone inserted it first: go round and claim against theirs
                        Err(e) if crate::db::unique_violation(&e).is_some() => continue,
                        Err(e) => return Err(e),
                    }
                }
                Some((backoff, version)) => {
                    if let Err(throttled) = backoff.check(now) {
                        return Ok(Err(throttled));
                    }
                    let next = backoff.fail(now, cap);
                    let changed = diesel::update(
                        throttles::table.filter(throttles::key.eq(key)).filter(throttles::version.eq(version)),
                    )
                    .set((
                        throttles::failures.eq(next.failures.min(i32::MAX as u32) as i32),
                        throttles::until.eq(next.until.map(db_time)),
                        throttles::updated_at.eq(db_time(now)),
                        throttles::version.eq(version.wrapping_add(1)),
                    ))
                    .execute(conn)?;
                    if changed == 1 {
                        return Ok(Ok(Claim { before: Some(backoff), version: version.wrapping_add(1) }));
                    }
                }
            }
        }
        Err(diesel::result::Error::RollbackTransaction)
    }

    /// Hands back a turn whose attempt was never evaluated (the hashing pool refused it for
    /// load): the row is as it was before [`claim`], unless another attempt claimed since (then
    /// both turns stay taken). One conditional write; true when handed back.
    pub(crate) fn release(conn: &mut AnyConnection, key: &str, claim: Claim) -> QueryResult<bool> {
        let mine = throttles::table.filter(throttles::key.eq(key)).filter(throttles::version.eq(claim.version));
        let changed = match claim.before {
            None => diesel::delete(mine).execute(conn)?,
            Some(before) => diesel::update(mine)
                .set((
                    throttles::failures.eq(before.failures.min(i32::MAX as u32) as i32),
                    throttles::until.eq(before.until.map(db_time)),
                    throttles::version.eq(claim.version.wrapping_add(1)),
                ))
                .execute(conn)?,
        };
        Ok(changed == 1)
    }

    /// A success (or a fresh start, such as a new reset request): the count starts again.
    pub(crate) fn clear(conn: &mut AnyConnection, key: &str) -> QueryResult<usize> {
        diesel::delete(throttles::table.find(key)).execute(conn)
    }

    /// Forgets rows untouched for a day (unknown identifiers never succeed, so they would stay).
    pub(crate) fn prune(conn: &mut AnyConnection, now: DateTime<Utc>) -> QueryResult<usize> {
        diesel::delete(throttles::table.filter(throttles::updated_at.lt(db_time(now - Duration::days(1)))))
            .execute(conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_one_second_and_caps() {
        let secs = |n| window(n, CODE_BACKOFF_CAP).num_seconds();
        assert_eq!([secs(1), secs(2), secs(3), secs(4)], [1, 2, 4, 8]);
        assert_eq!(secs(12), 2048);
        assert_eq!(secs(13), 3600);
        assert_eq!(secs(10_000), 3600);
        assert_eq!(window(11, SIGN_IN_BACKOFF_CAP).num_seconds(), 900);
    }

    #[test]
    fn refuses_inside_the_window_only() {
        let t0 = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let b = Backoff::default();
        assert!(b.check(t0).is_ok());
        let b = b.fail(t0, CODE_BACKOFF_CAP);
        assert_eq!(b.failures, 1);
        let refused = b.check(t0 + Duration::milliseconds(999)).unwrap_err();
        assert_eq!(refused.failures, 1);
        assert_eq!(refused.retry_after_secs(t0 + Duration::milliseconds(1)), 1);
        assert!(b.check(t0 + Duration::seconds(1)).is_ok());
        let b = b.fail(t0 + Duration::seconds(1), CODE_BACKOFF_CAP);
        assert_eq!(b.until, Some(t0 + Duration::seconds(3)));
        assert_eq!(b.check(t0 + Duration::seconds(1)).unwrap_err().retry_after_secs(t0 + Duration::seconds(1)), 2);
    }
}
