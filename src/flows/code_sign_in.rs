//! Sign in with a code, no password (CONTRACT.md, "Sign in with a code"): for every account with
//! an email or phone, including those with no usable password.
//!
//! It is the password reset's machinery with another purpose: the request and the code check
//! are [`Flows::request_code`] and [`Flows::check_code`], so the enumeration-safe request, the
//! send limits, the backoff per typed identifier (unknown accounts exactly as wrong codes) and the
//! code spent exactly once are the same rules in the same place. Only the completion differs: a
//! proven code signs in at once.

use serde::{Deserialize, Serialize};

use super::{CodeCheck, Flows, ResetTarget};
use crate::accounts::activity::{self, Event};
use crate::accounts::throttle::Throttled;
use crate::accounts::tokens::{self, Purpose};
use crate::accounts::users::{self, User};
use crate::accounts::{Passwords, sessions};
use crate::domain::RequestContext;

/// A code sign-in in progress, as the asking session keeps it.
///
/// It depends on the account (active, not deleted), on the channel's token (its id and
/// address) and on the account's credential version (password and identifiers), and carries
/// what it saw of them: each check tests them again, so once any of them changes the pending
/// sign-in is void (its code answers as a wrong one). It lives as long as its code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSignIn {
    /// Keyed hash of the typed identifier: the backoff of this sign-in's code checks, kept per
    /// typed identifier for known and unknown accounts alike.
    throttle_key: String,
    /// The account and channel, when one matched.
    target: Option<ResetTarget>,
}

impl PendingSignIn {
    /// The account asked for, if any (for logs; the pages never show it).
    pub fn user_id(&self) -> Option<i64> {
        self.target.as_ref().map(|t| t.user_id)
    }
}

/// What a sign-in code check came to.
#[derive(Debug)]
pub enum CodeSignIn {
    /// The code was right and spent: this user proved the first factor (the caller signs in,
    /// or asks for the second factor).
    Proven(User),
    /// Wrong, expired, or no account or a void sign-in (answered alike).
    Wrong,
    /// Inside a backoff window: nothing was checked.
    Throttled(Throttled),
}

impl Flows {
    /// `POST /sign-in/code`: sends a sign-in code to the account `typed` names, within the send
    /// limits; the same outcome whether or not the account exists (see [`Flows::request_reset`],
    /// whose rules these are).
    pub fn request_sign_in_code(&self, typed: &str) -> anyhow::Result<PendingSignIn> {
        let (throttle_key, target) = self.request_code(Purpose::SignIn, typed)?;
        Ok(PendingSignIn { throttle_key, target })
    }

    /// `POST /sign-in/code/verify`, the library's `sign_in_with_code`: the code is checked only
    /// against the account this sign-in asked for, while the sign-in holds, and spent. A right
    /// code makes its channel verified; if the channel was unverified before, the account's other
    /// email and phone, its password (made unusable) and every session of it are removed: they
    /// were set up by whoever held the account before this address was proven. The username
    /// stays. No account or a void sign-in answers as a wrong code, backoff included.
    ///
    /// A proven code is a first factor: [`Flows::after_first_factor`] signs in (recorded as a
    /// code sign-in) or asks for the second. A wrong one for an existing account is a failed
    /// sign-in in its activity (seen only by its owner).
    pub fn sign_in_with_code(
        &self,
        pending: &PendingSignIn,
        code: &str,
        ctx: &RequestContext,
    ) -> anyhow::Result<CodeSignIn> {
        match self.check_code(Purpose::SignIn, &pending.throttle_key, pending.target.as_ref(), code)? {
            CodeCheck::Throttled(throttled) => return Ok(CodeSignIn::Throttled(throttled)),
            CodeCheck::Wrong => {
                if let Some(target) = &pending.target {
                    let now = self.now();
                    // only while the sign-in still holds: the account may be gone (or changed)
                    self.transaction(|conn| {
                        if self.target_holds(conn, target)? {
                            activity::record(conn, target.user_id, Event::SignInFailed, ctx, now)?;
                        }
                        Ok::<_, anyhow::Error>(())
                    })?;
                }
                return Ok(CodeSignIn::Wrong);
            }
            CodeCheck::Right => {}
        }
        let Some(target) = &pending.target else { return Ok(CodeSignIn::Wrong) };
        Ok(match self.complete_code_sign_in(target, ctx)? {
            Some(user) => CodeSignIn::Proven(user),
            None => CodeSignIn::Wrong,
        })
    }

    /// The proven code's consequences, in one transaction; `None` when the sign-in went void
    /// between the check and here (nothing changed).
    fn complete_code_sign_in(&self, target: &ResetTarget, ctx: &RequestContext) -> anyhow::Result<Option<User>> {
        let now = self.now();
        self.transaction(|conn| {
            if !self.target_holds(conn, target)? {
                return Ok(None);
            }
            let Some(token) = tokens::find_by_id(conn, target.token_id)? else { return Ok(None) };
            if !token.state.verified {
                // a compare-and-swap on the version the code was sent under: the password goes
                if !users::set_password_hash_if_version(
                    conn,
                    target.user_id,
                    target.credential_version,
                    &Passwords::unusable(),
                )? {
                    return Ok(None);
                }
                tokens::mark_verified(conn, token.id)?;
                activity::record(conn, target.user_id, Event::IdentifierVerified(target.channel.into()), ctx, now)?;
                self.remove_unproven_in(conn, target, ctx, now)?;
                // this visitor's session is made after the commit, so "every other" is all
                sessions::end_all_for_user(conn, target.user_id)?;
            }
            Ok::<_, anyhow::Error>(users::get(conn, target.user_id)?)
        })
    }
}
