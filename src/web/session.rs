//! Server-side sessions: an actix-session store on the database, and a typed wrapper.
//!
//! The cookie holds a random 64-character key; the table holds only its SHA-256, the user id
//! (so all of a user's sessions can be ended at once) and the state. Sessions end after an idle
//! time and at an absolute age, whichever comes first.

use std::collections::HashMap;
use std::sync::Arc;

use actix_session::storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError};
use actix_session::{Session, SessionExt as _};
use actix_web::cookie::time::Duration as CookieDuration;
use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use diesel::prelude::*;
use rand::distr::{Alphanumeric, SampleString as _};
use sha2::{Digest, Sha256};

use crate::accounts::tokens::db_time;
use crate::clock::Clock;
use crate::db::schema::sessions;
use crate::db::{AnyConnection, Pool};
use crate::flows::PendingReset;

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

fn deadline(created_at: DateTime<Utc>, now: DateTime<Utc>, lifetime: SessionLifetime) -> NaiveDateTime {
    db_time((now + lifetime.idle).min(created_at + lifetime.absolute))
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
                    sessions::expires_at.eq(deadline(now, now, lifetime)),
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
                        sessions::expires_at.eq(deadline(created.and_utc(), now, lifetime)),
                    ))
                    .execute(conn)?;
            }
            Ok(())
        })
        .await
        .map_err(UpdateError::Other)?;
        Ok(key)
    }

    /// Moves the idle deadline; skips the write when it moved less than a minute ago, so a busy
    /// user costs one write a minute, not one per request.
    async fn update_ttl(&self, key: &SessionKey, _ttl: &CookieDuration) -> Result<(), anyhow::Error> {
        let id = hash_key(key.as_ref());
        self.blocking(move |conn, now, lifetime| {
            let row = sessions::table
                .find(&id)
                .select((sessions::created_at, sessions::expires_at))
                .first::<(NaiveDateTime, NaiveDateTime)>(conn)
                .optional()?;
            if let Some((created, expires)) = row {
                let next = deadline(created.and_utc(), now, lifetime);
                if next - expires >= Duration::minutes(1) && expires > db_time(now) {
                    diesel::update(sessions::table.find(&id)).set(sessions::expires_at.eq(next)).execute(conn)?;
                }
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

const USER_ID: &str = "user_id";
const CSRF: &str = "csrf";
const RESET: &str = "password_reset";

/// The typed view of this request's session.
pub struct UserSession(Session);

impl actix_web::FromRequest for UserSession {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &actix_web::HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(Ok(UserSession(req.get_session())))
    }
}

impl UserSession {
    pub fn user_id(&self) -> Option<i64> {
        self.0.get::<i64>(USER_ID).ok().flatten()
    }

    /// The CSRF secret this session was bound to at sign-in.
    pub fn csrf(&self) -> Option<String> {
        self.0.get::<String>(CSRF).ok().flatten()
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
