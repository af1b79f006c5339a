//! The `sessions` table: what a server-side session is, how long it lives, and its queries.
//! The actix adapter (`web::session`) only maps these onto actix-session's store interface.
//!
//! A session row holds the SHA-256 of the cookie's key (never the key), the user id (so all of
//! a user's sessions can be ended at once) and the state. Sessions end after an idle time and
//! at an absolute age, whichever comes first.
//!
//! The idle deadline slides without a write on every request: the stored deadline runs a slack
//! `s = min(1 minute, idle / 10)` beyond `now + idle`, and is rewritten only once it would move
//! by `s` or more. So a session ends no earlier than `idle` after its last use (unless its
//! absolute age comes first) and at most `s` later, and a busy user costs one write per `s`.
//!
//! A signed-in session also has a public id (random, neither the cookie's key nor its hash, so
//! the sessions page can name it in a form without handing out anything usable as a cookie)
//! and what that page shows of its last use: when, from which IP address and User-Agent. That
//! is written at most once a minute per session ([`SEEN_EVERY`]), by a conditional update, so a
//! busy session costs no write per request and concurrent requests write it once.

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use diesel::prelude::*;

use crate::config::Settings;
use crate::db::schema::sessions;
use crate::db::{AnyConnection, db_time};
use crate::domain::RequestContext;

/// How stale the stored last use of a session may get before a request rewrites it.
pub const SEEN_EVERY: Duration = Duration::seconds(60);

/// How long sessions live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLifetime {
    pub idle: Duration,
    pub absolute: Duration,
}

impl Default for SessionLifetime {
    fn default() -> Self {
        Self { idle: Duration::days(1), absolute: Duration::weeks(2) }
    }
}

impl SessionLifetime {
    pub fn from_settings(settings: &Settings) -> SessionLifetime {
        SessionLifetime { idle: settings.session_idle, absolute: settings.session_max_age }
    }

    /// How far the stored deadline may run past `last use + idle`: a tenth of the idle time, at
    /// most a minute.
    fn slack(&self) -> Duration {
        (self.idle / 10).min(Duration::minutes(1))
    }

    /// The deadline to store for a session created at `created` and used at `now`.
    pub fn deadline(&self, created: DateTime<Utc>, now: DateTime<Utc>) -> NaiveDateTime {
        db_time((now + self.idle + self.slack()).min(created + self.absolute))
    }

    /// When a session whose stored deadline is `session.expires_at` was last used: no later
    /// than that, and at most the slack earlier (a use that would move the deadline by less is
    /// not written). A session at its absolute cap says only that it was used after the cap was
    /// reached, so then this is the first moment that could be.
    pub fn last_used(&self, session: &LiveSession) -> DateTime<Utc> {
        (session.expires_at - self.idle - self.slack()).max(session.created_at)
    }

    /// The deadline to write after a use at `now`, or `None` when the stored one is still good
    /// enough: it already lies at least `idle` ahead (it moves by `slack` or more otherwise), or
    /// it has reached the absolute age. An expired session is never revived.
    pub fn extended(&self, created: DateTime<Utc>, stored: NaiveDateTime, now: DateTime<Utc>) -> Option<NaiveDateTime> {
        let next = self.deadline(created, now);
        let cap = db_time(created + self.absolute);
        let worth_it = next - stored >= self.slack() || (next == cap && next > stored);
        (stored > db_time(now) && worth_it).then_some(next)
    }
}

