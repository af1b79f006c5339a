//! The JSON API's server-side state (CONTRACT.md, "JSON API"): bearer tokens and FLOWs.
//!
//! A **token** is a row of the `sessions` table, like a browser's session: the table keeps only
//! the SHA-256 of the token, with the user id, under the same idle and absolute timeouts. So
//! everything that ends all sessions of a user (sign-out, password change, reset, delete, a code
//! sign-in through an unverified channel) ends tokens too, and the sessions page lists them. Its
//! state is marked [`API_TOKEN`]: a browser's session key is never accepted as a token. (A token
//! cannot be used as a cookie either: session cookies are signed with the secret key.)
//!
//! A **FLOW** is the API's equivalent of what a browser's session records between two steps
//! (a pending reset, a code sign-in, the second step of a sign-in): a row of `api_flows` keyed by
//! the SHA-256 of a random id the client holds, with the pending state of the flows layer, the
//! kind it was made for, and an expiry. A FLOW is made for every request alike, known account or
//! not, and the rules stay those of the pending state it holds: bound to the account asked for,
//! void once what it depends on changes. Each change of a FLOW is a compare-and-swap on its
//! stored state, so a step is taken once.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use rand::distr::{Alphanumeric, SampleString as _};
use serde::{Deserialize, Serialize};

use super::two_factor::{self, HalfSignIn};
use super::{Flows, PendingReset, PendingSignIn};
use crate::accounts::activity::SignInMethod;
use crate::accounts::factors;
use crate::accounts::sessions;
use crate::accounts::throttle::Throttled;
use crate::accounts::users::{self, User};
use crate::db::schema::{api_flows, sessions as sessions_table};
use crate::db::{AnyConnection, db_time};
use crate::domain::RequestContext;

/// The session-state key that marks a session as an API token.
const API_TOKEN: &str = "api_token";
/// The state keys a browser's session uses too (as actix-session writes them: JSON text values).
const USER_ID: &str = "user_id";
const SIGNED_IN_AT: &str = "signed_in_at";

/// How long a second step stays open after the password step (CONTRACT.md: 5 minutes).
pub const SECOND_STEP_TTL: Duration = Duration::minutes(5);

/// A bearer token, as handed to the client once; only its hash is stored.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

/// What a FLOW is for: a FLOW of one kind is unknown to the routes of another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowKind {
    Reset,
    CodeSignIn,
    TwoFactor,
}

impl FlowKind {
    fn as_str(self) -> &'static str {
        match self {
            FlowKind::Reset => "reset",
            FlowKind::CodeSignIn => "code_sign_in",
            FlowKind::TwoFactor => "two_factor",
        }
    }
}

/// The second step of a sign-in, pending: the same half sign-in the `/sign-in/two-factor` page
/// keeps in its session (who passed the first factor, under which credentials and factors,
/// when), void as it is once any of them changes or 5 minutes pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSecondStep {
    half: HalfSignIn,
}

/// What a check of the second step came to.
#[derive(Debug)]
pub enum SecondStep {
    Proven(User),
    Wrong,
    Throttled(Throttled),
}

/// The pending state a FLOW holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiFlow {
    Reset(PendingReset),
    CodeSignIn(PendingSignIn),
    TwoFactor(PendingSecondStep),
}

impl ApiFlow {
    pub fn kind(&self) -> FlowKind {
        match self {
            ApiFlow::Reset(_) => FlowKind::Reset,
            ApiFlow::CodeSignIn(_) => FlowKind::CodeSignIn,
            ApiFlow::TwoFactor(_) => FlowKind::TwoFactor,
        }
    }
}

/// A random secret of 64 letters and digits (~381 bits), as a session cookie's key.
fn random_secret() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 64)
}

/// A FLOW id or token as typed: at most this long is ever looked up (ours are 64).
const MAX_SECRET_LEN: usize = 128;

impl Flows {
    /// A new token for `user_id`: a server-side session of the user, signed in now.
    pub fn issue_token(&self, user_id: i64, ctx: &RequestContext) -> anyhow::Result<Token> {
        let key = random_secret();
        self.insert_token(&mut *self.accounts.conn()?, &sessions::id_hash(&key), user_id, ctx)?;
        Ok(Token(key))
    }

