//! The actix-session adapter for the server-side sessions of `accounts::sessions`, and the
//! typed view of a request's session.
//!
//! The cookie holds a random 64-character key; the table holds only its SHA-256.
//!
//! The store also records where a signed-in session was used from (for the sessions page): the
//! request's client, which the store's interface does not pass, reaches it through a task-local
//! set around the session middleware by [`client_scope`].

use std::collections::HashMap;
use std::sync::Arc;

use actix_session::storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError};
use actix_session::{Session, SessionExt as _};
use actix_web::body::MessageBody;
use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, web};
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use rand::distr::{Alphanumeric, SampleString as _};

use crate::accounts::User;
use crate::accounts::sessions::{self, SessionLifetime};
use crate::clock::Clock;
use crate::db::{AnyConnection, Pool};
use crate::domain::{RequestContext, UserAgent};
use crate::flows::two_factor::{FreshCodes, HalfSignIn, PendingTotp};
use crate::flows::{Flows, PendingReset, PendingSignIn};

use super::AppState;

tokio::task_local! {
    /// The client of the request the session middleware is serving.
    static CLIENT: RequestContext;
}

/// The request's client as the security records keep it: the IP address (behind trusted
/// proxies, the one the per-IP limit counts) and the User-Agent. No browser id: see
/// [`super::visitor::Visitor::context`].
pub fn client_context(req: &HttpRequest, state: &AppState) -> RequestContext {
    let user_agent = req
        .headers()
        .get(actix_web::http::header::USER_AGENT)
        .and_then(|v| UserAgent::parse(&String::from_utf8_lossy(v.as_bytes())));
    RequestContext { ip: state.ip_limit.client_ip(req), user_agent, browser: None }
}

/// Middleware around the session middleware: makes the request's client known to the store.
pub async fn client_scope(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let client = match req.app_data::<web::Data<AppState>>() {
        Some(state) => client_context(req.request(), state),
        None => RequestContext::default(),
    };
    CLIENT.scope(client, next.call(req)).await
}

/// The client of the request being served, when inside [`client_scope`].
fn current_client() -> Option<RequestContext> {
    CLIENT.try_with(RequestContext::clone).ok()
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
        f: impl FnOnce(&mut AnyConnection, DateTime<Utc>, SessionLifetime) -> diesel::QueryResult<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let pool = self.pool.clone();
        let now = self.clock.now();
        let lifetime = self.lifetime;
        actix_web::rt::task::spawn_blocking(move || Ok(f(&mut *pool.get()?, now, lifetime)?)).await?
    }
}

use sessions::new_public_id;

fn hash_key(key: &str) -> String {
    sessions::id_hash(key)
}

/// The user id kept in the state (as actix-session stores it: JSON text).
fn user_of(state: &HashMap<String, String>) -> Option<i64> {
    state.get(USER_ID).and_then(|v| v.parse().ok())
}

/// The public id kept in the state (a JSON string).
fn public_id_of(state: &HashMap<String, String>) -> Option<String> {
    state.get(PUBLIC_ID).and_then(|v| serde_json::from_str(v).ok())
}

impl SessionStore for DbSessionStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<HashMap<String, String>>, LoadError> {
        let id = hash_key(key.as_ref());
        let client = current_client();
        let row = self
            .blocking(move |conn, now, _| sessions::load_seen(conn, &id, now, client.as_ref()))
            .await
            .map_err(LoadError::Other)?;
        row.map(|state| serde_json::from_str(&state).map_err(|e| LoadError::Deserialization(e.into()))).transpose()
    }

    async fn save(&self, state: HashMap<String, String>, _ttl: &CookieDuration) -> Result<SessionKey, SaveError> {
        let key = Alphanumeric.sample_string(&mut rand::rng(), 64);
        let id = hash_key(&key);
        let json = serde_json::to_string(&state).map_err(|e| SaveError::Serialization(e.into()))?;
        let (user_id, public_id, client) = (user_of(&state), public_id_of(&state), current_client());
        self.blocking(move |conn, now, lifetime| {
            sessions::insert(conn, &id, user_id, public_id.as_deref(), &json, now, lifetime, client.as_ref())
        })
        .await
        .map_err(SaveError::Other)?;
        SessionKey::try_from(key).map_err(|e| SaveError::Other(e.into()))
    }

    async fn update(
        &self,
        key: SessionKey,
        state: HashMap<String, String>,
        _ttl: &CookieDuration,
    ) -> Result<SessionKey, UpdateError> {
        let id = hash_key(key.as_ref());
        let json = serde_json::to_string(&state).map_err(|e| UpdateError::Serialization(e.into()))?;
        let (user_id, public_id) = (user_of(&state), public_id_of(&state));
        self.blocking(move |conn, now, lifetime| {
            sessions::update(conn, &id, user_id, public_id.as_deref(), &json, now, lifetime)
        })
        .await
        .map_err(UpdateError::Other)?;
        Ok(key)
    }

    async fn update_ttl(&self, key: &SessionKey, _ttl: &CookieDuration) -> Result<(), anyhow::Error> {
        let id = hash_key(key.as_ref());
        self.blocking(move |conn, now, lifetime| sessions::touch(conn, &id, now, lifetime)).await.map(drop)
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), anyhow::Error> {
        let id = hash_key(key.as_ref());
        self.blocking(move |conn, _, _| sessions::delete(conn, &id)).await.map(drop)
    }
}

