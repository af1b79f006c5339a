//! Passkeys in the web's use cases: adding one (`/account/two-factor`), signing in with one alone
//! (`/sign-in`, discoverable credentials, also from the identifier field's autofill), using one
//! as the second step (`/sign-in/two-factor`), and removing one. WebAuthn itself is
//! `webauthn-rs`'s: the relying party id is the host of `FLEX_USER_PUBLIC_URL` and the origin its
//! origin; when that host is an IP address (no valid relying party id) passkeys are not offered.
//!
//! Each ceremony is two calls. The first keeps webauthn-rs's state server-side (a
//! `passkey_challenges` row, [`crate::accounts::passkeys`]) bound to what it was made for: the
//! account and its factor version (adding), the half sign-in (the second step), nothing (signing
//! in, where the credential names the account). The second call takes that row out once, within
//! 5 minutes, and checks the binding before webauthn-rs checks the answer: the challenge, the
//! origin, the relying party, the signature, user verification (required everywhere) and the
//! sign counter (a counter that did not grow is refused). The updated credential is stored by a
//! compare-and-swap.
//!
//! Signing in with a passkey backs off per credential id (known or not), claimed before
//! anything is checked, and every failure answers the same, whether or not the credential
//! exists; a failure with an existing credential is counted in its account's activity, as a
//! wrong password is. The second step shares the per-account backoff of codes.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use url::Url;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Uuid, Webauthn, WebauthnBuilder,
};

use super::two_factor::{Confirmation, HalfSignIn, SecondStep};
use super::{Flows, Form};
use crate::accounts::activity::{self, Event, Factor, SignInMethod};
use crate::accounts::factors::{self, RecoveryCode};
use crate::accounts::passkeys::{self, Addition, ChallengeKind, NAME_MAX, StoredPasskey};
use crate::accounts::throttle::{SIGN_IN_BACKOFF_CAP, Throttled, store as throttles};
use crate::accounts::users::{self, Field, FieldErrors, User};
use crate::db::AnyConnection;
use crate::delivery::notices::{self, Notice};
use crate::domain::RequestContext;

pub use crate::accounts::passkeys::PasskeyInfo;

/// At most this many passkeys per account.
pub const PASSKEYS_MAX: i64 = 20;

/// The site as a WebAuthn relying party.
#[derive(Clone)]
pub struct RelyingParty(Arc<Webauthn>);

impl std::fmt::Debug for RelyingParty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RelyingParty")
    }
}

impl RelyingParty {
    /// The relying party of a site at `public_url`: its host name is the id, its origin the
    /// origin. `None` when the host is an IP address (or anything else webauthn-rs refuses).
    pub fn for_site(public_url: &Url, site_name: &str) -> Option<RelyingParty> {
        let Some(url::Host::Domain(host)) = public_url.host() else { return None };
        let origin = Url::parse(&public_url.origin().ascii_serialization()).ok()?;
        let built = WebauthnBuilder::new(host, &origin)
            .and_then(|b| b.rp_name(site_name).timeout(passkeys::CHALLENGE_TTL.to_std().unwrap_or_default()).build());
        match built {
            Ok(webauthn) => Some(RelyingParty(Arc::new(webauthn))),
            Err(e) => {
                tracing::warn!(host, error = %e, "passkeys are not offered: not a valid relying party");
                None
            }
        }
    }
}

/// A ceremony's first answer, for the browser: the id to post back with the finish, and the
/// options for `navigator.credentials` (`{"publicKey": …}`, binary fields as base64url).
#[derive(Debug, Clone, Serialize)]
pub struct Challenge {
    pub challenge: String,
    #[serde(rename = "publicKey")]
    pub public_key: serde_json::Value,
}

#[derive(Serialize, Deserialize)]
struct RegisterCeremony {
    user_id: i64,
    factor_version: i32,
    name: String,
    handle: Uuid,
    state: PasskeyRegistration,
}

