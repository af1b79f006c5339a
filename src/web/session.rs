//! Server-side sessions: an actix-session store on the database, and a typed wrapper.
//!
//! The cookie holds a random 64-character key; the table holds only its SHA-256, the user id
//! (so all of a user's sessions can be ended at once) and the state. Sessions end after an idle
//! time and at an absolute age, whichever comes first.
//!
//! The idle deadline slides without a write on every request: the stored deadline runs a slack
//! `s = min(1 minute, idle / 10)` beyond `now + idle`, and is rewritten only once it would move
//! by `s` or more. So a session ends no earlier than `idle` after its last use (unless its
//! absolute age comes first) and at most `s` later, and a busy user costs one write per `s`.

use std::collections::HashMap;
use std::sync::Arc;

use actix_session::storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError};
use actix_session::{Session, SessionExt as _};
use actix_web::HttpRequest;
use actix_web::cookie::time::Duration as CookieDuration;
use anyhow::Context as _;
use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use diesel::prelude::*;
use rand::distr::{Alphanumeric, SampleString as _};
use sha2::{Digest, Sha256};

use crate::accounts::User;
use crate::accounts::tokens::db_time;
use crate::clock::Clock;
use crate::db::schema::sessions;
use crate::db::{AnyConnection, Pool};
use crate::flows::{Flows, PendingReset};

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
    /// How far the stored deadline may run past `last use + idle`: a tenth of the idle time, at
    /// most a minute.
    fn slack(&self) -> Duration {
        (self.idle / 10).min(Duration::minutes(1))
    }

    /// The deadline to store for a session created at `created` and used at `now`.
    fn deadline(&self, created: DateTime<Utc>, now: DateTime<Utc>) -> NaiveDateTime {
        db_time((now + self.idle + self.slack()).min(created + self.absolute))
    }

    /// The deadline to write after a use at `now`, or `None` when the stored one is still good
    /// enough: it already lies at least `idle` ahead (it moves by `slack` or more otherwise), or
    /// it has reached the absolute age. An expired session is never revived.
    fn extended(&self, created: DateTime<Utc>, stored: NaiveDateTime, now: DateTime<Utc>) -> Option<NaiveDateTime> {
        let next = self.deadline(created, now);
        let cap = db_time(created + self.absolute);
        let worth_it = next - stored >= self.slack() || (next == cap && next > stored);
        (stored > db_time(now) && worth_it).then_some(next)
    }
}

#[derive(Clone)]
pub struct DbSessionStore {
    pool: Pool,
    clock: Arc<dyn Clock>,
    lifetime: SessionLifetime,
}

impl DbSessionStore {
    pub fn new(pool: Pool, clock: Arc<dyn Clock>, lifetime: SessionLifetime) -> Self {
        Self { pool, clock, lifetime }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut AnyConnection, DateTime<Utc>, SessionLifetime) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let pool = self.pool.clone();
        let now = self.clock.now();
        let lifetime = self.lifetime;
        actix_web::rt::task::spawn_blocking(move || f(&mut *pool.get()?, now, lifetime)).await?
    }
}

fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The user id kept in the state (as actix-session stores it: JSON text).
fn user_of(state: &HashMap<String, String>) -> Option<i64> {
    state.get(USER_ID).and_then(|v| v.parse().ok())
}

impl SessionStore for DbSessionStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<HashMap<String, String>>, LoadError> {
        let id = hash_key(key.as_ref());
        let row = self
            .blocking(move |conn, now, _| {
                Ok(sessions::table
                    .find(id)
                    .filter(sessions::expires_at.gt(db_time(now)))
                    .select(sessions::state)
                    .first::<String>(conn)
                    .optional()?)
            })
            .await
            .map_err(LoadError::Other)?;
        row.map(|state| serde_json::from_str(&state).map_err(|e| LoadError::Deserialization(e.into()))).transpose()
    }

    async fn save(&self, state: HashMap<String, String>, _ttl: &CookieDuration) -> Result<SessionKey, SaveError> {
        let key = Alphanumeric.sample_string(&mut rand::rng(), 64);
        let id = hash_key(&key);
        let json = serde_json::to_string(&state).map_err(|e| SaveError::Serialization(e.into()))?;
        let user_id = user_of(&state);
        self.blocking(move |conn, now, lifetime| {
            diesel::insert_into(sessions::table)
                .values((
                    sessions::id_hash.eq(id),
                    sessions::user_id.eq(user_id),
                    sessions::state.eq(json),
                    sessions::created_at.eq(db_time(now)),
                    sessions::expires_at.eq(lifetime.deadline(now, now)),
                ))
                .execute(conn)?;
            Ok(())
        })
        .await
        .map_err(SaveError::Other)?;
        SessionKey::try_from(key).map_err(|e| SaveError::Other(e.into()))
    }

    /// Never re-creates a session that was ended meanwhile (signed out elsewhere, password
    /// changed): a missing row stays missing.
    async fn update(
        &self,
        key: SessionKey,
        state: HashMap<String, String>,
        _ttl: &CookieDuration,
    ) -> Result<SessionKey, UpdateError> {
        let id = hash_key(key.as_ref());
        let json = serde_json::to_string(&state).map_err(|e| UpdateError::Serialization(e.into()))?;
        let user_id = user_of(&state);
        self.blocking(move |conn, now, lifetime| {
            let created =
                sessions::table.find(&id).select(sessions::created_at).first::<NaiveDateTime>(conn).optional()?;
            if let Some(created) = created {
                diesel::update(sessions::table.find(&id))
                    .set((
                        sessions::state.eq(json),
                        sessions::user_id.eq(user_id),
                        sessions::expires_at.eq(lifetime.deadline(created.and_utc(), now)),
                    ))
                    .execute(conn)?;
            }
            Ok(())
        })
        .await
        .map_err(UpdateError::Other)?;
        Ok(key)
    }

    /// Slides the idle deadline, writing only when it moves by the slack or more (module doc).
    async fn update_ttl(&self, key: &SessionKey, _ttl: &CookieDuration) -> Result<(), anyhow::Error> {
        let id = hash_key(key.as_ref());
        self.blocking(move |conn, now, lifetime| {
            let row = sessions::table
                .find(&id)
                .select((sessions::created_at, sessions::expires_at))
                .first::<(NaiveDateTime, NaiveDateTime)>(conn)
                .optional()?;
            if let Some((created, expires)) = row
                && let Some(next) = lifetime.extended(created.and_utc(), expires, now)
            {
                diesel::update(sessions::table.find(&id)).set(sessions::expires_at.eq(next)).execute(conn)?;
            }
            Ok(())
        })
        .await
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), anyhow::Error> {
        let id = hash_key(key.as_ref());
        self.blocking(move |conn, _, _| {
            diesel::delete(sessions::table.find(id)).execute(conn)?;
            Ok(())
        })
        .await
    }
}

