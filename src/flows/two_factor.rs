//! Second factors in the web's use cases: the half-signed-in state between a proven first factor
//! and the second step, the pending authenticator setup, the trusted browser, and the forms that
//! change factors. Blocking, like the rest of `flows`; those that check a password go through
//! the web layer's hashing limit.
//!
//! What each pending state depends on, and where it is checked:
//! - [`HalfSignIn`] (5 minutes): the user id, the credential version (password and identifiers),
//!   the factor version, the account being active. Void when any moved ([`Flows::half_sign_in_user`]).
//! - [`PendingTotp`] (10 minutes): the user id and the factor version at setup time, the secret
//!   sealed (a copy of the sessions table does not give it). Void when either moved.
//! - The trusted-browser cookie `USER.FACTOR_VERSION.EXPIRY.MAC` (MAC under a key derived from the
//!   secret key, compared in constant time): void once the factor version moves (password change
//!   or reset, a factor added or removed, "end other sessions").

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::{Flows, Form};
use crate::accounts::activity::{self, Event, Factor, SignInMethod};
use crate::accounts::factors::{self, FactorKeys, RecoveryCode, SecondFactorCheck, TotpSecret, TwoFactorStatus};
use crate::accounts::users::{self, Field, FieldErrors};
use crate::accounts::{Throttled, User};
use crate::delivery::notices::{self, Notice};
use crate::domain::RequestContext;

/// How long the second step waits after the first factor.
pub const HALF_SIGN_IN_TTL: Duration = Duration::minutes(5);
/// How long a new authenticator secret waits for its confirming code.
pub const TOTP_SETUP_TTL: Duration = Duration::minutes(10);
/// An account without a usable password changes factors only this soon after signing in.
pub const RECENT_SIGN_IN: Duration = Duration::minutes(10);

/// What a change of factors is confirmed with: the current password, or for an account without
/// one, a current second factor's code ([`Flows::confirm_identity`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confirmation {
    pub current_password: String,
    pub code: String,
}

/// A proven first factor waiting for the second: not a session of the user (no page of the
/// account opens), only the right to try the second step for this account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HalfSignIn {
    user_id: i64,
    credential_version: i32,
    factor_version: i32,
    at: DateTime<Utc>,
    /// How the first factor was proven: what the sign-in is recorded as once the second step
    /// passes (a password, unless said otherwise by a half sign-in made before this was kept).
    #[serde(default)]
    method: SignInMethod,
    /// Where to go after the second step (a local path, or empty for the default).
    pub next: String,
}

impl HalfSignIn {
    /// How the first factor was proven (what a passed second step records the sign-in as).
    pub(crate) fn method(&self) -> SignInMethod {
        self.method
    }
}

/// A new authenticator secret waiting for its first code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingTotp {
    user_id: i64,
    factor_version: i32,
    at: DateTime<Utc>,
    sealed: String,
}

/// Recovery codes just made, kept sealed in the session until the page shows them once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreshCodes {
    user_id: i64,
    sealed: String,
}

/// What a proven first factor leads to.
#[derive(Debug)]
pub enum FirstFactorDone {
    /// No second factor, or this browser is trusted for it: sign in.
    SignIn(User),
    /// Ask for the second factor.
    SecondStep(HalfSignIn),
}

/// What the second step came to.
#[derive(Debug)]
pub enum SecondStep {
    /// Signed in; `recovery_left` when a recovery code was used up.
    SignedIn {
        user: User,
        recovery_left: Option<i64>,
    },
    Wrong,
    Throttled(Throttled),
    /// The half sign-in is void (expired, or something it depends on changed).
    Void,
}

/// What confirming the authenticator came to.
#[derive(Debug)]
pub enum TotpConfirm {
    /// On; the new recovery codes when this was the first second factor.
    On(Vec<RecoveryCode>),
    Wrong,
    /// The setup is void (expired, another user, factors changed meanwhile).
    Void,
}

impl Flows {
    fn factor_keys(&self) -> FactorKeys {
        FactorKeys::new(&self.secret)
    }

    /// After a first factor (`method`: a password or a code) is proven: sign in, recorded with
    /// [`Flows::signed_in`], unless the account has a second factor and `trusted` (the
    /// trusted-browser cookie, if any) does not vouch for this account at its current factor
    /// version; then the half sign-in, and nothing is recorded until the second step passes.
    pub fn after_first_factor(
        &self,
        user: User,
        method: SignInMethod,
        trusted: Option<&str>,
        next: &str,
        ctx: &RequestContext,
    ) -> anyhow::Result<FirstFactorDone> {
        let mut conn = self.accounts.conn()?;
        if factors::has_second_factor(&mut conn, user.id)? {
            let half = self.half_sign_in_in(&mut conn, &user, method, next)?;
            let vouched = trusted.is_some_and(|cookie| self.trusts(cookie, user.id, half.factor_version));
            if !vouched {
                return Ok(FirstFactorDone::SecondStep(half));
            }
        }
        drop(conn);
        self.signed_in(user.id, method, ctx)?;
        Ok(FirstFactorDone::SignIn(user))
    }