#[derive(Serialize, Deserialize)]
struct SignInCeremony {
    state: DiscoverableAuthentication,
}

#[derive(Serialize, Deserialize)]
struct SecondStepCeremony {
    half: HalfSignIn,
    state: PasskeyAuthentication,
}

/// What finishing an addition came to.
#[derive(Debug)]
pub enum PasskeyAdded {
    /// Added; the new recovery codes when it was the account's first second factor.
    Added(Vec<RecoveryCode>),
    /// The browser's answer was not accepted (a message for the person); nothing changed.
    Refused(&'static str),
    /// No such ceremony for this user (used, expired, another account's) or the account's
    /// factors changed since it began: start again.
    Void,
}

/// What a sign-in with a passkey came to.
#[derive(Debug)]
pub enum PasskeySignIn {
    SignedIn(User),
    /// Any failure, whether or not the credential exists (answered alike).
    Failed,
    /// Inside this credential's backoff window: nothing was checked.
    Throttled(Throttled),
}

/// The messages of adding a passkey.
const NOT_OFFERED: &str = "Passkeys are not offered on this site.";
const NOT_VERIFIED: &str =
    "Your browser's answer could not be verified, so the passkey was not added. Try again, or use another passkey.";
const ALREADY_ADDED: &str = "That passkey is already added to an account. Use another one.";

impl Flows {
    /// True when passkeys can work on this site (the public URL's host is a name, not an IP).
    pub fn passkeys_offered(&self) -> bool {
        self.relying_party.is_some()
    }

    /// The account's passkeys, oldest first.
    pub fn passkeys_of(&self, user_id: i64) -> anyhow::Result<Vec<PasskeyInfo>> {
        Ok(passkeys::list(&mut *self.accounts.conn()?, user_id)?)
    }

    /// True when passkeys are offered and the account has one.
    pub fn has_passkey(&self, user_id: i64) -> anyhow::Result<bool> {
        Ok(self.passkeys_offered() && passkeys::count(&mut *self.accounts.conn()?, user_id)? > 0)
    }

    /// What the second step can offer the account (of a half sign-in that holds): (a passkey,
    /// where passkeys work; an authenticator app).
    pub fn second_step_factors(&self, user_id: i64) -> anyhow::Result<(bool, bool)> {
        let status = self.two_factor_status(user_id)?;
        Ok((self.passkeys_offered() && status.passkeys > 0, status.totp))
    }

    /// The first call of adding a passkey named `name`: the identity rule of every factor change
    /// (the current password; an account without one, a recent sign-in), then the options for
    /// `navigator.credentials.create` (a discoverable credential, user verification required,
    /// the account's passkeys excluded). Argon2: call through the hashing limit.
    pub fn start_passkey_registration(
        &self,
        user: &User,
        name: &str,
        proof: &Confirmation,
    ) -> anyhow::Result<Form<Challenge>> {
        let Some(rp) = &self.relying_party else { return Ok(Form::Invalid(FieldErrors::one(None, NOT_OFFERED))) };
        let name = name.trim();
        let mut errors = FieldErrors::default();
        if name.is_empty() {
            errors.add(Some(Field::Name), "Give the passkey a name, such as “Laptop” or “Phone”.");
        } else if name.chars().count() > NAME_MAX {
            errors.add(Some(Field::Name), format!("Keep the name to {NAME_MAX} characters at most."));
        } else if name.chars().any(char::is_control) {
            errors.add(Some(Field::Name), "The name cannot hold control characters such as line breaks.");
        }
        if !errors.is_empty() {
            // before the identity: a code typed to confirm is spent only by a change that can go on
            return Ok(Form::Invalid(errors));
        }
        if let Some(errors) = self.confirm_identity(user, proof)? {
            return Ok(Form::Invalid(errors));
        }
        let mut conn = self.accounts.conn()?;
        let existing = passkeys::stored_of(&mut conn, user.id)?;
        if existing.len() as i64 >= PASSKEYS_MAX {
            return Ok(Form::Invalid(FieldErrors::one(
                None,
                "You have as many passkeys as an account can have. Remove one first.",
            )));
        }
        let Some(factor_version) = factors::factor_version(&mut conn, user.id)? else { return Ok(Form::NoUser) };
        let handle = passkeys::user_handle(&self.secret, user.id);
        let exclude = existing.iter().map(|s| s.passkey.cred_id().clone()).collect();
        let (options, state) =
            rp.0.start_passkey_registration(handle, user.display_name(), user.display_name(), Some(exclude))?;
        let mut public_key = serde_json::to_value(&options)?;
        // a discoverable (resident) credential: one that signs in without a name typed first
        if let Some(selection) = public_key.pointer_mut("/publicKey/authenticatorSelection") {
            selection["residentKey"] = "required".into();
            selection["requireResidentKey"] = true.into();
        }
        let ceremony = RegisterCeremony { user_id: user.id, factor_version, name: name.to_owned(), handle, state };
        Ok(Form::Done(self.issue(&mut conn, ChallengeKind::Register, Some(user.id), public_key, &ceremony)?))
    }