/// What the table keeps of a session's key (a cookie's, or an API bearer token): its SHA-256, in
/// hex. A copy of the table alone opens no session.
pub fn id_hash(key: &str) -> String {
    use sha2::{Digest as _, Sha256};
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The state of a live session (JSON, as actix-session keeps it).
pub fn load(conn: &mut AnyConnection, id_hash: &str, now: DateTime<Utc>) -> QueryResult<Option<String>> {
    sessions::table
        .find(id_hash)
        .filter(sessions::expires_at.gt(db_time(now)))
        .select(sessions::state)
        .first::<String>(conn)
        .optional()
}

/// The state of a live session, like [`load`]; and for a signed-in session whose last use was
/// stored more than [`SEEN_EVERY`] ago, this use (`now`, from `from`) is stored, by an update
/// that only one of several concurrent requests wins. No write otherwise.
pub fn load_seen(
    conn: &mut AnyConnection,
    id_hash: &str,
    now: DateTime<Utc>,
    from: Option<&RequestContext>,
) -> QueryResult<Option<String>> {
    let row = sessions::table
        .find(id_hash)
        .filter(sessions::expires_at.gt(db_time(now)))
        .select((sessions::state, sessions::user_id, sessions::last_seen_at))
        .first::<(String, Option<i64>, Option<NaiveDateTime>)>(conn)
        .optional()?;
    let Some((state, user_id, last_seen)) = row else { return Ok(None) };
    let stale = db_time(now - SEEN_EVERY);
    if let (Some(_), Some(from)) = (user_id, from)
        && last_seen.is_none_or(|seen| seen <= stale)
    {
        diesel::update(
            sessions::table.find(id_hash).filter(sessions::last_seen_at.is_null().or(sessions::last_seen_at.le(stale))),
        )
        .set((
            sessions::last_seen_at.eq(db_time(now)),
            sessions::last_ip.eq(from.ip_text()),
            sessions::user_agent.eq(from.user_agent_text()),
        ))
        .execute(conn)?;
    }
    Ok(Some(state))
}

/// A new public id: 24 random letters and digits (about 143 bits), what the sessions page shows
/// and its "end" form posts for a session or an API token.
pub fn new_public_id() -> String {
    use rand::distr::{Alphanumeric, SampleString as _};
    Alphanumeric.sample_string(&mut rand::rng(), 24)
}

/// A new session made at `now`; a signed-in one with its public id, first used from `from`.
#[allow(clippy::too_many_arguments)]
pub fn insert(
    conn: &mut AnyConnection,
    id_hash: &str,
    user_id: Option<i64>,
    public_id: Option<&str>,
    state: &str,
    now: DateTime<Utc>,
    lifetime: SessionLifetime,
    from: Option<&RequestContext>,
) -> QueryResult<usize> {
    let from = from.filter(|_| user_id.is_some());
    diesel::insert_into(sessions::table)
        .values((
            sessions::id_hash.eq(id_hash),
            sessions::user_id.eq(user_id),
            sessions::public_id.eq(public_id.filter(|_| user_id.is_some())),
            sessions::state.eq(state),
            sessions::created_at.eq(db_time(now)),
            sessions::expires_at.eq(lifetime.deadline(now, now)),
            sessions::last_seen_at.eq(from.map(|_| db_time(now))),
            sessions::last_ip.eq(from.and_then(RequestContext::ip_text)),
            sessions::user_agent.eq(from.and_then(RequestContext::user_agent_text)),
        ))
        .execute(conn)
}

/// New state for a session; never re-creates one that was ended meanwhile (signed out
/// elsewhere, password changed): a missing row stays missing. A public id, when the state has
/// one, is stored with it (a session from before public ids gets one this way).
#[allow(clippy::too_many_arguments)]
pub fn update(
    conn: &mut AnyConnection,
    id_hash: &str,
    user_id: Option<i64>,
    public_id: Option<&str>,
    state: &str,
    now: DateTime<Utc>,
    lifetime: SessionLifetime,
) -> QueryResult<usize> {
    let created = sessions::table.find(id_hash).select(sessions::created_at).first::<NaiveDateTime>(conn).optional()?;
    let Some(created) = created else { return Ok(0) };
    let target = sessions::table.find(id_hash);
    let changes = (
        sessions::state.eq(state),
        sessions::user_id.eq(user_id),
        sessions::expires_at.eq(lifetime.deadline(created.and_utc(), now)),
    );
    match public_id.filter(|_| user_id.is_some()) {
        Some(public_id) => diesel::update(target).set((changes, sessions::public_id.eq(public_id))).execute(conn),
        None => diesel::update(target).set(changes).execute(conn),
    }
}

/// A use at `now`: slides the idle deadline when it is worth a write (see [`SessionLifetime`]).
pub fn touch(
    conn: &mut AnyConnection,
    id_hash: &str,
    now: DateTime<Utc>,
    lifetime: SessionLifetime,
) -> QueryResult<usize> {
    let row = sessions::table
        .find(id_hash)
        .select((sessions::created_at, sessions::expires_at))
        .first::<(NaiveDateTime, NaiveDateTime)>(conn)
        .optional()?;
    match row.and_then(|(created, expires)| lifetime.extended(created.and_utc(), expires, now)) {
        Some(next) => diesel::update(sessions::table.find(id_hash)).set(sessions::expires_at.eq(next)).execute(conn),
        None => Ok(0),
    }
}

/// Ends one session.
pub fn delete(conn: &mut AnyConnection, id_hash: &str) -> QueryResult<usize> {
    diesel::delete(sessions::table.find(id_hash)).execute(conn)
}

/// Ends every session of a user (sign-out everywhere, password change or reset).
pub fn end_all_for_user(conn: &mut AnyConnection, user_id: i64) -> QueryResult<usize> {
    diesel::delete(sessions::table.filter(sessions::user_id.eq(user_id))).execute(conn)
}

/// A live session of a user, as the sessions page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSession {
    /// What the page's "end" form posts (`None` only for a session from before public ids
    /// that has not been used since).
    pub public_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// When it was last used (to within [`SEEN_EVERY`]), from where and with what.
    pub last_seen_at: Option<DateTime<Utc>>,
    pub last_ip: Option<String>,
    pub user_agent: Option<String>,
}

