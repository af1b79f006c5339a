//! An account's own data: deleting the account (`/account/delete`) and exporting what is kept
//! about it (`/account/export`).

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use serde::Serialize;

use super::Flows;
use crate::accounts::throttle::{SIGN_IN_BACKOFF_CAP, Throttled, store as throttles};
use crate::accounts::tokens::{self, Channel};
use crate::accounts::users::{self, Field, FieldErrors, User};
use crate::accounts::{activity, sessions};
use crate::db::AnyConnection;
use crate::db::schema::{
    activity as activity_table, known_browsers, notice_log, otp_tokens, outbox, second_factors,
    throttles as throttles_table, users as users_table,
};

/// How recent a sign-in must be for an account without a usable password to do what would
/// otherwise need the password (delete itself).
pub const RECENT_SIGN_IN: Duration = Duration::minutes(10);

/// The `throttles` rows kept per user id (not per typed identifier), by purpose: deleting the
/// account deletes them. (The password typed to confirm a deletion.)
// merge: the second step's per-account backoff is keyed by user id too and joins this list
const USER_THROTTLES: &[&str] = &[CONFIRM_PASSWORD];
const CONFIRM_PASSWORD: &str = "confirm-password";

/// What a request to delete an account came to.
#[derive(Debug)]
pub enum Deletion {
    /// The account and everything of it is gone.
    Deleted,
    /// Messages for the fields (wrong or missing password, no recent sign-in); nothing changed.
    Invalid(FieldErrors),
    /// The password typed to confirm is inside its backoff window: nothing was checked.
    Throttled(Throttled),
}

/// Everything kept about an account that its owner may see, for `GET /account/export`: never a
/// password hash, a code, a secret or a session key.
///
/// Each part of the account is one field here, so another part (the activity log, the names of
/// the second factors) is one more field.
#[derive(Debug, Clone, Serialize)]
pub struct Export {
    pub exported_at: DateTime<Utc>,
    pub user: ExportUser,
    /// The live sessions, newest first.
    pub sessions: Vec<ExportSession>,
    /// The account's security events, newest first (at most [`EXPORT_EVENTS`]).
    pub activity: Vec<ExportEvent>,
    /// Its second factors by kind and name (no secret, no key material).
    pub second_factors: Vec<ExportFactor>,
}

/// A second factor as the export shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ExportFactor {
    /// `totp` or `passkey`.
    pub kind: String,
    /// A passkey's name (the authenticator app has none).
    pub name: String,
    pub added: DateTime<Utc>,
    pub last_used: Option<DateTime<Utc>>,
}

/// How many security events an export holds at most (the log is pruned after
/// `FLEX_USER_ACTIVITY_DAYS`; this bounds one export's size whatever the log holds).
pub const EXPORT_EVENTS: usize = 10_000;

