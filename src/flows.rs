//! The web's use cases, without HTTP: each is one transaction in which a change and the
//! messages it causes commit together (the outbox). Blocking: call from `web::block`; those
//! that hash passwords go through the web layer's hashing limit.

mod account_data;
mod api;
mod code_sign_in;
pub mod passkeys;
mod security;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::accounts::activity::{self, Event, IdentifierKind};
use crate::accounts::sessions;
use crate::accounts::throttle::{CODE_BACKOFF_CAP, SIGN_IN_BACKOFF_CAP, Throttled, store as throttles};
use crate::accounts::tokens::{self, Channel, CheckError, OtpToken};
use crate::accounts::users::{
    self, AccountError, Change, Field, FieldErrors, IdentifierChanges, NewUser, Updated, User,
};
use crate::accounts::{Accounts, Passwords};
use crate::config::Settings;
use crate::db::{self, AnyConnection};
use crate::delivery::notices::{self, Notice};
use crate::delivery::{NewMessage, Purpose, Refusal, SendLimits, limits, messages, outbox};
use crate::domain::password::NewPassword;
use crate::domain::{Email, Identifier, RequestContext};
use crate::secret::SecretKey;

pub use account_data::{
    Deletion, EXPORT_EVENTS, Export, ExportAddress, ExportEvent, ExportSession, ExportUser, RECENT_SIGN_IN,
};
pub use api::{ApiFlow, FlowKind, SecondStep, Token};
pub use code_sign_in::{CodeSignIn, PendingSignIn};
pub mod two_factor;

/// A password reset in progress, as the asking session keeps it.
///
/// It depends on the account's credentials (password and identifiers, as one version number),
/// on the channel's token (its id and address) and on the account being active, and carries
/// what it saw of them; every step checks them again, and completing the reset is a
/// compare-and-swap on the version. So once the password or an identifier changes, or another
/// reset completes, every other pending or proven reset of the account is void, and a proof is
/// spent exactly once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingReset {
    /// Keyed hash of the typed identifier: the backoff of this reset's code checks, kept per typed
    /// identifier for known and unknown accounts alike.
    throttle_key: String,
    /// The account and channel, when one matched.
    target: Option<ResetTarget>,
    /// When the code was proven.
    proven_at: Option<DateTime<Utc>>,
}

/// The account and channel a code that proves an account went to (a reset's, or a code
/// sign-in's), with what it was sent under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ResetTarget {
    user_id: i64,
    channel: Channel,
    token_id: i64,
    address: String,
    credential_version: i32,
}

impl ResetTarget {
    /// True when `token` is the one the code went to (same row, account, channel and address).
    fn is_token(&self, token: &OtpToken) -> bool {
        token.id == self.token_id
            && token.user_id == self.user_id
            && token.channel == self.channel
            && token.address == self.address
    }
}

impl PendingReset {
    /// The target, once the code was proven, within the code lifetime of the proof.
    fn proven_target(&self, now: DateTime<Utc>, ttl: chrono::Duration) -> Option<&ResetTarget> {
        self.target.as_ref().filter(|_| self.proven_at.is_some_and(|at| now < at + ttl))
    }

    fn proven(mut self, now: DateTime<Utc>) -> PendingReset {
        self.proven_at = Some(now);
        self
    }

    /// The account asked for, if any (for logs; the pages never show it).
    pub fn user_id(&self) -> Option<i64> {
        self.target.as_ref().map(|t| t.user_id)
    }
}

#[derive(Clone)]
pub struct Flows {
    pub accounts: Accounts,
    limits: SendLimits,
    site: Url,
    secret: SecretKey,
    /// How long security events are kept (`FLEX_USER_ACTIVITY_DAYS`).
    activity_retention: chrono::Duration,
    /// Wakes this instance's delivery worker after a commit that queued a message.
    pub wake: Arc<tokio::sync::Notify>,
    /// How long sessions live (to tell when one was last used).
    lifetime: sessions::SessionLifetime,
    /// The site as a WebAuthn relying party; `None` (no passkeys) when the public URL's host is
    /// an IP address.
    relying_party: Option<passkeys::RelyingParty>,
}

