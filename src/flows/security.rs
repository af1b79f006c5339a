//! The flows of the sessions page, the activity log and sign-in records: each change and the
//! security event (and notice) it causes commit in one transaction.

use super::Flows;
use crate::accounts::activity::{self, Event, SignInMethod};
use crate::accounts::sessions::{self, LiveSession};
use crate::accounts::tokens::{self, CheckError, OtpToken, Purpose};
use crate::accounts::{browsers, users};
use crate::db::AnyConnection;
use crate::delivery::notices::{self, Notice};
use crate::domain::{Identifier, RequestContext};

/// Events older than the retention period deleted per housekeeping pass (it runs every minute).
const PRUNE_PER_PASS: i64 = 1000;

impl Flows {
    /// Everything a successful sign-in records, in one transaction: the last login, the event,
    /// and for a browser this account does not know yet, that it now does and a notice to the
    /// verified email. Every way of signing in calls this once the person is signed in
    /// (password, code, passkey, the second step).
    pub fn signed_in(&self, user_id: i64, method: SignInMethod, ctx: &RequestContext) -> anyhow::Result<()> {
        self.transaction(|conn| self.signed_in_in(conn, user_id, method, ctx))
    }

    /// [`Flows::signed_in`] inside a transaction (the second step's, which spends the factor).
    pub(crate) fn signed_in_in(
        &self,
        conn: &mut AnyConnection,
        user_id: i64,
        method: SignInMethod,
        ctx: &RequestContext,
    ) -> anyhow::Result<()> {
        let now = self.now();
        users::record_login(conn, user_id, now)?;
        activity::record(conn, user_id, Event::SignedIn(method), ctx, now)?;
        self.note_browser_in(conn, user_id, ctx, true)
    }

    /// Inside a transaction: remembers the request's browser for the account; when it is new
    /// and `tell` is set, queues the new-browser notice. (Sign-up remembers without telling.)
    pub(crate) fn note_browser_in(
        &self,
        conn: &mut AnyConnection,
        user_id: i64,
        ctx: &RequestContext,
        tell: bool,
    ) -> anyhow::Result<()> {
        let now = self.now();
        if let Some(browser) = &ctx.browser
            && browsers::remember(conn, user_id, browser, now)?
            && tell
        {
            notices::queue(conn, user_id, Notice::NewBrowserSignIn, ctx, &self.site, now)?;
        }
        Ok(())
    }

    /// A wrong password for what was typed: counted for the account it names, if there is one
    /// (unknown accounts record nothing). The look-up runs for every parsable identifier alike.
    pub(crate) fn sign_in_failed(&self, typed: &str, ctx: &RequestContext) -> anyhow::Result<()> {
        let Ok(identifier) = Identifier::infer(typed, self.accounts.default_region()) else { return Ok(()) };
        let Some(user) = self.accounts.find_user(&identifier)? else { return Ok(()) };
        let mut conn = self.accounts.conn()?;
        activity::record(&mut conn, user.id, Event::SignInFailed, ctx, self.now())?;
        Ok(())
    }

    /// `POST /sign-out`: this session ends (by its public id, when it has one) and the event is
    /// recorded, together. The caller also drops the session from the cookie.
    pub fn sign_out(&self, user_id: i64, public_id: Option<&str>, ctx: &RequestContext) -> anyhow::Result<()> {
        let now = self.now();
        self.transaction(|conn| {
            if let Some(public_id) = public_id {
                sessions::end_session(conn, user_id, public_id)?;
            }
            activity::record(conn, user_id, Event::SignedOut, ctx, now)?;
            Ok::<_, anyhow::Error>(())
        })
    }

    /// The user's live sessions, newest first.
    pub fn sessions_of(&self, user_id: i64) -> anyhow::Result<Vec<LiveSession>> {
        Ok(sessions::sessions_of(&mut *self.accounts.conn()?, user_id, self.now())?)
    }

    /// Ends the user's session with this public id, from another of their sessions. False, and
    /// nothing ends or is recorded, when it is not one of the user's sessions.
    pub fn end_session(&self, user_id: i64, public_id: &str, ctx: &RequestContext) -> anyhow::Result<bool> {
        let now = self.now();
        self.transaction(|conn| {
            let ended = sessions::end_session(conn, user_id, public_id)?;
            if ended {
                activity::record(conn, user_id, Event::SessionEnded, ctx, now)?;
            }
            Ok::<_, anyhow::Error>(ended)
        })
    }

    /// Ends every session of the user but the one with the public id `keep`, and voids every
    /// trusted browser of the account (this one included). Returns how many sessions ended.
    pub fn end_other_sessions(&self, user_id: i64, keep: &str, ctx: &RequestContext) -> anyhow::Result<usize> {
        let now = self.now();
        self.transaction(|conn| {
            let ended = sessions::end_others(conn, user_id, keep)?;
            // no browser of the account stays trusted for the second step
            crate::accounts::factors::bump_factor_version(conn, user_id)?;
            activity::record(conn, user_id, Event::OtherSessionsEnded, ctx, now)?;
            Ok::<_, anyhow::Error>(ended)
        })
    }

    /// The account's security events, newest first: `limit` of them after the newest `skip`.
    pub fn activity_of(&self, user_id: i64, skip: usize, limit: usize) -> anyhow::Result<activity::Page> {
        Ok(activity::activity_of(&mut *self.accounts.conn()?, user_id, skip, limit)?)
    }

    /// `POST /verify/…`: checks a verification code; when it is right the address is verified
    /// and the event recorded, together. As [`crate::accounts::Accounts::check_password`].
    pub fn verify_address(&self, token: &OtpToken, code: &str, ctx: &RequestContext) -> Result<bool, CheckError> {
        let now = self.now();
        self.transaction(|conn| {
            let right = tokens::check(conn, token.id, code, Purpose::Verify, self.accounts.keys(), now)?;
            if right {
                activity::record(conn, token.user_id, Event::IdentifierVerified(token.channel.into()), ctx, now)?;
            }
            Ok(right)
        })
    }

    /// Housekeeping: events past the retention period (a bounded pass) and old notice counts.
    pub(crate) fn prune_security_records(&self, conn: &mut AnyConnection) -> anyhow::Result<(usize, usize)> {
        let now = self.now();
        let events = activity::prune(conn, now - self.activity_retention, PRUNE_PER_PASS)?;
        let notices = notices::prune(conn, now)?;
        Ok((events, notices))
    }
}
