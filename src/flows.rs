//! The web's use cases, without HTTP: each is one transaction in which a change and the
//! messages it causes commit together (the outbox). Blocking: call from `web::block`; those
//! that hash passwords go through the web layer's hashing limit.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use url::Url;

use crate::accounts::throttle::{CODE_BACKOFF_CAP, SIGN_IN_BACKOFF_CAP, Throttled, store as throttles};
use crate::accounts::tokens::{self, Channel, CheckError, OtpToken};
use crate::accounts::users::{self, AccountError, Change, IdentifierChanges, NewUser, Updated, User};
use crate::accounts::{Accounts, Passwords};
use crate::config::Settings;
use crate::db::{self, AnyConnection};
use crate::delivery::{NewMessage, Purpose, Refusal, SendLimits, limits, messages, outbox};
use crate::domain::password::NewPassword;
use crate::domain::{Email, Identifier};
use crate::secret::SecretKey;
use crate::web::session::{self, PendingReset};

#[derive(Clone)]
pub struct Flows {
    pub accounts: Accounts,
    limits: SendLimits,
    site: Url,
    secret: SecretKey,
    ttl: std::time::Duration,
    /// Wakes this instance's delivery worker after a commit that queued a message.
    pub wake: Arc<tokio::sync::Notify>,
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
            ttl: settings.otp.ttl,
            wake: Arc::new(tokio::sync::Notify::new()),
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
        let code = tokens::generate(conn, token.id, self.accounts.keys(), now)?;
        let (subject, text, html) = match token.channel {
            Channel::Email => {
                let mail = messages::code_email(purpose, &code, self.ttl, &self.site);
                (Some(mail.subject), mail.text, Some(mail.html))
            }
            Channel::Phone => (None, messages::code_sms(purpose, &code, self.ttl, &self.site), None),
        };
        let message = NewMessage {
            channel: token.channel,
            recipient: token.address.clone(),
            subject,
            body_text: text,
            body_html: html,
            token_id: Some(token.id),
            expires_at: now + chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::minutes(15)),
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
    pub fn sign_up(&self, new: NewUser, password_hash: &str) -> Result<User, AccountError> {
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
            Ok(user)
        })
    }

    /// Hashes a new password (argon2: call through the hashing limit).
    pub fn hash(&self, password: &NewPassword) -> anyhow::Result<String> {
        self.passwords().hash(password.expose())
    }

    /// Sign-in with throttling per identifier, known or not. `Ok(None)`: wrong (counted).
    pub fn sign_in(&self, identifier: &str, password: &str) -> anyhow::Result<Result<Option<User>, Throttled>> {
        let key = self.throttle_key("sign-in", identifier);
        let now = self.now();
        let mut conn = self.accounts.conn()?;
        if let Err(throttled) = throttles::check(&mut conn, &key, now)? {
            return Ok(Err(throttled));
        }
        drop(conn);
        let user = self.accounts.authenticate(identifier, password)?;
        let mut conn = self.accounts.conn()?;
        match user {
            Some(user) => {
                throttles::clear(&mut conn, &key)?;
                users::record_login(&mut conn, user.id, now)?;
                Ok(Ok(Some(user)))
            }
            None => match throttles::fail(&mut conn, &key, now, SIGN_IN_BACKOFF_CAP)? {
                Ok(_) => Ok(Ok(None)),
                Err(throttled) => Ok(Err(throttled)),
            },
        }
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
    pub fn change_identifiers(&self, user_id: i64, changes: IdentifierChanges) -> Result<Updated, AccountError> {
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
    pub fn change_password(&self, user: &User, current: &str, new: &NewPassword) -> anyhow::Result<bool> {
        if !self.passwords().verify(&user.password.0, current) {
            return Ok(false);
        }
        let hash = self.hash(new)?;
        let mut conn = self.accounts.conn()?;
        db::write_transaction(&mut conn, |conn| {
            users::set_password_hash(conn, user.id, &hash)?;
            session::end_all_for_user(conn, user.id)?;
            Ok::<_, diesel::result::Error>(())
        })?;
        Ok(true)
    }

    /// Checks `current_password` (argon2) for changes that need it.
    pub fn check_password(&self, user: &User, current: &str) -> bool {
        self.passwords().verify(&user.password.0, current)
    }

    /// `POST /password-reset`: the same outcome whether or not the account exists.
    pub fn request_reset(&self, typed: &str) -> anyhow::Result<PendingReset> {
        let throttle_key = self.throttle_key("reset", typed);
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
        let mut pending =
            PendingReset { throttle_key, user_id: None, channel: None, channel_was_verified: false, verified_at: None };
        let now = self.now();
        match (user, channel) {
            (Some(user), Some(channel)) => {
                self.transaction(|conn| {
                    if let Some(token) = tokens::find(conn, user.id, channel)? {
                        pending.user_id = Some(user.id);
                        pending.channel = Some(channel.as_str().to_owned());
                        pending.channel_was_verified = token.state.verified;
                        self.send_code_in(conn, &token, Purpose::PasswordReset).map_err(check_to_anyhow)?;
                    }
                    Ok::<_, anyhow::Error>(())
                })?;
                tracing::info!(user_id = user.id, %channel, "password reset requested");
            }
            _ => {
                // The same kind of work for an unknown account: the send limits are counted as if
                // a code went out, and a code that would have gone out starts the failure count
                // again, as a new code does for a real token (so neither the limits nor the
                // backoff of `verify_reset` tell an unknown account from a known one). With no
                // address to key the limits on (a username, or text that parses as nothing),
                // the keyed identifier stands in for one.
                let (channel, address) = match &identifier {
                    Some(Identifier::Email(e)) => (Channel::Email, e.key()),
                    Some(Identifier::Phone(p)) => (Channel::Phone, p.as_str().to_owned()),
                    Some(Identifier::Username(_)) | None => (Channel::Email, format!("reset:{}", pending.throttle_key)),
                };
                self.transaction(|conn| {
                    if limits::try_record(conn, &self.secret, &self.limits, channel, &address, now)?.is_ok() {
                        throttles::clear(conn, &pending.throttle_key)?;
                    }
                    Ok::<_, anyhow::Error>(())
                })?;
                tracing::info!("password reset requested for no account");
            }
        }
        Ok(pending)
    }

    /// `POST /password-reset/verify`: the code is checked only against the account this
    /// session asked for. For no account it answers as for a wrong code, backoff included.
    pub fn verify_reset(&self, pending: &PendingReset, code: &str) -> anyhow::Result<Result<bool, Throttled>> {
        let token = match (pending.user_id, pending.channel.as_deref()) {
            (Some(user_id), Some(channel)) => {
                let channel = if channel == "phone" { Channel::Phone } else { Channel::Email };
                let mut conn = self.accounts.conn()?;
                tokens::find(&mut conn, user_id, channel)?
            }
            _ => None,
        };
        match token {
            Some(token) => match self.accounts.check_password(&token, code) {
                Ok(right) => Ok(Ok(right)),
                Err(CheckError::Throttled(t)) => Ok(Err(t)),
                Err(CheckError::NoToken) => self.phantom_check(&pending.throttle_key),
                Err(CheckError::Unexpected(e)) => Err(e),
            },
            None => self.phantom_check(&pending.throttle_key),
        }
    }

    /// A wrong code against no token: the same backoff as a real token's.
    fn phantom_check(&self, key: &str) -> anyhow::Result<Result<bool, Throttled>> {
        let mut conn = self.accounts.conn()?;
        Ok(throttles::fail(&mut conn, key, self.now(), CODE_BACKOFF_CAP)?.map(|_| false))
    }

    /// `POST /password-reset/new`: sets the password, ends every session of the user, and if
    /// the channel that got the code was unverified before, removes the other addresses.
    pub fn complete_reset(&self, pending: &PendingReset, new_hash: &str) -> anyhow::Result<()> {
        let user_id = pending.user_id.ok_or_else(|| anyhow::anyhow!("no account in this reset"))?;
        let mut conn = self.accounts.conn()?;
        db::write_transaction(&mut conn, |conn| {
            users::set_password_hash(conn, user_id, new_hash)?;
            session::end_all_for_user(conn, user_id)?;
            if !pending.channel_was_verified {
                // the other address was never proven by whoever holds this one
                let other = if pending.channel.as_deref() == Some("phone") { Channel::Email } else { Channel::Phone };
                let mut changes = IdentifierChanges::default();
                match other {
                    Channel::Email => changes.email = Change::Remove,
                    Channel::Phone => changes.phone = Change::Remove,
                }
                if let Some(token) = tokens::find(conn, user_id, other)? {
                    outbox::cancel_for_token(conn, token.id, self.now())?;
                }
                users::update_identifiers_in(conn, user_id, changes)?;
            }
            Ok::<_, anyhow::Error>(())
        })?;
        tracing::info!(user_id, "password reset completed; all sessions ended");
        Ok(())
    }

    /// Deletes expired sessions and stale throttle rows. (The delivery worker keeps the outbox
    /// and the send log tidy itself.)
    pub fn housekeeping(&self) -> anyhow::Result<()> {
        let now = self.now();
        let mut conn = self.accounts.conn()?;
        let sessions = session::prune(&mut conn, now)?;
        let throttles = throttles::prune(&mut conn, now)?;
        tracing::debug!(sessions, throttles, "housekeeping");
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
    AccountError::Unexpected(anyhow::anyhow!("{e}"))
}

fn check_to_anyhow(e: CheckError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}