/// What a sign-in came to.
#[derive(Debug)]
pub enum SignIn {
    SignedIn(User),
    /// Wrong password or no such account (counted).
    Wrong,
    /// Inside a backoff window: nothing was checked.
    Throttled(Throttled),
}

/// What a reset code check came to.
#[derive(Debug)]
pub enum ResetCheck {
    /// The code was right: the reset, now proven, for the session to keep.
    Proven(PendingReset),
    /// Wrong, expired, or no account or a void reset (answered alike).
    Wrong,
    Throttled(Throttled),
}

/// What a check of a code that proves an account came to.
#[derive(Debug)]
enum CodeCheck {
    Right,
    /// Wrong, expired, or no account or a void request (answered alike).
    Wrong,
    Throttled(Throttled),
}

/// What a form's change came to, when it did not fail unexpectedly.
#[derive(Debug)]
pub enum Form<T> {
    Done(T),
    /// Messages for its fields; nothing changed.
    Invalid(FieldErrors),
    /// The account is gone (deleted meanwhile).
    NoUser,
}

impl<T> Form<T> {
    /// A library result as a form's outcome; what is neither is unexpected.
    fn from_account(result: Result<T, AccountError>) -> anyhow::Result<Form<T>> {
        match result {
            Ok(value) => Ok(Form::Done(value)),
            Err(AccountError::Invalid(errors)) => Ok(Form::Invalid(errors)),
            Err(AccountError::NoUser) => Ok(Form::NoUser),
            Err(e) => Err(account_to_anyhow(e)),
        }
    }
}

/// What a code send did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Queued,
    Refused(Refusal),
}