// The session's keys: read and written only through `UserSession` (and the store, which keeps
// the user id beside the state so that all of a user's sessions can be ended at once).
const USER_ID: &str = "user_id";
const CSRF: &str = "csrf";
/// The session's public id (see `accounts::sessions`), set at sign-in.
const PUBLIC_ID: &str = "public_id";
const RESET: &str = "password_reset";
const SIGNED_IN_AT: &str = "signed_in_at";
const CODE_SIGN_IN: &str = "code_sign_in";
const CODE_SIGN_IN_NEXT: &str = "code_sign_in_next";
const HALF_SIGN_IN: &str = "half_sign_in";
const TOTP_SETUP: &str = "totp_setup";
const FRESH_CODES: &str = "fresh_recovery_codes";

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

    /// Signs in at `now`: a new session id (the old one is deleted), bound to `csrf`; the
    /// pending reset or code sign-in of the signed-out session is done with.
    pub fn sign_in(&self, user_id: i64, csrf: &str, now: DateTime<Utc>) -> anyhow::Result<()> {
        self.0.renew();
        self.0.remove(RESET);
        self.clear_code_sign_in();
        self.0.remove(HALF_SIGN_IN);
        self.0.remove(TOTP_SETUP);
        self.0.remove(FRESH_CODES);
        self.0.insert(USER_ID, user_id)?;
        self.0.insert(CSRF, csrf)?;
        self.0.insert(SIGNED_IN_AT, now)?;
        self.0.insert(PUBLIC_ID, new_public_id())?;
        Ok(())
    }

    /// The id the sessions page shows for this session (not usable as a cookie).
    pub fn public_id(&self) -> Option<String> {
        self.0.get::<String>(PUBLIC_ID).ok().flatten()
    }

    /// This signed-in session's public id, given one now if it was made before public ids.
    pub fn ensure_public_id(&self) -> anyhow::Result<String> {
        if let Some(id) = self.public_id() {
            return Ok(id);
        }
        let id = new_public_id();
        self.0.insert(PUBLIC_ID, &id)?;
        Ok(id)
    }

    /// When this session signed in (a sign-in proves who is there: some changes need a recent one).
    pub fn signed_in_at(&self) -> Option<DateTime<Utc>> {
        self.0.get::<DateTime<Utc>>(SIGNED_IN_AT).ok().flatten()
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

    /// The code sign-in this session asked for, and where to go once signed in.
    pub fn code_sign_in(&self) -> Option<(PendingSignIn, Option<String>)> {
        let pending = self.0.get::<PendingSignIn>(CODE_SIGN_IN).ok().flatten()?;
        Some((pending, self.0.get::<String>(CODE_SIGN_IN_NEXT).ok().flatten()))
    }

    pub fn set_code_sign_in(&self, pending: &PendingSignIn, next: Option<&str>) -> anyhow::Result<()> {
        self.0.insert(CODE_SIGN_IN, pending)?;
        match next {
            Some(next) => self.0.insert(CODE_SIGN_IN_NEXT, next)?,
            None => drop(self.0.remove(CODE_SIGN_IN_NEXT)),
        }
        Ok(())
    }

    pub fn clear_code_sign_in(&self) {
        self.0.remove(CODE_SIGN_IN);
        self.0.remove(CODE_SIGN_IN_NEXT);
    }

    /// The proven first factor waiting for the second step (not a sign-in: no user id is set).
    pub fn half_sign_in(&self) -> Option<HalfSignIn> {
        self.0.get::<HalfSignIn>(HALF_SIGN_IN).ok().flatten()
    }

    /// Starts the second step: a new session id, no user, only the half sign-in.
    pub fn set_half_sign_in(&self, half: &HalfSignIn) -> anyhow::Result<()> {
        self.0.renew();
        self.0.remove(RESET);
        self.clear_code_sign_in();
        self.0.insert(HALF_SIGN_IN, half)?;
        Ok(())
    }

    pub fn clear_half_sign_in(&self) {
        self.0.remove(HALF_SIGN_IN);
    }

    pub fn totp_setup(&self) -> Option<PendingTotp> {
        self.0.get::<PendingTotp>(TOTP_SETUP).ok().flatten()
    }

    pub fn set_totp_setup(&self, pending: &PendingTotp) -> anyhow::Result<()> {
        self.0.insert(TOTP_SETUP, pending)?;
        Ok(())
    }

    pub fn clear_totp_setup(&self) {
        self.0.remove(TOTP_SETUP);
    }

    /// Recovery codes just made, to show once: taking them removes them.
    pub fn take_fresh_codes(&self) -> Option<FreshCodes> {
        let fresh = self.0.get::<FreshCodes>(FRESH_CODES).ok().flatten();
        if fresh.is_some() {
            self.0.remove(FRESH_CODES);
        }
        fresh
    }

    pub fn set_fresh_codes(&self, fresh: &FreshCodes) -> anyhow::Result<()> {
        self.0.insert(FRESH_CODES, fresh)?;
        Ok(())
    }
}