    /// Keeps `ceremony` (webauthn-rs's state and what it is bound to) for its finish, and
    /// answers the browser with `options` (webauthn-rs's `{"publicKey": …}`) and the id to post
    /// back.
    fn issue(
        &self,
        conn: &mut AnyConnection,
        kind: ChallengeKind,
        owner: Option<i64>,
        mut options: serde_json::Value,
        ceremony: &impl Serialize,
    ) -> anyhow::Result<Challenge> {
        let id = passkeys::store_challenge(conn, kind, owner, &serde_json::to_string(ceremony)?, self.now())?;
        Ok(Challenge { challenge: id, public_key: options["publicKey"].take() })
    }

    /// The second call of adding a passkey: the browser's `credential` for the ceremony
    /// `challenge` of this user. Added (with the activity event and the notice, in one
    /// transaction) only while the account's factors are as they were at the first call.
    pub fn finish_passkey_registration(
        &self,
        user: &User,
        challenge: &str,
        credential: &RegisterPublicKeyCredential,
        ctx: &RequestContext,
    ) -> anyhow::Result<PasskeyAdded> {
        let Some(rp) = &self.relying_party else { return Ok(PasskeyAdded::Refused(NOT_OFFERED)) };
        let now = self.now();
        let mut conn = self.accounts.conn()?;
        let Some((owner, state)) = passkeys::claim(&mut conn, ChallengeKind::Register, challenge, now)? else {
            return Ok(PasskeyAdded::Void);
        };
        drop(conn);
        let ceremony: RegisterCeremony = serde_json::from_str(&state)?;
        if owner != Some(user.id) || ceremony.user_id != user.id {
            return Ok(PasskeyAdded::Void);
        }
        let passkey = match rp.0.finish_passkey_registration(credential, &ceremony.state) {
            Ok(passkey) => passkey,
            Err(e) => {
                tracing::info!(user_id = user.id, error = %e, "passkey registration refused");
                return Ok(PasskeyAdded::Refused(NOT_VERIFIED));
            }
        };
        let keys = factors::FactorKeys::new(&self.secret);
        let added = self.transaction(|conn| {
            let added = passkeys::insert_in(
                conn,
                &keys,
                user.id,
                ceremony.factor_version,
                &ceremony.name,
                ceremony.handle,
                &passkey,
                now,
            )?;
            if let Addition::Done(_) = added {
                activity::record(conn, user.id, Event::SecondFactorAdded(Factor::Passkey), ctx, now)?;
                notices::queue(conn, user.id, Notice::SecondFactorAdded(Factor::Passkey), ctx, &self.site, now)?;
            }
            Ok::<_, anyhow::Error>(added)
        })?;
        Ok(match added {
            Addition::Done(codes) => {
                tracing::info!(event = "second_factor_added", user_id = user.id, kind = "passkey", "passkey added");
                PasskeyAdded::Added(codes)
            }
            Addition::Duplicate => PasskeyAdded::Refused(ALREADY_ADDED),
            Addition::Void => PasskeyAdded::Void,
        })
    }