    /// The sessions row of a token (`id`: its key's hash) of `user_id`, signed in now, first
    /// used from `ctx`, with a new public id.
    fn insert_token(
        &self,
        conn: &mut AnyConnection,
        id: &str,
        user_id: i64,
        ctx: &RequestContext,
    ) -> anyhow::Result<()> {
        let now = self.now();
        let state = serde_json::to_string(&std::collections::HashMap::from([
            (USER_ID, serde_json::to_string(&user_id)?),
            (SIGNED_IN_AT, serde_json::to_string(&now)?),
            (API_TOKEN, "true".to_owned()),
        ]))?;
        let public_id = sessions::new_public_id();
        sessions::insert(conn, id, Some(user_id), Some(&public_id), &state, now, self.lifetime, Some(ctx))?;
        Ok(())
    }

    /// The user a live token belongs to, if that account is active; the use slides the idle
    /// deadline as a browser's request does, and is stored (from `ctx`: IP and User-Agent, for
    /// the sessions page) at most once a minute. A token of an account deactivated or deleted
    /// meanwhile ends here.
    pub fn token_user(&self, token: &str, ctx: &RequestContext) -> anyhow::Result<Option<User>> {
        if token.is_empty() || token.len() > MAX_SECRET_LEN {
            return Ok(None);
        }
        let id = sessions::id_hash(token);
        let now = self.now();
        let mut conn = self.accounts.conn()?;
        let Some(state) = sessions::load_seen(&mut conn, &id, now, Some(ctx))? else { return Ok(None) };
        let state: std::collections::HashMap<String, String> = serde_json::from_str(&state)?;
        let user_id = match (state.get(API_TOKEN).map(String::as_str), state.get(USER_ID)) {
            (Some("true"), Some(user_id)) => serde_json::from_str::<i64>(user_id)?,
            _ => return Ok(None), // a browser's session, not a token
        };
        let user = users::get(&mut conn, user_id)?.filter(|user| user.is_active);
        match user {
            Some(_) => drop(sessions::touch(&mut conn, &id, now, self.lifetime)?),
            None => drop(sessions::delete(&mut conn, &id)?),
        }
        Ok(user)
    }

    /// Ends one token (sign-out).
    pub fn end_token(&self, token: &str) -> anyhow::Result<()> {
        sessions::delete(&mut *self.accounts.conn()?, &sessions::id_hash(token))?;
        Ok(())
    }

    /// Keeps `token` of `user_id` alive after a change that ended every session of the user
    /// (a password change ends every *other* session and token): the same token, a new row,
    /// as the page's session carries on under a renewed id. Nothing when the user is gone.
    pub fn keep_token(&self, token: &str, user_id: i64, ctx: &RequestContext) -> anyhow::Result<()> {
        let id = sessions::id_hash(token);
        let mut conn = self.accounts.conn()?;
        if users::get(&mut conn, user_id)?.is_some_and(|u| u.is_active) {
            // the row is gone unless a concurrent request re-made it: then it stays as it is
            let exists = sessions_table::table.find(&id).count().get_result::<i64>(&mut *conn)? > 0;
            if !exists {
                self.insert_token(&mut conn, &id, user_id, ctx)?;
            }
        }
        Ok(())
    }

    /// A new FLOW holding `flow`, valid for the code lifetime (a second step: 5 minutes). Its id
    /// is random whatever it holds, so it looks the same for known and unknown accounts.
    pub fn start_flow(&self, flow: &ApiFlow) -> anyhow::Result<String> {
        let id = random_secret();
        let now = self.now();
        let ttl = match flow.kind() {
            FlowKind::TwoFactor => SECOND_STEP_TTL,
            FlowKind::Reset | FlowKind::CodeSignIn => self.accounts.keys().ttl,
        };
        diesel::insert_into(api_flows::table)
            .values((
                api_flows::id_hash.eq(sessions::id_hash(&id)),
                api_flows::kind.eq(flow.kind().as_str()),
                api_flows::state.eq(serde_json::to_string(flow)?),
                api_flows::expires_at.eq(db_time(now + ttl)),
            ))
            .execute(&mut *self.accounts.conn()?)?;
        Ok(id)
    }