/// The live sessions of a user, newest first.
pub fn sessions_of(conn: &mut AnyConnection, user_id: i64, now: DateTime<Utc>) -> QueryResult<Vec<LiveSession>> {
    type Row = (Option<String>, NaiveDateTime, NaiveDateTime, Option<NaiveDateTime>, Option<String>, Option<String>);
    let rows: Vec<Row> = sessions::table
        .filter(sessions::user_id.eq(user_id))
        .filter(sessions::expires_at.gt(db_time(now)))
        .order((sessions::created_at.desc(), sessions::public_id.desc()))
        .select((
            sessions::public_id,
            sessions::created_at,
            sessions::expires_at,
            sessions::last_seen_at,
            sessions::last_ip,
            sessions::user_agent,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(public_id, created, expires, seen, last_ip, user_agent)| LiveSession {
            public_id,
            created_at: created.and_utc(),
            expires_at: expires.and_utc(),
            last_seen_at: seen.map(|t| t.and_utc()),
            last_ip,
            user_agent,
        })
        .collect())
}

/// Ends the user's session whose public id this is. False, and nothing ends, when the user has
/// no such session (another user's id, an unknown one).
pub fn end_session(conn: &mut AnyConnection, user_id: i64, public_id: &str) -> QueryResult<bool> {
    let ended =
        diesel::delete(sessions::table.filter(sessions::user_id.eq(user_id)).filter(sessions::public_id.eq(public_id)))
            .execute(conn)?;
    Ok(ended > 0)
}

/// Ends every session of the user but the one whose public id is `keep`. Returns how many ended.
pub fn end_others(conn: &mut AnyConnection, user_id: i64, keep: &str) -> QueryResult<usize> {
    diesel::delete(
        sessions::table
            .filter(sessions::user_id.eq(user_id))
            .filter(sessions::public_id.is_null().or(sessions::public_id.ne(keep))),
    )
    .execute(conn)
}

/// Deletes expired sessions.
pub fn prune(conn: &mut AnyConnection, now: DateTime<Utc>) -> QueryResult<usize> {
    diesel::delete(sessions::table.filter(sessions::expires_at.le(db_time(now)))).execute(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn the_slack_is_a_tenth_of_the_idle_time_at_most_a_minute() {
        let lifetime = |idle| SessionLifetime { idle: Duration::seconds(idle), absolute: Duration::weeks(2) };
        assert_eq!(lifetime(60).slack(), Duration::seconds(6));
        assert_eq!(lifetime(300).slack(), Duration::seconds(30));
        assert_eq!(lifetime(86_400).slack(), Duration::minutes(1));
    }

    #[test]
    fn the_deadline_stays_between_idle_and_idle_plus_slack_after_each_use() {
        let lifetime = SessionLifetime { idle: Duration::seconds(60), absolute: Duration::hours(1) };
        let mut stored = lifetime.deadline(at(0), at(0));
        let mut writes = 0;
        for t in 1..=600 {
            if let Some(next) = lifetime.extended(at(0), stored, at(t)) {
                stored = next;
                writes += 1;
            }
            let left = stored - db_time(at(t));
            assert!(left >= Duration::seconds(60) && left <= Duration::seconds(66), "at {t}: {left}");
        }
        assert_eq!(writes, 100, "one write per slack of 6 s, not one per request");
    }

    #[test]
    fn the_last_use_is_read_back_from_the_deadline_to_within_the_slack() {
        let lifetime = SessionLifetime { idle: Duration::seconds(600), absolute: Duration::hours(1) };
        let session = |stored: NaiveDateTime| LiveSession {
            public_id: None,
            created_at: at(0),
            expires_at: stored.and_utc(),
            last_seen_at: None,
            last_ip: None,
            user_agent: None,
        };
        assert_eq!(lifetime.last_used(&session(lifetime.deadline(at(0), at(0)))), at(0));
        let mut stored = lifetime.deadline(at(0), at(0));
        for t in [30, 59, 61, 200, 700] {
            if let Some(next) = lifetime.extended(at(0), stored, at(t)) {
                stored = next;
            }
            let seen = lifetime.last_used(&session(stored));
            assert!(seen <= at(t) && at(t) - seen < lifetime.slack(), "at {t}: {seen}");
        }
    }

    #[test]
    fn the_absolute_age_caps_the_deadline_and_nothing_expired_is_revived() {
        let lifetime = SessionLifetime { idle: Duration::seconds(60), absolute: Duration::seconds(100) };
        let stored = lifetime.deadline(at(0), at(0));
        let capped = lifetime.extended(at(0), stored, at(38)).expect("moves to the cap");
        assert_eq!(capped, db_time(at(100)));
        assert_eq!(lifetime.extended(at(0), capped, at(50)), None, "already at the cap");
        assert_eq!(lifetime.extended(at(0), db_time(at(10)), at(10)), None, "expired stays expired");
    }
}