    /// The first call of signing in with a passkey alone: options for `navigator.credentials.get`
    /// with no credential named (the authenticator offers the site's discoverable ones).
    /// `None` when passkeys are not offered.
    pub fn start_passkey_sign_in(&self) -> anyhow::Result<Option<Challenge>> {
        let Some(rp) = &self.relying_party else { return Ok(None) };
        let (options, state) = rp.0.start_discoverable_authentication()?;
        // the script chooses the mediation: conditional for the autofill, none for the button
        let options = serde_json::to_value(&options)?;
        let ceremony = SignInCeremony { state };
        Ok(Some(self.issue(&mut *self.accounts.conn()?, ChallengeKind::SignIn, None, options, &ceremony)?))
    }

    /// The second call of signing in with a passkey alone. Signed in (recorded by
    /// [`Flows::signed_in`] as a passkey sign-in) when the ceremony was this one, unused and
    /// fresh, the credential is one of an active account, webauthn-rs accepts the assertion (user
    /// verified, counter grown) and the credential's update wins its compare-and-swap.
    pub fn finish_passkey_sign_in(
        &self,
        challenge: &str,
        credential: &PublicKeyCredential,
        ctx: &RequestContext,
    ) -> anyhow::Result<PasskeySignIn> {
        let Some(rp) = &self.relying_party else { return Ok(PasskeySignIn::Failed) };
        let now = self.now();
        let key = self
            .secret
            .keyed_hash("sign-in-passkey", passkeys::credential_key(credential.get_credential_id()).as_bytes());
        let mut conn = self.accounts.conn()?;
        if let Err(throttled) = throttles::claim(&mut conn, &key, now, SIGN_IN_BACKOFF_CAP)? {
            return Ok(PasskeySignIn::Throttled(throttled));
        }
        let stored = passkeys::by_credential(&mut conn, credential.get_credential_id())?;
        let user = match self.check_discoverable(rp, &mut conn, challenge, credential, stored.as_ref())? {
            Some(user) => user,
            None => {
                if let Some(stored) = &stored {
                    activity::record(&mut conn, stored.user_id, Event::SignInFailed, ctx, now)?;
                }
                return Ok(PasskeySignIn::Failed);
            }
        };
        throttles::clear(&mut conn, &key)?;
        drop(conn);
        self.signed_in(user.id, SignInMethod::Passkey, ctx)?;
        Ok(PasskeySignIn::SignedIn(user))
    }

    /// The account `credential` signs in to, if every check of a discoverable sign-in holds.
    fn check_discoverable(
        &self,
        rp: &RelyingParty,
        conn: &mut AnyConnection,
        challenge: &str,
        credential: &PublicKeyCredential,
        stored: Option<&StoredPasskey>,
    ) -> anyhow::Result<Option<User>> {
        let now = self.now();
        let Some((_, state)) = passkeys::claim(conn, ChallengeKind::SignIn, challenge, now)? else { return Ok(None) };
        let ceremony: SignInCeremony = serde_json::from_str(&state)?;
        let Some(stored) = stored else { return Ok(None) };
        match rp.0.identify_discoverable_authentication(credential) {
            Ok((handle, _)) if handle == stored.handle => {}
            _ => return Ok(None),
        }
        let result = match rp.0.finish_discoverable_authentication_v2(credential, ceremony.state, &stored.passkey) {
            Ok(result) => result,
            Err(e) => {
                tracing::info!(user_id = stored.user_id, error = %e, "passkey assertion refused");
                return Ok(None);
            }
        };
        if !result.user_verified() || !self.store_use(conn, stored, &result)? {
            return Ok(None);
        }
        Ok(users::get(conn, stored.user_id)?.filter(|u| u.is_active))
    }