impl Flows {
    pub fn new(accounts: Accounts, settings: &Settings) -> Flows {
        Flows {
            accounts,
            limits: SendLimits::from_settings(settings),
            site: settings.public_url.clone(),
            secret: settings.secret_key.clone(),
            activity_retention: settings.activity_retention,
            wake: Arc::new(tokio::sync::Notify::new()),
            lifetime: sessions::SessionLifetime::from_settings(settings),
            relying_party: passkeys::RelyingParty::for_site(&settings.public_url, &settings.site_name),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.accounts.now()
    }

    fn passwords(&self) -> &Passwords {
        self.accounts.passwords()
    }

    /// Runs `f` in a write transaction and wakes the worker after the commit.
    fn transaction<T, E: From<diesel::result::Error> + From<anyhow::Error>>(
        &self,
        f: impl FnOnce(&mut AnyConnection) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut conn = self.accounts.conn()?;
        let result = db::write_transaction(&mut conn, f);
        if result.is_ok() {
            self.wake.notify_one();
        }
        result
    }

    /// Inside a transaction: makes a code for `token` and queues the message that carries it,
    /// unless the address is past its resend cooldown or daily cap (or SMS its hourly limit).
    fn send_code_in(&self, conn: &mut AnyConnection, token: &OtpToken, purpose: Purpose) -> Result<Sent, CheckError> {
        let now = self.now();
        if let Err(refusal) =
            limits::try_record(conn, &self.secret, &self.limits, token.channel, &normalized(token), now)?
        {
            tracing::warn!(user_id = token.user_id, channel = %token.channel, reason = %refusal, "code not sent");
            return Ok(Sent::Refused(refusal));
        }
        let code = tokens::generate(conn, token.id, purpose, self.accounts.keys(), now)?;
        let ttl = self.accounts.keys().ttl;
        let (subject, text, html) = match token.channel {
            Channel::Email => {
                let mail = messages::code_email(purpose, &code, ttl, &self.site);
                (Some(mail.subject), mail.text, Some(mail.html))
            }
            Channel::Phone => (None, messages::code_sms(purpose, &code, ttl, &self.site), None),
        };
        let message = NewMessage {
            channel: token.channel,
            recipient: token.address.clone(),
            subject,
            body_text: text,
            body_html: html,
            token_id: Some(token.id),
            expires_at: now + ttl,
        };
        outbox::enqueue(conn, &message, now)?;
        tracing::info!(user_id = token.user_id, channel = %token.channel, ?purpose, "code queued");
        Ok(Sent::Queued)
    }

    /// Tells an address it was replaced or removed (no code in it).
    fn notify_change_in(
        &self,
        conn: &mut AnyConnection,
        channel: Channel,
        old_address: &str,
    ) -> diesel::QueryResult<()> {
        let now = self.now();
        let (subject, text, html) = match channel {
            Channel::Email => {
                let mail = messages::change_notice_email(channel, &self.site);
                (Some(mail.subject), mail.text, Some(mail.html))
            }
            Channel::Phone => (None, messages::change_notice_sms(&self.site), None),
        };
        let message = NewMessage {
            channel,
            recipient: old_address.to_owned(),
            subject,
            body_text: text,
            body_html: html,
            token_id: None,
            expires_at: now + chrono::Duration::days(1),
        };
        outbox::enqueue(conn, &message, now).map(drop)
    }

    /// Sign-up: the user, its tokens and a code to each address, in one transaction.
    /// `password_hash` was computed beforehand (outside the write lock).
    /// The browser of `ctx` becomes known to the account (no new-browser notice at its first sign-in).
    pub fn sign_up(&self, new: NewUser, password_hash: &str, ctx: &RequestContext) -> anyhow::Result<Form<User>> {
        Form::from_account(self.sign_up_user(new, password_hash, ctx))
    }

    fn sign_up_user(&self, new: NewUser, password_hash: &str, ctx: &RequestContext) -> Result<User, AccountError> {
        let mut conn = self.accounts.conn()?;
        users::check_new(&mut conn, &new)?;
        drop(conn);
        let now = self.now();
        self.transaction(|conn| {
            let user = users::insert_in(conn, &new, password_hash, false, false, now)?;
            for channel in [Channel::Email, Channel::Phone] {
                if let Some(token) = tokens::find(conn, user.id, channel)? {
                    self.send_code_in(conn, &token, Purpose::Verify).map_err(check_to_account)?;
                }
            }
            activity::record(conn, user.id, Event::AccountCreated, ctx, now)?;
            self.note_browser_in(conn, user.id, ctx, false)?;
            Ok(user)
        })
    }

    /// Hashes a new password (argon2: call through the hashing limit).
    pub fn hash(&self, password: &NewPassword) -> anyhow::Result<String> {
        self.passwords().hash(password.expose())
    }

    /// Sign-in with throttling per identifier, known or not. `Ok(None)`: wrong (counted).
    ///
    /// The attempt claims its turn on the throttle row before the password is checked (see
    /// [`throttles::claim`]), so concurrent guesses cannot pass the check together, every
    /// password checked counts, and none succeeds inside an open window.
    ///
    /// A wrong password for an existing account is counted in its activity. A right one is
    /// only the first factor: [`Flows::after_first_factor`] signs in (and records it) or asks
    /// for the second.
    pub fn sign_in(&self, identifier: &str, password: &str, ctx: &RequestContext) -> anyhow::Result<SignIn> {
        let key = self.throttle_key("sign-in", identifier);
        let now = self.now();
        let mut conn = self.accounts.conn()?;
        let claim = match throttles::claim(&mut conn, &key, now, SIGN_IN_BACKOFF_CAP)? {
            Ok(claim) => claim,
            Err(throttled) => return Ok(SignIn::Throttled(throttled)),
        };
        drop(conn); // not held across argon2
        let Some(user) = self.on_turn(&key, claim, || self.accounts.authenticate(identifier, password))? else {
            self.sign_in_failed(identifier, ctx)?;
            return Ok(SignIn::Wrong);
        };
        let mut conn = self.accounts.conn()?;
        throttles::clear(&mut conn, &key)?;
        Ok(SignIn::SignedIn(user))
    }

    /// Runs `check` (which hashes) on the turn `claim` took of the throttle row `key`. When the
    /// hashing pool refuses it unevaluated (busy, a 503), the turn is handed back: a refusal for
    /// load is no guess, and must not cost the next attempt a backoff.
    pub(crate) fn on_turn<T>(
        &self,
        key: &str,
        claim: throttles::Claim,
        check: impl FnOnce() -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let result = check();
        if let Err(e) = &result
            && e.downcast_ref::<crate::accounts::Busy>().is_some()
        {
            throttles::release(&mut *self.accounts.conn()?, key, claim)?;
        }
        result
    }

    /// The throttle row key for what someone typed: a keyed hash of the normalized identifier,
    /// or of the trimmed, lower-cased text when it parses as nothing.
    fn throttle_key(&self, purpose: &str, typed: &str) -> String {
        let normalized = match Identifier::infer(typed, self.accounts.default_region()) {
            Ok(identifier) => identifier.key(),
            Err(_) => format!("unparsed:{}", typed.trim().to_lowercase()),
        };
        self.secret.keyed_hash(purpose, normalized.as_bytes())
    }

    /// `POST /account`: changes identifiers; codes to new addresses, notices to old ones.
    /// Changing or removing an email or phone needs the right `current_password` when the
    /// account has a usable password (argon2 then: call through the hashing limit).
    pub fn change_identifiers(
        &self,
        user: &User,
        changes: IdentifierChanges,
        current_password: &str,
        ctx: &RequestContext,
    ) -> anyhow::Result<Form<Updated>> {
        if changes.alter_addresses(user) && user.has_usable_password() {
            let message = if current_password.is_empty() {
                Some("Enter your current password to change or remove your email or phone.")
            } else if !self.passwords().verify(&user.password.0, current_password)? {
                Some("That is not your current password.")
            } else {
                None
            };
            if let Some(message) = message {
                return Ok(Form::Invalid(FieldErrors::one(Some(Field::CurrentPassword), message)));
            }
        }
        Form::from_account(self.update_identifiers(user.id, changes, ctx))
    }

    fn update_identifiers(
        &self,
        user_id: i64,
        changes: IdentifierChanges,
        ctx: &RequestContext,
    ) -> Result<Updated, AccountError> {
        self.transaction(|conn| {
            let before_tokens =
                [tokens::find(conn, user_id, Channel::Email)?, tokens::find(conn, user_id, Channel::Phone)?];
            let updated = users::update_identifiers_in(conn, user_id, changes)?;
            for (channel, old) in [Channel::Email, Channel::Phone].into_iter().zip(before_tokens) {
                let new_address = match channel {
                    Channel::Email => updated.after.email.as_ref().map(|e| e.as_str().to_owned()),
                    Channel::Phone => updated.after.phone.as_ref().map(|p| p.as_str().to_owned()),
                };
                let old_address = old.as_ref().map(|t| t.address.clone());
                if new_address == old_address {
                    continue;
                }
                if let Some(old) = &old {
                    outbox::cancel_for_token(conn, old.id, self.now())?;
                    self.notify_change_in(conn, channel, &old.address)?;
                }
                if new_address.is_some()
                    && let Some(token) = tokens::find(conn, user_id, channel)?
                {
                    self.send_code_in(conn, &token, Purpose::Verify).map_err(check_to_account)?;
                }
            }
            let (before, after) = (&updated.before, &updated.after);
            let text = |v: Option<&str>| v.map(str::to_owned);
            for (kind, old, new) in [
                (
                    IdentifierKind::Username,
                    text(before.username.as_ref().map(|u| u.as_str())),
                    text(after.username.as_ref().map(|u| u.as_str())),
                ),
                (
                    IdentifierKind::Email,
                    text(before.email.as_ref().map(Email::as_str)),
                    text(after.email.as_ref().map(Email::as_str)),
                ),
                (
                    IdentifierKind::Phone,
                    text(before.phone.as_ref().map(|p| p.as_str())),
                    text(after.phone.as_ref().map(|p| p.as_str())),
                ),
            ] {
                let event = match (old, new) {
                    (None, Some(_)) => Event::IdentifierAdded(kind),
                    (Some(_), None) => Event::IdentifierRemoved(kind),
                    (Some(old), Some(new)) if old != new => Event::IdentifierChanged(kind),
                    _ => continue,
                };
                activity::record(conn, user_id, event, ctx, self.now())?;
            }
            Ok(updated)
        })
    }

    /// `POST /verify/…/send`.
    pub fn resend(&self, token: &OtpToken) -> Result<Sent, CheckError> {
        self.transaction(|conn| self.send_code_in(conn, token, Purpose::Verify))
    }

    /// The token of a user's address, if it exists and is not yet verified.
    pub fn unverified_token(&self, user_id: i64, channel: Channel) -> anyhow::Result<Option<OtpToken>> {
        let mut conn = self.accounts.conn()?;
        Ok(tokens::find(&mut conn, user_id, channel)?.filter(|t| !t.state.verified))
    }

    /// `POST /account/password`: checks the current password, then sets the new one; every
    /// session of the user ends (the caller renews its own). `Ok(false)`: wrong current password.
    /// Argon2 twice: call through the hashing limit.
    /// The change is recorded in the activity, and the verified addresses are told.
    pub fn change_password(
        &self,
        user: &User,
        current: &str,
        new: &NewPassword,
        ctx: &RequestContext,
    ) -> anyhow::Result<bool> {
        if !self.passwords().verify(&user.password.0, current)? {
            return Ok(false);
        }
        let hash = self.hash(new)?;
        let now = self.now();
        self.transaction(|conn| {
            users::set_password_hash(conn, user.id, &hash)?;
            sessions::end_all_for_user(conn, user.id)?;
            activity::record(conn, user.id, Event::PasswordChanged, ctx, now)?;
            notices::queue(conn, user.id, Notice::PasswordChanged, ctx, &self.site, now)?;
            Ok::<_, anyhow::Error>(())
        })?;
        Ok(true)
    }

    /// `POST /password-reset`: the same outcome whether or not the account exists.
    ///
    /// The backoff of code checks is kept per typed identifier, for every account alike, and a
    /// request restarts it when the identifier's own request log (the cooldown and daily cap of
    /// codes) admits it, as a new code would: whether a code really went out depends on the
    /// address's limits, which other identifiers of the account share, and must not show. Nothing
    /// counts against an address's limits or the SMS budget for an unknown account. Guessing
    /// stays bounded by the code itself: void after ten failures, however it is typed.
    pub fn request_reset(&self, typed: &str) -> anyhow::Result<PendingReset> {
        let (throttle_key, target) = self.request_code(Purpose::PasswordReset, typed)?;
        Ok(PendingReset { throttle_key, target, proven_at: None })
    }

    /// The request of a code that proves an account (a reset or a code sign-in), the same
    /// outcome whether or not the account exists: the throttle key of what was typed, and the
    /// account and channel the code went to, when one matched. The code goes to the email for an
    /// email or a username with an email, else to the phone. See [`Flows::request_reset`] for the
    /// backoff and the limits.
    fn request_code(&self, purpose: Purpose, typed: &str) -> anyhow::Result<(String, Option<ResetTarget>)> {
        // the code backoff of what was typed, apart from the password sign-in's ("sign-in")
        let throttle_key = match purpose {
            Purpose::SignIn => self.throttle_key("sign-in-code", typed),
            Purpose::PasswordReset | Purpose::Verify => self.throttle_key("reset", typed),
        };
        let identifier = Identifier::infer(typed, self.accounts.default_region()).ok();
        let user = match &identifier {
            Some(identifier) => self.accounts.find_user(identifier)?.filter(|u| u.is_active),
            None => None,
        };
        let channel = user.as_ref().and_then(|user| match identifier.as_ref()? {
            Identifier::Email(_) => Some(Channel::Email),
            Identifier::Phone(_) => Some(Channel::Phone),
            Identifier::Username(_) if user.email.is_some() => Some(Channel::Email),
            Identifier::Username(_) if user.phone.is_some() => Some(Channel::Phone),
            Identifier::Username(_) => None,
        });
        let now = self.now();
        let target = self.transaction(|conn| {
            if limits::try_record_reset_request(conn, &self.secret, &self.limits, &throttle_key, now)?.is_ok() {
                throttles::clear(conn, &throttle_key)?;
            }
            let (Some(user), Some(channel)) = (&user, channel) else { return Ok(None) };
            let (Some(token), Some(credential_version)) =
                (tokens::find(conn, user.id, channel)?, users::credential_version(conn, user.id)?)
            else {
                return Ok(None);
            };
            self.send_code_in(conn, &token, purpose).map_err(check_to_anyhow)?;
            Ok::<_, anyhow::Error>(Some(ResetTarget {
                user_id: user.id,
                channel,
                token_id: token.id,
                address: token.address,
                credential_version,
            }))
        })?;
        Ok((throttle_key, target))
    }

    /// True while what `target` was made under still holds: the account is active, its
    /// credentials have not changed, and the channel's token is the one the code went to.
    fn target_holds(&self, conn: &mut AnyConnection, target: &ResetTarget) -> anyhow::Result<bool> {
        if users::credential_version(conn, target.user_id)? != Some(target.credential_version) {
            return Ok(false);
        }
        Ok(tokens::find_by_id(conn, target.token_id)?.is_some_and(|token| target.is_token(&token)))
    }

    /// `POST /password-reset/verify`: the code is checked only against the account this session
    /// asked for, and only while the reset still holds. For no account or a void reset it answers as
    /// for a wrong code, backoff included.
    pub fn verify_reset(&self, pending: &PendingReset, code: &str) -> anyhow::Result<ResetCheck> {
        Ok(match self.check_code(Purpose::PasswordReset, &pending.throttle_key, pending.target.as_ref(), code)? {
            CodeCheck::Right => ResetCheck::Proven(pending.clone().proven(self.now())),
            CodeCheck::Wrong => ResetCheck::Wrong,
            CodeCheck::Throttled(throttled) => ResetCheck::Throttled(throttled),
        })
    }

    /// Checks a code sent by [`Flows::request_code`]: the backoff of the typed identifier first
    /// (claimed before anything is checked), then the code, only against `target` and only while
    /// it holds. No target or a void one answers as a wrong code, backoff included. A right code
    /// is spent (exactly once: the token's compare-and-swap) and clears the backoff.
    fn check_code(
        &self,
        purpose: Purpose,
        throttle_key: &str,
        target: Option<&ResetTarget>,
        code: &str,
    ) -> anyhow::Result<CodeCheck> {
        let now = self.now();
        let mut conn = self.accounts.conn()?;
        if let Err(throttled) = throttles::claim(&mut conn, throttle_key, now, CODE_BACKOFF_CAP)? {
            return Ok(CodeCheck::Throttled(throttled));
        }
        let right = match target {
            Some(target) if self.target_holds(&mut conn, target)? => {
                match tokens::check(&mut conn, target.token_id, code, purpose, self.accounts.keys(), now) {
                    Ok(right) => right,
                    Err(CheckError::NoToken | CheckError::Throttled(_)) => false,
                    Err(CheckError::Unexpected(e)) => return Err(e),
                }
            }
            _ => false,
        };
        if !right {
            return Ok(CodeCheck::Wrong);
        }
        throttles::clear(&mut conn, throttle_key)?;
        Ok(CodeCheck::Right)
    }

    /// The target of `pending` if its code was proven within the code lifetime.
    fn proven_target<'a>(&self, pending: &'a PendingReset) -> Option<&'a ResetTarget> {
        pending.proven_target(self.now(), self.accounts.keys().ttl)
    }

    /// True when `pending` was proven within the code lifetime and still holds.
    pub fn reset_holds(&self, pending: &PendingReset) -> anyhow::Result<bool> {
        match self.proven_target(pending) {
            Some(target) => self.target_holds(&mut *self.accounts.conn()?, target),
            None => Ok(false),
        }
    }

    /// `POST /password-reset/new`: sets the password, marks the channel verified, ends every
    /// session of the user, and, if the channel was unverified before this reset completed,
    /// removes the account's other email and phone and every second factor and recovery code
    /// (never proven by whoever holds this one). Otherwise second factors stay.
    /// `Ok(false)`: the reset is not proven, or void (something it depends on changed, or it
    /// was already used); nothing changed.
    /// The reset (and a channel it verified or removed) is recorded in the activity, and the
    /// verified addresses, as they are after it, are told.
    pub fn complete_reset(&self, pending: &PendingReset, new_hash: &str, ctx: &RequestContext) -> anyhow::Result<bool> {
        let Some(target) = self.proven_target(pending) else { return Ok(false) };
        let now = self.now();
        let done = self.transaction(|conn| {
            let Some(token) = tokens::find_by_id(conn, target.token_id)?.filter(|t| target.is_token(t)) else {
                return Ok(false);
            };
            // the claim: exactly one completion per credential version
            if !users::set_password_hash_if_version(conn, target.user_id, target.credential_version, new_hash)? {
                return Ok(false);
            }
            tokens::mark_verified(conn, token.id)?;
            activity::record(conn, target.user_id, Event::PasswordReset, ctx, now)?;
            if !token.state.verified {
                activity::record(conn, target.user_id, Event::IdentifierVerified(target.channel.into()), ctx, now)?;
                self.remove_unproven_in(conn, target, ctx, now)?;
            }
            sessions::end_all_for_user(conn, target.user_id)?;
            notices::queue(conn, target.user_id, Notice::PasswordReset, ctx, &self.site, now)?;
            Ok::<_, anyhow::Error>(true)
        })?;
        Ok(done)
    }

    /// Inside a transaction, after a reset or a code sign-in proved `target`'s channel, which was
    /// unverified before: removes what whoever held the account before that address was proven
    /// set up, the account's other email or phone and every second factor. The proven channel stays, so an identifier
    /// always remains; so does the username (a name proves nothing and grants nothing).
    fn remove_unproven_in(
        &self,
        conn: &mut AnyConnection,
        target: &ResetTarget,
        ctx: &RequestContext,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let other = match target.channel {
            Channel::Email => Channel::Phone,
            Channel::Phone => Channel::Email,
        };
        let mut changes = IdentifierChanges::default();
        match other {
            Channel::Email => changes.email = Change::Remove,
            Channel::Phone => changes.phone = Change::Remove,
        }
        if let Some(token) = tokens::find(conn, target.user_id, other)? {
            outbox::cancel_for_token(conn, token.id, now)?;
            activity::record(conn, target.user_id, Event::IdentifierRemoved(other.into()), ctx, now)?;
        }
        users::update_identifiers_in(conn, target.user_id, changes).map_err(account_to_anyhow)?;
        // and so do second factors and recovery codes (which moves the factor version)
        crate::accounts::factors::remove_all_in(conn, target.user_id, ctx, now)?;
        Ok(())
    }

    /// Deletes expired sessions and stale throttle rows. (The delivery worker keeps the outbox
    /// and the send log tidy itself.)
    pub fn housekeeping(&self) -> anyhow::Result<()> {
        let now = self.now();
        let mut conn = self.accounts.conn()?;
        let sessions = sessions::prune(&mut conn, now)?;
        let throttles = throttles::prune(&mut conn, now)?;
        let (events, notices) = self.prune_security_records(&mut conn)?;
        let api_flows = api::prune_flows(&mut conn, now)?;
        let passkey_challenges = crate::accounts::passkeys::prune_challenges(&mut conn, now)?;
        tracing::debug!(sessions, throttles, events, notices, api_flows, passkey_challenges, "housekeeping");
        Ok(())
    }

    pub fn user(&self, id: i64) -> anyhow::Result<Option<User>> {
        self.accounts.get_user(id)
    }
}

/// The address as the send limits key it: emails case-insensitively, phones by E.164.
fn normalized(token: &OtpToken) -> String {
    match token.channel {
        Channel::Email => {
            Email::parse(&token.address).map(|e| e.key()).unwrap_or_else(|_| token.address.to_lowercase())
        }
        Channel::Phone => token.address.clone(),
    }
}

fn check_to_account(e: CheckError) -> AccountError {
    AccountError::Unexpected(check_to_anyhow(e))
}

fn check_to_anyhow(e: CheckError) -> anyhow::Error {
    match e {
        CheckError::Unexpected(e) => e,
        other => anyhow::Error::new(other),
    }
}

fn account_to_anyhow(e: AccountError) -> anyhow::Error {
    match e {
        AccountError::Unexpected(e) => e,
        other => anyhow::Error::new(other),
    }
}