#[derive(Debug, Clone, Serialize)]
pub struct ExportEvent {
    /// What happened, e.g. `signed_in`, `password_changed`.
    pub event: &'static str,
    /// The detail some events carry: how someone signed in, which identifier changed.
    pub detail: Option<&'static str>,
    pub at: DateTime<Utc>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// How many times (failed sign-ins are counted per hour), else 1.
    pub count: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExportUser {
    pub id: i64,
    pub username: Option<String>,
    pub email: Option<ExportAddress>,
    pub phone: Option<ExportAddress>,
    pub has_password: bool,
    pub is_active: bool,
    pub is_staff: bool,
    pub is_superuser: bool,
    pub date_joined: DateTime<Utc>,
    pub last_login: Option<DateTime<Utc>>,
}

/// An email address or phone number and whether it is verified.
#[derive(Debug, Clone, Serialize)]
pub struct ExportAddress {
    pub address: String,
    pub verified: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExportSession {
    pub began: DateTime<Utc>,
    /// When it was last used, to within a minute.
    pub last_used: DateTime<Utc>,
    /// The IP address and User-Agent it was last used from, when known.
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl Flows {
    /// The throttle row key of `purpose` for one account (rather than for what someone typed).
    fn user_throttle_key(&self, purpose: &str, user_id: i64) -> String {
        self.secret.keyed_hash(purpose, format!("user:{user_id}").as_bytes())
    }

    /// `POST /account/delete`, after the form's confirmation word: with a usable password, the
    /// right `current_password` (through the sign-in's backoff rule, per account: argon2, call
    /// through the hashing limit); without one, a sign-in at `signed_in_at` within
    /// [`RECENT_SIGN_IN`]. Then [`Flows::delete_user`].
    pub fn delete_account(
        &self,
        user: &User,
        current_password: &str,
        signed_in_at: Option<DateTime<Utc>>,
    ) -> anyhow::Result<Deletion> {
        let now = self.now();
        let mut errors = FieldErrors::default();
        if user.has_usable_password() {
            if current_password.is_empty() {
                errors.add(Some(Field::CurrentPassword), "Enter your current password.");
                return Ok(Deletion::Invalid(errors));
            }
            let key = self.user_throttle_key(CONFIRM_PASSWORD, user.id);
            let mut conn = self.accounts.conn()?;
            let claim = match throttles::claim(&mut conn, &key, now, SIGN_IN_BACKOFF_CAP)? {
                Ok(claim) => claim,
                Err(throttled) => return Ok(Deletion::Throttled(throttled)),
            };
            drop(conn); // not held across argon2
            if !self.on_turn(&key, claim, || self.passwords().verify(&user.password.0, current_password))? {
                errors.add(Some(Field::CurrentPassword), "That is not your current password.");
                return Ok(Deletion::Invalid(errors));
            }
            throttles::clear(&mut *self.accounts.conn()?, &key)?;
        } else if !signed_in_at.is_some_and(|at| at <= now && now - at <= RECENT_SIGN_IN) {
            errors.add(
                None,
                "Your account has no password, so deleting it needs a recent sign-in: sign in again with a code, then delete it within 10 minutes.",
            );
            return Ok(Deletion::Invalid(errors));
        }
        self.delete_user(user.id)?;
        Ok(Deletion::Deleted)
    }

    /// Deletes the user and everything of theirs in one transaction: sessions end, the tokens
    /// go, and with them the outbox rows carrying their codes, and the throttle rows kept per
    /// this user id. Its identifiers are free to sign up again; the send limits per address stay
    /// (they are kept per address, not per account), and so does the sign-in backoff of each
    /// typed identifier. `Ok(false)`: no such user.
    pub fn delete_user(&self, user_id: i64) -> anyhow::Result<bool> {
        let keys: Vec<String> = USER_THROTTLES.iter().map(|p| self.user_throttle_key(p, user_id)).collect();
        let now = self.now();
        self.transaction(|conn| delete_user_in(conn, user_id, &keys, now))
    }

    /// What is kept about the user (`None`: no such user). See [`Export`].
    pub fn export_user(&self, user_id: i64) -> anyhow::Result<Option<Export>> {
        let now = self.now();
        let mut conn = self.accounts.conn()?;
        let Some(user) = users::get(&mut conn, user_id)? else { return Ok(None) };
        let address = |token: Option<tokens::OtpToken>| {
            token.map(|t| ExportAddress { address: t.address, verified: t.state.verified })
        };
        let email = address(tokens::find(&mut conn, user_id, Channel::Email)?);
        let phone = address(tokens::find(&mut conn, user_id, Channel::Phone)?);
        let sessions = sessions::sessions_of(&mut conn, user_id, now)?
            .into_iter()
            .map(|s| ExportSession {
                began: s.created_at,
                last_used: s.last_seen_at.unwrap_or_else(|| self.lifetime.last_used(&s)),
                ip: s.last_ip,
                user_agent: s.user_agent,
            })
            .collect();
        let activity = activity::activity_of(&mut conn, user_id, 0, EXPORT_EVENTS)?
            .entries
            .into_iter()
            .map(|e| {
                let (event, detail) = e.event.parts();
                ExportEvent { event, detail, at: e.at, ip: e.ip, user_agent: e.user_agent, count: e.count }
            })
            .collect();
        let factors: Vec<(String, String, chrono::NaiveDateTime, Option<chrono::NaiveDateTime>)> =
            second_factors::table
                .filter(second_factors::user_id.eq(user_id))
                .order((second_factors::created_at.asc(), second_factors::id.asc()))
                .select((
                    second_factors::kind,
                    second_factors::name,
                    second_factors::created_at,
                    second_factors::last_used_at,
                ))
                .load(&mut conn)?;
        let second_factors = factors
            .into_iter()
            .map(|(kind, name, added, used)| ExportFactor {
                kind,
                name,
                added: added.and_utc(),
                last_used: used.map(|u| u.and_utc()),
            })
            .collect();
        Ok(Some(Export {
            exported_at: now,
            user: ExportUser {
                id: user.id,
                username: user.username.as_ref().map(|u| u.as_str().to_owned()),
                email,
                phone,
                has_password: user.has_usable_password(),
                is_active: user.is_active,
                is_staff: user.is_staff,
                is_superuser: user.is_superuser,
                date_joined: user.date_joined,
                last_login: user.last_login,
            },
            sessions,
            activity,
            second_factors,
        }))
    }
}

/// The deletion itself; call inside a write transaction.
fn delete_user_in(
    conn: &mut AnyConnection,
    user_id: i64,
    throttle_keys: &[String],
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<bool> {
    let token_ids: Vec<i64> =
        otp_tokens::table.filter(otp_tokens::user_id.eq(user_id)).select(otp_tokens::id).load(conn)?;
    // the messages that carry their codes, sent or not (a sent one holds no text any more)
    diesel::delete(outbox::table.filter(outbox::token_id.eq_any(&token_ids))).execute(conn)?;
    sessions::end_all_for_user(conn, user_id)?;
    diesel::delete(throttles_table::table.filter(throttles_table::key.eq_any(throttle_keys))).execute(conn)?;
    diesel::delete(otp_tokens::table.filter(otp_tokens::user_id.eq(user_id))).execute(conn)?;
    // before the activity goes, as it records what it removed
    crate::accounts::factors::remove_all_in(conn, user_id, &Default::default(), now)?;
    // its activity, known browsers and notice counts go by ON DELETE CASCADE; said here too, so
    // the deletion does not hang on the foreign-key setting of the connection
    diesel::delete(activity_table::table.filter(activity_table::user_id.eq(user_id))).execute(conn)?;
    diesel::delete(known_browsers::table.filter(known_browsers::user_id.eq(user_id))).execute(conn)?;
    diesel::delete(notice_log::table.filter(notice_log::user_id.eq(user_id))).execute(conn)?;
    crate::accounts::passkeys::remove_challenges_of(conn, user_id)?;
    let deleted = diesel::delete(users_table::table.find(user_id)).execute(conn)?;
    Ok(deleted == 1)
}