    /// Updates the stored credential from an authentication's result, as webauthn-rs advises,
    /// and records when it was used. False when another use changed it meanwhile.
    fn store_use(
        &self,
        conn: &mut AnyConnection,
        stored: &StoredPasskey,
        result: &webauthn_rs::prelude::AuthenticationResult,
    ) -> anyhow::Result<bool> {
        let mut passkey: Passkey = stored.passkey.clone();
        if passkey.update_credential(result).is_none() {
            return Ok(false);
        }
        passkeys::record_use(conn, stored, &passkey, self.now())
    }

    /// The first call of a passkey as the second step of `half`: options naming the account's
    /// passkeys. `None` when the half sign-in no longer holds or the account has no passkey.
    pub fn start_passkey_second_step(&self, half: &HalfSignIn) -> anyhow::Result<Option<Challenge>> {
        let Some(rp) = &self.relying_party else { return Ok(None) };
        let Some(user) = self.half_sign_in_user(half)? else { return Ok(None) };
        let mut conn = self.accounts.conn()?;
        let credentials: Vec<Passkey> =
            passkeys::stored_of(&mut conn, user.id)?.into_iter().map(|s| s.passkey).collect();
        if credentials.is_empty() {
            return Ok(None);
        }
        let (options, state) = rp.0.start_passkey_authentication(&credentials)?;
        let options = serde_json::to_value(&options)?;
        let ceremony = SecondStepCeremony { half: half.clone(), state };
        Ok(Some(self.issue(&mut conn, ChallengeKind::SecondStep, Some(user.id), options, &ceremony)?))
    }

    /// The second call of a passkey as the second step: void as the half sign-in is; the
    /// per-account backoff of the second step, claimed first; then the ceremony, which must be
    /// this half sign-in's, and the assertion, by one of the account's passkeys. The credential's
    /// update and the sign-in's record (as the first factor's method, as a code's second step
    /// is) commit together.
    pub fn finish_passkey_second_step(
        &self,
        half: &HalfSignIn,
        challenge: &str,
        credential: &PublicKeyCredential,
        ctx: &RequestContext,
    ) -> anyhow::Result<SecondStep> {
        let Some(rp) = &self.relying_party else { return Ok(SecondStep::Void) };
        let Some(user) = self.half_sign_in_user(half)? else { return Ok(SecondStep::Void) };
        let now = self.now();
        let key = factors::second_factor_throttle_key(&self.secret, user.id);
        let mut conn = self.accounts.conn()?;
        if let Err(throttled) = throttles::claim(&mut conn, &key, now, SIGN_IN_BACKOFF_CAP)? {
            return Ok(SecondStep::Throttled(throttled));
        }
        drop(conn);
        if self.passkey_second_step(rp, half, &user, challenge, credential, &key, ctx)? {
            return Ok(SecondStep::SignedIn { user, recovery_left: None });
        }
        // the first factor was right: the owner sees that someone got this far, as for a code
        activity::record(&mut *self.accounts.conn()?, user.id, Event::SignInFailed, ctx, now)?;
        Ok(SecondStep::Wrong)
    }