    /// The live FLOW `id` of `kind`, if there is one.
    pub fn flow(&self, id: &str, kind: FlowKind) -> anyhow::Result<Option<ApiFlow>> {
        if id.is_empty() || id.len() > MAX_SECRET_LEN {
            return Ok(None);
        }
        let state = api_flows::table
            .find(sessions::id_hash(id))
            .filter(api_flows::kind.eq(kind.as_str()))
            .filter(api_flows::expires_at.gt(db_time(self.now())))
            .select(api_flows::state)
            .first::<String>(&mut *self.accounts.conn()?)
            .optional()?;
        let flow = state.map(|state| serde_json::from_str::<ApiFlow>(&state)).transpose()?;
        Ok(flow.filter(|flow| flow.kind() == kind))
    }

    /// Moves FLOW `id` from `seen` to `next` (its expiry stays): `false` when it no longer holds
    /// `seen` (taken or changed meanwhile), and then nothing changed.
    pub fn advance_flow(&self, id: &str, seen: &ApiFlow, next: &ApiFlow) -> anyhow::Result<bool> {
        let changed = diesel::update(
            api_flows::table.find(sessions::id_hash(id)).filter(api_flows::state.eq(serde_json::to_string(seen)?)),
        )
        .set(api_flows::state.eq(serde_json::to_string(next)?))
        .execute(&mut *self.accounts.conn()?)?;
        Ok(changed == 1)
    }

    /// Ends FLOW `id` if it still holds `seen`: `true` for exactly one caller.
    pub fn take_flow(&self, id: &str, seen: &ApiFlow) -> anyhow::Result<bool> {
        let deleted = diesel::delete(
            api_flows::table.find(sessions::id_hash(id)).filter(api_flows::state.eq(serde_json::to_string(seen)?)),
        )
        .execute(&mut *self.accounts.conn()?)?;
        Ok(deleted == 1)
    }

    /// A second step for `user`, who passed the first factor (`method`) now.
    pub fn pending_second_step(&self, user: &User, method: SignInMethod) -> anyhow::Result<ApiFlow> {
        let half = self.half_sign_in(user, method)?;
        Ok(ApiFlow::TwoFactor(PendingSecondStep { half }))
    }

    /// Whether signing in as `user` asks for a second factor (API clients have no trusted
    /// browser: any factor asks).
    pub fn has_second_factor(&self, user: &User) -> anyhow::Result<bool> {
        self.has_second_factor_of(user.id)
    }

    pub fn has_second_factor_of(&self, user_id: i64) -> anyhow::Result<bool> {
        Ok(factors::has_second_factor(&mut *self.accounts.conn()?, user_id)?)
    }

    /// Checks the second step's `code` (an authenticator code or an unused recovery code), as
    /// the page's second step does: the same backoff per account, the same replay guard; a void
    /// half sign-in answers as a wrong code.
    pub fn check_second_step(
        &self,
        pending: &PendingSecondStep,
        code: &str,
        ctx: &RequestContext,
    ) -> anyhow::Result<SecondStep> {
        Ok(match self.second_step(&pending.half, code, ctx)? {
            two_factor::SecondStep::SignedIn { user, .. } => SecondStep::Proven(user),
            two_factor::SecondStep::Throttled(throttled) => SecondStep::Throttled(throttled),
            two_factor::SecondStep::Wrong | two_factor::SecondStep::Void => SecondStep::Wrong,
        })
    }
}

/// Deletes expired FLOWs (from the housekeeping tick).
pub(super) fn prune_flows(conn: &mut AnyConnection, now: DateTime<Utc>) -> QueryResult<usize> {
    diesel::delete(api_flows::table.filter(api_flows::expires_at.le(db_time(now)))).execute(conn)
}