/// Ends every session of a user (sign-out everywhere, password change or reset).
pub(crate) fn end_all_for_user(conn: &mut AnyConnection, user_id: i64) -> QueryResult<usize> {
    diesel::delete(sessions::table.filter(sessions::user_id.eq(user_id))).execute(conn)
}

/// Deletes expired sessions.
pub(crate) fn prune(conn: &mut AnyConnection, now: DateTime<Utc>) -> QueryResult<usize> {
    diesel::delete(sessions::table.filter(sessions::expires_at.le(db_time(now)))).execute(conn)
}

// The session's keys: read and written only through `UserSession` (and the store, which keeps
// the user id beside the state so that all of a user's sessions can be ended at once).
const USER_ID: &str = "user_id";
const CSRF: &str = "csrf";
const RESET: &str = "password_reset";

/// The typed view of this request's session: every read and write of session state goes
/// through it, in handlers and middleware alike.
pub struct UserSession(Session);

impl actix_web::FromRequest for UserSession {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(Ok(UserSession::of(req)))
    }
}

impl UserSession {
    /// This request's session (a middleware passes `ServiceRequest::request()`).
    pub fn of(req: &HttpRequest) -> UserSession {
        UserSession(req.get_session())
    }

    pub fn user_id(&self) -> Option<i64> {
        self.0.get::<i64>(USER_ID).ok().flatten()
    }

    /// The CSRF secret this session was bound to at sign-in.
    pub fn csrf(&self) -> Option<String> {
        self.0.get::<String>(CSRF).ok().flatten()
    }

    /// Whether a form posted with the CSRF cookie `secret` may act for this session: always when
    /// nobody is signed in, else only with the cookie the session was bound to at sign-in.
    pub fn accepts_csrf(&self, secret: &str) -> bool {
        self.user_id().is_none() || self.csrf().is_some_and(|bound| bound == secret)
    }

    /// The signed-in user: the one whose id this session holds, if that account still exists
    /// and is active. An account deactivated or deleted meanwhile is not signed in, and this
    /// session ends here. The one place that rule lives for the web layer.
    pub async fn user(&self, flows: &Flows) -> anyhow::Result<Option<User>> {
        let Some(id) = self.user_id() else { return Ok(None) };
        let flows = flows.clone();
        let user = actix_web::web::block(move || flows.user(id))
            .await
            .context("loading the signed-in user: blocking task failed")??
            .filter(|user| user.is_active);
        if user.is_none() {
            self.sign_out();
        }
        Ok(user)
    }

    /// Signs in: a new session id (the old one is deleted), bound to `csrf`.
    pub fn sign_in(&self, user_id: i64, csrf: &str) -> anyhow::Result<()> {
        self.0.renew();
        self.0.remove(RESET);
        self.0.insert(USER_ID, user_id)?;
        self.0.insert(CSRF, csrf)?;
        Ok(())
    }

    /// Ends this session: its row is deleted and the cookie removed.
    pub fn sign_out(&self) {
        self.0.purge();
    }

    /// A new session id for the same state (after a password change the old ids are all gone).
    pub fn renew(&self) {
        self.0.renew();
    }

    pub fn reset(&self) -> Option<PendingReset> {
        self.0.get::<PendingReset>(RESET).ok().flatten()
    }

    pub fn set_reset(&self, reset: &PendingReset) -> anyhow::Result<()> {
        self.0.insert(RESET, reset)?;
        Ok(())
    }

    pub fn clear_reset(&self) {
        self.0.remove(RESET);
    }
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
    fn the_absolute_age_caps_the_deadline_and_nothing_expired_is_revived() {
        let lifetime = SessionLifetime { idle: Duration::seconds(60), absolute: Duration::seconds(100) };
        let stored = lifetime.deadline(at(0), at(0));
        let capped = lifetime.extended(at(0), stored, at(38)).expect("moves to the cap");
        assert_eq!(capped, db_time(at(100)));
        assert_eq!(lifetime.extended(at(0), capped, at(50)), None, "already at the cap");
        assert_eq!(lifetime.extended(at(0), db_time(at(10)), at(10)), None, "expired stays expired");
    }
}