    /// True when the ceremony `challenge` is this half sign-in's and the assertion is by one of
    /// the account's passkeys: then the credential's update, the backoff's reset and the
    /// sign-in's record have committed together.
    #[allow(clippy::too_many_arguments)]
    fn passkey_second_step(
        &self,
        rp: &RelyingParty,
        half: &HalfSignIn,
        user: &User,
        challenge: &str,
        credential: &PublicKeyCredential,
        throttle_key: &str,
        ctx: &RequestContext,
    ) -> anyhow::Result<bool> {
        let mut conn = self.accounts.conn()?;
        let Some((owner, state)) = passkeys::claim(&mut conn, ChallengeKind::SecondStep, challenge, self.now())? else {
            return Ok(false);
        };
        let ceremony: SecondStepCeremony = serde_json::from_str(&state)?;
        if owner != Some(user.id) || ceremony.half != *half {
            return Ok(false);
        }
        let result = match rp.0.finish_passkey_authentication(credential, &ceremony.state) {
            Ok(result) => result,
            Err(e) => {
                tracing::info!(user_id = user.id, error = %e, "passkey assertion refused in the second step");
                return Ok(false);
            }
        };
        let Some(stored) =
            passkeys::stored_of(&mut conn, user.id)?.into_iter().find(|s| s.passkey.cred_id() == result.cred_id())
        else {
            return Ok(false);
        };
        drop(conn);
        self.transaction(|conn| {
            if !self.store_use(conn, &stored, &result)? {
                return Ok(false);
            }
            throttles::clear(conn, throttle_key)?;
            self.signed_in_in(conn, user.id, half.method(), ctx)?;
            Ok::<_, anyhow::Error>(true)
        })
    }

    /// `POST /account/passkeys/{id}/delete`: `Done(false)` when the account has no such passkey
    /// (checked first: no password is checked for someone else's id); else the identity rule,
    /// then the passkey goes, with its activity event and notice in the same transaction.
    /// Argon2: call through the hashing limit.
    pub fn remove_passkey(
        &self,
        user: &User,
        public_id: &str,
        proof: &Confirmation,
        ctx: &RequestContext,
    ) -> anyhow::Result<Form<bool>> {
        if !passkeys::owns(&mut *self.accounts.conn()?, user.id, public_id)? {
            return Ok(Form::Done(false));
        }
        if let Some(errors) = self.confirm_identity(user, proof)? {
            return Ok(Form::Invalid(errors));
        }
        let now = self.now();
        let removed = self.transaction(|conn| {
            let removed = passkeys::remove_in(conn, user.id, public_id)?;
            if removed {
                activity::record(conn, user.id, Event::SecondFactorRemoved(Factor::Passkey), ctx, now)?;
                notices::queue(conn, user.id, Notice::SecondFactorRemoved(Factor::Passkey), ctx, &self.site, now)?;
            }
            Ok::<_, anyhow::Error>(removed)
        })?;
        if removed {
            tracing::info!(event = "second_factor_removed", user_id = user.id, kind = "passkey", "passkey removed");
        }
        Ok(Form::Done(removed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relying_party_is_the_public_urls_host_and_never_an_ip() {
        for (url, offered) in [
            ("http://localhost:8080", true),
            ("https://auth.example.org", true),
            ("https://auth.example.org/base/path", true),
            ("http://127.0.0.1:8080", false),
            ("http://[::1]:8080", false),
            ("https://192.168.1.10", false),
        ] {
            let url = Url::parse(url).unwrap();
            assert_eq!(RelyingParty::for_site(&url, "flex-user").is_some(), offered, "{url}");
        }
    }

    #[test]
    fn registration_options_ask_for_a_discoverable_credential_with_user_verification() {
        let url = Url::parse("https://auth.example.org").unwrap();
        let rp = RelyingParty::for_site(&url, "Acme").unwrap();
        let (options, _) = rp.0.start_passkey_registration(Uuid::nil(), "ann", "Ann", None).unwrap();
        let options = serde_json::to_value(&options).unwrap();
        assert_eq!(options["publicKey"]["rp"], serde_json::json!({"id": "auth.example.org", "name": "Acme"}));
        assert_eq!(options["publicKey"]["authenticatorSelection"]["userVerification"], "required");
        let (options, _) = rp.0.start_discoverable_authentication().unwrap();
        let options = serde_json::to_value(&options).unwrap();
        assert_eq!(options["publicKey"]["userVerification"], "required");
        assert!(options["publicKey"].get("allowCredentials").is_none_or(|a| a.as_array().is_some_and(Vec::is_empty)));
    }
}