    /// The half sign-in of `user`, who passed the first factor (`method`) now (the API's).
    pub fn half_sign_in(&self, user: &User, method: SignInMethod) -> anyhow::Result<HalfSignIn> {
        self.half_sign_in_in(&mut *self.accounts.conn()?, user, method, "")
    }

    fn half_sign_in_in(
        &self,
        conn: &mut crate::db::AnyConnection,
        user: &User,
        method: SignInMethod,
        next: &str,
    ) -> anyhow::Result<HalfSignIn> {
        // deactivated meanwhile: -1, which no account has, so it is void and trusts no cookie
        let credential_version = users::credential_version(conn, user.id)?.unwrap_or(-1);
        let factor_version = factors::factor_version(conn, user.id)?.unwrap_or(-1);
        let (user_id, at, next) = (user.id, self.now(), next.to_owned());
        Ok(HalfSignIn { user_id, credential_version, factor_version, at, method, next })
    }

    /// The user of `half` while it holds: within 5 minutes, the account active, and neither its
    /// credentials nor its factors changed since the first factor.
    pub fn half_sign_in_user(&self, half: &HalfSignIn) -> anyhow::Result<Option<User>> {
        let now = self.now();
        if now >= half.at + HALF_SIGN_IN_TTL || now < half.at - Duration::minutes(1) {
            return Ok(None);
        }
        let mut conn = self.accounts.conn()?;
        if users::credential_version(&mut conn, half.user_id)? != Some(half.credential_version)
            || factors::factor_version(&mut conn, half.user_id)? != Some(half.factor_version)
        {
            return Ok(None);
        }
        Ok(users::get(&mut conn, half.user_id)?.filter(|u| u.is_active))
    }

    /// `POST /sign-in/two-factor`: an authenticator code or an unused recovery code. A right one
    /// signs in, recorded (as the first factor's method, or as a recovery code, which also tells
    /// the account how many are left) in the transaction that spends it; a wrong one is a failed
    /// sign-in in the account's activity (counted per hour, as wrong passwords are).
    pub fn second_step(&self, half: &HalfSignIn, code: &str, ctx: &RequestContext) -> anyhow::Result<SecondStep> {
        let Some(user) = self.half_sign_in_user(half)? else { return Ok(SecondStep::Void) };
        let now = self.now();
        let check = self.accounts.verify_second_factor_then(user.id, code, |conn, check| {
            let method = match check {
                SecondFactorCheck::RecoveryCode { left } => {
                    let left = u32::try_from(*left).unwrap_or(0);
                    notices::queue(conn, user.id, Notice::RecoveryCodeUsed { left }, ctx, &self.site, now)?;
                    SignInMethod::RecoveryCode
                }
                _ => half.method,
            };
            self.signed_in_in(conn, user.id, method, ctx)
        })?;
        match check {
            // the first factor was right: the owner should see that someone got this far
            SecondFactorCheck::Wrong => {
                activity::record(&mut *self.accounts.conn()?, user.id, Event::SignInFailed, ctx, now)?;
            }
            SecondFactorCheck::Throttled(_) => {}
            _ => self.wake.notify_one(), // a notice may be queued
        }
        Ok(match check {
            SecondFactorCheck::Throttled(throttled) => SecondStep::Throttled(throttled),
            SecondFactorCheck::Wrong => SecondStep::Wrong,
            SecondFactorCheck::RecoveryCode { left } => SecondStep::SignedIn { user, recovery_left: Some(left) },
            SecondFactorCheck::Totp => SecondStep::SignedIn { user, recovery_left: None },
        })
    }

    /// The trusted-browser cookie's value for the account at its current factor version, good
    /// for `days`; `None` when the account is gone.
    pub fn trusted_cookie(&self, user_id: i64, days: u32) -> anyhow::Result<Option<String>> {
        let Some(version) = factors::factor_version(&mut *self.accounts.conn()?, user_id)? else { return Ok(None) };
        let expiry = (self.now() + Duration::days(i64::from(days))).timestamp();
        let text = format!("{user_id}.{version}.{expiry}");
        Ok(Some(format!("{text}.{}", self.factor_keys().trusted_mac(&text))))
    }

    /// True when `cookie` names `user_id` at `factor_version`, has not expired, and its MAC holds.
    fn trusts(&self, cookie: &str, user_id: i64, factor_version: i32) -> bool {
        let Some((text, mac)) = cookie.rsplit_once('.') else { return false };
        if !FactorKeys::same_mac(mac, &self.factor_keys().trusted_mac(text)) {
            return false;
        }
        let mut parts = text.split('.');
        let (Some(user), Some(version), Some(expiry), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        user.parse() == Ok(user_id)
            && version.parse() == Ok(factor_version)
            && expiry.parse::<i64>().is_ok_and(|e| self.now().timestamp() < e)
    }

    pub fn two_factor_status(&self, user_id: i64) -> anyhow::Result<TwoFactorStatus> {
        self.accounts.two_factor_status(user_id)
    }

    /// The rule for changing factors (CONTRACT.md "Second factors"): the right
    /// `current_password` when the account has a usable password (argon2: call through the
    /// hashing limit); without one, a current second factor's `code` (an authenticator code or a
    /// recovery code, which it spends, with the second step's backoff) once the account has a
    /// factor, and for its first factor a sign-in within the last 10 minutes.
    pub(super) fn confirm_identity(&self, user: &User, proof: &Confirmation) -> anyhow::Result<Option<FieldErrors>> {
        let mut errors = FieldErrors::default();
        if user.has_usable_password() {
            if proof.current_password.is_empty() {
                errors.add(Some(Field::CurrentPassword), "Enter your current password.");
            } else if !self.passwords().verify(&user.password.0, &proof.current_password)? {
                errors.add(Some(Field::CurrentPassword), "That is not your current password.");
            }
        } else if factors::has_second_factor(&mut *self.accounts.conn()?, user.id)? {
            let code = proof.code.trim();
            if code.is_empty() {
                errors.add(Some(Field::Code), "Enter a code from your authenticator app, or a recovery code.");
            } else {
                match self.accounts.verify_second_factor(user.id, code)? {
                    SecondFactorCheck::Totp | SecondFactorCheck::RecoveryCode { .. } => {}
                    SecondFactorCheck::Wrong => errors.add(
                        Some(Field::Code),
                        "That code is not right. Enter the code your app shows now, or an unused recovery code.",
                    ),
                    SecondFactorCheck::Throttled(throttled) => errors.add(
                        Some(Field::Code),
                        format!(
                            "Too many wrong codes. Try again in {} seconds.",
                            throttled.retry_after_secs(self.now())
                        ),
                    ),
                }
            }
        } else if user.last_login.is_none_or(|at| self.now() >= at + RECENT_SIGN_IN) {
            errors.add(None, "Sign out and in again, then set up your second factor within 10 minutes.");
        }
        Ok((!errors.is_empty()).then_some(errors))
    }

    /// `POST /account/two-factor/totp/setup`: a new secret, pending for 10 minutes.
    pub fn start_totp_setup(&self, user: &User, proof: &Confirmation) -> anyhow::Result<Form<PendingTotp>> {
        if factors::totp_factor(&mut *self.accounts.conn()?, user.id)?.is_some() {
            let message = "An authenticator app is already on. Turn it off first to set up another.";
            return Ok(Form::Invalid(FieldErrors::one(None, message)));
        }
        if let Some(errors) = self.confirm_identity(user, proof)? {
            return Ok(Form::Invalid(errors));
        }
        let Some(factor_version) = factors::factor_version(&mut *self.accounts.conn()?, user.id)? else {
            return Ok(Form::NoUser);
        };
        let secret = TotpSecret::random();
        let sealed = self.factor_keys().seal(secret.expose(), &setup_context(user.id));
        Ok(Form::Done(PendingTotp { user_id: user.id, factor_version, at: self.now(), sealed }))
    }

    /// The pending secret while the setup holds (for the user who began it, within 10 minutes,
    /// factors unchanged).
    pub fn pending_totp_secret(&self, user: &User, pending: &PendingTotp) -> anyhow::Result<Option<TotpSecret>> {
        let now = self.now();
        if pending.user_id != user.id || now >= pending.at + TOTP_SETUP_TTL {
            return Ok(None);
        }
        if factors::factor_version(&mut *self.accounts.conn()?, user.id)? != Some(pending.factor_version) {
            return Ok(None);
        }
        Ok(self.factor_keys().open(&pending.sealed, &setup_context(user.id)).map(TotpSecret::from_bytes))
    }

    /// `POST /account/two-factor/totp`: turns the app on when `code` is right; recorded and told
    /// in the same transaction.
    pub fn confirm_totp(
        &self,
        user: &User,
        pending: &PendingTotp,
        code: &str,
        ctx: &RequestContext,
    ) -> anyhow::Result<TotpConfirm> {
        let Some(secret) = self.pending_totp_secret(user, pending)? else { return Ok(TotpConfirm::Void) };
        let now = self.now();
        let Some(step) = secret.check(code, now) else { return Ok(TotpConfirm::Wrong) };
        let keys = self.factor_keys();
        let on = self.transaction(|conn| {
            let Some(codes) =
                factors::enable_totp_in(conn, &keys, user.id, pending.factor_version, &secret, step, now)?
            else {
                return Ok::<_, anyhow::Error>(None);
            };
            self.factor_changed_in(conn, user.id, Event::SecondFactorAdded(Factor::AuthenticatorApp), ctx)?;
            Ok(Some(codes))
        })?;
        Ok(match on {
            Some(codes) => {
                tracing::info!(event = "second_factor_added", user_id = user.id, kind = "totp", "authenticator app on");
                TotpConfirm::On(codes)
            }
            None => TotpConfirm::Void,
        })
    }

    /// `POST /account/two-factor/totp/disable`; recorded and told in the same transaction.
    pub fn disable_totp(&self, user: &User, proof: &Confirmation, ctx: &RequestContext) -> anyhow::Result<Form<bool>> {
        if let Some(errors) = self.confirm_identity(user, proof)? {
            return Ok(Form::Invalid(errors));
        }
        let off = self.transaction(|conn| {
            let off = factors::disable_totp_in(conn, user.id)?;
            if off {
                self.factor_changed_in(conn, user.id, Event::SecondFactorRemoved(Factor::AuthenticatorApp), ctx)?;
            }
            Ok::<_, anyhow::Error>(off)
        })?;
        if off {
            tracing::info!(event = "second_factor_removed", user_id = user.id, kind = "totp", "authenticator app off");
        }
        Ok(Form::Done(off))
    }

    /// Inside the transaction of a factor added or removed: its event, and the notice to the
    /// account's verified addresses.
    pub(crate) fn factor_changed_in(
        &self,
        conn: &mut crate::db::AnyConnection,
        user_id: i64,
        event: Event,
        ctx: &RequestContext,
    ) -> anyhow::Result<()> {
        let now = self.now();
        let notice = match event {
            Event::SecondFactorAdded(factor) => Notice::SecondFactorAdded(factor),
            Event::SecondFactorRemoved(factor) => Notice::SecondFactorRemoved(factor),
            _ => anyhow::bail!("{event:?} is not a change of factors"),
        };
        activity::record(conn, user_id, event, ctx, now)?;
        notices::queue(conn, user_id, notice, ctx, &self.site, now)?;
        Ok(())
    }

    /// `POST /account/two-factor/recovery-codes`: a new set (the old one is void), recorded in
    /// the same transaction.
    pub fn new_recovery_codes(
        &self,
        user: &User,
        proof: &Confirmation,
        ctx: &RequestContext,
    ) -> anyhow::Result<Form<Vec<RecoveryCode>>> {
        if let Some(errors) = self.confirm_identity(user, proof)? {
            return Ok(Form::Invalid(errors));
        }
        let (keys, now) = (self.factor_keys(), self.now());
        let codes = self.transaction(|conn| {
            if !factors::has_second_factor(conn, user.id)? {
                return Ok::<_, anyhow::Error>(None);
            }
            let codes = factors::new_recovery_codes_in(conn, &keys, user.id, now)?;
            activity::record(conn, user.id, Event::RecoveryCodesMade, ctx, now)?;
            Ok(Some(codes))
        })?;
        match codes {
            Some(codes) => {
                tracing::info!(event = "recovery_codes_new", user_id = user.id, "new recovery codes");
                Ok(Form::Done(codes))
            }
            None => Ok(Form::Invalid(FieldErrors::one(
                None,
                "Recovery codes come with a second factor: set up an authenticator app or add a passkey first.",
            ))),
        }
    }

    /// New codes sealed for the session that shows them once.
    pub fn seal_fresh_codes(&self, user_id: i64, codes: &[RecoveryCode]) -> FreshCodes {
        let text = codes.iter().map(RecoveryCode::as_str).collect::<Vec<_>>().join(" ");
        FreshCodes { user_id, sealed: self.factor_keys().seal(text.as_bytes(), &fresh_context(user_id)) }
    }

    /// The codes of `fresh` for `user_id` (none for another user or when they do not open).
    pub fn open_fresh_codes(&self, user_id: i64, fresh: &FreshCodes) -> Vec<String> {
        if fresh.user_id != user_id {
            return Vec::new();
        }
        self.factor_keys()
            .open(&fresh.sealed, &fresh_context(user_id))
            .and_then(|b| String::from_utf8(b).ok())
            .map(|t| t.split(' ').map(str::to_owned).collect())
            .unwrap_or_default()
    }
}

fn setup_context(user_id: i64) -> String {
    format!("totp-setup:{user_id}")
}

fn fresh_context(user_id: i64) -> String {
    format!("recovery-codes:{user_id}")
}
